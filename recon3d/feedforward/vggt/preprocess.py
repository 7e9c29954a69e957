"""Photos -> VGGT input frames as the official ``load_and_preprocess_images`` makes them.

Two modes, as the official function (``facebookresearch/vggt``, ``vggt/utils/load_fn.py``):

- ``crop`` (the official default): width ``size`` (518 for VGGT-1B), height scaled with the
  aspect ratio and rounded to a multiple of the patch size (14); a frame taller than ``size`` is
  centre-cropped to ``size`` rows (portrait photos lose their top and bottom).
- ``pad``: the longer side ``size``, the other scaled and rounded to a multiple of the patch size,
  then padded with white to ``size`` x ``size`` (every pixel kept).

Both composite RGBA over white first (8-bit, PIL's ``alpha_composite``), then resize with PIL's
bicubic filter on the 8-bit RGB image, as the official code at the fixtures' commit (fork
acjlcv/vggt @44b3afb) does; later upstream versions composite after resizing (in float, with a
choice of background), which differs on semi-transparent edges by up to 9/255. When frames end up with different sizes (crop mode with mixed aspect
ratios) every frame is padded with white, centred, to the largest height and width; nothing is
stretched. ``size`` and the patch come from the model (``img_size``, ``patch_size``), so the
shipped 64 px model is fed the same way at 64 px.

Deviations, each documented:

- EXIF orientation: the official code ignores it (a phone's portrait JPEG stored landscape with
  Orientation 6 is fed landscape). That is the default here too (``exif=False``); ``exif=True``
  (``recon3d predict --vggt-exif``) rotates the photo upright first, as the rest of recon3d does.
  ``fit --poses vggt`` always feeds the photos its preparation step wrote (upright, EXIF applied).
- Image modes: the official code handles RGB and RGBA files; grayscale, palette, CMYK and 16-bit
  files are converted to 8-bit RGB / RGBA first (:func:`recon3d.io.images.pil_to_rgb8`).

Each frame also records how its photo maps into it (:class:`ModelInputs`), so cameras predicted at
the model resolution can be returned for the photo's own pixels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from recon3d.io.errors import DataError

log = logging.getLogger(__name__)

#: ``load_and_preprocess_images`` modes.
PREPROCESS_MODES = ("crop", "pad")
#: the official frame size (VGGT-1B's ``img_size``) and patch size.
OFFICIAL_SIZE, OFFICIAL_PATCH = 518, 14

Photo = Union[str, Path, "PIL.Image.Image", Tensor, np.ndarray]  # noqa: F821


@dataclass
class ModelInputs:
    """S frames ready for the model and how each photo maps into its frame.

    Attributes:
        images: (S, 3, h, w) float32 in [0, 1] (white where padded).
        inside: (S, h, w) bool: pixels that show the photo (False on padding).
        sizes: S (height, width) of the photos' pixel grids as read (before any resizing).
        scale, offset: (S, 2) float64 ``(x, y)``: a photo point ``p`` (pixel-corner coordinates,
            pixel (0, 0) spans [0, 1]^2) lands at ``p * scale + offset`` in its frame.
        mode: ``crop`` or ``pad``; exif: whether EXIF orientation was applied.
        notes: one line per thing a user may want to know (an ignored EXIF rotation, padding).
    """

    images: Tensor
    inside: Tensor
    sizes: list[tuple[int, int]]
    scale: Tensor
    offset: Tensor
    mode: str
    exif: bool
    notes: list[str]

    def photo_intrinsics(self, K: Tensor) -> Tensor:
        """(S, 3, 3) intrinsics of the frames (pixel-centre convention) -> the photos' intrinsics."""
        K = K.clone().double()
        s, o = self.scale.double(), self.offset.double()
        K[:, 0, 0] /= s[:, 0]
        K[:, 1, 1] /= s[:, 1]
        K[:, 0, 2] = (K[:, 0, 2] - o[:, 0]) / s[:, 0]
        K[:, 1, 2] = (K[:, 1, 2] - o[:, 1]) / s[:, 1]
        return K.float()


def frame_size(width: int, height: int, mode: str = "crop", size: int = OFFICIAL_SIZE,
               patch: int = OFFICIAL_PATCH) -> tuple[int, int]:
    """(width, height) a ``width`` x ``height`` photo is resized to, before cropping / padding."""
    if mode == "pad" and height > width:
        return int(round(width * (size / height) / patch)) * patch, size
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"mode must be one of {PREPROCESS_MODES}, got {mode!r}")
    return size, int(round(height * (size / width) / patch)) * patch


def _on_white(im):
    """8-bit RGB of an RGB / RGBA PIL image, RGBA composited over opaque white in 8 bits."""
    from PIL import Image

    if im.mode == "RGBA":
        return Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im).convert("RGB")
    return im.convert("RGB")


