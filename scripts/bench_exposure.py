"""Benchmark per-image appearance compensation (``recon3d fit --appearance``) on a capture whose
training photos change exposure and white balance from shot to shot.

Every *training* view of the sample scene gets a random exposure gain (``--gain``, uniform, default
0.6-1.5) times a random per-channel white-balance gain (``--wb``, default 0.85-1.15), clipped to
[0, 1], stored as 8-bit PNG; the *test* views are left unmodified (gain 1). ``--backdrop alpha`` (the
default) keeps the RGBA cut-outs (the gains change the object, the alpha stays; the fit composites
on white and its transforms leave that background alone); ``--backdrop gray|white|black|R,G,B``
composites first, giving opaque photos of the object in front of a backdrop whose brightness changes
with the exposure too (a phone capture; white saturates at gains > 1). The views are written as a
nerfstudio dataset (``OUT/data/transforms.json``, the scene's train/test split) and read back like
``fit --data --background B`` does (normalized; ``--background``: white for alpha, else the
backdrop). Splat ``--preset quick`` is fitted on the same views with appearance off and on
(``--modes``; ``clean`` adds a fit on the unmodified training images, the ceiling), and the script
prints for each:

    full      test PSNR / SSIM of the plain renders, whole image (what metrics.json's test_psnr is
              without compensation; with it, test_psnr_uncompensated)
    half      NeRF-W protocol: an affine colour transform fitted on the left half of each test view,
              PSNR / SSIM on the right half (test_psnr with compensation)
    fit time  seconds of training (single-threaded torch by default: ``--threads``)

and, with compensation, how well the fitted per-image gains follow the applied ones (correlation).

    .venv/bin/python scripts/bench_exposure.py --downscale 2 --max-steps 1000 --backdrop gray --modes clean,off,on
    .venv/bin/python scripts/bench_exposure.py --downscale 2 --max-steps 500              # RGBA cut-outs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recon3d.io import load_scene  # noqa: E402
from recon3d.io.images import save_image  # noqa: E402
from recon3d.io.nerfstudio import write_nerfstudio_transforms  # noqa: E402
from recon3d.io.normalize import normalize_scene  # noqa: E402
from recon3d.methods.evaluation import evaluate_split  # noqa: E402
from recon3d.methods.splat import SplatTrainer, preset  # noqa: E402
from recon3d.methods.splat.appearance import evaluate_compensated  # noqa: E402
from recon3d.pipeline.scene_source import with_background  # noqa: E402


def exposure_gains(n: int, gain: tuple[float, float], wb: tuple[float, float], seed: int) -> np.ndarray:
    """(n, 3) per-image, per-channel gains: exposure x white balance."""
    rng = np.random.default_rng(seed)
    return rng.uniform(*gain, size=(n, 1)) * rng.uniform(*wb, size=(n, 3))


def write_exposure_dataset(scene, out: Path, gains: np.ndarray, modify: list[int], backdrop: str = "alpha") -> Path:
    """The scene's images with ``gains[i]`` applied to the views ``modify``, as PNGs in ``out/images`` plus
    ``out/transforms.json``: ``backdrop`` "alpha" keeps RGBA cut-outs (the gain changes the object's RGB,
    the alpha stays), a colour composites first (opaque photos: the backdrop changes with the exposure)."""
    from recon3d.core.background import background_color
    from recon3d.io.images import load_image

    paths = []
    bg = None if backdrop == "alpha" else background_color(color_of(backdrop))
    for i in range(len(scene)):
        rgba = load_image(scene.image_paths[i], with_alpha=True, size=(int(scene.cameras.height[i]),
                                                                        int(scene.cameras.width[i])))
        rgb, alpha = rgba[..., :3], rgba[..., 3:]
        if bg is not None:
            rgb = rgb * alpha + bg * (1 - alpha)
        if i in modify:
            rgb = (rgb * torch.as_tensor(gains[i], dtype=torch.float32)).clamp(0, 1)
        img = torch.cat([rgb, alpha], -1) if bg is None else rgb
        p = out / "images" / f"{Path(scene.image_paths[i]).stem}.png"
        save_image(p, img)
        paths.append(p)
    return write_nerfstudio_transforms(replace(scene, image_paths=paths, mask_paths=None), out / "transforms.json")


def color_of(text: str) -> list[float]:
    """"white" / "black" / a gray level / "R,G,B" -> 3 floats."""
    named = {"white": [1.0] * 3, "black": [0.0] * 3, "gray": [0.5] * 3}
    if text in named:
        return named[text]
    vals = [float(x) for x in text.split(",")]
    return vals * 3 if len(vals) == 1 else vals


def load_posed(data: Path, background: str = "white"):
    """Read the dataset back as ``fit --data --background B`` does: normalized; RGBA images composited
    on ``B``, opaque photos fitted over ``B``."""
    rgb = color_of(background)
    scene = normalize_scene(load_scene(data, background=rgb))
    return with_background(scene, ",".join(f"{x:g}" for x in rgb))


def object_color(scene) -> torch.Tensor:
    """(3,) mean colour of the object (alpha > 0.5) over the scene's training views."""
    from recon3d.io.images import load_image

    acc, n = torch.zeros(3), 0
    for i in scene.train_indices:
        rgba = load_image(scene.image_paths[i], with_alpha=True)
        m = rgba[..., 3] > 0.5
        acc += rgba[..., :3][m].sum(0)
        n += int(m.sum())
    return acc / max(n, 1)


