"""The gsplat backend choice, on CPU: a fake ``gsplat`` module stands in for the real one, and a faked
``torch.cuda.is_available`` for a GPU. The probe scene is built on CPU (``_probe_scene`` is patched),
everything else is the real code path of :func:`gsplat_status`, ``resolve_backend``,
``check_backend`` and ``rasterize``.

The failing fake reproduces what gsplat 1.5.3 does when its JIT build fails: ``import gsplat`` works,
the first rasterization raises ``ImportError: .../gsplat_cuda.so: cannot open shared object file``
while handling the build error (itself raised while handling gsplat's own retry after torch's
``_jit_compile`` signature ``TypeError``).
"""

from __future__ import annotations

import logging
import sys
import types

import pytest
import torch

from recon3d.core.gaussians import (
    ENV_BACKEND,
    Gaussians,
    GsplatUnavailableError,
    check_backend,
    gsplat_available,
    gsplat_status,
    rasterize,
    reset_gsplat_status,
    resolve_backend,
)
from recon3d.core.gaussians import rasterize_gsplat as rg
from recon3d.core.gaussians.rasterize_torch import rasterize_torch

CUDA0 = torch.device("cuda", 0)
SO = "/root/.cache/torch_extensions/py311_cu130/gsplat_cuda/gsplat_cuda.so"


def _jit_failure():
    """The exception chain of a failed gsplat JIT build (as seen with a CPU-only torch)."""
    try:
        try:
            try:
                raise TypeError("_jit_compile() missing 2 required positional arguments: 'verbose' and 'with_sycl'")
            except TypeError:
                raise OSError("CUDA_HOME environment variable is not set. Please set it to your CUDA install root.")
        except OSError:
            raise ImportError(f"{SO}: cannot open shared object file: No such file or directory")
    except ImportError as e:
        return e


def _working_rasterization(**kw):
    """gsplat.rasterization's interface, computed by the torch rasterizer (a gsplat that works)."""
    g = Gaussians(kw["means"], kw["quats"], kw["scales"], kw["opacities"], kw["colors"])
    out = rasterize_torch(g, kw["viewmats"], kw["Ks"], kw["width"], kw["height"], sh_degree=kw["sh_degree"],
                          near=kw["near_plane"], far=kw["far_plane"], backgrounds=kw["backgrounds"],
                          antialiased=kw["rasterize_mode"] == "antialiased", eps2d=kw["eps2d"])
    render = torch.cat([out["colors"], out["depths"]], dim=-1)
    return render, out["alphas"], {"radii": out["radii"][..., None].expand(-1, -1, 2), "means2d": out["means2d"],
                                   "depths": out["depths_per_gaussian"]}


class FakeGsplat(types.ModuleType):
    def __init__(self, behaviour: str):
        super().__init__("gsplat")
        self.__version__ = "1.5.3"
        self.calls = 0
        self.behaviour = behaviour

    def rasterization(self, **kw):
        self.calls += 1
        if self.behaviour == "jit-fails":
            raise _jit_failure()
        if self.behaviour == "no-toolkit":  # gsplat prints "No CUDA toolkit found" and leaves _C = None
            raise AttributeError("'NoneType' object has no attribute 'projection_ewa_3dgs_fused_fwd'")
        if self.behaviour == "wrong-image":
            render, alphas, meta = _working_rasterization(**kw)
            return render + 0.5, alphas, meta
        return _working_rasterization(**kw)


