"""Image files <-> float tensors: decoding, EXIF orientation, alpha compositing, area downscaling.

All loaders return float32 torch tensors with values in [0, 1], shaped (H, W, C) (row-major, the
top-left pixel first), whatever the file's bit depth (8 or 16 bit) or colour mode (grayscale,
palette, RGB, RGBA, ...). Any file that is missing or cannot be decoded raises :class:`DataError`
naming the file.

Sizes: Pillow speaks (width, height); this module's ``size`` arguments are **(height, width)** to
match the returned array shapes.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
import warnings
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from .atomic import atomic_write_bytes
from ._common import natural_key, resolve_background
from .errors import DataError

#: File suffixes (lower case) recognised as images by :func:`list_images` and the readers.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

_EXIF_ORIENTATION = 0x0112
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_RESAMPLE = {"box": Image.Resampling.BOX, "lanczos": Image.Resampling.LANCZOS}


# ---------------------------------------------------------------------------------- listing
def list_images(folder: str | Path, natural: bool = True) -> list[Path]:
    """Image files directly inside ``folder`` (suffix in :data:`IMAGE_EXTENSIONS`, any case).

    Hidden files are skipped. Sorted naturally (``r_2`` before ``r_10``) or, with
    ``natural=False``, by plain string order of the file names (what COLMAP/LLFF tools use).
    Raises DataError if ``folder`` is missing or not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "image folder not found" if not folder.exists() else "is not a folder")
    files = [p for p in folder.iterdir()
             if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=(lambda p: natural_key(p.name)) if natural else (lambda p: p.name))


def find_image(base: Path, file_path: str, json_path: Path, where: str) -> Path:
    """Resolve an image reference from a JSON file: ``base / file_path`` (or absolute ``file_path``),
    trying the image extensions appended when it does not exist as given (NeRF-synthetic omits ``.png``).

    Raises DataError naming ``json_path`` and ``where`` (e.g. ``"frame 3"``) if nothing is found.
    """
    if not isinstance(file_path, str) or not file_path:
        raise DataError(json_path, f"{where}: 'file_path' must be a non-empty string, got {file_path!r}")
    p = Path(file_path)
    p = p if p.is_absolute() else base / p
    if p.is_file():
        return p
    for ext in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS):
        q = Path(str(p) + ext)
        if q.is_file():
            return q
    raise DataError(json_path, f"{where}: image {file_path!r} not found on disk (looked for {p} and {p.name}.png, .jpg, ...)")


# ---------------------------------------------------------------------------------- headers
#: the most pixels an input photo may have (the web app's limit too): larger files are refused
#: before they are decoded (a small PNG can hold a 12000 x 12000 image)
MAX_IMAGE_PIXELS = 50_000_000


