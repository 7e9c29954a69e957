"""The recon3d web app (Gradio): image to 3D, fit from photos, and a viewer for finished runs.

Start it with ``recon3d demo`` or ``python -m apps``. Modules:

- :mod:`apps.settings`   the app's configuration (work folder, runs roots, limits, fast-mode knobs)
- :mod:`apps.safety`     upload checks, file-name sanitizing, zip extraction, path confinement (pure)
- :mod:`apps.image_tab`  image -> 3D through :func:`recon3d.feedforward.predict.image_to_3d`
- :mod:`apps.fit_tab`    ``recon3d fit`` in a subprocess, followed through its ``progress.jsonl`` events
- :mod:`apps.viewer_tab` run folders under the configured roots: mesh, splats, renders, metrics
- :mod:`apps.jobs`       the bounded job folders (image-to-3D jobs, fit runs): oldest removed, shown ones kept
- :mod:`apps.ui`         the Gradio page (the only module importing gradio)
- :mod:`apps.cli`        the ``demo`` subcommand

Only :mod:`apps.ui` imports gradio, and only the ``demo`` handler imports :mod:`apps.ui`.
"""