@pytest.fixture
def fake_gpu(monkeypatch):
    """A machine with 'a CUDA device' whose probe scene lives on CPU; cached checks forgotten."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(rg, "_probe_scene", lambda device: _cpu_probe_scene())
    monkeypatch.delenv(ENV_BACKEND, raising=False)
    reset_gsplat_status()
    yield
    reset_gsplat_status()


_real_probe_scene = rg._probe_scene


def _cpu_probe_scene():
    return _real_probe_scene(torch.device("cpu"))


def _install(monkeypatch, behaviour: str) -> FakeGsplat:
    fake = FakeGsplat(behaviour)
    monkeypatch.setitem(sys.modules, "gsplat", fake)
    return fake


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "gsplat" in r.getMessage()]


def test_jit_failure_means_unusable_with_the_real_cause(fake_gpu, monkeypatch):
    fake = _install(monkeypatch, "jit-fails")
    st = gsplat_status(CUDA0)
    assert not st.usable and st.version == "1.5.3" and st.device == "cuda:0"
    assert "cannot open shared object file" in st.reason
    assert "CUDA_HOME environment variable is not set" in st.reason  # the cause, not gsplat's TypeError retry
    assert "_jit_compile" not in st.reason
    assert "\n" not in st.reason
    assert not gsplat_available(CUDA0)
    assert fake.calls == 1  # checked once, then cached


def test_auto_falls_back_to_torch_with_one_warning(fake_gpu, monkeypatch, caplog):
    fake = _install(monkeypatch, "jit-fails")
    with caplog.at_level(logging.WARNING):
        assert resolve_backend("auto", CUDA0) == "torch"
        assert resolve_backend("auto", torch.device("cuda")) == "torch"  # bare "cuda" = the current device
        assert check_backend("auto", "cuda:0") == "torch"
    msgs = _warnings(caplog)
    assert len(msgs) == 1, msgs
    msg = msgs[0]
    assert "\n" not in msg
    assert "unusable on cuda:0" in msg and "using the torch rasterizer on cuda:0" in msg
    assert "cannot open shared object file" in msg  # why
    assert "bootstrap.sh" in msg and "--backend torch" in msg  # how to fix
    assert fake.calls == 1


def test_explicit_gsplat_fails_with_one_line(fake_gpu, monkeypatch):
    _install(monkeypatch, "jit-fails")
    with pytest.raises(GsplatUnavailableError) as ei:
        check_backend("gsplat", "cuda:0")
    msg = str(ei.value)
    assert isinstance(ei.value, ValueError)
    assert "\n" not in msg
    assert msg.startswith("backend 'gsplat' is unusable on cuda:0: its CUDA extension failed: ImportError")
    assert "bootstrap.sh" in msg
    # the environment variable counts as an explicit choice too
    monkeypatch.setenv(ENV_BACKEND, "gsplat")
    with pytest.raises(GsplatUnavailableError):
        check_backend("auto", "cuda:0")


def test_not_installed(fake_gpu, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "gsplat", None)  # "import gsplat" raises ImportError(name="gsplat")
    st = gsplat_status(CUDA0)
    assert not st.usable and st.reason == "gsplat is not installed" and st.version is None
    with caplog.at_level(logging.WARNING):
        assert resolve_backend("auto", CUDA0) == "torch"
    assert "gsplat is not installed" in _warnings(caplog)[0]
    with pytest.raises(GsplatUnavailableError, match="gsplat is not installed"):
        check_backend("gsplat", CUDA0)


def test_no_toolkit_is_named(fake_gpu, monkeypatch):
    _install(monkeypatch, "no-toolkit")
    backend = types.ModuleType("gsplat.cuda._backend")
    backend._C = None
    monkeypatch.setitem(sys.modules, "gsplat.cuda._backend", backend)
    st = gsplat_status(CUDA0)
    assert not st.usable and "no CUDA toolkit (nvcc)" in st.reason


def test_wrong_results_are_unusable(fake_gpu, monkeypatch):
    _install(monkeypatch, "wrong-image")
    st = gsplat_status(CUDA0)
    assert not st.usable and "differs from the torch rasterizer" in st.reason


def test_working_gsplat_is_picked_and_checked_once_per_device(fake_gpu, monkeypatch, caplog):
    fake = _install(monkeypatch, "works")
    with caplog.at_level(logging.WARNING):
        assert resolve_backend("auto", CUDA0) == "gsplat"
        assert check_backend("gsplat", CUDA0) == "gsplat"
        assert gsplat_available("cuda:0")
    assert fake.calls == 1
    assert gsplat_status(torch.device("cuda", 1)).usable  # another device: its own check
    assert fake.calls == 2
    assert gsplat_status(CUDA0, refresh=True).usable
    assert fake.calls == 3
    assert not _warnings(caplog)


def test_status_per_device_is_independent(fake_gpu, monkeypatch):
    fake = _install(monkeypatch, "works")
    assert gsplat_status(torch.device("cuda", 1)).usable
    fake.behaviour = "jit-fails"
    assert gsplat_status(torch.device("cuda", 1)).usable  # cached
    assert not gsplat_status(CUDA0).usable


def test_no_cuda_never_imports_gsplat(monkeypatch, caplog):
    reset_gsplat_status()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    fake = _install(monkeypatch, "works")
    st = gsplat_status("cuda:0")
    assert not st.usable and "no CUDA device" in st.reason and fake.calls == 0
    # CPU tensors: auto is the compiled CPU rasterizer without any gsplat check or warning, explicit gsplat is an error
    with caplog.at_level(logging.WARNING):
        assert resolve_backend("auto", torch.device("cpu")) == "cpp"
    assert not _warnings(caplog)
    with pytest.raises(GsplatUnavailableError, match="needs CUDA tensors"):
        check_backend("gsplat", "cpu")
    reset_gsplat_status()


def test_rasterize_explicit_gsplat_on_cpu_is_one_line_value_error():
    from tests.test_gaussian_raster import H, W, make_scene

    params, vm, K = make_scene(n=5, cams=1)
    with pytest.raises(ValueError, match="CUDA") as ei:
        rasterize(Gaussians(*params), vm, K, W, H, backend="gsplat")
    assert isinstance(ei.value, GsplatUnavailableError) and "\n" not in str(ei.value)


def test_rasterize_inside_autocast_stays_float32():
    """Mixed-precision callers (autocast regions) get float32 renders and gradients."""
    from tests.test_gaussian_raster import H, W, make_scene

    params, vm, K = make_scene(n=40, cams=2)
    plain = rasterize(Gaussians(*params), vm, K, W, H, backend="torch")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = rasterize(Gaussians(*params), vm, K, W, H, backend="torch")
    assert out.colors.dtype == torch.float32
    assert torch.equal(out.colors, plain.colors)
    out.colors.sum().backward()
    assert params[0].grad.dtype == torch.float32 and torch.isfinite(params[0].grad).all()


def test_prepare_build_env_uses_the_venv_toolkit_only_when_unset(monkeypatch, tmp_path):
    (tmp_path / "cuda" / "bin").mkdir(parents=True)
    (tmp_path / "cuda" / "bin" / "nvcc").write_text("#!/bin/sh\n")
    (tmp_path / "torch_extensions").mkdir()
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    for var in ("CUDA_HOME", "CUDA_PATH", "TORCH_EXTENSIONS_DIR"):
        monkeypatch.setenv(var, "")  # recorded, so whatever prepare_build_env sets is undone afterwards
        monkeypatch.delenv(var)
    cpp = sys.modules.get("torch.utils.cpp_extension")
    if cpp is not None:
        monkeypatch.setattr(cpp, "CUDA_HOME", getattr(cpp, "CUDA_HOME", None))
    rg.prepare_build_env()
    import os

    assert os.environ["CUDA_HOME"] == str(tmp_path / "cuda")
    assert os.environ["TORCH_EXTENSIONS_DIR"] == str(tmp_path / "torch_extensions")
    monkeypatch.setenv("CUDA_HOME", "/opt/my-cuda")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", "/opt/my-cache")
    rg.prepare_build_env()
    assert os.environ["CUDA_HOME"] == "/opt/my-cuda" and os.environ["TORCH_EXTENSIONS_DIR"] == "/opt/my-cache"


def test_prepare_build_env_puts_the_venv_ninja_on_path(monkeypatch, tmp_path):
    """torch runs `ninja` from PATH (to build and to load); .venv/bin/recon3d runs without an activated venv."""
    import os

    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "ninja").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "ninja").chmod(0o755)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", "/nonexistent")
    for var in ("CUDA_HOME", "CUDA_PATH", "TORCH_EXTENSIONS_DIR"):
        monkeypatch.setenv(var, "")
    rg.prepare_build_env()
    assert os.environ["PATH"].split(os.pathsep)[0] == str(tmp_path / "bin")
    rg.prepare_build_env()  # found now: not added twice
    assert os.environ["PATH"].count(str(tmp_path / "bin")) == 1


@pytest.mark.parametrize("region", ["no_grad", "inference_mode", "autocast"])
def test_first_check_inside_a_render_region(fake_gpu, monkeypatch, region):
    """The first rasterize() of a process often comes from a no-grad render or evaluation."""
    _install(monkeypatch, "works")
    ctx = {"no_grad": torch.no_grad(), "inference_mode": torch.inference_mode(),
           "autocast": torch.autocast("cpu", dtype=torch.bfloat16)}[region]
    with ctx:
        assert resolve_backend("auto", CUDA0) == "gsplat"