def check_image_pixels(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """(width, height) of image ``path`` read from its header; DataError when it has more than
    ``max_pixels`` pixels, is missing or is not an image."""
    path = Path(path)
    im = _open(path)
    try:
        w, h = im.size
    finally:
        im.close()
    if w * h > max_pixels:
        raise DataError(path, f"is too large ({w}x{h} px, more than {max_pixels / 1e6:.0f} megapixels); "
                              f"downscale it first")
    return w, h


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise DataError(path, "image file not found" if not path.exists() else "image path is not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except Image.DecompressionBombError:
        raise DataError(path, f"is too large (more than {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels); "
                              f"downscale it first") from None
    except UnidentifiedImageError:
        raise DataError(path, "not a readable image (unknown format or corrupt file)") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(path, f"cannot open image ({e})") from e


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # malformed EXIF blocks are common; treat as upright
        return 1


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) in pixels as displayed (after EXIF orientation), read from the header only."""
    path = Path(path)
    with _open(path) as im:
        w, h = im.size
        return (h, w) if _orientation(im) in (5, 6, 7, 8) else (w, h)


def image_has_alpha(path: str | Path) -> bool:
    """Whether the file stores an alpha channel (or palette/colour-key transparency), header only."""
    path = Path(path)
    with _open(path) as im:
        return im.mode in _ALPHA_MODES or "transparency" in im.info


def downscaled_size(width: int, height: int, downscale: float) -> tuple[int, int]:
    """(width, height) of an image shrunk by ``downscale`` (2 halves): ``round(size / downscale)``, >= 1.

    The one rounding rule used for images *and* cameras, so their sizes always agree.
    """
    if not downscale > 0 or not math.isfinite(downscale):
        raise ValueError(f"downscale must be a positive number, got {downscale!r}")
    return max(1, int(round(width / downscale))), max(1, int(round(height / downscale)))


# ---------------------------------------------------------------------------------- decoding
def _png_is_16bit_color(path: Path) -> bool:
    """PNG header says 16 bits per sample and colour (types 2, 4, 6) - which Pillow truncates to 8 bits."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError:
        return False
    return head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and head[24] == 16 and head[25] in (2, 4, 6)


def _orient_array(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Numpy twin of ``PIL.ImageOps.exif_transpose`` for an (H, W, C) array and an EXIF orientation 1..8."""
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(arr, k=-1)
    if orientation == 7:
        return arr.transpose(1, 0, 2)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(arr, k=1)
    return arr


def _decode_16bit_color_png(path: Path, orientation: int) -> np.ndarray | None:
    """Full-precision decode of 16-bit colour PNGs via Open3D's libpng reader; None if unavailable."""
    try:
        import open3d as o3d  # lazy: heavy import, only for this rare case

        arr = np.asarray(o3d.io.read_image(str(path)))
    except Exception:
        return None
    if arr.dtype != np.uint16 or arr.ndim != 3 or arr.size == 0:
        return None
    return np.ascontiguousarray(_orient_array(arr.astype(np.float32) / 65535.0, orientation))


def _is_high_bit(mode: str) -> bool:
    """Pillow modes of 16-bit / 32-bit integer or float grayscale (``I;16*``, ``I``, ``F``)."""
    return mode.startswith("I") or mode == "F"


def _to_8bit_mode(im: Image.Image) -> Image.Image:
    """An 8-bit Pillow image (any mode but ``I;16*``/``I``/``F``) as ``L``, ``LA``, ``RGB`` or ``RGBA``:
    palette and colour-key transparency become alpha; CMYK, YCbCr, ... become RGB."""
    mode, transparent = im.mode, "transparency" in im.info
    if mode in ("1", "L"):
        return im.convert("LA") if transparent else im.convert("L")
    if mode in ("LA", "La"):
        return im.convert("LA")
    if mode in ("RGBA", "RGBa", "PA") or (mode in ("P", "RGB") and transparent):
        return im.convert("RGBA")
    return im if mode == "RGB" else im.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV, ...


def _pil_to_float(im: Image.Image) -> np.ndarray:
    """Decoded Pillow image -> (H, W, C) float32 in [0, 1], C in {1 (gray), 2 (gray+alpha), 3, 4}."""
    mode = im.mode
    if mode.startswith("I;16"):
        return np.asarray(im, dtype=np.float32)[..., None] / 65535.0
    if mode == "I":  # Pillow's mode for 16-bit grayscale PNG/TIFF data stored in int32
        a = np.asarray(im).astype(np.float64)
        scale = 65535.0 if a.max(initial=0) <= 65535 else 4294967295.0
        return np.clip(a / scale, 0.0, 1.0).astype(np.float32)[..., None]
    if mode == "F":
        return np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)[..., None]
    a = np.asarray(_to_8bit_mode(im), dtype=np.float32) / 255.0
    return a[..., None] if a.ndim == 2 else a


def pil_to_rgb8(im: Image.Image) -> Image.Image:
    """A decoded Pillow image of any mode as 8-bit ``RGB``, or ``RGBA`` when it has alpha: the pixels
    :func:`decode_image` gives for a file holding it, rounded to 8 bits. 16-bit (``I;16*``), 32-bit
    (``I``) and float (``F``) grayscale are scaled to [0, 1] first (``convert("RGB")`` would clip them
    at 255: white); palette / colour-key transparency becomes alpha. No EXIF orientation applied."""
    if _is_high_bit(im.mode):
        gray = Image.fromarray(_to_uint8(_pil_to_float(im)))  # (H, W) uint8, rounded as save_image does
        return gray.convert("RGB")
    im = _to_8bit_mode(im)
    if im.mode == "L":
        return im.convert("RGB")
    return im.convert("RGBA") if im.mode == "LA" else im


def decode_image(path: str | Path) -> np.ndarray:
    """Decode an image file to an (H, W, C) float32 array in [0, 1], EXIF orientation applied.

    C is 3 (RGB) or 4 (RGB + straight alpha); grayscale is replicated to RGB. 16-bit files keep
    their precision. Raises DataError (naming the file) if it is missing or cannot be decoded.
    """
    path = Path(path)
    im = _open(path)
    try:
        with im:
            arr = None
            if _png_is_16bit_color(path):
                arr = _decode_16bit_color_png(path, _orientation(im))
            if arr is None:
                im.load()
                arr = _pil_to_float(ImageOps.exif_transpose(im))
    except DataError:
        raise
    except Exception as e:  # truncated / corrupt data surfaces here as OSError, SyntaxError, ValueError...
        raise DataError(path, f"cannot decode image ({type(e).__name__}: {e})") from e
    if arr.shape[-1] in (1, 2):  # gray (+ alpha) -> RGB (+ alpha)
        arr = np.concatenate([np.repeat(arr[..., :1], 3, axis=-1), arr[..., 1:]], axis=-1)
    return np.ascontiguousarray(arr, dtype=np.float32)


# ---------------------------------------------------------------------------------- resampling
def _resize(arr: np.ndarray, size_hw: tuple[int, int], resample: str) -> np.ndarray:
    """Resize an (H, W, C) float32 array channel by channel in Pillow's float mode (no 8-bit rounding)."""
    h, w = size_hw
    if arr.shape[:2] == (h, w):
        return arr
    if resample not in _RESAMPLE:
        raise ValueError(f"resample must be one of {sorted(_RESAMPLE)}, got {resample!r}")
    filt = _RESAMPLE[resample]
    if resample == "box" and (h > arr.shape[0] or w > arr.shape[1]):
        filt = Image.Resampling.BILINEAR  # a box filter only averages; upsampling needs interpolation
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(arr[..., c])).resize((w, h), resample=filt))
             for c in range(arr.shape[-1])]
    out = np.stack(chans, axis=-1).astype(np.float32)
    return np.clip(out, 0.0, 1.0) if resample != "box" else out


