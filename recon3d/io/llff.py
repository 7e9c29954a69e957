"""Reader for LLFF-style scenes: ``poses_bounds.npy`` + ``images/`` (optionally ``images_4/`` ...).

``poses_bounds.npy`` is an (N, 17) float array, one row per image in the **plain (byte-wise) sorted
order of the image file names** (LLFF's ``imgs2poses`` sorts COLMAP image names that way):

* ``row[:15].reshape(3, 5)`` = ``[c0 c1 c2 | t | hwf]``: a 3x4 camera-to-world ``[c0 c1 c2 | t]``
  whose rotation columns are the camera's *down*, *right* and *backwards* axes in world
  coordinates, and ``hwf = (H, W, focal)`` in pixels of the full-resolution images;
* ``row[15:17]`` = (near, far) scene depth bounds of that image, world units.

Derivation of the conversion. LLFF builds its matrix from COLMAP's camera-to-world, whose columns are
the OpenCV axes (x right, y down, z forward): ``[c0, c1, c2] = [y, x, -z]``. Inverting that
permutation gives the OpenCV camera-to-world ``[x, y, z | t] = [c1, c0, -c2 | t]`` (a swap of two
columns and one negation: the determinant stays +1). Intrinsics: ``fx = fy = focal``, principal
point at the image centre (W/2, H/2), both at the ``hwf`` resolution, then scaled per axis to the
actual image files (LLFF's ``images_4/`` etc. are resized copies).

Unlike LLFF's own loader, poses are *not* recentred or rescaled here: use
:func:`recon3d.io.normalize.normalize_scene`. Test split: every 8th image (0, 8, ...; "llffhold").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from recon3d.core.cameras import Cameras

from ._common import TEST_EVERY, every_nth_split
from .errors import DataError
from .images import list_images
from .scene import Scene, finalize_scene


def llff_to_opencv_c2w(llff: np.ndarray) -> np.ndarray:
    """(N, 3, 4+) LLFF ``[down, right, backwards | t]`` -> (N, 4, 4) OpenCV camera-to-world."""
    llff = np.asarray(llff, dtype=np.float64)
    out = np.zeros((llff.shape[0], 4, 4))
    out[:, :3, 0] = llff[:, :, 1]
    out[:, :3, 1] = llff[:, :, 0]
    out[:, :3, 2] = -llff[:, :, 2]
    out[:, :3, 3] = llff[:, :, 3]
    out[:, 3, 3] = 1.0
    return out


def _load_poses_bounds(npy: Path) -> np.ndarray:
    if not npy.is_file():
        raise DataError(npy, "file not found")
    try:
        arr = np.load(npy, allow_pickle=False)
    except Exception as e:
        raise DataError(npy, f"cannot read numpy array ({type(e).__name__}: {e})") from e
    arr = np.asarray(arr)
    if arr.ndim != 2 or arr.shape[1] != 17 or arr.shape[0] == 0:
        raise DataError(npy, f"expected an (N, 17) array of 3x5 pose matrices + near/far bounds, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(npy, f"expected a numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    bad = np.where(~np.isfinite(arr).all(axis=1))[0]
    if len(bad):
        raise DataError(npy, f"row {int(bad[0])} has non-finite values (NaN or inf)")
    return arr


def _attach_masks(scene: Scene, root: Path) -> None:
    """``root/masks/`` (same file names as the photos, thresholded at 128) becomes the scene's masks."""
    from .images import find_masks

    if (root / "masks").is_dir():
        masks = find_masks([Path(p) for p in scene.image_paths], root / "masks")
        if any(m is not None for m in masks):
            scene.mask_paths = masks


def read_llff(path: str | Path, downscale: float = 1, background=None) -> Scene:
    """Read an LLFF scene folder (or its ``poses_bounds.npy``).

    Args:
        path: folder with ``poses_bounds.npy`` and ``images/``.
        downscale: image shrink factor (2 halves). For an integer factor with an existing
            ``images_{factor}/`` folder those pre-shrunk files are used as they are; otherwise
            ``images/`` is shrunk on load.
        background: colour RGBA images are composited onto (None: alpha ignored).
    Returns:
        Scene with ``source_format='llff'`` and ``near_far`` (N, 2) bounds.
    """
    path = Path(path)
    root = path.parent if path.is_file() else path
    if not root.is_dir():
        raise DataError(root, "LLFF scene folder not found")
    npy = root / "poses_bounds.npy"
    arr = _load_poses_bounds(npy)
    files_ds = 1
    img_dir = root / "images"
    if downscale != 1 and float(downscale).is_integer() and (root / f"images_{int(downscale)}").is_dir():
        img_dir, files_ds = root / f"images_{int(downscale)}", int(downscale)
    images = list_images(img_dir, natural=False)  # DataError when the folder is missing
    if len(images) != len(arr):
        raise DataError(npy, f"has {len(arr)} poses but {img_dir} holds {len(images)} images")

    mats = arr[:, :15].reshape(-1, 3, 5)
    c2w = llff_to_opencv_c2w(mats[:, :, :4])
    R = c2w[:, :3, :3]
    err = np.abs(np.einsum("nji,njk->nik", R, R) - np.eye(3)).max(axis=(1, 2))
    if (err > 1e-2).any():
        raise DataError(npy, f"row {int(np.argmax(err > 1e-2))} has a rotation that is not orthonormal")
    H, W, f = mats[:, 0, 4], mats[:, 1, 4], mats[:, 2, 4]
    if (H < 1).any() or (W < 1).any() or (f <= 0).any():
        raise DataError(npy, "hwf column must hold positive image height, width and focal length")
    Hi, Wi = np.round(H).astype(np.int64), np.round(W).astype(np.int64)
    cams = Cameras(torch.from_numpy(c2w).float(), f, f, 0.5 * Wi, 0.5 * Hi, Wi, Hi)
    bounds = arr[:, 15:17]
    train, test = every_nth_split(len(images), TEST_EVERY)
    scene = finalize_scene(
        cams, images, downscale=downscale / files_ds, allow_resized=True, source=npy,
        train_indices=train, test_indices=test, background=background, name=root.name, source_format="llff",
        near_far=torch.from_numpy(bounds).float(), metadata={"files_downscale": files_ds, "images_dir": str(img_dir)},
    )
    scene.downscale = downscale
    _attach_masks(scene, root)
    return scene
