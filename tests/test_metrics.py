"""Tests for recon3d.core.metrics: analytic cases and an independent NumPy SSIM reference."""

import math

import numpy as np
import pytest
import torch

from recon3d.core.metrics import (
    chamfer_distance,
    dssim_loss,
    fscore,
    mean_metrics,
    psnr,
    sample_mesh_points,
    ssim,
)


# ------------------------------------------------------------------------------------- PSNR


def test_psnr_constant_offset_is_analytic():
    target = torch.rand(8, 9, 3) * 0.8
    pred = target + 0.1  # MSE = 0.01 -> 20 dB
    out = psnr(pred, target)
    assert out.shape == ()
    assert out.item() == pytest.approx(20.0, abs=1e-4)
    assert psnr(pred * 255, target * 255, max_val=255.0).item() == pytest.approx(20.0, abs=1e-3)


def test_psnr_batched_shape_and_values():
    target = torch.zeros(2, 3, 4, 5, 3)
    offsets = torch.tensor([[0.1, 0.01, 0.5], [0.2, 0.05, 1.0]])
    pred = target + offsets[..., None, None, None]
    out = psnr(pred, target)
    assert out.shape == (2, 3)
    expected = -20.0 * torch.log10(offsets)
    assert torch.allclose(out, expected, atol=1e-4)


def test_psnr_identical_is_inf():
    x = torch.rand(4, 4, 3)
    assert math.isinf(psnr(x, x).item())


@pytest.mark.parametrize("keepdim", [False, True])
def test_psnr_mask_ignores_unmasked_pixels(keepdim):
    target = torch.rand(2, 6, 7, 3)
    pred = target.clone()
    mask = torch.zeros(2, 6, 7, dtype=torch.bool)
    mask[:, :3] = True
    pred[:, :3] += 0.1  # error inside the mask: MSE 0.01
    pred[:, 3:] = 1.0 - pred[:, 3:]  # large error outside: must be ignored
    m = mask[..., None] if keepdim else mask
    out = psnr(pred, target, mask=m)
    assert out.shape == (2,)
    assert torch.allclose(out, torch.full((2,), 20.0), atol=1e-3)


def test_psnr_mask_broadcasts_over_batch_and_rejects_empty():
    target = torch.rand(3, 5, 5, 3)
    pred = target + 0.1
    mask = torch.ones(5, 5)
    assert torch.allclose(psnr(pred, target, mask=mask), torch.full((3,), 20.0), atol=1e-3)
    with pytest.raises(ValueError, match="no pixel"):
        psnr(pred, target, mask=torch.zeros(5, 5))
    with pytest.raises(ValueError, match="mask shape"):
        psnr(pred, target, mask=torch.ones(4, 5))


def test_psnr_shape_mismatch():
    with pytest.raises(ValueError, match="shape mismatch"):
        psnr(torch.rand(4, 4, 3), torch.rand(4, 5, 3))


# ------------------------------------------------------------------------------------- SSIM


def _ssim_numpy(x: np.ndarray, y: np.ndarray, window=11, sigma=1.5, L=1.0) -> np.ndarray:
    """Direct reference: full 2D Gaussian window, explicit sum over window offsets, 'valid'
    region. x, y: (H, W, C) float64. Returns the (H-w+1, W-w+1, C) SSIM map."""
    r = np.arange(window) - (window - 1) / 2.0
    g1 = np.exp(-(r**2) / (2 * sigma**2))
    w2 = np.outer(g1, g1)
    w2 /= w2.sum()
    h, wd, _ = x.shape
    ho, wo = h - window + 1, wd - window + 1

    def filt(img):
        out = np.zeros((ho, wo, img.shape[2]))
        for i in range(window):
            for j in range(window):
                out += w2[i, j] * img[i : i + ho, j : j + wo]
        return out

    mx, my = filt(x), filt(y)
    sxx = filt(x * x) - mx**2
    syy = filt(y * y) - my**2
    sxy = filt(x * y) - mx * my
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))


def _smooth_image(rng, h, w, c):
    """A structured test image: smooth gradients plus texture, in [0, 1]."""
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    chans = [0.5 + 0.4 * np.sin(6 * xx + k) * np.cos(4 * yy - k) for k in range(c)]
    img = np.stack(chans, -1) + 0.05 * rng.standard_normal((h, w, c))
    return np.clip(img, 0, 1)