def _resize_rgba(arr: np.ndarray, size_hw: tuple[int, int], resample: str) -> np.ndarray:
    """Resize straight-alpha RGBA through premultiplied space (no dark/bright fringes), back to straight."""
    if arr.shape[:2] == tuple(size_hw):
        return arr
    alpha = arr[..., 3:]
    pre = _resize(np.concatenate([arr[..., :3] * alpha, alpha], axis=-1), size_hw, resample)
    a = pre[..., 3:]
    rgb = np.where(a > 1e-6, pre[..., :3] / np.maximum(a, 1e-6), 0.0)
    return np.concatenate([np.clip(rgb, 0.0, 1.0), np.clip(a, 0.0, 1.0)], axis=-1).astype(np.float32)


def _target_size(arr: np.ndarray, downscale: float, size: Sequence[int] | None) -> tuple[int, int]:
    if size is not None:
        h, w = (int(s) for s in size)
        if h < 1 or w < 1:
            raise ValueError(f"size must be positive (height, width), got {tuple(size)}")
        return h, w
    w, h = downscaled_size(arr.shape[1], arr.shape[0], downscale)
    return h, w


# ---------------------------------------------------------------------------------- public loaders
def load_image(
    path: str | Path,
    background=None,
    downscale: float = 1,
    with_alpha: bool = False,
    size: Sequence[int] | None = None,
    resample: str = "box",
) -> Tensor:
    """Load an image as a float32 tensor in [0, 1].

    Args:
        path: image file (PNG 8/16-bit, JPEG, TIFF, BMP, WebP; any colour mode).
        background: ``None``, ``'white'``, ``'black'`` or 3 floats in [0, 1]. For files with alpha,
            the RGB is composited onto it (straight alpha: ``rgb * a + bg * (1 - a)``). ``None``
            returns the stored RGB and ignores alpha. Ignored when ``with_alpha``.
        downscale: shrink factor (2 halves each side) giving ``round(W / downscale)`` x
            ``round(H / downscale)``, see :func:`downscaled_size`; ignored if ``size`` is given.
        with_alpha: return (H, W, 4) straight (non-composited) RGB + alpha; alpha = 1 if the file has none.
        size: exact output (height, width), overriding ``downscale``.
        resample: ``'box'`` (area average, default) or ``'lanczos'``. RGBA is resampled premultiplied.

    Returns:
        (H, W, 3) float32 tensor, or (H, W, 4) with ``with_alpha``.
    """
    arr = decode_image(path)
    hw = _target_size(arr, downscale, size)
    has_alpha = arr.shape[-1] == 4
    if with_alpha:
        if not has_alpha:
            arr = np.concatenate([arr, np.ones_like(arr[..., :1])], axis=-1)
        return torch.from_numpy(np.ascontiguousarray(_resize_rgba(arr, hw, resample)))
    bg = resolve_background(background)
    if has_alpha:
        rgb, a = arr[..., :3], arr[..., 3:]
        arr = rgb * a + bg.numpy()[None, None] * (1.0 - a) if bg is not None else rgb
    return torch.from_numpy(np.ascontiguousarray(_resize(np.ascontiguousarray(arr, dtype=np.float32), hw, resample)))


