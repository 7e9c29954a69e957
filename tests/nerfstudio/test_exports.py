"""recon3d's exports next to nerfstudio's: ``ns-export gaussian-splat`` run on the same Gaussians, the
dataparser frame, and meshes read by nerfstudio's mesh tooling."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from recon3d.io.nerfstudio import nerfstudio_frame_transform
from recon3d.methods.splat.model import GaussianModel
from recon3d.methods.splat.ply import load_splat_ply, save_splat_ply

pytestmark = pytest.mark.nerfstudio


def read_ply(path):
    """(property names, their types, (N,) structured array) of a binary little-endian vertex PLY."""
    raw = path.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    head = raw[:end].decode().splitlines()
    n = int(next(ln.split()[2] for ln in head if ln.startswith("element vertex")))
    props = [ln.split()[1:] for ln in head if ln.startswith("property")]
    dtype = np.dtype([(name, "<f4" if t == "float" else "u1") for t, name in props])
    return [p[1] for p in props], [p[0] for p in props], np.frombuffer(raw, dtype, n, end)


def gaussians(n=60, degree=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    m = GaussianModel(torch.randn(n, 3, generator=g), torch.randn(n, 4, generator=g),
                      torch.randn(n, 3, generator=g) - 3, torch.randn(n, generator=g) * 4,
                      torch.randn(n, 1, 3, generator=g) * 0.5, torch.randn(n, k - 1, 3, generator=g) * 0.1, degree)
    with torch.no_grad():
        # below 1/255: dropped by ns-export. (A NaN position is not compared: nerfstudio 1.1.5's finite
        # filter reduces the 1-D x/y/z columns to one flag and then drops every Gaussian.)
        m.opacity_logits[9] = -7.0
    return m


@pytest.fixture()
def ns_export(ns_scene, tmp_path, monkeypatch):
    """Run nerfstudio's own ExportGaussianSplat on a splatfacto checkpoint holding given Gaussians."""
    import torchmetrics.image.lpip as lpip_mod
    from nerfstudio.configs.method_configs import method_configs
    from nerfstudio.scripts.exporter import ExportGaussianSplat

    class NoLPIPS(torch.nn.Module):  # splatfacto builds LPIPS, whose AlexNet weights need a download
        def __init__(self, *args, **kwargs):
            super().__init__()

    monkeypatch.setattr(lpip_mod, "LearnedPerceptualImagePatchSimilarity", NoLPIPS)
    folder, _ = ns_scene

    def run(model: GaussianModel, **export_kw):
        cfg = copy.deepcopy(method_configs["splatfacto"])
        cfg.pipeline.datamanager.data = folder
        cfg.output_dir, cfg.experiment_name, cfg.timestamp = tmp_path / "ns", "e", "t"
        cfg.machine.device_type = "cpu"
        m = cfg.pipeline.model
        m.random_init, m.num_random, m.sh_degree = True, len(model), model.max_sh_degree
        pipeline = cfg.pipeline.setup(device="cpu", test_mode="inference")
        gp = pipeline.model.gauss_params
        with torch.no_grad():
            for ns_name, value in (("means", model.means), ("scales", model.log_scales), ("quats", model.quats),
                                   ("features_dc", model.sh0[:, 0]), ("features_rest", model.shN),
                                   ("opacities", model.opacity_logits[:, None])):
                assert gp[ns_name].shape == value.shape, ns_name
                gp[ns_name].copy_(value)
        ckpt_dir = cfg.get_checkpoint_dir()
        ckpt_dir.mkdir(parents=True)
        torch.save({"step": 0, "pipeline": pipeline.state_dict()}, ckpt_dir / "step-000000000.ckpt")
        cfg.save_config()
        out = tmp_path / "export"
        ExportGaussianSplat(load_config=cfg.get_base_dir() / "config.yml", output_dir=out, **export_kw).main()
        return out / "splat.ply"

    return run


def test_splat_ply_matches_ns_export_gaussian_splat(ns_export, tmp_path):
    model = gaussians()
    ns_names, ns_types, ns = read_ply(ns_export(model))
    names, types, ours = read_ply(save_splat_ply(model, tmp_path / "r3d.ply", min_opacity=1 / 255))
    assert names == ns_names and types == ns_types  # same properties, same order, same types
    keep = (torch.sigmoid(model.opacity_logits.detach()) >= 1 / 255).nonzero()[:, 0]
    assert len(ours) == len(ns) == len(keep) < 60
    for name in names:
        if not name.startswith("rot_"):
            np.testing.assert_allclose(ours[name], ns[name], rtol=1e-6, atol=1e-7, err_msg=name)
    q_ns = np.stack([ns[f"rot_{i}"] for i in range(4)], 1)
    q = np.stack([ours[f"rot_{i}"] for i in range(4)], 1)  # recon3d writes unit quaternions
    np.testing.assert_allclose(q, q_ns / np.linalg.norm(q_ns, axis=1, keepdims=True), atol=1e-6)
    # the nerfstudio file loads into recon3d as the same Gaussians
    back = load_splat_ply(tmp_path / "export" / "splat.ply")
    torch.testing.assert_close(back.shN, model.shN.detach()[keep])
    torch.testing.assert_close(back.sh0, model.sh0.detach()[keep])