def test_ssim_matches_numpy_reference():
    rng = np.random.default_rng(0)
    x = _smooth_image(rng, 32, 27, 3)
    y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)
    ref_map = _ssim_numpy(x, y)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    got_map = ssim(xt, yt, reduction="none")
    assert got_map.shape == ref_map.shape == (22, 17, 3)
    np.testing.assert_allclose(got_map.numpy(), ref_map, atol=1e-10)
    assert ssim(xt, yt).item() == pytest.approx(ref_map.mean(), abs=1e-10)
    # float32 agrees to single precision
    got32 = ssim(xt.float(), yt.float()).item()
    assert got32 == pytest.approx(ref_map.mean(), abs=1e-5)


def test_ssim_other_window_and_data_range():
    rng = np.random.default_rng(1)
    x = _smooth_image(rng, 20, 20, 1)
    y = np.clip(x * 0.8 + 0.1, 0, 1)
    ref = _ssim_numpy(x * 255, y * 255, window=7, sigma=1.0, L=255.0).mean()
    got = ssim(torch.from_numpy(x * 255), torch.from_numpy(y * 255), window=7, sigma=1.0,
               data_range=255.0)
    assert got.item() == pytest.approx(ref, abs=1e-10)


def test_ssim_batched_reductions():
    rng = np.random.default_rng(2)
    x = np.stack([_smooth_image(rng, 24, 24, 3) for _ in range(2)])
    y = np.clip(x + 0.05 * rng.standard_normal(x.shape), 0, 1)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    per_img = ssim(xt, yt, reduction="image")
    assert per_img.shape == (2,)
    for b in range(2):
        assert per_img[b].item() == pytest.approx(_ssim_numpy(x[b], y[b]).mean(), abs=1e-10)
    assert ssim(xt, yt).shape == ()
    assert ssim(xt, yt).item() == pytest.approx(per_img.mean().item(), abs=1e-12)
    assert ssim(xt, yt, reduction="none").shape == (2, 14, 14, 3)
    assert ssim(xt[0], yt[0], reduction="image").shape == ()


def test_ssim_identical_is_one_and_noise_lowers_it():
    torch.manual_seed(0)
    x = torch.rand(40, 40, 3)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)
    assert dssim_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    values = [ssim((x + s * torch.randn_like(x)).clamp(0, 1), x).item() for s in (0.02, 0.1, 0.3)]
    assert 1.0 > values[0] > values[1] > values[2]


def test_ssim_is_symmetric_and_channels_last():
    torch.manual_seed(1)
    x, y = torch.rand(16, 18, 3), torch.rand(16, 18, 3)
    assert ssim(x, y).item() == pytest.approx(ssim(y, x).item(), abs=1e-6)
    # each channel is independent: per-channel SSIM of a 3-channel image averages 1-channel ones
    singles = [ssim(x[..., k : k + 1], y[..., k : k + 1]).item() for k in range(3)]
    assert ssim(x, y).item() == pytest.approx(float(np.mean(singles)), abs=1e-6)


def test_dssim_gradient_flows_and_descends():
    torch.manual_seed(2)
    target = torch.rand(1, 32, 32, 3)
    pred = torch.rand(1, 32, 32, 3, requires_grad=True)
    loss = dssim_loss(pred, target)
    assert 0.0 < loss.item() <= 1.0
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    assert pred.grad.abs().sum() > 0
    with torch.no_grad():
        stepped = pred - 20.0 * pred.grad
    assert dssim_loss(stepped, target).item() < loss.item()


def test_ssim_gradcheck_double():
    torch.manual_seed(3)
    x = torch.rand(1, 8, 9, 2, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 8, 9, 2, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: ssim(a, y, window=5, sigma=1.0), (x,))


def test_ssim_errors():
    with pytest.raises(ValueError, match="smaller than"):
        ssim(torch.rand(8, 8, 3), torch.rand(8, 8, 3))
    with pytest.raises(ValueError, match="odd"):
        ssim(torch.rand(16, 16, 3), torch.rand(16, 16, 3), window=4)
    with pytest.raises(ValueError, match="reduction"):
        ssim(torch.rand(16, 16, 3), torch.rand(16, 16, 3), reduction="sum")
    with pytest.raises(ValueError):
        ssim(torch.rand(1, 1, 16, 16, 3), torch.rand(1, 1, 16, 16, 3))


