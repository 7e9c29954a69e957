"""Checks on everything a web user sends: file names, images, zips, videos, and paths (no gradio here).

Every function raises :class:`recon3d.io.errors.DataError` naming the user's file (its base name,
never a server path) with a message fit for the page. Nothing here reads or writes outside the
folders it is given:

- upload names are reduced to a safe base name (:func:`sanitize_filename`) before anything is written;
- zip members are extracted by *their sanitized base name* into one flat folder, so ``../x`` or
  ``/etc/x`` members cannot escape it (zip-slip); symlink members, too many members and too many
  uncompressed bytes are refused;
- :func:`confine` resolves a path (symlinks included) and refuses it unless it lies inside an allowed root.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import stat
import time
import unicodedata
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Iterable, Sequence

from PIL import Image, ImageOps, UnidentifiedImageError

from recon3d.io.atomic import atomic_path
from recon3d.io.errors import DataError
from recon3d.io.images import IMAGE_EXTENSIONS, pil_to_rgb8

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def sanitize_filename(name: str, default: str = "file", max_len: int = 100) -> str:
    """A safe base name for ``name``: no folders, no hidden/dot names, only ``[A-Za-z0-9._-]``.

    ``"../../etc/passwd"`` -> ``"passwd"``, ``"C:\\\\x\\\\My photo (1).JPG"`` -> ``"My_photo_1_.jpg"``,
    ``".bashrc"`` -> ``"bashrc"``, ``""`` -> ``default``. The suffix is lower-cased; the stem is cut so
    the whole name has at most ``max_len`` characters.
    """
    base = PureWindowsPath(PurePosixPath(str(name)).name).name  # strip both / and \ folders
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode("ascii")
    base = _UNSAFE.sub("_", base).strip("._") or default
    stem, dot, suffix = base.rpartition(".")
    if not dot or not stem:
        stem, suffix = base, ""
    suffix = suffix.lower()[:10]
    stem = stem.strip("._")[: max(1, max_len - len(suffix) - 1)] or default
    return f"{stem}.{suffix}" if suffix else stem


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``stem_2.ext``, ``stem_3.ext``... whichever is not in ``taken`` (case-insensitive); adds it."""
    stem, suffix = os.path.splitext(name)
    out, k = name, 2
    while out.lower() in taken:
        out, k = f"{stem}_{k}{suffix}", k + 1
    taken.add(out.lower())
    return out


def new_job_dir(parent: Path, label: str = "job") -> Path:
    """Create and return ``parent/<time>-<label>-<random>``: a fresh folder no other request shares."""
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{sanitize_filename(label, 'job', 40)}-{secrets.token_hex(4)}"
    path = Path(parent) / name
    path.mkdir(parents=True, exist_ok=False)
    return path


