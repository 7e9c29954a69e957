"""Multi-object feed-forward data set: generation, determinism, resume, Dataset items, errors."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from recon3d.feedforward.data import GenerationConfig, MultiViewDataset, generate_dataset, load_manifest
from recon3d.feedforward.rendering import camera_rays
from recon3d.io.errors import DataError

CFG = dict(num_objects=7, views=5, image_size=16, seed=3, num_val=2, num_test=1, objects_per_shard=3)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ffdata") / "set"
    generate_dataset(out, GenerationConfig(**CFG), show_progress=False)
    return out


def _shard_bytes(root):
    return {p.name: p.read_bytes() for p in sorted(root.glob("shard_*.npz"))}


def test_manifest_and_layout(dataset_dir):
    m = load_manifest(dataset_dir)
    assert m["num_objects"] == 7 and m["views_per_object"] == 5 and m["image_size"] == 16
    assert m["splits"] == {"train": 4, "val": 2, "test": 1}
    assert [s["file"] for s in m["shards"]] == ["shard_00000.npz", "shard_00001.npz", "shard_00002.npz"]
    assert [s["objects"] for s in m["shards"]] == [3, 3, 1]
    assert [o["index"] for o in m["objects"]] == list(range(7))
    assert {o["kind"] for o in m["objects"]} <= {"random", "box", "torus", "cylinder", "cone"}
    assert m["cameras"]["radius_range"] == [3.2, 4.0] and m["config"]["seed"] == 3
    with np.load(dataset_dir / "shard_00001.npz") as z:
        assert z["rgb"].dtype == np.uint8 and z["rgb"].shape == (3, 5, 16, 16, 3)
        assert z["mask"].dtype == np.uint8 and z["depth"].dtype == np.float16
        assert z["index"].tolist() == [3, 4, 5]


def test_items_are_consistent_geometry(dataset_dir):
    ds = MultiViewDataset(dataset_dir, "train", views_per_item=5)
    assert len(ds) == 4
    it = ds[(0, 0)]
    assert it["images"].shape == (5, 3, 16, 16) and it["masks"].shape == (5, 1, 16, 16)
    assert it["depths"].shape == (5, 1, 16, 16) and it["K"].shape == (5, 3, 3) and it["c2w"].shape == (5, 4, 4)
    assert it["object_index"].dtype == torch.int64
    assert 0 <= float(it["images"].min()) and float(it["images"].max()) <= 1
    # white background where nothing is covered; depth only where the pixel-center ray hits
    bg = it["masks"][:, 0] == 0
    assert bg.any() and torch.allclose(it["images"].permute(0, 2, 3, 1)[bg], torch.ones(3))
    assert (it["depths"][:, 0][bg] == 0).all() and (it["depths"] > 0).any()
    # fixed FOV, principal point at the image center
    f = 0.5 * 16 / math.tan(math.radians(20))
    assert torch.allclose(it["K"][:, 0, 0], torch.full((5,), f)) and torch.allclose(it["K"][:, :2, 2], torch.full((5, 2), 8.0))
    # cameras on the sphere band, looking at the origin
    centers = it["c2w"][:, :3, 3]
    r = centers.norm(dim=-1)
    assert ((r > 3.2 - 1e-4) & (r < 4.0 + 1e-4)).all()
    assert torch.allclose((it["c2w"][:, :3, 2] * -centers / r[:, None]).sum(-1), torch.ones(5), atol=1e-5)
    # unprojected depth lands on the object, inside the radius-0.95 ball, and is a real surface
    o, d = camera_rays(it["K"], it["c2w"], 16, 16)
    z = it["depths"].reshape(5, -1)
    t = z / (d * it["c2w"][:, None, :3, 2]).sum(-1)
    pts = (o + d * t[..., None])[z > 0]
    assert pts.norm(dim=-1).max() < 0.96 and pts.norm(dim=-1).max() > 0.3


def test_view_choice(dataset_dir):
    tr = MultiViewDataset(dataset_dir, "train", views_per_item=3, seed=1)
    a, b = tr.view_indices(0, draw=7), tr.view_indices(0, draw=7)
    assert np.array_equal(a, b) and len(set(a.tolist())) == 3
    draws = {tuple(tr.view_indices(0, draw=k).tolist()) for k in range(20)}
    assert len(draws) > 5  # a fresh subset per draw
    assert torch.equal(tr[(1, 4)]["images"], tr[(1, 4)]["images"])
    va = MultiViewDataset(dataset_dir, "val", views_per_item=3)
    assert len(va) == 2 and torch.equal(va[0]["c2w"], va[0]["c2w"])
    assert {int(va[i]["object_index"]) for i in range(2)}.isdisjoint({int(tr[(i, 0)]["object_index"]) for i in range(4)})


def test_overlapping_view_choice(dataset_dir, tmp_path):
    # default (no bound): exactly the old uniform draw, a seeded permutation prefix
    tr = MultiViewDataset(dataset_dir, "train", views_per_item=3, seed=1)
    rec = tr.items[0]["index"]
    assert tr.max_view_angle_deg is None
    assert np.array_equal(tr.view_indices(0, draw=7),
                          np.random.default_rng([1, rec, 7, 5]).permutation(tr.num_views)[:3])
    va = MultiViewDataset(dataset_dir, "val", views_per_item=3, seed=1)
    assert np.array_equal(va.view_indices(1), np.random.default_rng([1, va.items[1]["index"], 3]).permutation(5)[:3])

    # a denser object (24 views) so that bounds actually bind
    dense = tmp_path / "dense"
    generate_dataset(dense, GenerationConfig(**{**CFG, "num_objects": 4, "views": 24, "image_size": 8, "num_val": 1,
                                                 "num_test": 1, "supersample": 1}), show_progress=False)
    for bound in (30.0, 60.0, 100.0):
        for split in ("train", "val"):
            ds = MultiViewDataset(dense, split, views_per_item=4, seed=2, max_view_angle_deg=bound)
            firsts = set()
            for i in range(len(ds)):
                for k in range(15):
                    v = ds.view_indices(i, draw=k)
                    assert len(set(v.tolist())) == 4 and np.array_equal(v, ds.view_indices(i, draw=k))
                    d = ds.view_directions(i)
                    ang = np.degrees(np.arccos(np.clip(d @ d[v[0]], -1, 1)))
                    within = [j for j in range(24) if j != v[0] and ang[j] <= bound]
                    if len(within) >= 3:
                        assert ang[v[1:]].max() <= bound + 1e-6
                    else:  # too few: the nearest ones
                        assert ang[v[1:]].max() <= np.sort(np.delete(ang, v[0]))[2] + 1e-6
                    firsts.add(int(v[0]))
            if split == "train":
                assert len(firsts) > 5  # the first view is random
    ds = MultiViewDataset(dense, "train", views_per_item=4, max_view_angle_deg=60.0)
    it = ds[(0, 3)]
    c = it["c2w"][:, :3, 3].double()
    c = c / c.norm(dim=-1, keepdim=True)
    assert np.degrees(np.arccos(float((c[1:] @ c[0]).min().clamp(-1, 1)))) <= 60.0 + 1e-4
    with pytest.raises(ValueError):
        MultiViewDataset(dense, "train", max_view_angle_deg=200.0)


def test_resize_scales_intrinsics(dataset_dir):
    full = MultiViewDataset(dataset_dir, "test", views_per_item=2)[0]
    small = MultiViewDataset(dataset_dir, "test", views_per_item=2, image_size=8)[0]
    assert small["images"].shape == (2, 3, 8, 8) and small["depths"].shape == (2, 1, 8, 8)
    assert torch.allclose(small["K"][:, :2], full["K"][:, :2] / 2)
    assert torch.allclose(small["images"], torch.nn.functional.avg_pool2d(full["images"], 2), atol=1e-6)


def test_same_seed_byte_identical_and_resume(dataset_dir, tmp_path):
    other = tmp_path / "again"
    generate_dataset(other, GenerationConfig(**CFG), workers=2, show_progress=False)  # parallel path too
    assert _shard_bytes(other) == _shard_bytes(dataset_dir)
    assert json.loads((other / "manifest.json").read_text()) == json.loads((dataset_dir / "manifest.json").read_text())
    # interrupted run: one shard missing, one truncated, manifest gone -> only those are redone
    (other / "shard_00000.npz").unlink()
    data = (other / "shard_00002.npz").read_bytes()
    (other / "shard_00002.npz").write_bytes(data[: len(data) // 2])
    (other / "manifest.json").unlink()
    kept = (other / "shard_00001.npz").stat().st_mtime_ns
    generate_dataset(other, GenerationConfig(**CFG), show_progress=False)
    assert (other / "shard_00001.npz").stat().st_mtime_ns == kept
    assert _shard_bytes(other) == _shard_bytes(dataset_dir)
    # a different seed gives different data; a different config in the same folder is refused
    with pytest.raises(FileExistsError):
        generate_dataset(other, GenerationConfig(**{**CFG, "seed": 4}), show_progress=False)
    generate_dataset(other, GenerationConfig(**{**CFG, "seed": 4, "num_objects": 3, "num_val": 1, "num_test": 1}),
                     overwrite=True, show_progress=False)
    assert sorted(p.name for p in other.glob("shard_*.npz")) == ["shard_00000.npz"]
    assert (other / "shard_00000.npz").read_bytes() != _shard_bytes(dataset_dir)["shard_00000.npz"]


def test_errors_name_the_file(dataset_dir, tmp_path):
    with pytest.raises(DataError, match="manifest.json"):
        MultiViewDataset(tmp_path, "train")
    bad = tmp_path / "bad"
    shutil.copytree(dataset_dir, bad)
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match=r"manifest.json: unreadable manifest"):
        MultiViewDataset(bad, "train")
    shutil.copy(dataset_dir / "manifest.json", bad / "manifest.json")
    (bad / "shard_00000.npz").write_bytes(b"garbage")
    (bad / "shard_00001.npz").unlink()
    ds = MultiViewDataset(bad, "train", views_per_item=2)
    shards = {o["shard"] for o in ds.items}
    assert {"shard_00000.npz", "shard_00001.npz"} <= shards
    errors = []
    for i in range(len(ds)):
        try:
            ds[i]
        except DataError as e:
            errors.append(str(e))
    assert any("shard_00000.npz: corrupt shard" in e for e in errors)
    assert any("shard_00001.npz: shard listed in manifest.json is missing" in e for e in errors)
    with pytest.raises(ValueError, match="views_per_item"):
        MultiViewDataset(dataset_dir, "train", views_per_item=6)


def test_cli_ffdata(tmp_path, capsys):
    from recon3d.cli import main

    out = tmp_path / "cli"
    rc = main(["ffdata", "--out", str(out), "--objects", "3", "--views", "2", "--size", "8", "--val", "1",
               "--test", "1", "--seed", "5"])
    assert rc == 0 and (out / "READY").is_file()
    assert "3 objects x 2 views at 8px" in capsys.readouterr().out
    assert load_manifest(out)["splits"] == {"train": 1, "val": 1, "test": 1}
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("shard_*.npz")}
    assert main(["ffdata", "--out", str(out), "--objects", "3", "--views", "2", "--size", "8", "--val", "1",
                 "--test", "1", "--seed", "5", "--no-ready"]) == 0  # complete set: nothing re-rendered
    assert (out / "READY").is_file() and before == {p.name: p.stat().st_mtime_ns for p in out.glob("shard_*.npz")}


def test_ground_background(tmp_path):
    """background='ground': the object stands on a textured floor at its lowest z; depth covers the
    floor (unprojected floor points lie on that plane), pixels above the horizon stay white."""
    cfg = GenerationConfig(num_objects=3, views=3, image_size=24, seed=4, num_val=1, num_test=1,
                           background="ground", elevation_range=(10.0, 40.0))
    generate_dataset(tmp_path / "g", cfg, show_progress=False)
    m = load_manifest(tmp_path / "g")
    assert m["config"]["background"] == "ground"
    it = MultiViewDataset(tmp_path / "g", "train", views_per_item=3)[(0, 0)]
    covered = (it["depths"][:, 0] > 0).float().mean()
    assert covered > 0.5  # the floor fills most of the frame
    o, d = camera_rays(it["K"], it["c2w"], 24, 24)
    z = it["depths"].reshape(3, -1)
    t = z / (d * it["c2w"][:, None, :3, 2]).sum(-1)
    pts = (o + d * t[..., None])[z > 0]
    floor = pts[pts.norm(dim=-1) > 1.0]  # outside the object's ball: floor only
    assert len(floor) > 50
    assert float(floor[:, 2].std()) < 2e-3 and float(floor[:, 2].max()) <= 0.0
    assert float(pts[:, 2].min()) >= float(floor[:, 2].mean()) - 5e-3  # nothing below the floor
    # the floor is textured (not one colour), the sky is white and has no depth
    img = it["images"].permute(0, 2, 3, 1)
    assert float(img[it["depths"][:, 0] > 2.5].std(0).mean()) > 0.05
    sky = it["masks"][:, 0] == 0  # no coverage at all (pixels on the horizon are partly covered)
    assert (it["depths"][:, 0][sky] == 0).all()
    if sky.any():
        assert torch.allclose(img[sky], torch.ones(3))


def test_ground_needs_cameras_above_the_floor():
    with pytest.raises(ValueError, match="above the floor"):
        GenerationConfig(background="ground", elevation_range=(-20.0, 70.0)).validate()
    with pytest.raises(ValueError, match="background"):
        GenerationConfig(background="sky").validate()


def test_older_generation_json_still_resumes(dataset_dir, tmp_path):
    """A set written before a config field existed (no 'background' in generation.json) resumes."""
    out = tmp_path / "old"
    shutil.copytree(dataset_dir, out)
    gen = json.loads((out / "generation.json").read_text())
    gen.pop("background", None)
    (out / "generation.json").write_text(json.dumps(gen))
    before = _shard_bytes(out)
    generate_dataset(out, GenerationConfig(**CFG), show_progress=False)
    assert _shard_bytes(out) == before


def test_azimuth_arc():
    """azimuth_range limits the camera azimuths (partial walk-around captures); the full circle
    draws exactly the default cameras (existing data sets stay byte-identical)."""
    from recon3d.feedforward.data import object_cameras

    arc = GenerationConfig(views=40, azimuth_range=(10.0, 70.0))
    c = object_cameras(arc, np.random.default_rng(0)).c2w[:, :3, 3].numpy()
    az = np.degrees(np.arctan2(c[:, 1], c[:, 0])) % 360
    assert az.min() >= 10 - 1e-6 and az.max() <= 70 + 1e-6 and az.max() - az.min() > 40
    full = object_cameras(GenerationConfig(views=5, azimuth_range=(0.0, 360.0)), np.random.default_rng(3)).c2w
    default = object_cameras(GenerationConfig(views=5), np.random.default_rng(3)).c2w
    assert torch.equal(full, default)
    with pytest.raises(ValueError, match="azimuth_range"):
        GenerationConfig(azimuth_range=(90.0, 10.0)).validate()


def test_cli_ffdata_background_and_texture(tmp_path, capsys):
    from recon3d.cli import main

    out = tmp_path / "g"
    assert main(["ffdata", "--out", str(out), "--objects", "3", "--views", "2", "--size", "8", "--val", "1",
                 "--test", "1", "--background", "ground", "--texture", "voronoi", "--elevation", "10", "40"]) == 0
    m = load_manifest(out)
    assert m["config"]["background"] == "ground" and m["config"]["texture_weights"] == {"voronoi": 1.0}
    assert {o["texture"] for o in m["objects"]} == {"voronoi"}
    with pytest.raises(SystemExit, match="above the floor"):
        main(["ffdata", "--out", str(tmp_path / "bad"), "--background", "ground", "--elevation", "-10", "40"])