def _uv_sphere(n_lat=48, n_lon=96):
    """Unit UV sphere: vertices on radius 1, (V, 3) float64 and (F, 3) int faces."""
    verts = [[0.0, 0.0, 1.0]]
    for i in range(1, n_lat):
        th = math.pi * i / n_lat
        for j in range(n_lon):
            ph = 2 * math.pi * j / n_lon
            verts.append([math.sin(th) * math.cos(ph), math.sin(th) * math.sin(ph), math.cos(th)])
    verts.append([0.0, 0.0, -1.0])
    verts = np.array(verts)
    south = len(verts) - 1

    def ring(i, j):  # vertex index of ring i (1..n_lat-1), column j
        return 1 + (i - 1) * n_lon + (j % n_lon)

    faces = []
    for j in range(n_lon):
        faces.append([0, ring(1, j), ring(1, j + 1)])
        faces.append([south, ring(n_lat - 1, j + 1), ring(n_lat - 1, j)])
    for i in range(1, n_lat - 1):
        for j in range(n_lon):
            a, b = ring(i, j), ring(i, j + 1)
            c, d = ring(i + 1, j), ring(i + 1, j + 1)
            faces += [[a, c, b], [b, c, d]]
    return verts, np.array(faces, dtype=np.int64)


def test_sample_mesh_points_on_unit_sphere():
    v, f = _uv_sphere()
    pts = sample_mesh_points(v, f, 5000, seed=0)
    assert pts.shape == (5000, 3)
    r = np.linalg.norm(pts, axis=1)
    # chords of this tessellation sag less than 1 - cos(pi / 48) ~ 2.2e-3 inside the sphere
    assert r.max() <= 1.0 + 1e-9
    assert r.min() > 1.0 - 3e-3
    # uniform on the sphere: coordinate means ~ 0, z^2 mean ~ 1/3 (Archimedes)
    assert np.abs(pts.mean(0)).max() < 0.05
    assert np.mean(pts[:, 2] ** 2) == pytest.approx(1 / 3, abs=0.03)


def test_sample_mesh_points_area_weighted_and_deterministic():
    # two disjoint triangles with areas 0.5 and 4.5 (ratio 1:9)
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 0, 0], [8, 0, 0], [5, 3, 0]], float)
    f = np.array([[0, 1, 2], [3, 4, 5]])
    pts, idx = sample_mesh_points(v, f, 20000, seed=1, return_face_index=True)
    assert np.mean(idx == 1) == pytest.approx(0.9, abs=0.01)
    # points lie inside their triangle: small one is x, y >= 0, x + y <= 1
    small = pts[idx == 0]
    assert (small[:, :2] >= -1e-12).all() and (small[:, :2].sum(1) <= 1 + 1e-12).all()
    # uniform within the triangle: centroid of the samples ~ triangle centroid
    np.testing.assert_allclose(small.mean(0), [1 / 3, 1 / 3, 0], atol=0.02)
    np.testing.assert_array_equal(pts, sample_mesh_points(v, f, 20000, seed=1))
    # torch input works too
    pts_t = sample_mesh_points(torch.from_numpy(v), torch.from_numpy(f), 20000, seed=1)
    np.testing.assert_array_equal(pts, pts_t)


def test_sample_mesh_points_errors():
    v = np.eye(3)
    f = np.array([[0, 1, 2]])
    with pytest.raises(ValueError, match="no faces"):
        sample_mesh_points(v, np.zeros((0, 3), int), 10)
    with pytest.raises(ValueError, match="empty"):
        sample_mesh_points(np.zeros((0, 3)), f, 10)
    with pytest.raises(ValueError, match="out of range"):
        sample_mesh_points(v, np.array([[0, 1, 3]]), 10)
    with pytest.raises(ValueError, match="zero surface area"):
        sample_mesh_points(np.zeros((3, 3)), f, 10)
    with pytest.raises(ValueError, match="n must be"):
        sample_mesh_points(v, f, 0)