def fit_one(name: str, scene, cfg, out: Path, gains: np.ndarray | None, reference=0.5) -> dict:
    trainer = SplatTrainer(scene, cfg, out / name)
    t0 = time.perf_counter()
    trainer.fit(progress=False, log_every=10**9)
    fit_s = time.perf_counter() - t0
    test = list(scene.test_indices)
    cams = trainer.fitted_cameras()
    full = evaluate_split(trainer.render, scene, cams, trainer.device, out / name, "test", save_renders=True)
    bg = trainer._background(1)[0]
    composite = trainer.appearance.composite if trainer.appearance is not None else False
    half = evaluate_compensated(trainer.render, scene, cams, trainer.device, test, composite=composite, background=bg)
    row = {"name": name, "appearance": trainer.appearance is not None, "steps": trainer.step,
           "fit_seconds": round(fit_s, 1), "gaussians": len(trainer.model),
           "full_psnr": round(full["psnr"], 3), "full_ssim": round(full["ssim"], 4),
           "half_psnr": round(half["psnr"], 3), "half_ssim": round(half["ssim"], 4)}
    if trainer.appearance is not None and gains is not None:
        train = list(scene.train_indices)
        fitted = trainer.appearance.gains(train, reference).cpu().numpy()  # at the object's mean colour
        applied = gains[train]
        row["gain_corr"] = round(float(np.corrcoef(fitted.mean(1), applied.mean(1))[0, 1]), 4)
        row["gain_corr_per_channel"] = round(float(np.corrcoef(fitted.ravel(), applied.ravel())[0, 1]), 4)
        # compare up to the global gauge (the mean transform is kept at the identity)
        rel = fitted.mean(1) / applied.mean(1)
        row["gain_ratio_spread"] = round(float(rel.std() / rel.mean()), 4)
        row.update(trainer.appearance_summary())
    # the trainer's own evaluate() (what metrics.json gets): compensated test_psnr only with appearance
    ev = trainer.evaluate("test", save_renders=False)
    row["evaluate_psnr"] = round(ev["psnr"], 3)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", type=Path, default=Path("data/sample_scene"), help="posed scene (Blender layout)")
    ap.add_argument("--out", type=Path, default=Path("outputs/bench_exposure"))
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--max-steps", type=int, default=None, help="training steps (default: the preset's)")
    ap.add_argument("--downscale", type=float, default=1.0, help="load the scene downscaled (2: 128 px)")
    ap.add_argument("--gain", type=float, nargs=2, default=(0.6, 1.5), help="exposure gain range")
    ap.add_argument("--wb", type=float, nargs=2, default=(0.85, 1.15), help="white-balance gain range per channel")
    ap.add_argument("--backdrop", default="alpha",
                    help="alpha: RGBA cut-outs (the exposure changes the object; composited on --background when "
                         "loaded), or white / gray / black / a gray level / R,G,B: opaque photos of the object "
                         "in front of that backdrop (the exposure changes both; white clips at gains > 1)")
    ap.add_argument("--background", default=None,
                    help="the fits' background, as fit --background (default: white for alpha, else the backdrop)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="SplatConfig overrides for every fit, e.g. appearance_lr=0.02")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--modes", default="off,on", help="comma list of clean, off, on")
    args = ap.parse_args(argv)
    backdrop = args.backdrop
    if args.background is None:
        args.background = "white" if args.backdrop == "alpha" else args.backdrop
    overrides = {}
    for kv in args.set:
        k, _, v = kv.partition("=")
        overrides[k] = json.loads(v) if v[:1].isdigit() or v[:1] in "-[{" or v in ("true", "false") else v
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in ("clean", "off", "on")]
    if bad:
        ap.error(f"--modes: unknown {bad}; use clean, off, on")

    src = load_scene(args.scene, downscale=args.downscale)  # RGBA composited on white
    train = list(src.train_indices)
    gains = exposure_gains(len(src), tuple(args.gain), tuple(args.wb), args.seed)
    gains[list(src.test_indices)] = 1.0
    reference = object_color(src)
    data = args.out / "data"
    write_exposure_dataset(src, data, gains, train, backdrop)
    print(f"{data}: {len(train)} training views with exposure x white balance gains "
          f"{gains[train].mean(1).min():.2f}-{gains[train].mean(1).max():.2f} (mean {gains[train].mean():.3f}), "
          f"{len(src.test_indices)} test views unmodified, {int(src.cameras.width[0])} px")
    scene, bg_info = load_posed(data, args.background)
    print(f"background: {bg_info}")
    rows = []
    for mode in modes:
        if mode == "clean":
            clean_dir = args.out / "data_clean"
            write_exposure_dataset(src, clean_dir, gains, [], backdrop)
            sc, _ = load_posed(clean_dir, args.background)
        else:
            sc = scene
        cfg = preset(args.preset, max_steps=args.max_steps, appearance="on" if mode == "on" else "off", **overrides)
        row = fit_one(mode, sc, cfg, args.out, gains if mode == "on" else None, reference)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print(f"{'fit':<7} {'full PSNR':>9} {'full SSIM':>9} {'half PSNR':>9} {'half SSIM':>9} {'fit s':>7}  gains corr")
    for r in rows:
        print(f"{r['name']:<7} {r['full_psnr']:>9.2f} {r['full_ssim']:>9.4f} {r['half_psnr']:>9.2f} "
              f"{r['half_ssim']:>9.4f} {r['fit_seconds']:>7.0f}  {r.get('gain_corr', '')}")
    (args.out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                       "background": bg_info, "rows": rows}, indent=2))
    print(f"wrote {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
