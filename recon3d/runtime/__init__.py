"""Runtime services shared by per-scene methods and feed-forward training: config I/O and presets
(:mod:`.config`), atomic resumable checkpoints (:mod:`.checkpoint`), the one fit loop
(:mod:`.fit_loop`), device choice (:mod:`.device`), seeding (:mod:`.seeding`) and structured progress
events (:mod:`.progress`). It builds on ``recon3d.core``, ``recon3d.io`` and ``recon3d.mesh`` only.
"""
