"""Build and load recon3d's compiled CPU kernels (``recon3d/core/csrc/*.cpp``, one shared library): the
Gaussian rasterizer (``raster_cpu.cpp``, see :mod:`recon3d.core.gaussians.rasterize_cpp`) and the hash-grid
encoding (``hashgrid_cpu.cpp``, see :mod:`recon3d.core.encodings`) and the SSIM loss (``ssim_cpu.cpp``, see
:func:`recon3d.core.metrics.ssim`).

The kernels are plain C++ with OpenMP behind a C ABI, compiled with the system compiler (``g++`` or
``$CXX``) and loaded with :mod:`ctypes`. Why this and not numba or a PyTorch C++ extension: it needs
nothing from the package registries (numba would add a ~40 MB LLVM and compile every kernel on first
use; torch's extension helpers need ninja, compile PyTorch's headers for a minute and break across
torch versions, see gsplat's JIT build), it builds in about 2 seconds, and it does not depend on the
torch ABI, so any torch (CPU or CUDA build) can call it.

Where the library goes: ``$RECON3D_NATIVE_DIR``, else ``<sys.prefix>/share/recon3d-native`` (inside
the virtual environment, made at set-up by ``python -m recon3d.core.native``), else
``~/.cache/recon3d/native``. The file name carries a hash of the sources, the compiler command and the
CPU's instruction-set flags (it is compiled with ``-march=native``), so an edited source or a copied
environment on another CPU rebuilds. A missing library is built on first use (once, under a file
lock, written atomically), with a log line.

:func:`native_status` says whether the library is usable and, if not, why (no compiler, compile
error); it is checked once per process.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

SOURCE_DIR = Path(__file__).with_name("csrc")
SOURCES = sorted(SOURCE_DIR.glob("*.cpp"))
ENV_DIR = "RECON3D_NATIVE_DIR"
ENV_CXX = "CXX"
FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17"]
ABI_VERSION = 1


@dataclass(frozen=True)
class NativeStatus:
    """Whether the compiled kernels can be used: ``usable``, the loaded ``lib`` (or None), and
    ``reason`` (a one-line explanation with the fix) when it cannot."""

    usable: bool
    lib: Optional[ctypes.CDLL]
    path: Optional[Path]
    reason: str = ""


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _compiler() -> Optional[str]:
    cxx = os.environ.get(ENV_CXX)
    if cxx:
        return cxx
    for name in ("g++", "c++", "clang++"):
        if shutil.which(name):
            return name
    return None


def _candidate_dirs() -> list[Path]:
    if os.environ.get(ENV_DIR):
        return [Path(os.environ[ENV_DIR])]
    return [Path(sys.prefix) / "share" / "recon3d-native", Path.home() / ".cache" / "recon3d" / "native"]


def library_name(cxx: str) -> str:
    h = hashlib.sha256()
    for src in SOURCES:
        h.update(src.name.encode() + b"\0" + src.read_bytes())
    h.update(" ".join([cxx, *FLAGS, platform.machine(), _cpu_flags()]).encode())
    return f"recon3d_cpu-{h.hexdigest()[:16]}.so"


def build(verbose: bool = False) -> Path:
    """Compile the library (if not already there) and return its path. Raises ``RuntimeError`` with
    a one-line message when no compiler is found or the build fails."""
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (install g++, e.g. `apt-get install g++`, or set CXX)")
    name = library_name(cxx)
    errors = []
    for d in _candidate_dirs():
        target = d / name
        if target.exists():
            return target
        try:
            d.mkdir(parents=True, exist_ok=True)
            with open(d / ".build.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if target.exists():  # another process built it while we waited
                    return target
                fd, tmp = tempfile.mkstemp(dir=d, suffix=".so.tmp")
                os.close(fd)
                cmd = [*shlex.split(cxx), *FLAGS, *(str(src) for src in SOURCES), "-o", tmp]
                t0 = time.perf_counter()
                log.info("compiling recon3d's CPU kernels: %s", " ".join(cmd))
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0:
                    os.unlink(tmp)
                    first = (res.stderr.strip().splitlines() or ["(no output)"])[0]
                    raise RuntimeError(f"compiling {SOURCE_DIR} with {cxx} failed: {first}")
                os.replace(tmp, target)
                for old in d.glob("recon3d_cpu-*.so"):  # builds of earlier sources (safe on Linux if mapped)
                    if old != target:
                        old.unlink(missing_ok=True)
                msg = f"compiled recon3d's CPU kernels in {time.perf_counter() - t0:.1f} s: {target}"
                (print if verbose else log.info)(msg)
                return target
        except PermissionError as exc:  # read-only environment: try the next place
            errors.append(f"{d}: {exc.strerror}")
    raise RuntimeError(f"cannot write the compiled kernels anywhere ({'; '.join(errors)}); set {ENV_DIR}")


_P, _I32, _I64, _F64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_double
#: argument types of the typed entry points (each exists as NAME_f32 and NAME_f64); all return void
_TYPED = {
    "rc_forward": [_I32] * 4 + [_P] * 7 + [_I32],
    "rc_backward": [_I32] * 4 + [_P] * 8 + [_I32],
    "rc_reduce": [_I64] + [_P] * 4 + [_I32],
    "rc_project_fwd": [_I64, _I32] + [_P] * 5 + [_I32] * 2 + [_P] * 2 + [_I32] * 2 + [_F64] * 3 + [_I32]
                      + [_P] * 8 + [_I32],
    "rc_project_bwd": [_I64, _I32] + [_P] * 5 + [_I32] * 2 + [_P] * 2 + [_I32] * 2 + [_F64] * 3 + [_I32]
                      + [_P] * 10 + [_I32],
    "rc_gather": [_I64] + [_P] * 7 + [_I32],
    "rc_scatter": [_I64] + [_P] * 7 + [_I32],
    "hg_forward": [_I64, _P, _I32, _I32] + [_P] * 5 + [_I64, _P, _I32],
    "hg_backward": [_I64, _P, _I32, _I32] + [_P] * 4 + [_I64, _P, _P, _I32],
    "ssim_forward": [_I32] * 3 + [_P] * 3 + [_I32, _F64, _F64, _P, _P, _I32],
    "ssim_backward": [_I32] * 3 + [_P] * 3 + [_I32, _F64, _F64, _P, _F64, _P, _I32],
}
#: untyped entry points: (return type, argument types)
_PLAIN = {
    "rc_abi_version": (_I32, []),
    "rc_max_tile": (_I32, []),
    "rc_max_threads": (_I32, []),
    "rc_bin_count": (_I64, [_I64, _P, _P, _I32, _I32, _I32, _P, _P]),
    "rc_bin_fill": (None, [_I64, _P, _P, _I32, _I32, _I32, _P, _P, _P]),
}


def _bind(lib: ctypes.CDLL) -> None:
    for name, (restype, argtypes) in _PLAIN.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    for name, argtypes in _TYPED.items():
        for suffix in ("f32", "f64"):
            fn = getattr(lib, f"{name}_{suffix}")
            fn.restype, fn.argtypes = None, argtypes


_STATUS: Optional[NativeStatus] = None


def native_status() -> NativeStatus:
    """Build (first time) and load the library; cached per process. Never raises."""
    global _STATUS
    if _STATUS is None:
        try:
            path = build()
            lib = ctypes.CDLL(str(path))
            _bind(lib)
            if lib.rc_abi_version() != ABI_VERSION:
                raise RuntimeError(f"{path} has ABI {lib.rc_abi_version()}, expected {ABI_VERSION}")
            _STATUS = NativeStatus(True, lib, path)
        except (RuntimeError, OSError) as exc:
            _STATUS = NativeStatus(False, None, None, str(exc))
    return _STATUS


def native_available() -> bool:
    return native_status().usable


def main() -> int:
    """``python -m recon3d.core.native``: build at set-up and say whether it works."""
    logging.basicConfig(level=logging.INFO, format="[native] %(message)s")
    try:
        build(verbose=True)  # prints the compile time when it compiles
    except RuntimeError:
        pass  # native_status() reports the same reason
    status = native_status()
    if not status.usable:
        print(f"[native] the compiled CPU kernels are NOT usable: {status.reason}; recon3d falls back to the "
              "slower PyTorch code on CPU", file=sys.stderr)
        return 1
    print(f"[native] compiled CPU kernels ok ({status.lib.rc_max_threads()} OpenMP threads): {status.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
