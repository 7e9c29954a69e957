"""VGGT-style feed-forward geometry: cameras, depth and point maps from images in one pass.

- :mod:`.model`: :class:`VGGT` (registered as ``vggt``), :class:`VGGTConfig`, :func:`vggt_config`.
- :mod:`.aggregator`, :mod:`.heads`, :mod:`.layers`: the network.
- :mod:`.pose_encoding`: the 9-number camera encoding and conversions.
- :mod:`.losses`: normalized targets and the training losses.
- :mod:`.external`: strict loading of published VGGT weights (VGGT-1B, or any size in its layout).
- :mod:`.preprocess`: the official ``load_and_preprocess_images`` (crop / pad modes).
- :mod:`.predict`: ``recon3d predict --model vggt`` (cameras, depth, point cloud, transforms.json).
"""
