#!/usr/bin/env python
"""Regenerate the bundled sample scene ``data/sample_scene/`` (Blender/NeRF-synthetic layout).

    python scripts/make_sample_scene.py            # 48 views, 256 px, seed 0 (about 30 s on 2 cores)
    python scripts/make_sample_scene.py --out /tmp/scene --views 16 --size 128

Compact ground truth to keep the folder at a few MB: depth as 16-bit PNG (value = depth * 1000,
world units), normals as 8-bit PNG. See :mod:`recon3d.io.synthetic` for the layout and units.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from recon3d.io.synthetic import generate_scene

REPO = Path(__file__).resolve().parents[1]


def folder_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "data" / "sample_scene")
    ap.add_argument("--views", type=int, default=48)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--object", default="random", help="random | sphere | box | torus | cylinder | cone")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    out = generate_scene(args.out, num_views=args.views, size=args.size, seed=args.seed, object=args.object,
                         depth_format="png16", normal_format="png", overwrite=True, compress_level=9,
                         image_dir="images")
    dt = time.perf_counter() - t0
    n_files = sum(1 for f in out.rglob("*") if f.is_file())
    print(f"wrote {out}: {args.views} views at {args.size}x{args.size}, {n_files} files, "
          f"{folder_size_mb(out):.2f} MB in {dt:.1f} s")


if __name__ == "__main__":
    main()
