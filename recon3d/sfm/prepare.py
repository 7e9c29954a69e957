"""Validate a folder of photos and write the normalized copies that structure-from-motion reads.

``prepare_images(src, dst)`` turns whatever a user drops into a folder into a clean, deterministic
image set::

    src/IMG_0001.JPG (4000x3000, EXIF "rotate 90")  ->  dst/IMG_0001.jpg  (1200x1600, upright, RGB)
    src/shot_2.png   (RGBA)                         ->  dst/shot_2.png    (RGB, composited on white)
    src/notes.txt                                   ->  skipped, with a logged warning
    src/broken.jpg   (not decodable)                ->  DataError("src/broken.jpg", ...)

Outputs: JPEG sources stay JPEG (quality 95, EXIF kept minus the orientation tag, so COLMAP still
sees the focal length), every other format becomes PNG. A source that needs no change (8-bit RGB
JPEG/PNG, upright, small enough) is copied byte for byte. ``dst/prepared.json`` records, per image,
the source file, sizes, scale, EXIF orientation and whether it had alpha; it doubles as the cache:
when the sources (names, sizes, contents) and ``max_size`` are unchanged and every output is intact,
nothing is decoded again.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from recon3d.io.atomic import atomic_path
from recon3d.io.errors import DataError
from recon3d.io.images import IMAGE_EXTENSIONS, load_image
from recon3d.io._common import natural_key

from ._common import file_sha1, json_key, log, read_json_or_none, write_json

#: The fewest images structure-from-motion can pose (two views give no check of the geometry).
MIN_IMAGES = 3
MANIFEST = "prepared.json"
_VERSION = 1
_EXIF_ORIENTATION = 0x0112
_EXIF_IFD = 0x8769
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def scan_image_folder(src_dir: str | Path) -> list[Path]:
    """Image files directly in ``src_dir`` (suffix in IMAGE_EXTENSIONS), sorted naturally.

    Other files are skipped with a logged warning (hidden files and subfolders silently).
    Raises DataError if the folder is missing or not a folder. Does not decode anything.
    """
    src = Path(src_dir)
    if not src.exists():
        raise DataError(src, "image folder not found")
    if not src.is_dir():
        raise DataError(src, "is not a folder; pass the folder that holds the photos")
    images, skipped = [], []
    for p in sorted(src.iterdir(), key=lambda q: natural_key(q.name)):
        if p.name.startswith(".") or not p.is_file():
            continue
        (images if p.suffix.lower() in IMAGE_EXTENSIONS else skipped).append(p)
    for p in skipped:
        log.warning("skipping %s: not an image file (supported: %s)", p, ", ".join(IMAGE_EXTENSIONS))
    return images


def _output_names(sources: list[Path]) -> list[str]:
    """Stable, collision-free output names: the source stem + ``.jpg`` (JPEG sources) or ``.png``."""
    names, taken = [], set()
    for p in sources:
        ext = ".jpg" if p.suffix.lower() in (".jpg", ".jpeg") else ".png"
        name = p.stem + ext
        if name.lower() in taken:  # e.g. a.png and a.tif, or a.jpg and a.JPG
            name = f"{p.stem}_{p.suffix[1:].lower()}{ext}"
            k = 2
            while name.lower() in taken:
                name = f"{p.stem}_{p.suffix[1:].lower()}_{k}{ext}"
                k += 1
        taken.add(name.lower())
        names.append(name)
    return names


def _png_bit_depth(path: Path) -> int | None:
    try:
        with open(path, "rb") as f:
            head = f.read(25)
    except OSError:
        return None
    return head[24] if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 25 else None


def _inspect(path: Path) -> dict:
    """Header facts of an image file (size as stored, mode, EXIF); DataError if it is not an image."""
    try:
        im = Image.open(path)
    except UnidentifiedImageError:
        raise DataError(path, "not a readable image (unknown format or corrupt file); fix or remove it") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(path, f"cannot open image ({e}); fix or remove it") from e
    with im:
        exif = None
        orientation = 1
        try:
            exif = im.getexif()
            orientation = int(exif.get(_EXIF_ORIENTATION, 1) or 1)
            if orientation not in range(1, 9):
                orientation = 1
            exif.get_ifd(_EXIF_IFD)  # load the sub-IFD (focal length) so re-saving keeps it
        except Exception:  # malformed EXIF is common; treat the photo as upright, drop the block
            exif, orientation = None, 1
        return {"format": im.format, "mode": im.mode, "size": im.size, "orientation": orientation, "exif": exif,
                "alpha": im.mode in _ALPHA_MODES or "transparency" in im.info}


def _verify_decodes(path: Path) -> None:
    try:
        with Image.open(path) as im:
            im.load()
    except Exception as e:  # truncated / corrupt data surfaces here
        raise DataError(path, f"cannot decode image ({type(e).__name__}: {e}); fix or remove it") from e


def _target_size(w: int, h: int, max_size: int) -> tuple[int, int]:
    if max(w, h) <= max_size:
        return w, h
    s = max_size / max(w, h)
    return max(1, min(max_size, int(round(w * s)))), max(1, min(max_size, int(round(h * s))))


def _save_atomic(img: Image.Image, path: Path, exif: Image.Exif | None) -> None:
    kwargs: dict = {}
    if path.suffix == ".jpg":
        kwargs = {"quality": 95}
        if exif is not None and len(exif):
            try:
                exif.pop(_EXIF_ORIENTATION, None)  # the pixels are upright now
                kwargs["exif"] = exif.tobytes()
            except Exception:  # an EXIF block Pillow cannot re-encode: drop it
                pass
    with atomic_path(path) as tmp:
        img.save(tmp, format="JPEG" if path.suffix == ".jpg" else "PNG", **kwargs)


def _prepare_one(src: Path, out: Path, max_size: int) -> dict:
    """Write the normalized copy of one image; returns its manifest record."""
    info = _inspect(src)
    sw, sh = info["size"]
    if info["orientation"] in (5, 6, 7, 8):
        sw, sh = sh, sw  # displayed size
    w, h = _target_size(sw, sh, max_size)
    same_format = (info["format"] == "JPEG") == (out.suffix == ".jpg")
    copyable = (same_format and info["format"] in ("JPEG", "PNG") and info["mode"] == "RGB" and not info["alpha"]
                and info["orientation"] == 1 and (w, h) == (sw, sh)
                and (info["format"] != "PNG" or _png_bit_depth(src) == 8))
    if copyable:
        _verify_decodes(src)
        with atomic_path(out) as tmp:
            shutil.copyfile(src, tmp)
    else:
        # load_image: any bit depth / colour mode, EXIF orientation applied, alpha composited on
        # white, area-averaged resize; DataError naming the file if it does not decode
        rgb = load_image(src, background="white", size=(h, w)).numpy()
        img = Image.fromarray((np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), "RGB")
        _save_atomic(img, out, info["exif"])
    return {"source": src.name, "name": out.name, "source_size": [sw, sh], "size": [w, h],
            "scale": w / sw, "exif_orientation": info["orientation"], "has_alpha": bool(info["alpha"]),
            "copied": copyable, "bytes": out.stat().st_size, "sha1": file_sha1(out)}


def _cached(dst: Path, key: str) -> list[Path] | None:
    m = read_json_or_none(dst / MANIFEST)
    if not isinstance(m, dict) or m.get("key") != key:
        return None
    try:
        paths = [dst / r["name"] for r in m["images"]]
        for p, r in zip(paths, m["images"]):
            if not p.is_file() or p.stat().st_size != r["bytes"] or file_sha1(p) != r["sha1"]:
                return None
    except (KeyError, TypeError, OSError):
        return None
    return paths


def prepare_images(src_dir: str | Path, dst_dir: str | Path, max_size: int = 1600) -> list[Path]:
    """Validate the photos in ``src_dir`` and write normalized copies into ``dst_dir`` (see module doc).

    Args:
        src_dir: folder of photos (PNG, JPEG, TIFF, BMP, WebP; any colour mode or bit depth).
            Non-image files are skipped with a logged warning.
        dst_dir: output folder (created; must differ from ``src_dir``). Only files this function
            wrote are ever replaced or removed there.
        max_size: longest side of the outputs in pixels; larger photos are area-downscaled.
    Returns:
        the output image paths, in natural order of the source names.
    Raises:
        DataError: missing folder, an image file that does not decode (named), or fewer than
            :data:`MIN_IMAGES` images.
    """
    src, dst = Path(src_dir), Path(dst_dir)
    if int(max_size) < 32:
        raise ValueError(f"max_size must be at least 32 pixels, got {max_size!r}")
    max_size = int(max_size)
    sources = scan_image_folder(src)
    if len(sources) < MIN_IMAGES:
        raise DataError(src, f"found {len(sources)} image{'s' * (len(sources) != 1)}; "
                             f"structure-from-motion needs at least {MIN_IMAGES}")
    if dst.resolve() == src.resolve():
        raise ValueError(f"dst_dir must differ from src_dir ({src})")
    t0 = time.perf_counter()
    names = _output_names(sources)
    key = json_key({"version": _VERSION, "max_size": max_size, "names": names,
                    "sources": [(p.name, p.stat().st_size, file_sha1(p)) for p in sources]})
    hit = _cached(dst, key)
    if hit is not None:
        log.info("reusing %d prepared images in %s", len(hit), dst)
        return hit

    dst.mkdir(parents=True, exist_ok=True)
    log.info("preparing %d images from %s into %s", len(sources), src, dst)
    old = read_json_or_none(dst / MANIFEST)
    (dst / MANIFEST).unlink(missing_ok=True)  # invalid until every output is written
    records = [_prepare_one(p, dst / n, max_size) for p, n in zip(sources, names)]

    stale = set()
    if isinstance(old, dict) and isinstance(old.get("images"), list):
        stale = {r.get("name") for r in old["images"] if isinstance(r, dict)} - set(names)
    for name in sorted(n for n in stale if isinstance(n, str) and "/" not in n and n not in ("", ".", "..")):
        (dst / name).unlink(missing_ok=True)
    write_json(dst / MANIFEST, {"key": key, "max_size": max_size, "source_dir": str(src.resolve()),
                                "images": records})

    shrunk = [r for r in records if r["scale"] != 1.0]
    if shrunk:
        big = max(shrunk, key=lambda r: r["source_size"][0] * r["source_size"][1])
        log.info("downscaled %d of %d images so the long side is <= %d px (largest was %dx%d)",
                 len(shrunk), len(records), max_size, *big["source_size"])
    rotated = sum(r["exif_orientation"] != 1 for r in records)
    if rotated:
        log.info("rotated %d images upright (EXIF orientation)", rotated)
    alpha = sum(r["has_alpha"] for r in records)
    if alpha:
        log.info("%d images have an alpha channel: composited onto white (alpha is not kept)", alpha)
    log.info("prepared %d images in %.1fs", len(records), time.perf_counter() - t0)
    return [dst / n for n in names]