def test_splat_ply_rgb_mode_matches_ns_export(ns_export, tmp_path):
    model = gaussians(degree=1, seed=1)
    ns_names, ns_types, ns = read_ply(ns_export(model, ply_color_mode="rgb"))
    names, types, ours = read_ply(save_splat_ply(model, tmp_path / "rgb.ply", min_opacity=1 / 255, color_mode="rgb"))
    assert names == ns_names and types == ns_types and "red" in names and "f_dc_0" not in names
    for c in ("red", "green", "blue"):
        assert np.abs(ours[c].astype(int) - ns[c].astype(int)).max() <= 1, c  # float32 vs float64 rounding


def test_frame_transform_maps_into_nerfstudio_world(ns_scene, tmp_path):
    """nerfstudio_frame_transform(dataparser_transforms.json) puts capture-world cameras where nerfstudio has them."""
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    from recon3d.io.normalize import Normalization

    folder, scene = ns_scene
    out = NerfstudioDataParserConfig(data=folder).setup().get_dataparser_outputs("train")
    out.save_dataparser_transform(tmp_path / "dataparser_transforms.json")
    M = nerfstudio_frame_transform(tmp_path / "dataparser_transforms.json", folder)
    index = {p.resolve(): i for i, p in enumerate(scene.image_paths)}
    idx = [index[p.resolve()] for p in out.image_filenames]
    capture = scene.normalization.inverse_c2w(scene.cameras.c2w[idx])
    mapped = Normalization(torch.from_numpy(M)).apply_c2w(capture)  # OpenCV c2w in nerfstudio's world
    ns_centers = out.cameras.camera_to_worlds[:, :, 3]
    np.testing.assert_allclose(mapped[:, :3, 3], ns_centers, atol=2e-5)
    # an applied_transform in transforms.json is undone (nerfstudio's transform includes it)
    meta = json.loads((folder / "transforms.json").read_text())
    A = [[0.0, 0.0, 1.0, 0.5], [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, -1.0]]
    (tmp_path / "t.json").write_text(json.dumps({**meta, "applied_transform": A}))
    A4 = np.vstack([A, [0, 0, 0, 1]])
    d = json.loads((tmp_path / "dataparser_transforms.json").read_text())
    d["transform"] = (np.vstack([d["transform"], [0, 0, 0, 1]]) @ A4)[:3].tolist()  # what ns-train records then
    np.testing.assert_allclose(nerfstudio_frame_transform(d, tmp_path / "t.json"), M, atol=1e-9)


def test_recon3d_mesh_ply_reads_in_nerfstudio_mesh_tools(tmp_path):
    """A recon3d mesh.ply carries what ns-export poisson's poisson_mesh.ply carries (positions,
    vertex normals, vertex colours) and loads in nerfstudio's mesh utilities."""
    import open3d as o3d
    from nerfstudio.exporter.exporter_utils import get_mesh_from_filename

    from recon3d.mesh import TriangleMesh, export_mesh
    from recon3d.io.normalize import Normalization

    sphere = o3d.geometry.TriangleMesh.create_sphere(radius=0.5, resolution=10)
    sphere.compute_vertex_normals()
    v = np.asarray(sphere.vertices, dtype=np.float32)
    colors = (v - v.min(0)) / (v.max(0) - v.min(0))
    mesh = TriangleMesh(v, np.asarray(sphere.triangles, dtype=np.int64), vertex_colors=colors.astype(np.float32),
                        vertex_normals=np.asarray(sphere.vertex_normals, dtype=np.float32))
    norm = Normalization.from_parts(scale=0.25, translation=torch.tensor([0.1, 0.0, -0.2]))
    path = export_mesh(mesh, tmp_path / "mesh.ply", normalization=norm)[0]
    ours = o3d.io.read_triangle_mesh(str(path))
    assert ours.has_vertex_normals() and ours.has_vertex_colors() and len(ours.triangles) == len(mesh.faces)
    # nerfstudio's poisson output written by open3d, for comparison of what a reader gets
    o3d.io.write_triangle_mesh(str(tmp_path / "poisson_mesh.ply"), sphere)
    ref = get_mesh_from_filename(str(tmp_path / "poisson_mesh.ply"))
    got = get_mesh_from_filename(str(path))
    assert got.normals is not None and got.colors is not None and ref.normals is not None
    assert got.vertices.shape == ref.vertices.shape and got.faces.shape == ref.faces.shape
    expect = norm.inverse_points(torch.from_numpy(v).double()).numpy()  # capture units
    np.testing.assert_allclose(np.sort(got.vertices.numpy(), axis=0), np.sort(expect, axis=0), atol=1e-5)
    np.testing.assert_allclose(np.sort(got.colors.numpy()[:, :3], axis=0), np.sort(colors, axis=0), atol=1 / 255)
