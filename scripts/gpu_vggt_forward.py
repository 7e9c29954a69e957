#!/usr/bin/env python
"""Forward pass of VGGT at a named size with random weights: seconds and peak memory per frame count.

    python scripts/gpu_vggt_forward.py --size published --px 518 --frames 1,4,8 --dtype bf16 --json F
    python scripts/gpu_vggt_forward.py --size tiny --px 64 --frames 2 --device cpu --dtype fp32   # CPU smoke

The model is built directly on the device (the published size has 1.19 B parameters: ~4.8 GB in
float32), run under ``torch.autocast`` (bf16/fp16) with float32 weights as the official inference
does, on random images in [0, 1]. Per frame count: one warm-up pass, then the mean of ``--reps`` timed
passes (``torch.cuda.synchronize`` around each) and the peak allocated memory of those passes; the
outputs' shapes and finiteness are checked. No weights are downloaded (none may be, here).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="published", choices=("tiny", "small", "published"))
    ap.add_argument("--px", type=int, default=518, help="square image size (a multiple of the patch size)")
    ap.add_argument("--frames", default="1,4,8", help="comma-separated frame counts S")
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "fp16", "fp32"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    frames = [int(s) for s in args.frames.split(",") if s.strip()]

    import torch

    from recon3d.feedforward.vggt.model import VGGT, vggt_config

    dev = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu")
    cuda = dev.type == "cuda"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[args.dtype]
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.device(dev):
        model = VGGT(vggt_config(args.size))
    model.aggregator.reset_normalization(device=dev)
    model.eval()
    build_s = time.perf_counter() - t0
    res = {"size": args.size, "px": args.px, "dtype": args.dtype, "device": str(dev),
           "gpu": torch.cuda.get_device_name(dev) if cuda else None,
           "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
           "build_seconds": round(build_s, 2), "runs": []}
    ok = True

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    for S in frames:
        run = {"frames": S}
        try:
            x = torch.rand(1, S, 3, args.px, args.px, device=dev)
            amp = torch.autocast(dev.type, dtype=dtype) if dtype is not None else nullcontext()
            with torch.inference_mode(), amp:
                out = model(x)  # warm-up (kernel selection, allocator)
                sync()
                if cuda:
                    torch.cuda.reset_peak_memory_stats(dev)
                times = []
                for _ in range(max(1, args.reps)):
                    t = time.perf_counter()
                    out = model(x)
                    sync()
                    times.append(time.perf_counter() - t)
            run["seconds"] = round(sum(times) / len(times), 4)
            run["seconds_min"] = round(min(times), 4)
            if cuda:
                run["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
            shapes_ok = (tuple(out["depth"].shape) == (1, S, args.px, args.px, 1)
                         and tuple(out["pose_enc"].shape) == (1, S, 9))
            finite = all(bool(torch.isfinite(out[k].float()).all()) for k in ("depth", "world_points", "pose_enc"))
            run["output_dtype"] = str(out["depth"].dtype).replace("torch.", "")
            run["ok"] = bool(shapes_ok and finite)
            ok &= run["ok"]
            del out, x
        except Exception as e:  # noqa: BLE001 - e.g. out of memory at a large S: recorded, next S tried
            run["ok"] = False
            run["error"] = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
            ok = False
            if cuda:
                torch.cuda.empty_cache()
        res["runs"].append(run)
    res["ok"] = bool(ok)
    text = json.dumps(res, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
