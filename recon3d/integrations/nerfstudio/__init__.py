"""nerfstudio plugin: recon3d's methods as ``ns-train`` methods.

Registered through the ``nerfstudio.method_configs`` entry point in ``pyproject.toml`` (extra
``recon3d[nerfstudio]``, installed into ``.venv-nerfstudio`` by ``scripts/setup_nerfstudio_env.sh``):

* ``recon3d-splat`` (:mod:`.splat_config`): recon3d's Gaussian model, rasterizer
  (:func:`recon3d.core.gaussians.rasterize`: gsplat on CUDA, recon3d's PyTorch tiles on CPU) and
  densification strategy, fed by nerfstudio's full-image data manager and shown in its viewer.
* ``recon3d-nerf`` (:mod:`.nerf_config`): recon3d's hash-grid NeRF field, occupancy grid and ray
  marcher (:func:`recon3d.methods.nerf.render_rays`), fed by nerfstudio's ray data manager.
* ``recon3d-sdf`` (:mod:`.sdf_config`): recon3d's NeuS-style SDF field, renderer
  (:func:`recon3d.methods.sdf.render_neus`) and losses, fed by nerfstudio's ray data manager;
  :mod:`.export_mesh` meshes a run's zero level set (GLB / OBJ / PLY, vertex colours).

Only nerfstudio imports this package; importing it without nerfstudio installed fails.
"""
