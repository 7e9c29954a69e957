"""CUDA backend: a thin adapter over ``gsplat.rasterization`` (imported lazily, only when used), and
the check that decides whether gsplat can be used at all.

gsplat shares recon3d's conventions (OpenCV camera axes, world-to-camera ``viewmats``, pixel centers
at +0.5, wxyz quaternions, SH ordering/constants of 3DGS, alpha clamp 0.999, skip below 1/255,
termination at T <= 1e-4, 0.3 px low-pass), so the adapter only renames arguments and reshapes the
outputs. Known differences with the PyTorch backend:
  * gsplat culls with a 3-sigma box (square before gsplat 1.5, opacity-aware rectangle from 1.5) and
    whole 16 px tiles, the PyTorch backend with the exact ``alpha >= 1/255`` support; images agree to
    float rounding except at the faint fringe (alpha ~ 1/255) of very opaque Gaussians;
  * ``radii`` from gsplat >= 1.5 are per-axis (C, N, 2); they are reduced to their max here.

Usable or not (:func:`gsplat_status`)
-------------------------------------
``import gsplat`` working proves little: the registry's gsplat is a pure-Python wheel whose CUDA
extension is compiled on first use (needs a CUDA build of torch, ``nvcc``, ``ninja`` and a C++
compiler), and a build or load failure only shows at the first rasterization. So "usable" means:
gsplat imports, its CUDA extension loads, and a tiny forward + backward rasterization on the device
succeeds and agrees with the PyTorch backend. The answer is computed once per process and device and
cached; the first check can take minutes when it has to compile the extension (``make setup`` does
that once, see ``scripts/gsplat_setup.py``; the build is cached in the environment).

Before importing gsplat, :func:`prepare_build_env` points torch's extension builder at what
``scripts/bootstrap.sh`` installed into this Python environment (``<venv>/cuda``, the CUDA
compiler from the registry, and ``<venv>/torch_extensions``, the build cache), unless ``CUDA_HOME``
or ``TORCH_EXTENSIONS_DIR`` are already set: a user's own toolkit and cache always win.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from .gaussians import Gaussians

log = logging.getLogger(__name__)

#: what to do about an unusable gsplat (the set-up script installs a compatible torch/toolkit and builds it)
FIX_HINT = ("run ./scripts/bootstrap.sh on the GPU machine (it installs a CUDA torch, nvcc and ninja and "
            "builds gsplat once), or pass --backend torch")


class GsplatUnavailableError(ValueError):
    """The ``gsplat`` backend was asked for explicitly but cannot rasterize on this device (gsplat
    missing, its CUDA extension does not build or load, or the tensors are not on a CUDA device).
    The message is one line: what failed and how to fix it."""


@dataclass(frozen=True)
class GsplatStatus:
    """Outcome of the gsplat check for one device.

    Attributes:
        usable: gsplat rendered the probe scene on ``device`` and agreed with the PyTorch backend.
        device: the device checked (``"cuda:0"``, ...).
        reason: one line saying why not (empty when usable).
        version: ``gsplat.__version__`` when it imports, else None.
        seconds: time the check took (includes the CUDA build when it had to compile).
    """

    usable: bool
    device: str
    reason: str = ""
    version: Optional[str] = None
    seconds: float = 0.0

    def describe(self) -> str:
        """One line for logs and the set-up script."""
        if self.usable:
            return f"gsplat {self.version} usable on {self.device}"
        return f"gsplat unusable on {self.device}: {self.reason}"


_STATUS: dict[str, GsplatStatus] = {}
_WARNED: set[str] = set()
_LOCK = threading.Lock()


def _device_key(device) -> torch.device:
    dev = torch.device("cuda" if device is None else device)
    if dev.type == "cuda" and dev.index is None:
        try:
            dev = torch.device("cuda", torch.cuda.current_device())
        except Exception:  # noqa: BLE001 - no CUDA at all: keep "cuda:0"; the check reports it
            dev = torch.device("cuda", 0)
    return dev


def prepare_build_env() -> None:
    """Point torch's JIT extension builder at the toolkit and build cache of this Python environment.

    ``scripts/bootstrap.sh`` installs the CUDA compiler from the registry under ``<sys.prefix>/cuda``
    (only when the machine has no ``nvcc``) and keeps gsplat's build under
    ``<sys.prefix>/torch_extensions``. Sets ``CUDA_HOME`` / ``TORCH_EXTENSIONS_DIR`` to those when
    they exist and the variables are unset, and puts the environment's ``ninja`` on ``PATH`` when
    none is there; never overrides a user's choice.
    """
    prefix = Path(sys.prefix)
    toolkit = prefix / "cuda"
    if not (os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")) and (toolkit / "bin" / "nvcc").exists():
        os.environ["CUDA_HOME"] = str(toolkit)
        cpp = sys.modules.get("torch.utils.cpp_extension")
        if cpp is not None:  # imported earlier, it cached its own guess (None, or /usr/local from a wrapper)
            cpp.CUDA_HOME = str(toolkit)
    cache = prefix / "torch_extensions"
    if not os.environ.get("TORCH_EXTENSIONS_DIR") and cache.is_dir():
        os.environ["TORCH_EXTENSIONS_DIR"] = str(cache)
    # torch runs `ninja` from PATH (also to load an extension built before); the registry's ninja sits
    # in the environment's bin folder, which is not on PATH when .venv/bin/recon3d runs without activation
    if shutil.which("ninja") is None:
        for d in (Path(sys.executable).parent, prefix / "bin"):
            if (d / "ninja").exists():
                os.environ["PATH"] = f"{d}{os.pathsep}{os.environ.get('PATH', '')}"
                break


def _one_line(e: BaseException, limit: int = 240) -> str:
    text = " ".join(str(e).split()) or "(no message)"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(e).__name__}: {text}"


def _explain(e: BaseException) -> str:
    """One line for a failed probe: the final error, plus the deepest informative cause.

    A failed JIT build of gsplat surfaces as ``ImportError: .../gsplat_cuda.so: cannot open shared
    object file`` raised while handling the real problem (e.g. ``OSError: CUDA_HOME environment
    variable is not set`` with a CPU-only torch, or a compiler error); gsplat's own retry after the
    ``TypeError: _jit_compile() missing ...`` of torch >= 2.7 is part of that chain and not a cause.
    """
    chain, seen, cur = [], set(), e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    causes = [c for c in chain[1:] if not (isinstance(c, TypeError) and "_jit_compile() missing" in str(c))]
    text = _one_line(e)
    if causes:
        text += f" (caused by {_one_line(causes[-1], 200)})"
    backend = sys.modules.get("gsplat.cuda._backend")
    if backend is not None and getattr(backend, "_C", object()) is None:
        text += "; gsplat found no CUDA toolkit (nvcc) to build its extension"
    return text


def _probe_scene(device: torch.device):
    """A tiny scene on ``device``: 3 Gaussians seen by one 32 x 24 camera, leaf tensors with gradients."""
    f32 = dict(dtype=torch.float32, device=device)
    means = torch.tensor([[0.0, 0.0, 3.0], [0.3, -0.2, 3.5], [-0.4, 0.1, 4.0]], **f32)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.9, 0.1, 0.2, 0.0], [0.8, 0.0, 0.3, 0.1]], **f32)
    scales = torch.tensor([[0.2, 0.15, 0.1], [0.1, 0.25, 0.1], [0.3, 0.1, 0.2]], **f32)
    opacities = torch.tensor([0.7, 0.5, 0.8], **f32)
    colors = torch.tensor([[0.9, 0.2, 0.1], [0.1, 0.8, 0.3], [0.2, 0.3, 0.9]], **f32)
    params = [t.requires_grad_() for t in (means, quats, scales, opacities, colors)]
    viewmats = torch.eye(4, **f32)[None]
    Ks = torch.tensor([[[30.0, 0.0, 16.0], [0.0, 30.0, 12.0], [0.0, 0.0, 1.0]]], **f32)
    return Gaussians(*params), viewmats, Ks, 32, 24


def _probe(device: torch.device) -> None:
    """Raise unless gsplat renders (forward and backward) the probe scene on ``device`` like the
    PyTorch backend does."""
    from contextlib import ExitStack

    from .rasterize_torch import rasterize_torch

    with ExitStack() as stack:
        # the first rasterize() of a process may come from a no-grad / inference-mode / autocast region
        # (a render, an evaluation): the probe needs gradients, float32 and the probed device current
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(torch.enable_grad())
        for kind in {device.type, "cpu"}:
            stack.enter_context(torch.autocast(kind, enabled=False))
        if device.type == "cuda" and device.index is not None and torch.cuda.device_count() > device.index:
            stack.enter_context(torch.cuda.device(device))
        g, viewmats, Ks, W, H = _probe_scene(device)
        out = rasterize_gsplat(g, viewmats, Ks, W, H)
        loss = out["colors"].sum() + out["alphas"].sum()
        loss.backward()
        grad = g.means.grad
        if grad is None or not bool(torch.isfinite(grad).all()) or not bool(torch.isfinite(out["colors"]).all()):
            raise RuntimeError("gsplat's probe rasterization gave no finite gradient")
        with torch.no_grad():
            ref = rasterize_torch(g.detach(), viewmats, Ks, W, H)
            err = float((out["colors"].detach() - ref["colors"]).abs().max())
            peak = float(ref["alphas"].max())
    if not err < 2e-2 or peak < 0.3:
        raise RuntimeError(f"gsplat's probe image differs from the torch rasterizer's by {err:.3g} (max alpha {peak:.2f})")


def gsplat_status(device=None, *, refresh: bool = False) -> GsplatStatus:
    """Whether the gsplat backend works on ``device`` (default: the current CUDA device); see the
    module docstring. Cached per process and device (``refresh=True`` checks again)."""
    dev = _device_key(device)
    key = str(dev)
    with _LOCK:
        if not refresh and key in _STATUS:
            return _STATUS[key]
        t0 = time.perf_counter()
        version = None
        if dev.type != "cuda":
            status = GsplatStatus(False, key, f"gsplat renders CUDA tensors only, not {dev.type}")
        elif not torch.cuda.is_available():
            why = "this torch is a CPU-only build" if torch.version.cuda is None else "none is visible"
            status = GsplatStatus(False, key, f"no CUDA device: {why}")
        elif 0 < torch.cuda.device_count() <= (dev.index or 0):
            status = GsplatStatus(False, key, f"no such CUDA device ({torch.cuda.device_count()} visible)")
        else:
            prepare_build_env()
            try:
                import gsplat
            except Exception as e:  # noqa: BLE001 - not installed, or broken at import
                reason = ("gsplat is not installed" if isinstance(e, ImportError) and getattr(e, "name", None) == "gsplat"
                          else f"import gsplat failed: {_explain(e)}")
                status = GsplatStatus(False, key, reason)
            else:
                version = str(getattr(gsplat, "__version__", "?"))
                try:
                    _probe(dev)
                    status = GsplatStatus(True, key, "", version)
                except Exception as e:  # noqa: BLE001 - build, load or kernel failure: all mean "unusable"
                    status = GsplatStatus(False, key, f"its CUDA extension failed: {_explain(e)}", version)
        status = GsplatStatus(status.usable, status.device, status.reason, status.version or version,
                              round(time.perf_counter() - t0, 2))
        _STATUS[key] = status
        log.debug("%s (checked in %.1f s)", status.describe(), status.seconds)
        return status


def gsplat_available(device=None) -> bool:
    """True when the gsplat backend really works on ``device`` (default: the current CUDA device):
    gsplat imports, its CUDA extension loads and a tiny rasterization succeeds (:func:`gsplat_status`;
    checked once per process and device)."""
    return gsplat_status(device).usable


def reset_gsplat_status() -> None:
    """Forget the cached checks and warnings (tests; after installing or building gsplat in-process)."""
    with _LOCK:
        _STATUS.clear()
        _WARNED.clear()


def warn_fallback(status: GsplatStatus) -> None:
    """The one-line warning of ``backend='auto'`` falling back to the torch rasterizer (once per device)."""
    with _LOCK:
        if status.device in _WARNED:
            return
        _WARNED.add(status.device)
    log.warning("gsplat backend unusable on %s (%s); using the torch rasterizer on %s instead (slower). Fix: %s",
                status.device, status.reason, status.device, FIX_HINT)


def require_gsplat(device) -> GsplatStatus:
    """The status of a usable gsplat on ``device``; :class:`GsplatUnavailableError` (one line) otherwise."""
    dev = torch.device(device)
    if dev.type != "cuda":
        raise GsplatUnavailableError(
            f"the gsplat backend needs CUDA tensors, these are on {dev.type}; use backend 'torch' (or 'auto') on CPU")
    status = gsplat_status(dev)
    if not status.usable:
        raise GsplatUnavailableError(f"backend 'gsplat' is unusable on {status.device}: {status.reason}. Fix: {FIX_HINT}")
    return status


def rasterize_gsplat(
    gaussians: Gaussians,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    sh_degree: Optional[int] = None,
    near: float = 0.01,
    far: float = 1e10,
    backgrounds: Optional[Tensor] = None,
    antialiased: bool = False,
    tile_size: Optional[int] = None,
    eps2d: float = 0.3,
    absgrad: bool = False,
) -> dict:
    """Render ``gaussians`` (see :class:`.gaussians.Gaussians`; float32 CUDA tensors) with gsplat.
    Arguments and outputs as :func:`recon3d.core.gaussians.rasterize` (a dict of the ``RasterOutput``
    fields); ``absgrad`` is gsplat's option of the same name. Does not check that gsplat works: the
    ``rasterize`` entry point does (:func:`require_gsplat`)."""
    prepare_build_env()
    try:
        from gsplat import rasterization
    except Exception as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the 'gsplat' backend needs the gsplat package (pip install 'recon3d[cuda]') and a CUDA "
            f"device; import failed with: {e!r}. Use backend='torch' for the CPU rasterizer."
        ) from e

    g = gaussians
    if backgrounds is not None:
        backgrounds = backgrounds.to(g.means)
    render, alphas, meta = rasterization(
        means=g.means,
        quats=g.quats,
        scales=g.scales,
        opacities=g.opacities,
        colors=g.colors,
        viewmats=viewmats,
        Ks=Ks,
        width=int(width),
        height=int(height),
        near_plane=near,
        far_plane=far,
        eps2d=eps2d,
        sh_degree=sh_degree,
        packed=False,  # dense (C, N, ...) meta: means2d is a (C, N, 2) tensor that can retain_grad
        tile_size=int(tile_size or 16),
        backgrounds=backgrounds,
        render_mode="RGB+ED",
        rasterize_mode="antialiased" if antialiased else "classic",
        absgrad=absgrad,
    )
    radii = meta["radii"]
    if radii.dim() == 3:  # gsplat >= 1.5: per-axis radii
        radii = radii.max(dim=-1).values
    radii = radii.to(torch.int32)
    return dict(
        colors=render[..., :3],
        alphas=alphas,
        depths=render[..., 3:4],
        means2d=meta["means2d"],
        radii=radii,
        visible=radii > 0,
        depths_per_gaussian=meta["depths"],
    )
