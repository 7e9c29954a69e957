#!/usr/bin/env python
"""Run a Python script or module in this process and write its wall time and peak CUDA memory.

    python scripts/gpu_measure.py FIGURES.json -- scripts/bench_nerf.py DATA --minutes 2
    python scripts/gpu_measure.py FIGURES.json -- -m recon3d.cli train lrm --data D --out O

FIGURES.json gets ``{"rc", "wall_seconds", "peak_cuda_mb", "peak_cuda_reserved_mb", "device"}`` (the
peaks of torch's caching allocator over the whole run, None when CUDA was not used), also when the
program fails; the exit status is the program's. Used by ``scripts/gpu_check.py`` for the figures
that the benchmark scripts themselves do not print.
"""

from __future__ import annotations

import json
import runpy
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    out, target = Path(argv[0]), argv[2:]
    t0 = time.perf_counter()
    rc = 0
    try:
        if target[0] == "-m":
            sys.argv = [target[1], *target[2:]]
            runpy.run_module(target[1], run_name="__main__", alter_sys=True)
        else:
            script = Path(target[0]).resolve()
            sys.argv = [str(script), *target[1:]]
            sys.path.insert(0, str(script.parent))
            runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:  # argparse errors, sys.exit(main())
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if e.code not in (None, 0) and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - the figures are written for failed runs too
        import traceback

        traceback.print_exc()
        rc = 1
    finally:
        figures = {"rc": rc, "wall_seconds": round(time.perf_counter() - t0, 2), "peak_cuda_mb": None,
                   "peak_cuda_reserved_mb": None, "device": None}
        torch = sys.modules.get("torch")
        try:
            if torch is not None and torch.cuda.is_initialized():
                figures["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
                figures["peak_cuda_reserved_mb"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
                figures["device"] = torch.cuda.get_device_name()
        except Exception:  # noqa: BLE001 - a broken CUDA context must not hide the run's own result
            pass
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(figures, indent=2))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
