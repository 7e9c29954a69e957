#!/usr/bin/env python
"""GPU half of ``make setup`` (called by scripts/bootstrap.sh on machines with an NVIDIA GPU).

    python scripts/gsplat_setup.py plan               # what the toolkit situation is (shell-readable)
    python scripts/gsplat_setup.py toolkit            # <venv>/cuda from the registry's CUDA packages
    python scripts/gsplat_setup.py check [--json F]   # build (once) + probe gsplat, say if it is usable

``plan`` prints ``KEY=value`` lines for the shell: the torch CUDA version, whether a complete
toolkit with an ``nvcc`` of torch's CUDA major version exists where torch's extension builder looks
(``CUDA_HOME``, the folder above the ``nvcc`` on ``PATH``, ``/usr/local/cuda``), whether gsplat is a prebuilt wheel (no JIT build needed) and the pip requirement that brings
a matching compiler from the registry (``cuda-toolkit[nvcc,...]`` of the exact version the installed
torch depends on; CUDA 13 only: the registry's CUDA 12 ``nvidia-cuda-nvcc-cu12`` wheels hold ptxas
but no ``nvcc``).

``toolkit`` lays out ``<sys.prefix>/cuda`` (bin, include, nvvm as links into the registry's
``nvidia/cu13`` package folder, and lib64 with the unversioned ``libcudart.so`` the linker wants), the
``CUDA_HOME`` that :func:`recon3d.core.gaussians.rasterize_gsplat.prepare_build_env` uses when the
user has set none.

``check`` builds gsplat's CUDA extension when it is not built yet (gsplat compiles it at first use;
the build lands in ``<sys.prefix>/torch_extensions``, cached with the environment), then runs the
same check as ``--backend auto`` (a tiny rasterization on the GPU, compared with the torch
rasterizer) and prints one line saying whether the gsplat backend is usable, with the time it took.
Exit status 0 when usable, 3 when not (bootstrap goes on either way: fits then use the torch
rasterizer on the GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLKIT_EXTRAS = "nvcc,crt,nvvm,cccl,cudart"


def _say(msg: str) -> None:
    print(f"[bootstrap] {msg}", flush=True)


def nvcc_release(nvcc: str | os.PathLike) -> str | None:
    """``'13.0'`` from ``nvcc --version``, None when it does not run."""
    try:
        out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"release (\d+\.\d+)", out)
    return m.group(1) if m else None


def torch_cuda_home() -> Path | None:
    """The CUDA_HOME torch's extension builder will use: $CUDA_HOME/$CUDA_PATH, else the folder above
    the ``nvcc`` on PATH, else /usr/local/cuda (torch.utils.cpp_extension._find_cuda_home's order)."""
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home:
        return Path(home)
    found = shutil.which("nvcc")
    if found:
        return Path(found).parent.parent
    p = Path("/usr/local/cuda")
    return p if p.exists() else None


def toolkit_complete(home: Path | None) -> bool:
    """``home`` has what a JIT build of gsplat needs: bin/nvcc and the CUDA runtime headers. (A
    ``/usr/local/bin/nvcc`` wrapper script makes torch guess CUDA_HOME=/usr/local, which has no
    headers: that toolkit does not count.)"""
    return bool(home) and (home / "bin" / "nvcc").exists() and (home / "include" / "cuda_runtime.h").exists()


def torch_toolkit_requirement(torch_cuda: str) -> str:
    """The pip requirement of a CUDA compiler matching the installed torch: the ``cuda-toolkit``
    version torch itself depends on (torch >= 2.11 names it), else the same major.minor series."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        reqs = requires("torch") or []
    except PackageNotFoundError:
        reqs = []
    for r in reqs:
        m = re.match(r"\s*cuda-toolkit(\[[^\]]*\])?\s*==\s*([0-9.]+)", r)
        if m:
            return f"cuda-toolkit[{TOOLKIT_EXTRAS}]=={m.group(2)}"
    return f"cuda-toolkit[{TOOLKIT_EXTRAS}]=={torch_cuda}.*"


def registry_toolkit_root() -> Path | None:
    """The ``nvidia/cuXX`` folder of the registry's CUDA packages that holds ``bin/nvcc``, if installed."""
    try:
        import nvidia  # namespace package of NVIDIA's wheels
    except ImportError:
        return None
    for base in getattr(nvidia, "__path__", []):
        for cand in sorted(Path(base).glob("cu[0-9]*"), reverse=True):
            if (cand / "bin" / "nvcc").exists():
                return cand
    return None


def gsplat_prebuilt() -> bool:
    """gsplat from gsplat's own wheel index ships its compiled extension (``gsplat.csrc``): no JIT build."""
    import importlib.util

    try:
        return importlib.util.find_spec("gsplat.csrc") is not None
    except (ImportError, ValueError):
        return False


def cmd_plan(_args) -> int:
    import torch

    torch_cuda = torch.version.cuda or ""

    def release_of(home):
        return nvcc_release(home / "bin" / "nvcc") if toolkit_complete(home) else None

    def same_major(rel):
        return bool(torch_cuda and rel and rel.split(".")[0] == torch_cuda.split(".")[0])

    home = torch_cuda_home()
    rel = release_of(home)
    matching = same_major(rel)
    venv_home = Path(sys.prefix) / "cuda"
    if not matching and not (os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")):
        r2 = release_of(venv_home)  # laid out by an earlier run of `toolkit`
        if same_major(r2):
            home, rel, matching = venv_home, r2, True
    try:
        import importlib.util

        has_gsplat = importlib.util.find_spec("gsplat") is not None
    except (ImportError, ValueError):
        has_gsplat = False
    lines = {
        "TORCH_VERSION": torch.__version__,
        "TORCH_CUDA": torch_cuda,
        "CUDA_USABLE": int(bool(torch_cuda) and torch.cuda.is_available()),
        "CUDA_HOME_FOUND": str(home or ""),
        "NVCC_RELEASE": rel or "",
        "NVCC_MATCHES": int(matching),
        "GSPLAT_INSTALLED": int(has_gsplat),
        "GSPLAT_PREBUILT": int(has_gsplat and gsplat_prebuilt()),
        # the registry ships a complete nvcc only for CUDA 13 (nvidia/cu13); for CUDA 12 it has none
        "TOOLKIT_REQ": torch_toolkit_requirement(torch_cuda) if torch_cuda.startswith("13") else "",
    }
    for k, v in lines.items():
        print(f"{k}={shlex.quote(str(v))}")
    return 0


def make_toolkit(root: Path, dest: Path) -> Path:
    """``dest`` laid out as a CUDA_HOME over the registry's package folder ``root`` (see module doc)."""
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.exists():
        shutil.rmtree(dest)
    (dest / "lib64").mkdir(parents=True)
    for name in ("bin", "include", "nvvm"):
        if (root / name).exists():
            (dest / name).symlink_to(root / name, target_is_directory=True)
    for lib in sorted((root / "lib").iterdir()):
        (dest / "lib64" / lib.name).symlink_to(lib)
    cudart = sorted((root / "lib").glob("libcudart.so.*"))
    if cudart and not (dest / "lib64" / "libcudart.so").exists():
        (dest / "lib64" / "libcudart.so").symlink_to(cudart[0].name)  # -lcudart needs the unversioned name
    return dest


def cmd_toolkit(_args) -> int:
    root = registry_toolkit_root()
    if root is None:
        _say("no CUDA compiler package from the registry is installed (cuda-toolkit[nvcc,...])")
        return 1
    dest = make_toolkit(root, Path(sys.prefix) / "cuda")
    rel = nvcc_release(dest / "bin" / "nvcc")
    if rel is None:
        _say(f"{dest}/bin/nvcc does not run")
        return 1
    _say(f"CUDA compiler {rel} from the registry: CUDA_HOME={dest}")
    return 0


def _extension_built() -> bool:
    cache = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or Path(sys.prefix) / "torch_extensions")
    return any(cache.glob("**/gsplat_cuda*.so"))


def cmd_check(args) -> int:
    sys.path.insert(0, str(ROOT))
    if not os.environ.get("TORCH_EXTENSIONS_DIR"):
        try:  # the build cache lives with the environment (bootstrap.sh creates it too)
            (Path(sys.prefix) / "torch_extensions").mkdir(exist_ok=True)
        except OSError:
            pass
    from recon3d.core.gaussians.rasterize_gsplat import gsplat_status, prepare_build_env

    prepare_build_env()
    os.environ.setdefault("MAX_JOBS", str(max(1, (os.cpu_count() or 2))))
    import torch

    built = _extension_built() or gsplat_prebuilt()
    if torch.cuda.is_available() and not built:
        _say(f"building gsplat's CUDA extension (once; a few minutes with MAX_JOBS={os.environ['MAX_JOBS']}; "
             f"cached in {os.environ.get('TORCH_EXTENSIONS_DIR', '~/.cache/torch_extensions')})")
    t = time.perf_counter()
    status = gsplat_status("cuda")
    seconds = time.perf_counter() - t
    what = "loaded" if built else "built and loaded"
    if status.usable:
        _say(f"gsplat backend: USABLE (gsplat {status.version} on {status.device} {torch.cuda.get_device_name()}; "
             f"{what} in {seconds:.0f} s)")
    else:
        _say(f"gsplat backend: NOT usable ({status.reason}); fits on the GPU use the torch rasterizer "
             f"(slower). Checked in {seconds:.0f} s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "usable": status.usable, "device": status.device, "reason": status.reason, "version": status.version,
            "seconds": round(seconds, 1), "built_now": bool(status.usable and not built),
            "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "cuda_home": os.environ.get("CUDA_HOME"), "extensions_dir": os.environ.get("TORCH_EXTENSIONS_DIR"),
        }, indent=2))
    return 0 if status.usable else 3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("plan").set_defaults(fn=cmd_plan)
    sub.add_parser("toolkit").set_defaults(fn=cmd_toolkit)
    c = sub.add_parser("check")
    c.add_argument("--json", default=None, help="also write the status to this file")
    c.set_defaults(fn=cmd_check)
    args = ap.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
