"""The compiled CPU rasterizer (backend "cpp") against its readable twin, the PyTorch tile rasterizer.

In float64 both compute the same numbers to ~1e-13 (the same projection, alpha rules, termination
and chain rule, only summation order differs), so every output and every gradient is compared at a
tight tolerance: this is what proves the C++ code right, in all the awkward cases (Gaussians behind
the camera, off screen, degenerate, clamped alphas, early termination, antialiasing, backgrounds,
several cameras and SH degrees). In float32 the two agree to float rounding (relative ~1e-5); an
isolated pixel can differ where a rounding flips the 1/255 skip or the 1e-4 stop, as between any two
float32 rasterizers, so float32 checks compare all but a tiny fraction of pixels tightly.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from recon3d.core.gaussians import CppUnavailableError, Gaussians, check_backend, rasterize
from recon3d.core import native

pytestmark = pytest.mark.skipif(not native.native_available(), reason="no C++ compiler: compiled rasterizer unbuilt")


def _viewmat(eye, target=(0.0, 0.0, 0.0), dtype=torch.float64):
    eye, target = torch.tensor(eye, dtype=dtype), torch.tensor(target, dtype=dtype)
    fwd = (target - eye) / (target - eye).norm()
    up = torch.tensor([0.0, 0.0, 1.0], dtype=dtype)
    right = torch.linalg.cross(fwd, up)
    right = right / right.norm()
    down = torch.linalg.cross(fwd, right)
    c2w = torch.eye(4, dtype=dtype)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, fwd, eye
    return torch.linalg.inv(c2w)


def scene(n=600, cams=2, W=45, H=37, sh_degree=3, dtype=torch.float64, seed=0, awkward=True):
    """Random Gaussians around the origin seen by ``cams`` cameras; with ``awkward`` some are behind
    the cameras, off screen, nearly degenerate (zero scale, zero quaternion) or very opaque/large."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * 0.7
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.exp(torch.randn(n, 3, generator=g, dtype=dtype) * 0.5 - 3.0)
    opac = torch.rand(n, generator=g, dtype=dtype) * 0.98 + 0.01
    K = 1 if sh_degree is None else (sh_degree + 1) ** 2
    colors = torch.rand(n, 3, generator=g, dtype=dtype) if sh_degree is None else \
        torch.randn(n, K, 3, generator=g, dtype=dtype) * 0.3
    if awkward:
        means[:20] = torch.tensor([0.0, 0.0, 3.5], dtype=dtype) + torch.randn(20, 3, generator=g, dtype=dtype) * 0.2
        means[20:40] *= 25.0  # mostly far off screen or behind
        scales[40:50, 2] = 0.0  # flat
        scales[50:55] = 0.0  # points: only the low-pass remains
        quats[55:60] = 0.0  # degenerate quaternion (clamped norm)
        scales[60:70] *= 8.0  # large, overlapping many tiles
        opac[70:90] = 0.9999  # clamped at ALPHA_MAX
    mats = [_viewmat((3.0 * torch.cos(torch.tensor(a)).item(), 3.0 * torch.sin(torch.tensor(a)).item(), 0.8),
                     dtype=dtype) for a in torch.linspace(0.3, 2.5, cams).tolist()]
    viewmats = torch.stack(mats)
    f = 0.9 * max(W, H)
    Ks = torch.tensor([[f, 0, W / 2 + 1.3], [0, f * 1.05, H / 2 - 0.7], [0, 0, 1]], dtype=dtype).expand(cams, 3, 3)
    return [means, quats, scales, opac, colors], viewmats, Ks.clone()


