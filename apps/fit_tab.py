"""Fit from photos: ``recon3d fit`` run in a subprocess, followed through its progress events (no gradio here).

A subprocess keeps the page responsive, lets a cancelled request kill the work, and keeps a crash
in fitting from taking the web server down. Every ``recon3d fit`` run writes ``RUN/progress.jsonl``
(:mod:`recon3d.runtime.progress`); :class:`FitProcess` tails it with
:func:`~recon3d.runtime.progress.read_events` while the process runs, and :func:`apply_event` folds
each event into the :class:`FitProgress` the page shows:

- ``stage`` -> the stage line (``sfm: structure from motion (pycolmap)``);
- ``start`` / ``step`` / ``end`` -> the counted phase: step of total, percent, latest loss / PSNR;
- ``eval`` and ``log`` -> recent lines (held-out PSNR / SSIM during training, SfM registration);
- ``done`` -> the final metrics; ``error`` -> the one-line message shown in the page.

The process's stdout/stderr (console bars, log lines, a traceback) go to ``<job>/fit.log``. Its tail
gives the message only when the run fails without an ``error`` event: a bad flag
(``recon3d fit: error: ...``) or a crash (the exception line; the traceback stays in the log).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from recon3d.io.errors import DataError
from recon3d.methods.registry import METHOD_NAMES, get_method, names_with
from recon3d.runtime.config import PRESET_NAMES
from recon3d.runtime.progress import PROGRESS_FILE, Event, read_events

log = logging.getLogger(__name__)

_ERROR = re.compile(r"^recon3d \w+: error: (?P<msg>.*)$")
_EXC = re.compile(r"^(?P<type>[A-Za-z_][\w.]*(Error|Exception|Interrupt)): (?P<msg>.*)$")
_TAIL_BYTES = 64 * 1024  # of fit.log read for the error of a failed run
_MAX_TEXT = 160


@dataclass
class FitProgress:
    """What the page shows while a fit runs (built from progress events by :func:`apply_event`)."""

    stage: str = "starting"  # the current stage: "sfm: structure from motion (pycolmap)"
    phase: Optional[str] = None  # the counted phase under way: "splat", "sugar", "nerf", ...
    done: int = 0  # its step and total
    total: int = 0
    values: dict = field(default_factory=dict)  # its latest step values: loss, psnr, gaussians, ...
    lines: list[str] = field(default_factory=list)  # recent stages, evaluations, messages; newest last
    metrics: dict = field(default_factory=dict)  # the ``done`` event's values: test_psnr, test_ssim, steps
    finished: bool = False  # a ``done`` event arrived
    error: Optional[str] = None  # the one-line user-facing error, once known
    last_exception: Optional[str] = None  # "TypeError: ..." of an unexpected crash (no traceback)

    @property
    def fraction(self) -> Optional[float]:
        """Done fraction of the counted phase, None between phases."""
        return min(1.0, self.done / self.total) if self.phase and self.total else None

    def describe(self) -> str:
        """One line: ``splat: step 450 / 1000 (45%), loss 0.0123, PSNR 24.10 dB`` in a counted phase,
        else the stage."""
        if not (self.phase and self.total):
            return self.stage
        text = f"{self.phase}: step {self.done} / {self.total} ({100 * self.done // self.total}%)"
        shown = format_values(self.values)
        return f"{text}, {shown}" if shown else text


def format_values(values: dict) -> str:
    """``loss 0.0123, PSNR 24.10 dB, gaussians 12000`` (numbers only, in the order given)."""
    parts = []
    for k, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if k == "psnr":
            parts.append(f"PSNR {v:.2f} dB")
        elif k == "ssim":
            parts.append(f"SSIM {v:.4f}")
        else:
            parts.append(f"{k} {v}" if isinstance(v, int) else f"{k} {v:.4g}")
    return ", ".join(parts)


def _short(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def apply_event(state: FitProgress, ev: Event, keep: int = 8) -> FitProgress:
    """Update ``state`` from one progress event of ``recon3d fit`` (see the module docstring)."""

    def add(line: str) -> None:
        state.lines = (state.lines + [_short(line)])[-keep:]

    if ev.kind == "stage":
        state.phase, state.done, state.total, state.values = None, 0, 0, {}
        state.stage = _short(f"{ev.stage}: {ev.message}" if ev.message else ev.stage or "working")
        add(state.stage)
    elif ev.kind in ("start", "step", "end"):
        phase = ev.stage or state.phase or "fit"
        if ev.kind == "start" or phase != state.phase:
            state.values = {}
        state.phase, state.total = phase, int(ev.total or state.total or 0)
        state.done = int(ev.step or 0)
        state.stage = f"{phase} optimization"
        if ev.kind == "end":
            state.done = max(state.done, state.total)
            secs = ev.values.get("seconds")
            add(f"{phase}: {state.done} steps" + (f" in {secs:.0f} s" if isinstance(secs, (int, float)) else ""))
        else:
            state.values.update(ev.values)
    elif ev.kind == "eval":
        shown = format_values({k: ev.values[k] for k in ("psnr", "ssim") if k in ev.values})
        add(f"{ev.stage or 'fit'} step {ev.step}: test {shown}" if shown else f"{ev.stage} step {ev.step}: evaluated")
    elif ev.kind == "log":
        add(f"{ev.stage}: {ev.message}" if ev.stage else ev.message)
    elif ev.kind == "done":
        state.finished, state.metrics = True, dict(ev.values)
        state.phase, state.done, state.total, state.values = None, 0, 0, {}
        shown = format_values({k.removeprefix("test_"): v for k, v in ev.values.items()
                               if k in ("test_psnr", "test_ssim")})
        state.stage = "finished" + (f": test {shown}" if shown else "")
        add(state.stage)
    elif ev.kind == "error":
        state.error = ev.message or "fitting failed"
    return state


def errors_in_output(text: str) -> tuple[Optional[str], Optional[str]]:
    """(the CLI's own ``recon3d fit: error:`` message, the last ``SomeError: ...`` line) in ``text``,
    output of ``recon3d fit`` (tqdm chunks split on ``\\r`` too); None for what is not there."""
    cli_error = exception = None
    for line in re.split(r"[\r\n]", text):
        line = line.strip()
        if m := _ERROR.match(line):
            cli_error = m["msg"]
        elif m := _EXC.match(line):
            exception = f"{m['type'].rsplit('.', 1)[-1]}: {m['msg']}"
    return cli_error, exception


def fit_command(photos: Path, run_dir: Path, *, method: str, preset: str, steps: int, orbit_frames: int,
                threads: int = 1, device: str = "cpu", pose_opt: bool = False, video: bool = False,
                frames: Optional[int] = None) -> list[str]:
    """The ``recon3d fit`` command line for one request (run with this interpreter).

    ``photos`` is a folder of photos (``--images``), or with ``video`` a video file (``--video``, keeping
    ``frames`` frames when given)."""
    source = ["--video" if video else "--images", str(photos)]
    if video and frames:
        source += ["--frames", str(int(frames))]
    cmd = [sys.executable, "-m", "recon3d.cli", "--threads", str(int(threads)), "fit", *source,
           "--out", str(run_dir), "--method", method, "--preset", preset, "--max-steps", str(int(steps)),
           "--orbit-frames", str(int(orbit_frames)), "--device", device]
    return cmd + ["--pose-opt"] if pose_opt else cmd


def events_file(run_dir: Path) -> Path:
    """Where ``recon3d fit --out run_dir`` writes its progress events."""
    return Path(run_dir) / PROGRESS_FILE


def validate_fit_request(method: str, preset: str, steps, *, max_steps: int, pose_opt: bool = False) -> int:
    """DataError unless ``method`` is a registered method, ``preset`` a preset name, ``steps`` an integer
    in [1, max_steps] and pose refinement, if asked for, is available for the method (the message of
    ``recon3d fit``); returns steps."""
    spec = get_method(method)  # DataError "--method: unknown method ..." for a name not registered
    if pose_opt and not spec.supports("pose_opt"):
        raise DataError("--pose-opt", f"pose refinement is available for --method "
                                      f"{' and '.join(names_with('pose_opt'))}, not {spec.name}")
    if preset not in PRESET_NAMES:
        raise DataError("preset", f"unknown preset {preset!r}; choose one of {', '.join(PRESET_NAMES)}")
    try:
        n = int(steps)
    except (TypeError, ValueError):
        raise DataError("steps", "must be a whole number") from None
    if not 1 <= n <= max_steps:
        raise DataError("steps", f"must be between 1 and {max_steps}")
    return n


def fit_methods() -> tuple[str, ...]:
    """The methods the page offers: every registered one, in registry order."""
    return METHOD_NAMES


class FitProcess:
    """One ``recon3d fit`` subprocess, followed through its progress events (``events_path``).

    Its output goes to ``log_path``. Call :meth:`poll` (or iterate :func:`follow`) to fold new
    events into :attr:`progress`. Use as a context manager: leaving the block (finished, failed, or
    the request cancelled) kills the process if it is still running.
    """

    def __init__(self, cmd: list[str], log_path: Path, events_path: Path, cwd: Optional[Path] = None,
                 hide_prefix: Optional[str] = None) -> None:
        self.cmd, self.log_path, self.events_path, self.cwd = cmd, Path(log_path), Path(events_path), cwd
        self.hide_prefix = hide_prefix  # server folder removed from messages shown in the page
        self.progress = FitProgress()
        self.proc: Optional[subprocess.Popen] = None
        self.output_tail = ""  # the end of the process's output, once it has exited
        self._offset = 0
        self._log = None
        self._stopped: Optional[str] = None  # why the app stopped it (timeout)
        self._rc: Optional[int] = None

    def __enter__(self) -> "FitProcess":
        threads = self.cmd[self.cmd.index("--threads") + 1] if "--threads" in self.cmd else "1"
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=threads)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.cwd, env=env, start_new_session=True)
        return self

    def _read_events(self) -> None:
        try:
            if self.events_path.stat().st_size < self._offset:  # the file was started anew
                self._offset, self.progress = 0, FitProgress()
        except FileNotFoundError:
            return
        events, self._offset = read_events(self.events_path, self._offset)
        for ev in events:
            apply_event(self.progress, ev)

    def _read_output_tail(self) -> None:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - _TAIL_BYTES))
                self.output_tail = f.read().decode("utf-8", "replace")
        except OSError:
            self.output_tail = ""
        cli_error, exception = errors_in_output(self.output_tail)
        if self.progress.error is None and cli_error:
            self.progress.error = cli_error
        if exception:
            self.progress.last_exception = exception

    def poll(self) -> Optional[int]:
        """The exit status once finished (all its events read), else None; new events are applied."""
        assert self.proc is not None
        rc = self.proc.poll()
        self._read_events()
        if rc is not None and self._rc is None:
            self._rc = rc
            if rc != 0:
                self._read_output_tail()
        return rc

    def _hide(self, text: Optional[str]) -> Optional[str]:
        """``text`` without the job's server folder (``/srv/.../job/run/sfm`` -> ``run/sfm``)."""
        if not text or not self.hide_prefix:
            return text
        return text.replace(self.hide_prefix.rstrip("/") + "/", "").replace(self.hide_prefix, ".")

    def snapshot(self) -> FitProgress:
        """A copy of the progress so far, server folders removed from its messages."""
        p = self.progress
        return FitProgress(self._hide(p.stage), p.phase, p.done, p.total, dict(p.values),
                           [self._hide(x) for x in p.lines], dict(p.metrics), p.finished,
                           self._hide(self._stopped or p.error), self._hide(p.last_exception))

    def error_message(self, rc: int) -> str:
        """A one-line message for a failed run: why the app stopped it, the run's ``error`` event (or
        the CLI's error line), else the last exception line, else the exit status."""
        p = self.progress
        msg = self._stopped or p.error or p.last_exception or f"fitting stopped with exit status {rc}"
        if rc < 0 and not (self._stopped or p.error):
            msg = "fitting was stopped (killed by a signal; out of memory?)"
        return self._hide(msg)

    def stop(self, reason: str) -> None:
        """Kill the process; ``reason`` becomes its error message."""
        self._stopped = reason
        self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 15)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, 9)
                    self.proc.wait(timeout=10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass

    def __exit__(self, *exc) -> None:
        self.kill()
        if self._log is not None:
            self._log.close()


def follow(proc: FitProcess, timeout_s: float, interval_s: float = 1.0) -> Iterator[FitProgress]:
    """Yield a progress snapshot every ``interval_s`` while the process runs, and a last one when it
    ends. Past ``timeout_s`` the process is killed and the snapshot carries the timeout error.
    Read the exit status with ``proc.poll()`` afterwards."""
    t0 = time.monotonic()
    while proc.poll() is None:
        if time.monotonic() - t0 > timeout_s:
            proc.stop(f"fitting took longer than {timeout_s / 60:.0f} minutes and was stopped")
            break
        yield proc.snapshot()
        time.sleep(interval_s)
    proc.poll()
    yield proc.snapshot()
