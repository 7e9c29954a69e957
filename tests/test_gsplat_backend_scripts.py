"""The GPU set-up and check scripts, on CPU: scripts/gsplat_setup.py (toolkit layout, plan),
scripts/bootstrap.sh (CPU path untouched, GPU pins), scripts/gpu_check.py (dry run of every step's
arguments through the real parsers, failure/timeout recording, process-group kill) and
scripts/gpu_measure.py."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_scripts_{name}", ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


gsplat_setup = _load("gsplat_setup")
gpu_check = _load("gpu_check")


# ------------------------------------------------------------------------------ gsplat_setup.py
def test_toolkit_layout_from_registry_packages(tmp_path):
    root = tmp_path / "site" / "nvidia" / "cu13"
    for d in ("bin", "include", "nvvm/bin", "lib"):
        (root / d).mkdir(parents=True)
    (root / "bin" / "nvcc").write_text("#!/bin/sh\necho 'Cuda compilation tools, release 13.0, V13.0.88'\n")
    (root / "bin" / "nvcc").chmod(0o755)
    (root / "include" / "cuda_runtime.h").write_text("")
    (root / "lib" / "libcudart.so.13").write_text("")
    (root / "lib" / "libnvrtc.so.13").write_text("")
    dest = gsplat_setup.make_toolkit(root, tmp_path / "venv" / "cuda")
    assert (dest / "bin" / "nvcc").resolve() == (root / "bin" / "nvcc").resolve()
    assert (dest / "include" / "cuda_runtime.h").exists()
    assert os.readlink(dest / "lib64" / "libcudart.so") == "libcudart.so.13"  # what -lcudart links
    assert (dest / "lib64" / "libnvrtc.so.13").exists()
    assert gsplat_setup.nvcc_release(dest / "bin" / "nvcc") == "13.0"
    assert gsplat_setup.toolkit_complete(dest)
    assert not gsplat_setup.toolkit_complete(tmp_path)  # /usr/local with a wrapper nvcc: no headers
    again = gsplat_setup.make_toolkit(root, dest)  # idempotent
    assert (again / "lib64" / "libcudart.so").exists()


def test_toolkit_requirement_matches_torch(monkeypatch):
    import importlib.metadata as md

    monkeypatch.setattr(md, "requires", lambda name: ["filelock", "cuda-toolkit[cudart,nvrtc]==13.0.2; platform_system == 'Linux'"])
    assert gsplat_setup.torch_toolkit_requirement("13.0") == "cuda-toolkit[nvcc,crt,nvvm,cccl,cudart]==13.0.2"
    monkeypatch.setattr(md, "requires", lambda name: ["filelock"])
    assert gsplat_setup.torch_toolkit_requirement("13.1") == "cuda-toolkit[nvcc,crt,nvvm,cccl,cudart]==13.1.*"


def test_plan_is_shell_readable_on_a_cpu_torch():
    # the way bootstrap.sh reads it: plan=$(... plan); eval "$plan"
    env = subprocess.run(["bash", "-c", f'plan=$("{PY}" scripts/gsplat_setup.py plan) || exit 9; eval "$plan"; '
                                        'echo "$TORCH_CUDA|$CUDA_USABLE|$TOOLKIT_REQ"'],
                         cwd=ROOT, capture_output=True, text=True, timeout=120).stdout.strip()
    import torch

    if torch.version.cuda is None:
        assert env == "|0|"  # CPU torch: no CUDA, nothing to install


def test_check_reports_unusable_without_cuda(tmp_path):
    out = subprocess.run([PY, "scripts/gsplat_setup.py", "check", "--json", str(tmp_path / "st.json")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert out.returncode == 3
    assert "gsplat backend: NOT usable (no CUDA device" in out.stdout
    st = json.loads((tmp_path / "st.json").read_text())
    assert st["usable"] is False and "no CUDA device" in st["reason"]


# ------------------------------------------------------------------------------ bootstrap.sh
def test_bootstrap_cpu_path_unchanged_and_gpu_pins():
    text = (ROOT / "scripts" / "bootstrap.sh").read_text()
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "bootstrap.sh")]).returncode == 0
    assert '    echo "[bootstrap] no CUDA GPU: installing CPU torch==2.13.0"\n    $PIP torch==2.13.0\n' in text
    assert "TORCH_GPU_SPEC:-torch==2.11.0" in text and "GSPLAT_SPEC:-gsplat==1.5.3" in text
    assert "scripts/gsplat_setup.py check" in text and "scripts/gsplat_setup.py toolkit" in text


# ------------------------------------------------------------------------------ gpu_check.py
def test_dry_run_parses_every_step(tmp_path):
    out = subprocess.run(["bash", "scripts/gpu_check.sh", "--dry-run", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    steps = summary["steps"]
    assert list(steps) == ["setup", "parity", "splat_gsplat", "splat_torch", "ffdata", "ff_train", "ddp", "vggt", "nerf"]
    assert {n: r["status"] for n, r in steps.items() if n != "setup"} == {n: "parsed" for n in list(steps)[1:]}
    assert "--backend gsplat" in steps["splat_gsplat"]["cmd"] and "--max-steps 3000" in steps["splat_gsplat"]["cmd"]
    assert "--minutes 2.0" in steps["nerf"]["cmd"] and "train.amp=bf16" in steps["ff_train"]["cmd"]
    assert "--size published --px 518" in steps["vggt"]["cmd"] and "--dtype bf16" in steps["vggt"]["cmd"]
    assert "torch.distributed.run" in steps["ddp"]["cmd"]
    assert out.stdout.strip().splitlines()[-1].startswith("[gpu_check] 9 steps, 0 not ok")


def test_parse_check_catches_bad_arguments():
    bad = gpu_check.Step("bad", [PY, "scripts/bench_nerf.py", "data", "--minutes", "two"], timeout=10)
    assert gpu_check.parse_check(bad, PY, dict(os.environ))["status"] == "parse_failed"
    bad_cli = gpu_check.Step("bad", [PY, "-m", "recon3d.cli", "train", "lrm", "--data", "d", "--stepz", "3"], timeout=10)
    assert gpu_check.parse_check(bad_cli, PY, dict(os.environ))["status"] == "parse_failed"
    missing = gpu_check.Step("bad", [PY, "scripts/no_such_script.py"], timeout=10)
    assert gpu_check.parse_check(missing, PY, dict(os.environ))["status"] == "parse_failed"
    good = gpu_check.Step("good", [PY, "scripts/gpu_vggt_forward.py", "--size", "tiny", "--frames", "1"], timeout=10)
    assert gpu_check.parse_check(good, PY, dict(os.environ))["status"] == "parsed"


def test_failures_and_timeouts_are_recorded_not_fatal(tmp_path):
    run = gpu_check.Run(tmp_path, budget=60, dry_run=False, log=lambda *_: None)
    env = dict(os.environ)
    run.run(gpu_check.Step("fails", [PY, "-c", "import sys; print('boom'); sys.exit(4)"], timeout=30, min_seconds=1), PY, env)
    t = time.monotonic()
    # a child that starts a grandchild: the whole process group goes at the timeout
    run.run(gpu_check.Step("hangs", ["bash", "-c", "sleep 60 & sleep 60"], timeout=2, min_seconds=1), PY, env)
    assert time.monotonic() - t < 30
    run.run(gpu_check.Step("after", [PY, "-c", "print('fine')"], timeout=30, min_seconds=1,
                           figures=lambda out: {"said": out.strip()}), PY, env)
    run.run(gpu_check.Step("needs", [PY, "-c", "pass"], timeout=30, min_seconds=1, needs=("fails",)), PY, env)
    run.run(gpu_check.Step("too_big", [PY, "-c", "pass"], timeout=30, min_seconds=3600), PY, env)
    s = json.loads((tmp_path / "gpu_check.json").read_text())["steps"]
    assert s["fails"]["status"] == "failed" and s["fails"]["rc"] == 4 and s["fails"]["log_tail"] == ["boom"]
    assert s["hangs"]["status"] == "timeout"
    assert s["after"]["status"] == "ok" and s["after"]["figures"] == {"said": "fine"}
    assert s["needs"]["status"] == "skipped" and "fails" in s["needs"]["reason"]
    assert s["too_big"]["status"] == "skipped" and "budget" in s["too_big"]["reason"]
    assert "boom" in (tmp_path / "gpu_check.log").read_text()


def test_pytest_counts():
    out = "....\n=== short test summary info ===\nSKIPPED [9] tests/x.py:9: gsplat unusable: why\n3 passed, 9 skipped in 2.1s"
    assert gpu_check._pytest_counts(out) == {"passed": 3, "skipped": 9, "skip_reasons": ["gsplat unusable: why"]}


@pytest.mark.parametrize("code,rc", [("print('hi')", 0), ("import sys; sys.exit(3)", 3), ("raise RuntimeError('x')", 1)])
def test_gpu_measure_writes_figures(tmp_path, code, rc):
    script = tmp_path / "s.py"
    script.write_text(code)
    fig = tmp_path / "fig.json"
    p = subprocess.run([PY, "scripts/gpu_measure.py", str(fig), "--", str(script)], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == rc
    f = json.loads(fig.read_text())
    assert f["rc"] == rc and f["peak_cuda_mb"] is None and f["wall_seconds"] >= 0