def run(backend, params, viewmats, Ks, W, H, sh_degree=3, bg=None, antialiased=False, seed=1):
    params = [p.detach().clone().requires_grad_() for p in params]
    out = rasterize(Gaussians(*params), viewmats, Ks, W, H, sh_degree=sh_degree, backgrounds=bg,
                    antialiased=antialiased, backend=backend)
    out.means2d.retain_grad()
    g = torch.Generator().manual_seed(seed)
    wc = torch.rand(out.colors.shape, generator=g, dtype=out.colors.dtype)
    wd = torch.rand(out.depths.shape, generator=g, dtype=out.colors.dtype)
    wa = torch.rand(out.alphas.shape, generator=g, dtype=out.colors.dtype)
    loss = (out.colors * wc).sum() + 0.1 * (out.depths * wd).sum() + (out.alphas * wa).sum() \
        + 0.01 * out.depths_per_gaussian.sum()
    loss.backward()
    res = {k: getattr(out, k).detach() for k in ("colors", "alphas", "depths", "means2d", "radii", "visible",
                                                 "depths_per_gaussian")}
    res["means2d.grad"] = out.means2d.grad
    for name, p in zip(("means", "quats", "scales", "opacities", "colors"), params):
        res[f"grad.{name}"] = p.grad
    return res, out


def assert_same(a, b, rtol):
    for k in a:
        x, y = a[k].double(), b[k].double()
        assert x.shape == y.shape, k
        if k in ("radii", "visible"):
            assert torch.equal(x, y), k
            continue
        scale = x.abs().max().clamp_min(1e-12)
        err = (x - y).abs().max() / scale
        assert err <= rtol, f"{k}: relative difference {err:.2e} > {rtol:.0e}"


