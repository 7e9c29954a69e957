"""Opaque photos on a plain backdrop: the backdrop colour is found from the image borders (and photos
of a textured scene keep no background)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from recon3d.io import load_scene
from recon3d.io.plain_background import estimate_plain_background
from recon3d.io.scene import Scene


@pytest.fixture(scope="module")
def rgba(tmp_path_factory):
    from recon3d.io.synthetic import generate_scene

    root = tmp_path_factory.mktemp("pb") / "tiny"
    generate_scene(root, num_views=8, size=48, seed=3, object="random")
    return load_scene(root)


def _opaque(scene, tmp_path, backdrop) -> Scene:
    """The scene's RGBA photos composited as RGB onto ``backdrop(h, w) -> (h, w, 3) uint8``."""
    paths = []
    for i, p in enumerate(scene.image_paths):
        im = np.asarray(Image.open(p).convert("RGBA")).astype(np.float32) / 255
        bg = backdrop(*im.shape[:2]).astype(np.float32) / 255
        rgb = im[..., :3] * im[..., 3:] + bg * (1 - im[..., 3:])
        out = tmp_path / f"{i:03d}.png"
        Image.fromarray((rgb * 255 + 0.5).astype(np.uint8)).save(out)
        paths.append(out)
    return Scene(cameras=scene.cameras, image_paths=paths, train_indices=scene.train_indices,
                 test_indices=scene.test_indices)


@pytest.mark.parametrize("level", [255, 128, 30])
def test_a_plain_backdrop_is_found(rgba, tmp_path, level):
    s = _opaque(rgba, tmp_path, lambda h, w: np.full((h, w, 3), (level, level, min(level + 10, 255)), np.uint8))
    est = estimate_plain_background(s)
    assert est.color is not None, est.describe()
    assert np.allclose(est.color.numpy(), [level / 255, level / 255, min(level + 10, 255) / 255], atol=2 / 255)


def test_a_textured_backdrop_keeps_no_background(rgba, tmp_path):
    rng = np.random.default_rng(0)
    s = _opaque(rgba, tmp_path, lambda h, w: rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    assert estimate_plain_background(s).color is None
    # a plain backdrop on most borders but a table across the bottom third is not plain either
    def table(h, w):
        bg = np.full((h, w, 3), 250, np.uint8)
        bg[2 * h // 3:] = rng.integers(60, 200, (h - 2 * h // 3, w, 3), dtype=np.uint8)
        return bg

    assert estimate_plain_background(_opaque(rgba, tmp_path, table)).color is None


def test_with_background_choices(rgba, tmp_path):
    from recon3d.pipeline.scene_source import with_background

    s = _opaque(rgba, tmp_path, lambda h, w: np.full((h, w, 3), 255, np.uint8))
    auto, info = with_background(s, "auto")
    assert info["background_source"].startswith("estimated") and info["background"] == [1.0, 1.0, 1.0]
    assert with_background(s, "none")[0].background is None
    given, info = with_background(s, "0.2,0.4,0.6")
    assert np.allclose(given.background.numpy(), [0.2, 0.4, 0.6]) and info["background_source"].startswith("given")
    kept, info = with_background(rgba, "black")  # images with alpha keep their reader's background
    assert info["background_source"] == "alpha" and kept is rgba
