"""Feed-forward reconstructors: one forward pass from images to 3D, no per-scene fitting.

- :mod:`.base`: the model interface every feed-forward model implements, and the batch format.
- :mod:`.registry`: model names -> classes, shipped checkpoints, loading users' checkpoints.
- :mod:`.rendering`: rendering and meshing of image-conditioned radiance fields through core.
- :mod:`.data`: the multi-object synthetic data set (generation, shards, loader).
- :mod:`.train`: the shared (DDP-capable) training loop.
- ``pixelnerf/``, ``lrm/``, ``vggt/``: the models.
"""
