#!/usr/bin/env python3
"""The prepared GPU check (run it through ``scripts/gpu_check.sh``): set-up, then every CUDA path of
recon3d once, each step with its own timeout; a failing step is recorded, never fatal. Writes one
JSON summary (``OUT/gpu_check.json``) plus one log of every step's output (``OUT/gpu_check.log``) and
prints the summary. Standard library only: it runs before the environment exists.

Steps (in this order; ``--only``/``--skip`` take their names):
  setup         ./scripts/bootstrap.sh (registry reachable), or, with no registry (the lent GPU machines),
                the machine's own python3 with its CUDA torch + wheels from ``--wheels`` (gsplat), then
                scripts/gsplat_setup.py check (gsplat's CUDA build, once, timed; usable or why not)
  parity        pytest tests/test_gaussian_gsplat.py: gsplat vs the torch rasterizer, colours, alphas,
                depths and gradients at several sizes
  splat_gsplat  scripts/bench_splat.py DATA --max-steps 3000 --backend gsplat (PSNR, seconds, peak memory)
  splat_torch   the same with --backend torch (recon3d's PyTorch rasterizer on the GPU)
  ffdata        the feed-forward data set (--ffdata, .gpu_carry/ffdata, or `recon3d ffdata` when open3d is there)
  ff_train      recon3d train lrm, 200 steps, amp bf16
  ddp           torchrun --nproc_per_node=<GPUs> scripts/gpu_ddp_check.py (nccl, DDP, the trainer's DDP path)
  vggt          scripts/gpu_vggt_forward.py: published-size VGGT, random weights, bf16, 518 px
  nerf          scripts/bench_nerf.py DATA --minutes 2 (mixed precision), last: it gets what the budget leaves

``--budget`` (default 470 s) bounds the whole run: a step starts only with its minimum time left and
its timeout is cut to what remains. ``--dry-run`` runs nothing: it checks that every command's
arguments parse with the real parsers (argparse of each script, recon3d's CLI, torchrun's, pytest
collection) and that the files exist, and writes the same JSON with status "parsed". ``--cpu`` runs
the same plumbing on CPU at toy sizes (no GPU steps' figures; for testing this script).
``--prepare-carry`` (on a machine with the registry, before asking for a GPU) fills ``.gpu_carry/``
with what the lent machine cannot fetch: the gsplat wheel, the lego_200 scene and a 24-object
feed-forward set; name ``.gpu_carry`` in the device tool's ``carry``.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
CARRY = ROOT / ".gpu_carry"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "lego_200"
GSPLAT_WHEEL = "gsplat==1.5.3"


@dataclass
class Step:
    """One check: ``cmd`` runs with ``env`` added, at most ``timeout`` seconds (cut to the budget left);
    skipped unless at least ``min_seconds`` of the budget are left. ``figures(step_dir, output)`` turns
    what it wrote into the JSON's figures. ``parse`` says how ``--dry-run`` checks the command."""

    name: str
    cmd: list[str]
    timeout: float
    min_seconds: float = 20.0
    env: dict = field(default_factory=dict)
    figures: Optional[Callable[[str], dict]] = None
    parse: str = "argparse"  # argparse (script or -m module) | torchrun | pytest | none
    needs: tuple[str, ...] = ()  # steps that must have succeeded first