def _open(photo: Photo, exif: bool):
    """An 8-bit RGB PIL image of ``photo`` (on white), its EXIF orientation (1 when none) and a name."""
    from PIL import Image, ImageOps

    from recon3d.io.images import _open as open_image
    from recon3d.io.images import _orientation, pil_to_rgb8

    if isinstance(photo, (str, Path)):
        path = Path(photo)
        im = open_image(path)
        try:
            im.load()
            orientation = _orientation(im)
            if exif and orientation != 1:
                im = ImageOps.exif_transpose(im)
            return _on_white(pil_to_rgb8(im)), orientation, path.name
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 - truncated / corrupt data surfaces here
            raise DataError(path, f"cannot decode image ({type(e).__name__}: {e})") from e
    if isinstance(photo, Image.Image):
        return _on_white(pil_to_rgb8(photo)), 1, "image"
    arr = photo.detach().cpu().numpy() if isinstance(photo, Tensor) else np.asarray(photo)
    if arr.dtype != np.uint8:  # float in [0, 1]
        arr = np.clip(np.rint(np.asarray(arr, np.float64) * 255.0), 0, 255).astype(np.uint8)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"a photo array must be (H, W, 3) or (H, W, 4), got {arr.shape}")
    return _on_white(Image.fromarray(np.ascontiguousarray(arr), "RGBA" if arr.shape[-1] == 4 else "RGB")), 1, "image"


def _pad(x: Tensor, top: int, bottom: int, left: int, right: int, value: float) -> Tensor:
    return F.pad(x, (left, right, top, bottom), mode="constant", value=value)


def preprocess_images(photos: Sequence[Photo], mode: str = "crop", size: int = OFFICIAL_SIZE,
                      patch: int = OFFICIAL_PATCH, exif: bool = False) -> ModelInputs:
    """Photos (files, PIL images, or (H, W, 3|4) arrays / tensors, uint8 or float in [0, 1]) ->
    :class:`ModelInputs` exactly as ``load_and_preprocess_images(paths, mode)`` (module docstring)
    for ``size`` 518 and ``patch`` 14. DataError names a file that cannot be read."""
    from PIL import Image

    if not photos:
        raise DataError("--images", "no input images")
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"mode must be one of {PREPROCESS_MODES}, got {mode!r}")
    frames, insides, sizes, scales, offsets, notes = [], [], [], [], [], []
    for photo in photos:
        im, orientation, name = _open(photo, exif)
        W, H = im.size
        new_w, new_h = frame_size(W, H, mode, size, patch)
        if new_w < 1 or new_h < 1:
            raise DataError(name, f"is {W}x{H} px: too narrow to resize to {size} px")
        if not exif and orientation != 1:
            notes.append(f"{name}: EXIF orientation {orientation} not applied (as the official VGGT code); "
                         f"--vggt-exif rotates it upright first")
        im = im.resize((new_w, new_h), Image.Resampling.BICUBIC)
        x = torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1).float().div(255)
        ox, oy = 0, 0
        inside = torch.ones(new_h, new_w, dtype=torch.bool)
        if mode == "crop" and new_h > size:
            y0 = (new_h - size) // 2
            x, inside, oy = x[:, y0:y0 + size], inside[y0:y0 + size], -y0
        if mode == "pad":
            dh, dw = size - x.shape[1], size - x.shape[2]
            if dh > 0 or dw > 0:
                t, l = dh // 2, dw // 2
                x = _pad(x, t, dh - t, l, dw - l, 1.0)  # white
                inside = _pad(inside[None].float(), t, dh - t, l, dw - l, 0.0)[0].bool()
                ox, oy = ox + l, oy + t
        frames.append(x)
        insides.append(inside)
        sizes.append((H, W))
        scales.append((new_w / W, new_h / H))
        offsets.append([ox, oy])
    hs, ws = {f.shape[1] for f in frames}, {f.shape[2] for f in frames}
    if len(hs) > 1 or len(ws) > 1:
        Hm, Wm = max(hs), max(ws)
        notes.append(f"frames of {len({f.shape[1:] for f in frames})} sizes: each padded with white to {Wm}x{Hm} "
                     f"(as the official code)")
        for i, f in enumerate(frames):
            dh, dw = Hm - f.shape[1], Wm - f.shape[2]
            t, l = dh // 2, dw // 2
            frames[i] = _pad(f, t, dh - t, l, dw - l, 1.0)
            insides[i] = _pad(insides[i][None].float(), t, dh - t, l, dw - l, 0.0)[0].bool()
            offsets[i] = [offsets[i][0] + l, offsets[i][1] + t]
    for n in notes:
        log.info("vggt preprocessing: %s", n)
    return ModelInputs(images=torch.stack(frames), inside=torch.stack(insides),
                       sizes=sizes, scale=torch.tensor(scales, dtype=torch.float64),
                       offset=torch.tensor(offsets, dtype=torch.float64), mode=mode, exif=exif, notes=notes)