def test_chamfer_of_shifted_copy_equals_shift():
    # points on a grid with spacing 1; a shift of 0.3 < 0.5 keeps every nearest neighbour the
    # original partner, so every distance is exactly |shift|.
    g = np.stack(np.meshgrid(*[np.arange(6.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    shift = np.array([0.1, -0.2, 0.2])  # norm 0.3
    out = chamfer_distance(g + shift, g)
    assert set(out) == {"accuracy", "completeness", "chamfer"}
    for k in out:
        assert out[k] == pytest.approx(0.3, abs=1e-12)
    out_sq = chamfer_distance(torch.from_numpy(g + shift), torch.from_numpy(g), squared=True)
    for k in out_sq:
        assert out_sq[k] == pytest.approx(0.09, abs=1e-12)
    assert chamfer_distance(g, g)["chamfer"] == 0.0


def test_chamfer_is_asymmetric_in_accuracy_and_completeness():
    gt = np.array([[0.0, 0, 0], [10.0, 0, 0]])
    pred = np.array([[0.0, 0, 1.0]])  # near the first gt point only
    out = chamfer_distance(pred, gt)
    assert out["accuracy"] == pytest.approx(1.0)
    d_far = math.sqrt(100 + 1)
    assert out["completeness"] == pytest.approx((1.0 + d_far) / 2)
    assert out["chamfer"] == pytest.approx((out["accuracy"] + out["completeness"]) / 2)


def test_chamfer_errors():
    with pytest.raises(ValueError, match="empty"):
        chamfer_distance(np.zeros((0, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="empty"):
        chamfer_distance(torch.zeros(4, 3), torch.zeros(0, 3))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        chamfer_distance(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        chamfer_distance(np.full((2, 3), np.nan), np.zeros((4, 3)))


def test_fscore_thresholds():
    gt = np.stack(np.meshgrid(*[np.arange(5.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    pred = gt + np.array([0.2, 0.0, 0.0])
    # below the shift: nothing matches
    assert fscore(pred, gt, 0.1) == {"precision": 0.0, "recall": 0.0, "fscore": 0.0}
    # above the shift: everything matches
    assert fscore(pred, gt, 0.3) == {"precision": 1.0, "recall": 1.0, "fscore": 1.0}
    # half of pred are outliers far away: precision 0.5, recall 1 -> F = 2/3
    outliers = gt + np.array([100.0, 0, 0])
    out = fscore(np.concatenate([pred, outliers]), gt, 0.3)
    assert out["precision"] == pytest.approx(0.5)
    assert out["recall"] == pytest.approx(1.0)
    assert out["fscore"] == pytest.approx(2 / 3)
    # pred covers half of gt: precision 1, recall 0.5
    half = gt[gt[:, 0] < 2.5]
    out = fscore(torch.from_numpy(half), torch.from_numpy(gt), 0.3)
    assert out["precision"] == 1.0
    assert out["recall"] == pytest.approx(len(half) / len(gt))
    # monotone in the threshold
    rng = np.random.default_rng(0)
    noisy = gt + 0.3 * rng.standard_normal(gt.shape)
    fs = [fscore(noisy, gt, t)["fscore"] for t in (0.05, 0.2, 0.5, 2.0)]
    assert fs == sorted(fs) and fs[-1] == 1.0 and 0.0 <= fs[0] < 1.0


def test_fscore_errors():
    pts = np.zeros((3, 3))
    with pytest.raises(ValueError, match="threshold"):
        fscore(pts, pts, 0.0)
    with pytest.raises(ValueError, match="threshold"):
        fscore(pts, pts, -1.0)
    with pytest.raises(ValueError, match="empty"):
        fscore(np.zeros((0, 3)), pts, 0.1)


# ------------------------------------------------------------------------------ aggregation


def test_mean_metrics():
    out = mean_metrics(
        [
            {"psnr": 20.0, "ssim": torch.tensor(0.5), "name": "a"},
            {"psnr": np.float32(30.0), "ssim": 0.7, "lpips": 0.1},
        ]
    )
    assert list(out) == ["psnr", "ssim", "lpips"]
    assert out["psnr"] == pytest.approx(25.0)
    assert out["ssim"] == pytest.approx(0.6)
    assert out["lpips"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="no metric"):
        mean_metrics([])
