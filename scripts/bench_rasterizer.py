#!/usr/bin/env python
"""Benchmark the Gaussian rasterizer backends: forward + backward milliseconds per image.

Random scenes of N Gaussians seen by C cameras on a circle of radius 3 (see ``make_scene``):
``--scene surface`` (default, like a trained model: flat, mostly opaque Gaussians on a sphere and a
ground disk that fill the view) or ``--scene cube`` (semi-transparent Gaussians filling a cube, with
little early termination). Sizes scale with N so the screen coverage stays about constant.

    python scripts/bench_rasterizer.py                         # 200x200, 20k and 100k Gaussians
    python scripts/bench_rasterizer.py --n 5000 --size 128 96 --cameras 2 --reps 5
    python scripts/bench_rasterizer.py --n 2000 --size 64 64 --reference   # include brute force

The brute-force reference is only run when ``H*W*N*C`` is below ``--ref-max`` (it is O(pixels x N)).
gsplat is benchmarked too when a CUDA device and gsplat are available. Each timed step is a full
training-like step: rasterize (SH degree 3, white background), L1 + depth loss, backward.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch

from recon3d.core.gaussians import Gaussians, gsplat_available, rasterize


def _viewmats(cameras: int) -> torch.Tensor:
    mats = []
    for i in range(cameras):
        az = 2 * math.pi * i / cameras + 0.4
        eye = torch.tensor([3 * math.cos(az), 3 * math.sin(az), 0.9])
        fwd = -eye / eye.norm()
        right = torch.linalg.cross(fwd, torch.tensor([0.0, 0.0, 1.0]))
        right = right / right.norm()
        down = torch.linalg.cross(fwd, right)
        c2w = torch.eye(4)
        c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, fwd, eye
        mats.append(torch.linalg.inv(c2w))
    return torch.stack(mats)


def _flat_quats(normals: torch.Tensor) -> torch.Tensor:
    """Quaternions (w, x, y, z) rotating +z onto the given unit normals."""
    z = torch.tensor([0.0, 0.0, 1.0]).expand_as(normals)
    axis = torch.linalg.cross(z, normals)
    w = 1.0 + (normals * z).sum(-1, keepdim=True)
    q = torch.cat([w, axis], -1)
    q[w[:, 0] < 1e-6] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    return q / q.norm(dim=-1, keepdim=True)


def make_scene(n: int, cameras: int, width: int, height: int, sh_degree: int = 3, seed: int = 0,
               device: str = "cpu", scene: str = "surface"):
    """Random scene. ``surface`` (like a trained model): flat, mostly opaque Gaussians on a unit sphere
    and a ground disk that fill the view. ``cube``: isotropic-ish, semi-transparent Gaussians filling
    a cube (no surfaces, little early termination: a harder case for CPU compositing)."""
    g = torch.Generator().manual_seed(seed)
    res = 200 / max(width, height)
    if scene == "cube":
        means = torch.rand(n, 3, generator=g) * 2 - 1
        quats = torch.randn(n, 4, generator=g)
        s0 = 0.012 * math.sqrt(100_000 / n) * res
        scales = s0 * torch.exp(torch.empty(n, 3).uniform_(-0.8, 0.8, generator=g))
        opac = torch.rand(n, generator=g) * 0.9 + 0.05
    elif scene == "surface":
        n_sphere = int(0.6 * n)
        d = torch.randn(n_sphere, 3, generator=g)
        normals_s = d / d.norm(dim=-1, keepdim=True)
        r = torch.sqrt(torch.rand(n - n_sphere, generator=g)) * 2.8
        phi = torch.rand(n - n_sphere, generator=g) * 2 * math.pi
        ground = torch.stack([r * torch.cos(phi), r * torch.sin(phi), torch.full_like(r, -1.0)], -1)
        means = torch.cat([normals_s, ground])
        normals = torch.cat([normals_s, torch.tensor([0.0, 0.0, 1.0]).expand(n - n_sphere, 3)])
        quats = _flat_quats(normals)
        # tangent std-devs so that each surface is covered ~4x over (area / n)
        area = torch.cat([torch.full((n_sphere,), 4 * math.pi / n_sphere),
                          torch.full((n - n_sphere,), math.pi * 2.8**2 / max(n - n_sphere, 1))])
        s_t = torch.sqrt(area) * 0.6
        scales = torch.stack([s_t, s_t, 0.05 * s_t], -1) * torch.exp(torch.empty(n, 3).uniform_(-0.4, 0.4, generator=g))
        opac = torch.where(torch.rand(n, generator=g) < 0.8, 0.85 + 0.14 * torch.rand(n, generator=g),
                           0.05 + 0.5 * torch.rand(n, generator=g))
    else:
        raise ValueError(f"unknown scene {scene!r}")
    sh = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g) * 0.2
    f = 0.9 * max(width, height)
    Ks = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]]).expand(cameras, 3, 3).clone()
    params = [t.to(device).requires_grad_() for t in (means, quats, scales, opac, sh)]
    return params, _viewmats(cameras).to(device), Ks.to(device)


def time_backend(backend: str, params, viewmats, Ks, width, height, reps: int, sh_degree: int = 3):
    gaussians = Gaussians(*params)
    bg = torch.ones(viewmats.shape[0], 3, device=gaussians.device)
    target = torch.rand(viewmats.shape[0], height, width, 3, device=gaussians.device)
    sync = torch.cuda.synchronize if gaussians.means.is_cuda else (lambda: None)

    def step():
        out = rasterize(gaussians, viewmats, Ks, width, height, sh_degree=sh_degree, backgrounds=bg,
                        backend=backend)
        out.means2d.retain_grad()
        loss = (out.colors - target).abs().mean() + 0.01 * out.depths.mean()
        loss.backward()
        for p in params:
            p.grad = None
        return out

    out = step()  # warm-up
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return 1000 * min(times), 1000 * sum(times) / len(times), out


def time_forward(backend, params, viewmats, Ks, width, height, reps, sh_degree=3):
    gaussians = Gaussians(*params)
    times = []
    with torch.no_grad():
        for _ in range(reps + 1):
            t0 = time.perf_counter()
            rasterize(gaussians, viewmats, Ks, width, height, sh_degree=sh_degree, backend=backend)
            times.append(time.perf_counter() - t0)
    return 1000 * min(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[20_000, 100_000], help="numbers of Gaussians")
    ap.add_argument("--size", type=int, nargs=2, default=[200, 200], metavar=("W", "H"))
    ap.add_argument("--cameras", type=int, default=1)
    ap.add_argument("--scene", choices=["surface", "cube"], default="surface")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--reference", action="store_true", help="also time the brute-force reference")
    ap.add_argument("--ref-max", type=float, default=3e8, help="skip the reference above this H*W*N*C")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    W, H = args.size
    C = args.cameras
    if hasattr(os, "getloadavg"):
        load = os.getloadavg()[0]
        if load > 1.0:
            print(f"note: 1-min load average is {load:.1f}; if other processes are busy on these cores, "
                  "PyTorch's thread pool stalls (try --threads 1) and timings are unreliable")
    print(f"{args.scene} scene, image {W}x{H}, {C} camera(s), SH degree 3, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU thread(s); times are forward+backward ms per image (best/mean)")
    for n in args.n:
        params, viewmats, Ks = make_scene(n, C, W, H, scene=args.scene)
        best, mean, out = time_backend("torch", params, viewmats, Ks, W, H, args.reps)
        fwd = time_forward("torch", params, viewmats, Ks, W, H, args.reps)
        vis = out.visible.float().sum(1).mean().item()
        cov = out.alphas.mean().item()
        line = (f"N={n:>7d}  torch: {best / C:8.1f} / {mean / C:8.1f} ms  (forward only {fwd / C:7.1f} ms)"
                f"  visible/img {vis:.0f}, mean alpha {cov:.2f}")
        if args.reference:
            if W * H * n * C <= args.ref_max:
                rbest, _, _ = time_backend("reference", params, viewmats, Ks, W, H, max(1, args.reps // 2))
                line += f"  reference: {rbest / C:9.1f} ms  (torch is {rbest / best:5.1f}x faster)"
            else:
                line += "  reference: skipped (--ref-max)"
        print(line, flush=True)
        if torch.cuda.is_available() and gsplat_available():
            gparams, gview, gK = make_scene(n, C, W, H, device="cuda", scene=args.scene)
            gbest, gmean, _ = time_backend("gsplat", gparams, gview, gK, W, H, args.reps)
            print(f"           gsplat (cuda): {gbest / C:8.2f} / {gmean / C:8.2f} ms", flush=True)


if __name__ == "__main__":
    main()