def is_within(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """True when ``path`` resolves (symlinks followed) to ``root`` or somewhere inside it."""
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
        return True
    except ValueError:
        return False


def confine(path: str | os.PathLike, roots: Iterable[str | os.PathLike], what: str = "path") -> Path:
    """``path`` resolved, if it lies inside one of ``roots``; DataError otherwise (the path is not echoed)."""
    p = Path(path).resolve()
    if any(is_within(p, r) for r in roots):
        return p
    raise DataError(what, "is outside the folders this app may use")


# ------------------------------------------------------------------------------------ images
@dataclass
class CheckedImage:
    """An upload that decoded fine: the copy written under the app's folder, and what was done to it."""

    path: Path  # the sanitized copy, inside the destination folder
    original_name: str  # the user's file name (base name only)
    size: tuple[int, int]  # (width, height) of the copy, pixels
    original_size: tuple[int, int]  # (width, height) of the upload, upright, pixels
    notice: str | None = None  # e.g. "big.jpg: 6000x4000 px, downscaled to 1024x683 px"


def _open_checked(src: Path, name: str, max_pixels: int) -> Image.Image:
    """Open ``src`` lazily, refusing non-images and images with more than ``max_pixels`` pixels."""
    if src.suffix.lower() not in IMAGE_EXTENSIONS:
        raise DataError(name, f"is not an image file (accepted: {', '.join(IMAGE_EXTENSIONS)})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(src)
    except Image.DecompressionBombError:
        raise DataError(name, f"is too large (more than {max_pixels / 1e6:.0f} megapixels)") from None
    except UnidentifiedImageError:
        raise DataError(name, "is not a readable image (unknown format or corrupt file)") from None
    except OSError as e:
        raise DataError(name, f"is corrupt or truncated and cannot be opened ({e})") from None
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise DataError(name, f"is too large ({w}x{h} px, more than {max_pixels / 1e6:.0f} megapixels)")
    if w < 8 or h < 8:
        im.close()
        raise DataError(name, f"is too small ({w}x{h} px)")
    return im


def check_image(src: str | os.PathLike, dst_dir: str | os.PathLike, *, original_name: str | None = None,
                max_side: int = 1024, max_pixels: int = 50_000_000, taken: set[str] | None = None) -> CheckedImage:
    """Decode an uploaded image fully, turn it upright, downscale it if a side exceeds ``max_side``,
    and write it as an 8-bit PNG (RGB, or RGBA when it has alpha) to ``dst_dir/<sanitized stem>.png``.

    Colour modes are normalized by :func:`recon3d.io.images.pil_to_rgb8`, as the command line's loader
    does, so every file ``recon3d`` reads (16-bit and 32-bit grayscale, palette, gray + alpha, CMYK...)
    gives the app the pixels :func:`recon3d.io.images.load_image` gives, to 8-bit rounding.

    Raises DataError (naming ``original_name``) for a non-image suffix, an undecodable or truncated
    file, or more than ``max_pixels`` pixels. The returned ``notice`` says when it was downscaled.
    """
    src = Path(src)
    name = sanitize_filename(original_name or src.name, "image")
    im = _open_checked(src, name, max_pixels)
    try:
        with im:
            im.load()  # decodes everything: truncated / corrupt data fails here
            im = pil_to_rgb8(ImageOps.exif_transpose(im))  # not convert("RGB"): it clips 16-bit gray to white
    except DataError:
        raise
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for damaged data
        raise DataError(name, f"is corrupt or truncated and cannot be decoded ({type(e).__name__})") from None
    orig = im.size
    notice = None
    if max(orig) > max_side:
        s = max_side / max(orig)
        im = im.resize((max(1, round(orig[0] * s)), max(1, round(orig[1] * s))), Image.Resampling.LANCZOS)
        notice = f"{name}: {orig[0]}x{orig[1]} px, downscaled to {im.size[0]}x{im.size[1]} px"
    stem = os.path.splitext(name)[0]
    out_name = unique_name(f"{stem}.png", taken if taken is not None else set())
    dst = Path(dst_dir) / out_name
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        im.save(tmp, format="PNG")
    return CheckedImage(dst, name, im.size, orig, notice)


def verify_photo(src: str | os.PathLike, dst_dir: str | os.PathLike, *, original_name: str | None = None,
                 max_pixels: int = 50_000_000, sfm_max_side: int = 1600, taken: set[str] | None = None) -> CheckedImage:
    """Check a photo for fitting (fully decodable, not too large) and copy its bytes unchanged (EXIF
    focal length kept for structure-from-motion) to ``dst_dir`` under a sanitized unique name.

    ``recon3d fit`` downscales photos to ``sfm_max_side``; the notice says so for bigger ones.
    """
    src = Path(src)
    name = sanitize_filename(original_name or src.name, "photo")
    im = _open_checked(src, name, max_pixels)
    try:
        with im:
            im.load()
            size = im.size
    except Exception as e:
        raise DataError(name, f"is corrupt or truncated and cannot be decoded ({type(e).__name__})") from None
    out_name = unique_name(name, taken if taken is not None else set())
    dst = Path(dst_dir) / out_name
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    notice = None
    if max(size) > sfm_max_side:
        notice = f"{name}: {size[0]}x{size[1]} px, will be downscaled to {sfm_max_side} px for fitting"
    return CheckedImage(dst, name, size, size, notice)


# -------------------------------------------------------------------------------------- zips
def safe_extract_zip(zip_path: str | os.PathLike, dst_dir: str | os.PathLike, *, original_name: str | None = None,
                     suffixes: Sequence[str] = IMAGE_EXTENSIONS, max_members: int = 500,
                     max_bytes: int = 500_000_000) -> tuple[list[Path], list[str]]:
    """Extract the files of a zip whose suffix is in ``suffixes`` into the flat folder ``dst_dir``.

    Members are written under their sanitized base name only (``a/b/../../x.png`` -> ``dst_dir/x.png``),
    so nothing lands outside ``dst_dir``. Folders, hidden files, ``__MACOSX`` entries and symlinks are
    skipped; other suffixes are skipped and reported. Raises DataError for a file that is not a zip, an
    encrypted or damaged member, more than ``max_members`` entries, or more than ``max_bytes``
    uncompressed bytes (counted while reading, so a lying header does not help a zip bomb).

    Returns (paths written, in archive order; names of skipped non-image members).
    """
    name = sanitize_filename(original_name or Path(zip_path).name, "archive.zip")
    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError):
        raise DataError(name, "is not a valid zip archive") from None
    written: list[Path] = []
    skipped: list[str] = []
    taken = {p.name.lower() for p in dst.iterdir()}
    total = 0
    with zf:
        infos = zf.infolist()
        if len(infos) > max_members:
            raise DataError(name, f"has {len(infos)} entries; at most {max_members} are accepted")
        for info in infos:
            parts = PurePosixPath(info.filename.replace("\\", "/")).parts
            if info.is_dir() or not parts:
                continue
            if any(p.startswith(".") or p == "__MACOSX" for p in parts if p not in ("..",)):
                continue
            mode = (info.external_attr >> 16) & 0xFFFF
            if stat.S_ISLNK(mode):
                skipped.append(parts[-1])
                continue
            base = sanitize_filename(parts[-1], "member")
            if Path(base).suffix.lower() not in suffixes:
                skipped.append(parts[-1])
                continue
            if info.flag_bits & 0x1:
                raise DataError(name, f"member {base} is encrypted")
            out = dst / unique_name(base, taken)
            try:
                with zf.open(info) as fin, atomic_path(out) as tmp, open(tmp, "wb") as fout:
                    while chunk := fin.read(1 << 20):
                        total += len(chunk)
                        if total > max_bytes:
                            raise DataError(name, f"unpacks to more than {max_bytes / 1e6:.0f} MB")
                        fout.write(chunk)
            except DataError:
                raise
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as e:
                raise DataError(name, f"member {base} cannot be read ({type(e).__name__})") from None
            written.append(out)
    return written, skipped


# ------------------------------------------------------------------------------ photo sets
@dataclass
class PhotoSet:
    """Photos gathered for a fit: sanitized copies in one folder, plus what the user should be told."""

    folder: Path
    photos: list[Path]
    notices: list[str]


def collect_photos(uploads: Sequence[tuple[str | os.PathLike, str]], dst_dir: str | os.PathLike, *,
                   min_photos: int = 3, max_photos: int = 200, max_pixels: int = 50_000_000,
                   max_zip_members: int = 500, max_zip_bytes: int = 500_000_000) -> PhotoSet:
    """Gather photos for fitting from uploaded files and zips into the flat folder ``dst_dir``.

    ``uploads``: (server path of the upload, the user's file name). Images are verified and copied,
    zips extracted (:func:`safe_extract_zip`) and their members verified; other files are skipped
    with a notice. DataError when an image is corrupt or too large, or when fewer than
    ``min_photos`` or more than ``max_photos`` photos result.
    """
    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    staging = dst.parent / (dst.name + ".unzipped")
    photos: list[Path] = []
    notices: list[str] = []
    taken: set[str] = set()
    try:
        for src, user_name in uploads:
            name = sanitize_filename(user_name or Path(src).name, "upload")
            suffix = Path(name).suffix.lower()
            if suffix == ".zip":
                members, skipped = safe_extract_zip(src, staging, original_name=name, max_members=max_zip_members,
                                                    max_bytes=max_zip_bytes)
                if skipped:
                    shown = ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else "")
                    notices.append(f"{name}: skipped {len(skipped)} non-image member(s): {shown}")
                srcs = [(m, f"{name}/{m.name}") for m in members]
            elif suffix in IMAGE_EXTENSIONS:
                srcs = [(Path(src), name)]
            else:
                notices.append(f"{name}: not an image or zip file, skipped")
                continue
            for path, shown_name in srcs:
                if len(photos) >= max_photos:
                    raise DataError("photos", f"more than {max_photos} photos; upload at most {max_photos}")
                c = verify_photo(path, dst, original_name=Path(shown_name).name, max_pixels=max_pixels, taken=taken)
                photos.append(c.path)
                if c.notice:
                    notices.append(c.notice)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if len(photos) < min_photos:
        raise DataError("photos", f"{len(photos)} usable photo(s); fitting needs at least {min_photos} photos "
                                  "of the same object from different viewpoints")
    return PhotoSet(dst, photos, notices)