class Run:
    """Runs steps, keeps the log and the summary."""

    def __init__(self, out: Path, budget: float, dry_run: bool, log=print):
        self.out = out
        self.t0 = time.monotonic()
        self.budget = budget
        self.dry_run = dry_run
        self.summary: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "budget_seconds": budget,
                              "dry_run": dry_run, "steps": {}}
        out.mkdir(parents=True, exist_ok=True)
        self.log_path = out / "gpu_check.log"
        self.log_path.write_text("")
        self.say = log

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.t0)

    def write_log(self, text: str) -> None:
        with open(self.log_path, "a", errors="replace") as f:
            f.write(text)

    def status(self, name: str) -> Optional[str]:
        return self.summary["steps"].get(name, {}).get("status")

    def run(self, step: Step, py: str, base_env: dict) -> dict:
        rec: dict = {"cmd": " ".join(shlex.quote(c) for c in step.cmd)}
        # a needed step that ran and did not succeed (one left out by --only/--skip is taken as done)
        missing = [n for n in step.needs if n in self.summary["steps"] and self.status(n) not in ("ok", "parsed")]
        if missing:
            rec.update(status="skipped", reason=f"needs {', '.join(missing)}")
        elif self.dry_run:
            rec.update(parse_check(step, py, base_env))
        elif self.left() < step.min_seconds:
            rec.update(status="skipped", reason=f"budget: {self.left():.0f} s left, needs {step.min_seconds:.0f} s")
        else:
            timeout = max(1.0, min(step.timeout, self.left()))
            rec["timeout_seconds"] = round(timeout)
            env = {**base_env, **step.env}
            self.write_log(f"\n===== {step.name}: {rec['cmd']} (timeout {timeout:.0f} s)\n")
            self.say(f"[gpu_check] {step.name}: running (timeout {timeout:.0f} s)")
            t = time.monotonic()
            output = ""
            output, rc = run_with_timeout(step.cmd, env, timeout)
            if rc is None:
                rec["status"] = "timeout"
            else:
                rec["status"] = "ok" if rc == 0 else "failed"
                rec["rc"] = rc
            rec["seconds"] = round(time.monotonic() - t, 1)
            self.write_log(output)
            if step.figures is not None:
                try:
                    rec["figures"] = step.figures(output)
                except Exception as e:  # noqa: BLE001 - a figure that cannot be read is recorded as such
                    rec["figures_error"] = f"{type(e).__name__}: {e}"
            if rec["status"] != "ok":
                rec["log_tail"] = [ln[:300] for ln in output.strip().splitlines()[-15:]]
        self.summary["steps"][step.name] = rec
        self.say(f"[gpu_check] {step.name}: {rec['status']}" + (f" ({rec['seconds']} s)" if "seconds" in rec else "")
                 + (f" - {rec['reason']}" if rec.get("reason") else ""))
        self.save()
        return rec

    def save(self) -> None:
        self.summary["total_seconds"] = round(time.monotonic() - self.t0, 1)
        (self.out / "gpu_check.json").write_text(json.dumps(self.summary, indent=2))


def run_with_timeout(cmd: list[str], env: dict, timeout: float) -> tuple[str, Optional[int]]:
    """(output, exit status) of ``cmd``; exit status None when it ran past ``timeout``, in which case
    its whole process group (torchrun's workers, ninja's compilers) is killed."""
    try:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", start_new_session=True)
    except OSError as e:
        return f"{type(e).__name__}: {e}", 127
    try:
        out, _ = proc.communicate(timeout=timeout)
        return out, proc.returncode
    except subprocess.TimeoutExpired:
        import signal

        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        out, _ = proc.communicate()
        return (out or "") + f"\n[gpu_check] killed after {timeout:.0f} s\n", None


# ------------------------------------------------------------------------------ dry-run parsing
_ARGPARSE_ONLY = r"""
import argparse, runpy, sys
orig = argparse.ArgumentParser.parse_args
def parse_only(self, args=None, namespace=None):
    orig(self, args, namespace)
    print("gpu_check: arguments parse"); sys.exit(0)
argparse.ArgumentParser.parse_args = parse_only
target = sys.argv[1:]
if target[0] == "-m":
    sys.argv = [target[1]] + target[2:]
    runpy.run_module(target[1], run_name="__main__", alter_sys=True)
else:
    sys.argv = target
    sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(target[0])))
    runpy.run_path(target[0], run_name="__main__")
print("gpu_check: no argument parser was reached"); sys.exit(3)
"""


def _inner_target(cmd: list[str]) -> list[str]:
    """The program a wrapped command runs: after ``gpu_measure.py FIG --`` or the interpreter."""
    if "--" in cmd and any(c.endswith("gpu_measure.py") for c in cmd):
        return cmd[cmd.index("--") + 1:]
    return cmd[1:]


