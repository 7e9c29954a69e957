"""The web app's input checks: file names, images (corrupt, huge, rotated), zips (zip-slip, bombs), confinement."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from apps.safety import (check_image, collect_photos, confine, is_within, new_job_dir, safe_extract_zip,
                         sanitize_filename, unique_name, verify_photo)
from recon3d.io.errors import DataError


def _png(path: Path, w: int = 32, h: int = 24, mode: str = "RGB") -> Path:
    rng = np.random.default_rng(w * 1000 + h)
    arr = rng.integers(0, 255, (h, w, 4 if mode == "RGBA" else 3), dtype=np.uint8)
    Image.fromarray(arr, mode).save(path)
    return path


def _jpeg_bytes(w: int = 64, h: int = 48, orientation: int | None = None) -> bytes:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (255, 0, 0)  # left half red, right half black
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    Image.fromarray(arr).save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


# ------------------------------------------------------------------------------ names, paths
@pytest.mark.parametrize("name, expected", [
    ("photo.JPG", "photo.jpg"),
    ("../../etc/passwd", "passwd"),
    ("C:\\Users\\me\\My photo (1).PNG", "My_photo_1.png"),
    (".bashrc", "bashrc"),
    ("..", "file"),
    ("", "file"),
    ("/", "file"),
    ("Ünïcödé façade.png", "Unicode_facade.png"),
    ("a b/c d.tar.gz", "c_d.tar.gz"),
])
def test_sanitize_filename(name, expected):
    assert sanitize_filename(name) == expected


def test_sanitize_filename_limits_length_and_keeps_suffix():
    out = sanitize_filename("x" * 500 + ".png", max_len=40)
    assert len(out) <= 40 and out.endswith(".png")


def test_unique_name_is_case_insensitive():
    taken: set[str] = set()
    assert [unique_name(n, taken) for n in ("a.png", "A.png", "a.png")] == ["a.png", "A_2.png", "a_3.png"]


def test_new_job_dir_is_fresh_and_inside(tmp_path):
    a, b = new_job_dir(tmp_path, "../../evil"), new_job_dir(tmp_path, "../../evil")
    assert a != b and a.parent == tmp_path and b.parent == tmp_path and a.is_dir()
    assert ".." not in a.name and "/" not in a.name


def test_confine_refuses_escapes_and_symlinks(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    assert confine(root / "sub", [root]) == (root / "sub").resolve()
    assert is_within(root / "sub" / "new_file", root)
    for bad in (root / ".." / "outside", Path("/etc/passwd"), root / "link", root / "link" / "x"):
        with pytest.raises(DataError, match="outside the folders"):
            confine(bad, [root])
    assert str(tmp_path) not in str(pytest.raises(DataError, confine, outside, [root]).value)  # path not echoed


# ------------------------------------------------------------------------------------ images
def test_check_image_copies_a_good_png(tmp_path):
    src = _png(tmp_path / "up.png", 40, 30, "RGBA")
    c = check_image(src, tmp_path / "dst", original_name="../My Shot.PNG")
    assert c.path == tmp_path / "dst" / "My_Shot.png" and c.notice is None
    assert c.size == c.original_size == (40, 30)
    with Image.open(c.path) as im:
        assert im.mode == "RGBA" and np.array_equal(np.asarray(im), np.asarray(Image.open(src)))


def test_check_image_downscales_huge_images_with_a_notice(tmp_path):
    src = _png(tmp_path / "wide.png", 3000, 200)
    c = check_image(src, tmp_path / "dst", max_side=1000)
    assert c.size == (1000, 67) and c.original_size == (3000, 200)
    assert c.notice == "wide.png: 3000x200 px, downscaled to 1000x67 px"
    assert Image.open(c.path).size == (1000, 67)


def test_check_image_refuses_too_many_pixels_before_decoding(tmp_path):
    src = _png(tmp_path / "big.png", 300, 300)
    with pytest.raises(DataError, match=r"big.png: is too large \(300x300 px"):
        check_image(src, tmp_path / "dst", max_pixels=50_000)
    assert not (tmp_path / "dst" / "big.png").exists()


def test_check_image_applies_exif_orientation(tmp_path):
    src = tmp_path / "rot.jpg"
    src.write_bytes(_jpeg_bytes(64, 48, orientation=6))  # stored landscape, shown rotated 90 deg clockwise
    c = check_image(src, tmp_path / "dst")
    assert c.size == (48, 64)
    arr = np.asarray(Image.open(c.path))
    assert arr[2, 24, 0] > 200 and arr[-3, 24, 0] < 60  # the red half is now on top


def test_check_image_reads_16bit_grayscale_as_the_cli_does(tmp_path):
    """A 16-bit grayscale PNG (PIL mode I;16): ``convert("RGB")`` would clip it to white; the app's copy
    has the pixels :func:`recon3d.io.images.load_image` reads from the original (to 8-bit rounding)."""
    from recon3d.io.images import load_image

    yy, xx = np.mgrid[0:48, 0:64]
    gray = (xx * 1000 + yy * 300).astype(np.uint16)  # 0 .. 77100 clipped below: a ramp over the 16-bit range
    gray[16:32, 20:44] = 4000  # a dark object on a bright background
    src = tmp_path / "depthy.png"
    Image.fromarray(gray).save(src)
    with Image.open(src) as im:
        assert im.mode == "I;16"
    c = check_image(src, tmp_path / "dst")
    with Image.open(c.path) as im:
        assert im.mode == "RGB"
    app, cli = load_image(c.path).numpy(), load_image(src).numpy()
    assert np.abs(app - cli).max() <= 0.5 / 255 + 1e-6
    assert app[24, 30].max() < 0.1 and app.min() < 0.5  # not white


@pytest.mark.parametrize("mode", ["I;16", "I", "F", "L", "LA", "P", "P+tRNS", "RGBA", "CMYK"])
def test_check_image_matches_the_cli_loader_for_every_mode(tmp_path, mode):
    from recon3d.io.images import load_image

    rng = np.random.default_rng(3)
    rgba = (rng.random((24, 32, 4)) * 255).astype(np.uint8)
    if mode == "I;16":
        im = Image.fromarray((rng.random((24, 32)) * 65535).astype(np.uint16))
    elif mode == "I":
        im = Image.fromarray((rng.random((24, 32)) * 65535).astype(np.int32))
    elif mode == "F":
        im = Image.fromarray(rng.random((24, 32)).astype(np.float32))
    else:
        base = Image.fromarray(rgba, "RGBA") if mode in ("LA", "RGBA") else Image.fromarray(rgba[..., :3])
        im = base.convert(mode.split("+")[0])
        if mode == "P+tRNS":
            im.putpixel((0, 0), 0)  # palette entry 0 is the transparent one
    name = "x.jpg" if mode == "CMYK" else "x.tif" if mode in ("I", "F") else "x.png"
    im.save(tmp_path / name, **({"transparency": 0} if mode == "P+tRNS" else {}))
    c = check_image(tmp_path / name, tmp_path / "dst")
    app = load_image(c.path, with_alpha=True).numpy()
    cli = load_image(tmp_path / name, with_alpha=True).numpy()
    assert app.shape == cli.shape and np.abs(app - cli).max() <= 0.5 / 255 + 1e-6
    assert app.shape[-1] == 4 and (app[..., 3] < 1).any() == (mode in ("LA", "P+tRNS", "RGBA"))


@pytest.mark.parametrize("name, data, message", [
    ("notes.txt", b"hello", "is not an image file"),
    ("fake.png", b"this is not a png at all" * 10, "is not a readable image"),
    ("empty.jpg", b"", "is not a readable image"),
])
def test_check_image_rejects_non_images(tmp_path, name, data, message):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(DataError, match=message) as e:
        check_image(tmp_path / name, tmp_path / "dst")
    assert str(e.value).startswith(name + ":") and str(tmp_path) not in str(e.value)


def test_check_image_rejects_truncated_images(tmp_path):
    good = _jpeg_bytes(256, 256)
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 3])
    with pytest.raises(DataError, match="cut.jpg: is corrupt or truncated and cannot be"):
        check_image(tmp_path / "cut.jpg", tmp_path / "dst")
    buf = io.BytesIO()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 100).save(buf, format="PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[:-30])
    with pytest.raises(DataError, match="cut.png: is corrupt or truncated"):
        check_image(tmp_path / "cut.png", tmp_path / "dst")


def test_verify_photo_keeps_bytes_and_notes_sfm_downscale(tmp_path):
    src = tmp_path / "p.jpg"
    src.write_bytes(_jpeg_bytes(2000, 100))
    c = verify_photo(src, tmp_path / "dst", sfm_max_side=1600)
    assert c.path.read_bytes() == src.read_bytes()
    assert c.notice == "p.jpg: 2000x100 px, will be downscaled to 1600 px for fitting"


# -------------------------------------------------------------------------------------- zips
def _zip(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def test_zip_slip_members_land_flat_inside(tmp_path):
    png = (_png(tmp_path / "src.png")).read_bytes()
    z = _zip(tmp_path / "a.zip", {"../evil.png": png, "/abs/evil2.png": png, "a/../../../x.png": png,
                                  "photos/IMG 1.PNG": png, "photos/readme.txt": b"hi", "__MACOSX/._x.png": b"",
                                  ".hidden.png": png, "dir/": b""},
                 symlinks={"link.png": "/etc/passwd"})
    dst = tmp_path / "deep" / "out"
    written, skipped = safe_extract_zip(z, dst)
    assert sorted(p.name for p in written) == ["IMG_1.png", "evil.png", "evil2.png", "x.png"]
    assert all(p.parent == dst for p in written)
    assert sorted(skipped) == ["link.png", "readme.txt"]
    # nothing escaped: the only files under tmp_path are the inputs and the flat outputs
    others = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert others == {"src.png", "a.zip", *(f"deep/out/{p.name}" for p in written)}
    assert not (tmp_path / "evil.png").exists() and not Path("/abs/evil2.png").exists()


def test_zip_limits(tmp_path):
    many = _zip(tmp_path / "many.zip", {f"{i}.png": b"x" for i in range(12)})
    with pytest.raises(DataError, match="has 12 entries; at most 10"):
        safe_extract_zip(many, tmp_path / "o1", max_members=10)
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.png", b"\0" * 3_000_000)
    assert bomb.stat().st_size < 50_000
    with pytest.raises(DataError, match="unpacks to more than 1 MB"):
        safe_extract_zip(bomb, tmp_path / "o2", max_bytes=1_000_000)
    assert not any((tmp_path / "o2").iterdir())  # the partial member was removed
    (tmp_path / "not.zip").write_bytes(b"PK but not really")
    with pytest.raises(DataError, match="not.zip: is not a valid zip archive"):
        safe_extract_zip(tmp_path / "not.zip", tmp_path / "o3")


# ------------------------------------------------------------------------------- photo sets
def test_collect_photos_mixes_images_and_zips(tmp_path):
    up = tmp_path / "up"
    up.mkdir()
    a, b = _png(up / "a.png"), _png(up / "b.png", 40, 40)
    z = _zip(up / "set.zip", {"set/a.png": a.read_bytes(), "set/c.png": b.read_bytes(), "set/notes.md": b"x"})
    (up / "readme.txt").write_text("hi")
    uploads = [(a, "a.png"), (b, "b.png"), (z, "set.zip"), (up / "readme.txt", "readme.txt")]
    ps = collect_photos(uploads, tmp_path / "job" / "photos")
    assert [p.name for p in ps.photos] == ["a.png", "b.png", "a_2.png", "c.png"]
    assert all(p.parent == tmp_path / "job" / "photos" for p in ps.photos)
    assert any("readme.txt: not an image or zip file, skipped" == n for n in ps.notices)
    assert any(n.startswith("set.zip: skipped 1 non-image member(s): notes.md") for n in ps.notices)
    assert not (tmp_path / "job" / "photos.unzipped").exists()


def test_collect_photos_errors(tmp_path):
    a = _png(tmp_path / "a.png")
    with pytest.raises(DataError, match="photos: 2 usable photo.*at least 3"):
        collect_photos([(a, "a.png"), (a, "b.png"), (tmp_path / "a.png", "x.txt")], tmp_path / "j1")
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match="bad.jpg: is not a readable image"):
        collect_photos([(a, "a.png"), (tmp_path / "bad.jpg", "bad.jpg")], tmp_path / "j2")
    with pytest.raises(DataError, match="more than 4 photos"):
        collect_photos([(a, f"{i}.png") for i in range(6)], tmp_path / "j3", max_photos=4)