# ------------------------------------------------------------------------------------ videos
@dataclass
class CheckedVideo:
    """A video upload that probed fine: its copy under the app's folder, and what the user is told."""

    path: Path  # the sanitized copy, inside the destination folder
    original_name: str  # the user's file name (base name only)
    frames: int  # video frames in the file
    size: tuple[int, int]  # (width, height) as displayed (rotation applied), pixels
    notice: str | None = None


def is_video_name(name: str) -> bool:
    """True when ``name``'s suffix is one of :data:`recon3d.io.video.VIDEO_EXTENSIONS`."""
    from recon3d.io.video import VIDEO_EXTENSIONS

    return Path(sanitize_filename(name, "upload")).suffix.lower() in VIDEO_EXTENSIONS


def pick_video(uploads: Sequence[tuple[str | os.PathLike, str]]) -> tuple[str | os.PathLike, str] | None:
    """The video among ``uploads`` ((server path, user's file name) pairs), None when there is none.

    DataError for two videos, or a video mixed with photos or zips (a fit takes one source)."""
    videos = [u for u in uploads if is_video_name(u[1] or Path(u[0]).name)]
    if not videos:
        return None
    if len(videos) > 1:
        raise DataError("video", f"{len(videos)} videos uploaded; fit one video at a time")
    if len(uploads) > 1:
        raise DataError("video", "upload either one video or photos (or a zip of them), not both")
    return videos[0]


def check_video(src: str | os.PathLike, dst_dir: str | os.PathLike, *, original_name: str | None = None) -> CheckedVideo:
    """Copy an uploaded video to ``dst_dir`` under a sanitized name and check it as ``recon3d fit --video``
    does (:func:`recon3d.io.video.probe_video`: a readable, complete video with 3+ frames).

    Raises DataError naming ``original_name`` (never the server path): not a video suffix, unreadable,
    truncated, too few frames; the copy is removed then."""
    from recon3d.io.video import VIDEO_EXTENSIONS, probe_video

    name = sanitize_filename(original_name or Path(src).name, "video")
    if Path(name).suffix.lower() not in VIDEO_EXTENSIONS:
        raise DataError(name, f"is not a video file (accepted: {', '.join(VIDEO_EXTENSIONS)})")
    dst = Path(dst_dir) / name
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    try:
        info = probe_video(dst)
    except DataError as e:
        dst.unlink(missing_ok=True)
        raise DataError(name, e.problem) from None
    w, h = info.display_size
    notice = f"{name}: {info.frames} frames, {w}x{h} px" + (", turned upright (its rotation tag)" if info.rotation
                                                             else "")
    return CheckedVideo(dst, name, info.frames, (w, h), notice)