def find_masks(image_paths: Sequence[str | Path], mask_dir: str | Path, required: bool = False) -> list[Path | None]:
    """The mask file of each image in ``mask_dir``: the same file name, the same stem with any image
    extension (``IMG_1.JPG`` -> ``IMG_1.png``), or COLMAP's ``IMG_1.JPG.png``. Images without one get
    None; with ``required`` a missing mask is a DataError naming it."""
    mask_dir = Path(mask_dir)
    if not mask_dir.is_dir():
        raise DataError(mask_dir, "mask folder not found")
    files = {p.name.lower(): p for p in mask_dir.iterdir() if p.is_file() and not p.name.startswith(".")}
    by_stem: dict[str, Path] = {}
    for p in files.values():
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            by_stem.setdefault(p.stem.lower(), p)
    out: list[Path | None] = []
    for ip in image_paths:
        name = Path(ip).name.lower()
        m = files.get(name) or files.get(name + ".png") or by_stem.get(Path(ip).stem.lower())
        if m is None and required:
            raise DataError(mask_dir, f"no mask for image {Path(ip).name} (expected {Path(ip).stem}.png or the "
                                      f"same file name)")
        out.append(m)
    return out


def load_mask(path: str | Path, size: Sequence[int] | None = None) -> Tensor:
    """Load a binary mask as a bool (H, W) tensor (True = keep / foreground).

    The mask value is the file's alpha channel when it has a non-trivial one, else its gray level;
    True where it reaches 0.5 (128 of 255). ``size`` = (height, width) resizes by area average before thresholding
    (a pixel is True when most of its area is). EXIF orientation is applied.
    """
    arr = decode_image(path)
    if arr.shape[-1] == 4 and float(arr[..., 3].min()) < 1.0:
        m = arr[..., 3:]
    else:
        m = arr[..., :3].mean(axis=-1, keepdims=True)
    if size is not None:
        m = _resize(np.ascontiguousarray(m), _target_size(m, 1, size), "box")
    return torch.from_numpy(np.ascontiguousarray(m[..., 0] >= 0.5 - 1e-6))


def _to_uint8(img) -> np.ndarray:
    a = img.detach().cpu().numpy() if isinstance(img, Tensor) else np.asarray(img)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ValueError(f"image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {a.shape}")
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    a = np.nan_to_num(a.astype(np.float32), nan=0.0)
    return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_image(path: str | Path, img) -> Path:
    """Save an image atomically (encoded in memory, written to a temp file, then ``os.replace``).

    Args:
        path: destination; the format follows the suffix (``.png``, ``.jpg``, ...). Folders are created.
        img: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) tensor/array: floats in [0, 1] (clipped),
            uint8, or bool (masks).
    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image format for suffix {path.suffix!r}")
    a = _to_uint8(img)
    if fmt == "JPEG" and a.ndim == 3 and a.shape[-1] == 4:
        raise ValueError(f"{path}: JPEG cannot store alpha; save as .png or drop the alpha channel")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    atomic_write_bytes(path, buf.getvalue())
    return path