def parse_check(step: Step, py: str, env: dict) -> dict:
    """Check ``step``'s command without running it (see the module docstring)."""
    if step.parse == "none":
        return {"status": "parsed", "note": "not checked (runs shell tools)"}
    if step.parse == "pytest":
        cmd = [py, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *[c for c in step.cmd if c.endswith(".py")]]
    elif step.parse == "torchrun":
        i = next(k for k, c in enumerate(step.cmd) if c.endswith(".py"))
        tr = ("from torch.distributed.run import get_args_parser as g; import sys; "
              f"g().parse_args({step.cmd[step.cmd.index('torch.distributed.run') + 1:i + 1]!r}); print('torchrun args parse')")
        p = subprocess.run([py, "-c", tr], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            return {"status": "parse_failed", "log_tail": p.stderr.strip().splitlines()[-5:]}
        cmd = [py, "-c", _ARGPARSE_ONLY, *step.cmd[i:]]
    else:
        target = _inner_target(step.cmd)
        if target and target[0] != "-m" and not (ROOT / target[0]).exists():
            return {"status": "parse_failed", "reason": f"{target[0]} does not exist"}
        cmd = [py, "-c", _ARGPARSE_ONLY, *target]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    ok = p.returncode == 0 or (step.parse == "pytest" and p.returncode == 5)
    rec = {"status": "parsed" if ok else "parse_failed"}
    if not ok:
        rec["log_tail"] = (p.stdout + p.stderr).strip().splitlines()[-8:]
    return rec


# ------------------------------------------------------------------------------ figures
def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _pytest_counts(output: str) -> dict:
    """Counts of pytest's closing line ("3 passed, 1 skipped in 2.1s") and the skip reasons."""
    closing = [ln for ln in output.splitlines() if re.search(r"\d+ (passed|failed|skipped|errors?)\b.* in [\d.]+s", ln)]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed)", closing[-1] if closing else "")}
    reasons = sorted(set(re.findall(r"SKIPPED \[\d+\] [^:]+:\d+: (.*)", output)))
    return {**counts, **({"skip_reasons": reasons[:3]} if reasons else {})}


def _splat_figures(work: Path, name: str) -> Callable[[str], dict]:
    def read(_output: str) -> dict:
        f = _read_json(work / f"{name}.json")
        keep = ("test_psnr", "test_ssim", "train_seconds", "steps", "gaussians", "peak_cuda_mb", "render_ms_per_image",
                "raster_fwd_bwd", "device")
        return {**{k: f[k] for k in keep if k in f}, **_measure(work / f"{name}.measure.json")}
    return read


def _measure(path: Path) -> dict:
    m = _read_json(path)
    return {"wall_seconds": m.get("wall_seconds"), "peak_cuda_mb_process": m.get("peak_cuda_mb"),
            "gpu": m.get("device")} if m else {}


def _nerf_figures(work: Path) -> Callable[[str], dict]:
    def read(_output: str) -> dict:
        f = _read_json(work / "nerf" / "bench.json")
        keep = ("test_psnr", "test_ssim", "steps", "train_seconds", "fit_wall_seconds", "setup_seconds", "compiled",
                "test_views", "render_ms_per_image", "device", "total_wall_seconds")
        return {**{k: f[k] for k in keep if k in f}, **_measure(work / "nerf.measure.json")}
    return read


def _train_figures(work: Path) -> Callable[[str], dict]:
    def read(_output: str) -> dict:
        log = work / "ff_train" / "log.jsonl"
        rows = [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()] if log.is_file() else []
        train = [r for r in rows if r.get("split") == "train"]
        val = [r for r in rows if r.get("split") == "val"]
        fig = {"steps": train[-1]["step"] if train else None,
               "loss_first": round(train[0]["loss"], 5) if train else None,
               "loss_last": round(train[-1]["loss"], 5) if train else None,
               "it_per_s_last": round(train[-1]["it_per_s"], 2) if train else None,
               "val": {k: round(v, 4) for k, v in val[-1].items() if isinstance(v, float)} if val else None,
               "final_written": (work / "ff_train" / "final.pt").is_file()}
        return {**fig, **_measure(work / "ff_train.measure.json")}
    return read


# ------------------------------------------------------------------------------ environment
def _run_quiet(cmd, timeout=60, env=None) -> tuple[int, str]:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
        return p.returncode, (p.stdout + p.stderr).strip()
    except (OSError, subprocess.SubprocessError) as e:
        return 127, str(e)


