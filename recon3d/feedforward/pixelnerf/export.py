"""Write the shipped pixelNeRF checkpoint from a trainer ``final.pt``: fp16 weights, calibrated mesh level.

    python -m recon3d.feedforward.pixelnerf.export outputs/train/pixelnerf/final.pt \\
        --calibration bench.json --out data/checkpoints/pixelnerf.pt

``--calibration`` reads ``calibration.mesh_threshold`` from the JSON ``scripts/bench_pixelnerf.py
--calibrate-threshold N --out bench.json`` wrote (or pass ``--mesh-threshold`` directly). The result
loads with :func:`recon3d.feedforward.registry.load_model` (weights back to fp32).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


from recon3d.feedforward.base import load_payload
from recon3d.io.errors import DataError


def export_shipped(src: str | Path, out: str | Path, mesh_threshold: float) -> dict:
    """Read trainer payload ``src``, store fp16 weights and ``mesh_threshold``, write ``out`` atomically."""
    from recon3d.runtime.checkpoint import atomic_torch_save

    from .model import PixelNeRF

    payload = load_payload(src)
    if payload.get("format") != "recon3d-feedforward" or payload.get("model") != "pixelnerf":
        raise DataError(src, "not a recon3d pixelnerf checkpoint (trainer final.pt)")
    payload = PixelNeRF.half_precision_payload(payload)
    payload["config"] = dict(payload["config"], mesh_threshold=float(mesh_threshold))
    PixelNeRF.from_payload(payload)  # loads strictly, or raises before anything is written
    atomic_torch_save(payload, out)
    return payload


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("src", type=Path, help="trainer final.pt")
    p.add_argument("--out", type=Path, default=Path("data/checkpoints/pixelnerf.pt"))
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--mesh-threshold", type=float, help="density iso-level, 1/world units")
    g.add_argument("--calibration", type=Path, help="bench_pixelnerf.py --out JSON with a calibration entry")
    args = p.parse_args(argv)
    level = args.mesh_threshold
    if level is None:
        try:
            level = float(json.loads(args.calibration.read_text())["calibration"]["mesh_threshold"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(args.calibration, f"no calibration.mesh_threshold ({type(e).__name__}: {e})") from e
    payload = export_shipped(args.src, args.out, level)
    size = args.out.stat().st_size / 1e6
    print(f"wrote {args.out} ({size:.2f} MB, fp16 weights, mesh_threshold {level:.3g}); "
          f"training: {payload.get('train', {}).get('steps')} steps, last val {payload.get('train', {}).get('last_val')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
