"""recon3d.io.images and recon3d.io.errors: decoding, compositing, downscaling, masks, listing, saving."""

import pickle
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from recon3d.io import DataError, IMAGE_EXTENSIONS, image_size, list_images, load_image, load_mask, save_image
from recon3d.io.images import _orient_array, downscaled_size
from recon3d.io._testing import random_image


def _png16(path, arr):
    """Hand-written 16-bit PNG encoder (Pillow cannot write 16-bit colour)."""
    h, w, c = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_data_error_message_and_pickle():
    e = DataError("path/to/transforms.json", "frame 3 has no 'transform_matrix'")
    assert str(e) == "path/to/transforms.json: frame 3 has no 'transform_matrix'"
    assert isinstance(e, ValueError)
    e2 = pickle.loads(pickle.dumps(e))
    assert str(e2) == str(e) and e2.problem == e.problem


def test_load_rgb_png(tmp_path):
    a = random_image(6, 8, 3)
    Image.fromarray(a).save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    assert img.shape == (6, 8, 3) and img.dtype == torch.float32
    np.testing.assert_allclose(img.numpy(), a / 255.0, atol=1e-6)
    assert image_size(tmp_path / "a.png") == (8, 6)


def test_rgba_compositing_and_straight_alpha(tmp_path):
    a = random_image(6, 8, 4)
    Image.fromarray(a).save(tmp_path / "a.png")
    rgb, al = a[..., :3] / 255.0, a[..., 3:] / 255.0
    for bg, val in (("white", 1.0), ("black", 0.0), ((0.2, 0.4, 0.6), np.array([0.2, 0.4, 0.6]))):
        got = load_image(tmp_path / "a.png", background=bg).numpy()
        np.testing.assert_allclose(got, rgb * al + val * (1 - al), atol=1e-5)
    np.testing.assert_allclose(load_image(tmp_path / "a.png").numpy(), rgb, atol=1e-6)  # None: alpha ignored
    rgba = load_image(tmp_path / "a.png", with_alpha=True)
    assert rgba.shape == (6, 8, 4)
    np.testing.assert_allclose(rgba.numpy(), a / 255.0, atol=1e-6)
    Image.fromarray(a[..., :3]).save(tmp_path / "b.png")
    assert (load_image(tmp_path / "b.png", with_alpha=True)[..., 3] == 1).all()


def test_grayscale_and_16bit(tmp_path):
    g = random_image(6, 8, 1)[..., 0]
    Image.fromarray(g).save(tmp_path / "g.png")
    img = load_image(tmp_path / "g.png")
    assert img.shape == (6, 8, 3)
    np.testing.assert_allclose(img.numpy(), np.repeat(g[..., None], 3, -1) / 255.0, atol=1e-6)
    g16 = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 1365 + 7)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    np.testing.assert_allclose(load_image(tmp_path / "g16.png")[..., 0].numpy(), g16 / 65535.0, atol=1e-6)
    c16 = (np.random.default_rng(1).random((6, 8, 3)) * 65535).astype(np.uint16)
    _png16(tmp_path / "c16.png", c16)
    np.testing.assert_allclose(load_image(tmp_path / "c16.png").numpy(), c16 / 65535.0, atol=1e-6)


def test_exif_orientation_matches_pillow(tmp_path):
    a = random_image(6, 8, 3)
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        p = tmp_path / f"o{o}.png"
        Image.fromarray(a).save(p, exif=exif)
        ref = np.asarray(ImageOps.exif_transpose(Image.open(p))) / 255.0
        got = load_image(p).numpy()
        np.testing.assert_allclose(got, ref, atol=1e-6)
        np.testing.assert_array_equal(_orient_array(a, o), np.asarray(ImageOps.exif_transpose(Image.open(p))))
        assert image_size(p) == (ref.shape[1], ref.shape[0])


def test_downscale_area_average(tmp_path):
    a = random_image(6, 8, 3)
    Image.fromarray(a).save(tmp_path / "a.png")
    small = load_image(tmp_path / "a.png", downscale=2)
    assert small.shape == (3, 4, 3)
    ref = (a / 255.0).reshape(3, 2, 4, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(small.numpy(), ref, atol=1e-5)
    assert load_image(tmp_path / "a.png", downscale=1.5).shape == (4, 5, 3)
    assert downscaled_size(8, 6, 1.5) == (5, 4)
    assert load_image(tmp_path / "a.png", size=(3, 5), resample="lanczos").shape == (3, 5, 3)
    with pytest.raises(ValueError):
        downscaled_size(8, 6, 0)


def test_rgba_downscale_is_premultiplied(tmp_path):
    a = np.zeros((2, 2, 4), np.uint8)
    a[..., 1] = 255  # invisible green everywhere ...
    a[0, 0] = (255, 0, 0, 255)  # ... except one opaque red pixel
    Image.fromarray(a).save(tmp_path / "a.png")
    rgba = load_image(tmp_path / "a.png", downscale=2, with_alpha=True)[0, 0]
    np.testing.assert_allclose(rgba.numpy(), [1, 0, 0, 0.25], atol=1e-5)
    white = load_image(tmp_path / "a.png", downscale=2, background="white")[0, 0]
    np.testing.assert_allclose(white.numpy(), [1, 0.75, 0.75], atol=1e-5)


def test_bad_files_raise_data_error(tmp_path):
    with pytest.raises(DataError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="junk.png"):
        load_image(tmp_path / "junk.png")
    Image.fromarray(random_image(60, 80, 3)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="trunc.png"):
        load_image(tmp_path / "trunc.png")
    with pytest.raises(DataError, match="junk.png"):
        image_size(tmp_path / "junk.png")


def test_load_mask(tmp_path):
    m = np.zeros((6, 8), np.uint8)
    m[:, :4] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    mask = load_mask(tmp_path / "m.png")
    assert mask.dtype == torch.bool and mask.shape == (6, 8)
    assert mask[:, :4].all() and not mask[:, 4:].any()
    assert load_mask(tmp_path / "m.png", size=(3, 4)).tolist() == [[True, True, False, False]] * 3
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[2:, :, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert load_mask(tmp_path / "a.png")[2:].all() and not load_mask(tmp_path / "a.png")[:2].any()


def test_save_image_atomic_roundtrip(tmp_path):
    img = torch.rand(6, 8, 3)
    p = save_image(tmp_path / "sub" / "x.png", img)
    np.testing.assert_allclose(load_image(p).numpy(), img.numpy(), atol=0.5 / 255 + 1e-6)
    save_image(tmp_path / "sub" / "x.png", torch.zeros(6, 8, 4))  # overwrite in place
    assert load_image(p, with_alpha=True).shape == (6, 8, 4)
    save_image(tmp_path / "mask.png", torch.ones(6, 8, dtype=torch.bool))
    assert load_mask(tmp_path / "mask.png").all()
    assert sorted(f.name for f in (tmp_path / "sub").iterdir()) == ["x.png"]  # no temp files left
    with pytest.raises(ValueError):
        save_image(tmp_path / "x.jpg", torch.zeros(6, 8, 4))


def test_list_images_natural_order(tmp_path):
    for name in ("r_10.png", "r_2.png", "r_1.PNG", "notes.txt", ".hidden.png", "a.jpg"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "r_1.PNG", "r_2.png", "r_10.png"]
    assert [p.name for p in list_images(tmp_path, natural=False)] == ["a.jpg", "r_1.PNG", "r_10.png", "r_2.png"]
    assert ".png" in IMAGE_EXTENSIONS
    with pytest.raises(DataError, match="nope"):
        list_images(tmp_path / "nope")