def host_info() -> dict:
    info: dict = {"hostname": os.uname().nodename, "cpus": os.cpu_count()}
    rc, out = _run_quiet(["nvidia-smi", "-L"], 30)
    info["gpus"] = out.splitlines() if rc == 0 else []
    rc, out = _run_quiet(["nvidia-smi", "--query-gpu=driver_version,memory.total", "--format=csv,noheader"], 30)
    if rc == 0 and out:
        info["driver_memory"] = out.splitlines()[0]
    return info


def registry_reachable(py: str) -> bool:
    rc, _ = _run_quiet([py, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "-q", "--retries", "0",
                        "--timeout", "8", "-d", str(ROOT / "outputs" / "gpu_check" / "probe"), "ninja"], 60)
    return rc == 0


def torch_info(py: str, env: dict) -> dict:
    code = ("import json, torch; print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, "
            "'cuda_available': torch.cuda.is_available(), 'gpus': torch.cuda.device_count()}))")
    rc, out = _run_quiet([py, "-c", code], 120, env)
    try:
        return json.loads(out.splitlines()[-1]) if rc == 0 else {"error": out[-300:]}
    except (ValueError, IndexError):
        return {"error": out[-300:]}


# ------------------------------------------------------------------------------ main
def build_steps(args, py: str, work: Path, gpus: int, data: Path, ffdata: Path) -> list[Step]:
    cpu = args.cpu
    dev = ["--device", "cpu"] if cpu else []
    measure = [py, "scripts/gpu_measure.py"]
    splat_steps = "5" if cpu else "3000"
    steps = [
        Step("parity", [py, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "tests/test_gaussian_gsplat.py"],
             timeout=240, min_seconds=30, parse="pytest", figures=_pytest_counts),
    ]
    for backend in ("gsplat", "torch"):
        name = f"splat_{backend}"
        steps.append(Step(name, [*measure, str(work / f"{name}.measure.json"), "--", "scripts/bench_splat.py", str(data),
                                 "--max-steps", splat_steps, "--backend", "torch" if cpu else backend, *dev,
                                 *(["--preset", "quick"] if cpu else []),
                                 "--json", str(work / f"{name}.json"), "--ref-subset", "300" if cpu else "3000"],
                          timeout=150 if backend == "gsplat" else 240, min_seconds=40, figures=_splat_figures(work, name)))
    ff_cmd = [py, "-m", "recon3d.cli", "ffdata", "--out", str(ffdata), "--objects", "24", "--views", "8", "--size", "64",
              "--val", "2", "--test", "2", "--workers", str(min(8, max(1, (os.cpu_count() or 2) // 2)))]
    steps.append(Step("ffdata", ff_cmd, timeout=120, min_seconds=20))
    if (ffdata / "READY").exists() and not args.dry_run:
        steps[-1] = Step("ffdata", [py, "-c", f"print('using the prepared data set {ffdata}')"], timeout=30, min_seconds=1,
                         parse="none")
    train_steps = "5" if cpu else "200"
    steps.append(Step("ff_train", [*measure, str(work / "ff_train.measure.json"), "--", "-m", "recon3d.cli", "train", "lrm",
                                   "--data", str(ffdata), "--out", str(work / "ff_train"), "--steps", train_steps,
                                   "--set", "train.amp=bf16", "--set", "train.val_every=100", "--set", "train.ckpt_every=100",
                                   "--set", "train.log_every=25", *dev],
                      timeout=150, min_seconds=30, figures=_train_figures(work), needs=("ffdata",)))
    nproc = 2 if cpu else max(1, gpus)
    steps.append(Step("ddp", [py, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                              "scripts/gpu_ddp_check.py", "--data", str(ffdata), "--out", str(work / "ddp"),
                              "--steps", "4" if cpu else "20", "--json", str(work / "ddp.json"), *dev],
                      timeout=150, min_seconds=30, parse="torchrun", needs=("ffdata",),
                      env={"OMP_NUM_THREADS": "1"}, figures=lambda _o: _read_json(work / "ddp.json")))
    vggt = (["--size", "tiny", "--px", "64", "--frames", "1,2", "--dtype", "bf16", "--reps", "1", "--device", "cpu"] if cpu
            else ["--size", "published", "--px", "518", "--frames", "1,4,8", "--dtype", "bf16"])
    steps.append(Step("vggt", [py, "scripts/gpu_vggt_forward.py", *vggt, "--json", str(work / "vggt.json")],
                      timeout=150, min_seconds=40, figures=lambda _o: _read_json(work / "vggt.json")))
    minutes = 0.05 if cpu else args.nerf_minutes
    nerf = Step("nerf", [*measure, str(work / "nerf.measure.json"), "--", "scripts/bench_nerf.py", str(data),
                         "--minutes", str(minutes), "--out", str(work / "nerf"), "--no-progress",
                         "--eval-views", "4" if cpu else "25", *dev, *(["--max-steps", "20", "--compile", "off"] if cpu else [])],
                timeout=60 * minutes + 150, min_seconds=60 * minutes + 60, figures=_nerf_figures(work))
    steps.append(nerf)
    return steps


def setup_steps(args, run: Run, work: Path) -> tuple[str, dict]:
    """Run (or, with --dry-run, check) the set-up; returns the python to use and its environment."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    venv_py = ROOT / ".venv" / "bin" / "python"
    sys_py = shutil.which("python3") or sys.executable
    if args.python:  # a given interpreter (with its own torch): recon3d from this checkout, no set-up
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        run.summary["mode"] = f"given python {args.python}"
        run.summary["steps"]["setup"] = {"status": "skipped", "reason": f"--python {args.python}"}
        return args.python, env
    if args.dry_run or args.cpu:
        py = str(venv_py) if venv_py.exists() else sys.executable
        run.summary["mode"] = "dry-run" if args.dry_run else "cpu"
        run.summary["steps"]["setup"] = {"status": "skipped", "reason": f"{run.summary['mode']}: uses {py}"}
        return py, env
    online = registry_reachable(sys_py)
    run.summary["registry_reachable"] = online
    status_json = work / "gsplat_status.json"
    if online:
        run.summary["mode"] = "bootstrap"
        run.run(Step("setup", ["bash", "scripts/bootstrap.sh"], timeout=args.setup_timeout, min_seconds=30), sys_py, env)
        py = str(venv_py)
        # bootstrap's own gsplat check wrote .venv/.gsplat-status.json; copy its verdict into the summary
        st = _read_json(ROOT / ".venv" / ".gsplat-status.json")
        if st:
            run.summary["steps"]["setup"]["gsplat"] = st
            run.save()
        return py, env
    # no registry (the lent GPU machines): the machine's python3 and its CUDA torch, recon3d from the
    # checkout, gsplat from carried wheels, the same gsplat build + check as bootstrap
    run.summary["mode"] = "offline: system python3 + carried wheels"
    site = ROOT / ".gpu_check" / "site"
    wheels = Path(args.wheels) if args.wheels else CARRY / "wheels"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".gpu_check" / "torch_extensions"))
    Path(env["TORCH_EXTENSIONS_DIR"]).mkdir(parents=True, exist_ok=True)
    whls = sorted(str(w) for w in wheels.glob("*.whl")) if wheels.is_dir() else []
    install = (f"{shlex.quote(sys_py)} -m pip install -q --no-index --no-deps --no-compile --upgrade --target "
               f"{shlex.quote(str(site))} {' '.join(map(shlex.quote, whls))} && " if whls else "")
    cmd = ["bash", "-c", f"set -e; {install}{shlex.quote(sys_py)} scripts/gsplat_setup.py plan; "
                         f"MAX_JOBS={os.cpu_count() or 4} {shlex.quote(sys_py)} scripts/gsplat_setup.py check --json "
                         f"{shlex.quote(str(status_json))} || echo gsplat check: not usable"]
    rec = run.run(Step("setup", cmd, timeout=args.setup_timeout, min_seconds=30), sys_py, env)
    rec["wheels"] = [Path(w).name for w in whls]
    st = _read_json(status_json)
    if st:
        rec["gsplat"] = st
    run.save()
    return sys_py, env


def prepare_carry() -> int:
    """Fill .gpu_carry/ (wheels, lego_200, ffdata) for a machine without the registry."""
    CARRY.mkdir(exist_ok=True)
    exclude = ROOT / ".git" / "info" / "exclude"
    if exclude.parent.is_dir() and "/.gpu_carry/" not in (exclude.read_text() if exclude.exists() else ""):
        with open(exclude, "a") as f:
            f.write("/.gpu_carry/\n/.gpu_check/\n")
    py = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
    (CARRY / "wheels").mkdir(exist_ok=True)
    rc = subprocess.call([py, "-m", "pip", "download", "--no-deps", "-q", "-d", str(CARRY / "wheels"), GSPLAT_WHEEL])
    if DEFAULT_DATA.is_dir() and not (CARRY / "lego_200").exists():
        shutil.copytree(DEFAULT_DATA, CARRY / "lego_200")
    if not (CARRY / "ffdata" / "READY").exists():
        rc |= subprocess.call([py, "-m", "recon3d.cli", "ffdata", "--out", str(CARRY / "ffdata"), "--objects", "24",
                               "--views", "8", "--size", "64", "--val", "2", "--test", "2"], cwd=ROOT)
    size = sum(f.stat().st_size for f in CARRY.rglob("*") if f.is_file())
    print(f"[gpu_check] {CARRY}: {size / 2**20:.1f} MiB ({', '.join(sorted(p.name for p in CARRY.iterdir()))}); "
          "carry it: run(command='bash scripts/gpu_check.sh', carry=['.gpu_carry'])")
    return rc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "outputs" / "gpu_check"),
                    help="where gpu_check.json and gpu_check.log go (default $OUT, else outputs/gpu_check)")
    ap.add_argument("--budget", type=float, default=470.0, help="seconds for the whole run (default 470)")
    ap.add_argument("--setup-timeout", type=float, default=300.0)
    ap.add_argument("--data", type=Path, default=None, help="Blender scene (default ../shared/data/lego_200 or .gpu_carry/lego_200)")
    ap.add_argument("--ffdata", type=Path, default=None, help="a data set made by `recon3d ffdata` (default .gpu_carry/ffdata)")
    ap.add_argument("--wheels", default=None, help="wheels to install offline (default .gpu_carry/wheels)")
    ap.add_argument("--nerf-minutes", type=float, default=2.0)
    ap.add_argument("--python", default=None, help="use this interpreter (and its torch) as it is: no set-up step")
    ap.add_argument("--only", default="", help="comma-separated step names")
    ap.add_argument("--skip", default="", help="comma-separated step names")
    ap.add_argument("--dry-run", action="store_true", help="check that the commands parse; run nothing")
    ap.add_argument("--cpu", action="store_true", help="toy-size CPU run of the same steps (tests this script)")
    ap.add_argument("--prepare-carry", action="store_true", help="fill .gpu_carry/ for a machine without the registry")
    args = ap.parse_args(argv)
    if args.prepare_carry:
        return prepare_carry()

    run = Run(args.out, args.budget, args.dry_run)
    run.summary["host"] = host_info()
    work = ROOT / "outputs" / "gpu_check" / "work"
    if work.exists() and not args.dry_run:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    data = args.data or (DEFAULT_DATA if DEFAULT_DATA.is_dir() else CARRY / "lego_200")
    ffdata = args.ffdata or (CARRY / "ffdata" if (CARRY / "ffdata" / "READY").exists() else work / "ffdata")
    run.summary["data"] = {"scene": str(data), "scene_exists": data.is_dir(), "ffdata": str(ffdata)}

    only = {s for s in args.only.split(",") if s}
    skip = {s for s in args.skip.split(",") if s}
    if "setup" in skip:
        py = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
        env = dict(os.environ)
        run.summary["steps"]["setup"] = {"status": "skipped", "reason": "--skip setup"}
    else:
        py, env = setup_steps(args, run, work)
    run.summary["python"] = py
    run.summary["torch"] = torch_info(py, env)
    gpus = int(run.summary["torch"].get("gpus") or 0)
    for step in build_steps(args, py, work, gpus, data, ffdata):
        if (only and step.name not in only) or step.name in skip:
            continue
        run.run(step, py, env)
    run.save()
    text = (args.out / "gpu_check.json").read_text()
    print(text)
    failed = [n for n, r in run.summary["steps"].items() if r["status"] in ("failed", "timeout", "parse_failed")]
    print(f"[gpu_check] {len(run.summary['steps'])} steps, {len(failed)} not ok{': ' + ', '.join(failed) if failed else ''}; "
          f"{run.summary['total_seconds']} s; summary {args.out / 'gpu_check.json'}, log {run.log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