@pytest.mark.parametrize("sh_degree,antialiased,bg,cams,size", [
    (3, False, "white", 2, (45, 37)),
    (0, True, None, 1, (33, 50)),
    (1, False, "mixed", 3, (64, 16)),
    (2, True, "white", 2, (17, 9)),
    (None, False, "mixed", 2, (40, 40)),
])
def test_cpp_matches_torch_float64(sh_degree, antialiased, bg, cams, size):
    W, H = size
    params, vm, Ks = scene(cams=cams, W=W, H=H, sh_degree=sh_degree)
    if bg == "white":
        bg = torch.ones(cams, 3, dtype=torch.float64)
    elif bg == "mixed":
        bg = torch.rand(cams, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ref, out_t = run("torch", params, vm, Ks, W, H, sh_degree, bg, antialiased)
    got, out_c = run("cpp", params, vm, Ks, W, H, sh_degree, bg, antialiased)
    assert out_t.backend == "torch" and out_c.backend == "cpp"
    assert ref["visible"].sum() > 50 and (ref["alphas"] > 0.5).any()  # the scene is not empty
    assert_same(ref, got, rtol=1e-10)


def test_cpp_float32_matches_torch_and_is_thread_independent():
    W, H = 80, 60
    params, vm, Ks = scene(n=3000, cams=2, W=W, H=H, dtype=torch.float32, awkward=True)
    vm, Ks = vm.float(), Ks.float()
    bg = torch.ones(2, 3)
    ref, _ = run("torch", params, vm, Ks, W, H, 3, bg)
    got, _ = run("cpp", params, vm, Ks, W, H, 3, bg)
    for k in ("colors", "alphas", "depths"):  # all but isolated rounding flips within 1e-5
        diff = (ref[k] - got[k]).abs()
        assert (diff > 1e-5).float().mean() < 2e-3, k
        assert diff.max() < 5e-3, k
    for k in ("means2d", "depths_per_gaussian"):
        assert torch.allclose(ref[k], got[k], rtol=1e-5, atol=1e-4), k
    assert torch.equal(ref["radii"], got["radii"]) and torch.equal(ref["visible"], got["visible"])
    for k in ("means2d.grad", "grad.means", "grad.quats", "grad.scales", "grad.opacities", "grad.colors"):
        scale = ref[k].abs().max()
        assert (ref[k] - got[k]).abs().max() / scale < 1e-3, k
        assert torch.nn.functional.cosine_similarity(ref[k].flatten(), got[k].flatten(), dim=0) > 0.99999, k
    # bit-identical whatever the thread count (no atomics; per-entry sums reduced in a fixed order)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one, _ = run("cpp", params, vm, Ks, W, H, 3, bg)
    finally:
        torch.set_num_threads(threads)
    for k in got:
        assert torch.equal(one[k], got[k]), k


def test_cpp_pose_gradients_flow_through_cameras():
    """Cameras that require gradients (pose refinement) take the PyTorch projection; the gradients
    equal the torch backend's."""
    params, vm, Ks = scene(cams=2)
    res = {}
    for backend in ("torch", "cpp"):
        v = vm.clone().requires_grad_()
        out = rasterize(Gaussians(*params), v, Ks, 45, 37, sh_degree=3, backend=backend)
        (out.colors * torch.linspace(0, 1, 3, dtype=torch.float64)).sum().backward()
        res[backend] = v.grad
    assert res["torch"].abs().max() > 0
    assert torch.allclose(res["torch"], res["cpp"], rtol=1e-9, atol=1e-12)


def test_cpp_empty_view_and_tile_sizes():
    params, vm, Ks = scene(n=50, cams=1, awkward=False)
    params[0] = params[0] + torch.tensor([0.0, 0.0, 100.0], dtype=torch.float64)  # all far behind the camera
    p = [t.requires_grad_() for t in params]
    out = rasterize(Gaussians(*p), vm, Ks, 45, 37, sh_degree=3, backend="cpp")
    assert out.alphas.abs().max() == 0 and not out.visible.any()
    out.colors.sum().backward()  # still differentiable
    params, vm, Ks = scene(n=400, cams=1)
    base, _ = run("cpp", params, vm, Ks, 45, 37)
    for tile in (8, 24, 32):
        params_t = [t.detach().clone().requires_grad_() for t in params]
        out = rasterize(Gaussians(*params_t), vm, Ks, 45, 37, sh_degree=3, tile_size=tile, backend="cpp")
        assert torch.allclose(out.colors, base["colors"], atol=1e-12)
    with pytest.raises(ValueError, match="multiple of 8"):
        rasterize(Gaussians(*params), vm, Ks, 45, 37, sh_degree=3, tile_size=4, backend="cpp")


def test_cpp_explicit_on_wrong_device_is_one_line_error():
    with pytest.raises(CppUnavailableError, match="CPU tensors"):
        check_backend("cpp", "meta")


def test_auto_falls_back_to_torch_without_a_compiler(tmp_path):
    """No compiler and no built library: "auto" renders with the torch rasterizer after a one-line
    warning; an explicit "cpp" is a one-line error."""
    code = """
import logging, torch
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
from recon3d.core.gaussians import Gaussians, rasterize, check_backend, CppUnavailableError
g = Gaussians(torch.zeros(1, 3), torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 0.1), torch.ones(1), torch.ones(1, 3))
vm = torch.eye(4)[None].clone(); vm[0, 2, 3] = 2.0
K = torch.tensor([[[20.0, 0, 8], [0, 20.0, 8], [0, 0, 1]]])
out = rasterize(g, vm, K, 16, 16)
print("BACKEND", out.backend, float(out.alphas.max()) > 0.5)
try:
    check_backend("cpp", "cpu")
except CppUnavailableError as exc:
    print("ERROR", exc)
"""
    env = {"PATH": "/nonexistent", "CXX": "/nonexistent/g++", "RECON3D_NATIVE_DIR": str(tmp_path / "native"),
           "HOME": str(tmp_path)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "BACKEND torch True" in res.stdout
    warnings = [line for line in res.stderr.splitlines() if "compiled CPU rasterizer unusable" in line]
    assert len(warnings) == 1 and "g++" in warnings[0]
    error = [line for line in res.stdout.splitlines() if line.startswith("ERROR")]
    assert len(error) == 1 and "compiled CPU rasterizer is unavailable" in error[0]


def test_library_is_cached_and_rebuilt_for_a_changed_source(tmp_path, monkeypatch):
    monkeypatch.setenv(native.ENV_DIR, str(tmp_path))
    first = native.build()
    assert first.parent == tmp_path and first.exists()
    mtime = first.stat().st_mtime_ns
    assert native.build() == first and first.stat().st_mtime_ns == mtime  # cached
    srcs = []
    for orig in native.SOURCES:
        (tmp_path / "src").mkdir(exist_ok=True)
        srcs.append(tmp_path / "src" / orig.name)
        srcs[-1].write_text(orig.read_text())
    srcs[0].write_text(srcs[0].read_text() + "\n// edited\n")
    monkeypatch.setattr(native, "SOURCES", srcs)
    second = native.build()
    assert second != first and second.exists()
