#!/usr/bin/env python
"""Benchmark the Gaussian rasterizer backends: forward + backward milliseconds per image.

Random scenes of N Gaussians seen by C cameras on a circle of radius 3 (see ``make_scene``):
``--scene surface`` (default, like a trained model: flat, mostly opaque Gaussians on a sphere and a
ground disk that fill the view) or ``--scene cube`` (semi-transparent Gaussians filling a cube, with
little early termination). Sizes scale with N so the screen coverage stays about constant.

    python scripts/bench_rasterizer.py              # the suite: 200x200 20k/100k, 800x600 200k, 1600x1200 1M
    python scripts/bench_rasterizer.py --n 5000 --size 128 96 --cameras 2 --reps 5
    python scripts/bench_rasterizer.py --n 2000 --size 64 64 --reference   # include brute force

Each row times the compiled CPU rasterizer ("cpp") and the PyTorch one ("torch", the baseline) in
fresh processes (so the peak memory figure is the row's own) and prints the speed-up; the suite ends
with a thread-scaling row (1 thread vs all).

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


def _child(args) -> None:
    """One measurement in this (fresh) process: prints a JSON line with times and peak memory."""
    import json
    import resource

    if args.threads:
        torch.set_num_threads(args.threads)
    W, H = args.size
    n = args.n[0]
    params, viewmats, Ks = make_scene(n, args.cameras, W, H, scene=args.scene)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    best, mean, out = time_backend(args.child, params, viewmats, Ks, W, H, args.reps)
    fwd = time_forward(args.child, params, viewmats, Ks, W, H, args.reps)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(dict(best=best / args.cameras, mean=mean / args.cameras, fwd=fwd / args.cameras,
                          peak_mb=peak / 1024, scene_mb=base / 1024, backend=out.backend,
                          visible=out.visible.float().sum(1).mean().item(), alpha=out.alphas.mean().item(),
                          threads=torch.get_num_threads())))


def _measure(backend: str, n: int, W: int, H: int, args, threads=None, reps=None) -> dict:
    """Run :func:`_child` in a subprocess (clean peak-memory figure per backend and size)."""
    import json
    import subprocess
    import sys

    cmd = [sys.executable, __file__, "--child", backend, "--n", str(n), "--size", str(W), str(H),
           "--cameras", str(args.cameras), "--scene", args.scene, "--reps", str(reps or args.reps)]
    if threads or args.threads:
        cmd += ["--threads", str(threads or args.threads)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"benchmark child failed ({' '.join(cmd)}):\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


SUITE = [(20_000, 200, 200), (100_000, 200, 200), (200_000, 800, 600), (1_000_000, 1600, 1200)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=None, help="numbers of Gaussians (default: the suite)")
    ap.add_argument("--size", type=int, nargs=2, default=None, metavar=("W", "H"))
    ap.add_argument("--cameras", type=int, default=1)
    ap.add_argument("--scene", choices=["surface", "cube"], default="surface")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch rasterizer (the baseline)")
    ap.add_argument("--reference", action="store_true", help="also time the brute-force reference")
    ap.add_argument("--ref-max", type=float, default=3e8, help="skip the reference above this H*W*N*C")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.n = args.n or [20_000]
        args.size = args.size or [200, 200]
        return _child(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.n or args.size:
        W, H = args.size or (200, 200)
        rows = [(n, W, H) for n in (args.n or [20_000, 100_000])]
    else:
        rows = SUITE
    C = args.cameras
    if hasattr(os, "getloadavg"):
        load = os.getloadavg()[0]
        if load > 1.0:
            print(f"note: 1-min load average is {load:.1f}; if other processes are busy on these cores, "
                  "timings are unreliable")
    threads = args.threads or torch.get_num_threads()
    print(f"{args.scene} scene, {C} camera(s), SH degree 3, torch {torch.__version__}, {threads} CPU thread(s); "
          "forward+backward ms per image (best/mean), forward-only ms, peak process memory (each row in a fresh "
          "process); 'x' = speed-up of cpp over the PyTorch rasterizer in the same run")
    for n, W, H in rows:
        reps = args.reps if n * W * H < 1e12 else max(2, args.reps // 2)
        cpp = _measure("cpp", n, W, H, args, reps=reps)
        line = (f"{W}x{H} N={n:>8d}  cpp: {cpp['best']:8.1f} / {cpp['mean']:8.1f} ms (fwd {cpp['fwd']:7.1f}) "
                f"peak {cpp['peak_mb'] / 1024:5.2f} GB")
        if not args.no_torch:
            tor = _measure("torch", n, W, H, args, reps=max(2, reps // 2))
            line += (f" | torch: {tor['best']:8.1f} / {tor['mean']:8.1f} ms (fwd {tor['fwd']:7.1f}) "
                     f"peak {tor['peak_mb'] / 1024:5.2f} GB | x{tor['best'] / cpp['best']:5.1f} (fwd "
                     f"x{tor['fwd'] / cpp['fwd']:4.1f})")
        line += f"  visible {cpp['visible']:.0f}, alpha {cpp['alpha']:.2f}"
        print(line, flush=True)
        if args.reference and W * H * n * C <= args.ref_max:
            params, viewmats, Ks = make_scene(n, C, W, H, scene=args.scene)
            rbest, _, _ = time_backend("reference", params, viewmats, Ks, W, H, max(1, args.reps // 2))
            print(f"           reference: {rbest / C:9.1f} ms  (cpp is {rbest / C / cpp['best']:5.1f}x faster)")
        if torch.cuda.is_available() and gsplat_available():
            gparams, gview, gK = make_scene(n, C, W, H, device="cuda", scene=args.scene)
            gbest, gmean, _ = time_backend("gsplat", gparams, gview, gK, W, H, args.reps)
            print(f"           gsplat (cuda): {gbest / C:8.2f} / {gmean / C:8.2f} ms", flush=True)
    if threads > 1 and not (args.n or args.size):
        n, W, H = SUITE[2]
        one = _measure("cpp", n, W, H, args, threads=1)
        many = _measure("cpp", n, W, H, args, threads=threads)
        print(f"thread scaling, cpp {W}x{H} N={n}: 1 thread {one['best']:.1f} ms, {threads} threads "
              f"{many['best']:.1f} ms: x{one['best'] / many['best']:.2f}")


if __name__ == "__main__":
    main()
