"""Fit from photos: ``recon3d fit`` run in a subprocess, its output parsed into progress (no gradio here).

A subprocess keeps the page responsive, lets a cancelled request kill the work, and keeps a crash
in fitting from taking the web server down. Its combined stdout/stderr is written to
``<job>/fit.log`` and parsed line by line:

- tqdm bars (``splat:  45%|####  | 450/1000 [...]``) -> :class:`FitProgress` with a fraction;
- log lines (``12:00:01 INFO recon3d.sfm...: SfM: registered 48 of 48 images``) -> the stage text;
- ``recon3d fit: error: <problem>`` (exit status 2) -> the message shown in the page.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from recon3d.io.errors import DataError
from recon3d.pipeline.fit import POSE_OPT_METHODS

_TQDM = re.compile(r"^\s*(?P<desc>[\w .-]+?):\s*(?P<pct>\d+)%\|.*?\|\s*(?P<n>\d+)/(?P<total>\d+)")
_LOG = re.compile(r"^\d\d:\d\d:\d\d (?P<level>[A-Z]+) (?P<name>[\w.]+): (?P<msg>.*)$")
_ERROR = re.compile(r"^recon3d \w+: error: (?P<msg>.*)$")
_EXC = re.compile(r"^(?P<type>[A-Za-z_][\w.]*(Error|Exception|Interrupt)): (?P<msg>.*)$")


@dataclass
class FitProgress:
    """What the page shows while a fit runs."""

    stage: str = "starting"
    bar: Optional[str] = None  # tqdm description: "splat", "sugar", "nerf", ...
    done: int = 0
    total: int = 0
    lines: list[str] = field(default_factory=list)  # recent log messages, newest last
    error: Optional[str] = None  # the one-line user-facing error, once known
    last_exception: Optional[str] = None  # "TypeError: ..." of an unexpected crash (no traceback)

    @property
    def fraction(self) -> Optional[float]:
        return self.done / self.total if self.total else None

    def describe(self) -> str:
        if self.bar and self.total:
            return f"{self.bar}: step {self.done} / {self.total}"
        return self.stage


def parse_line(line: str, state: FitProgress, keep: int = 8) -> FitProgress:
    """Update ``state`` from one line of ``recon3d fit`` output (tqdm chunks split on ``\\r`` too)."""
    line = line.strip()
    if not line:
        return state
    if m := _TQDM.match(line):
        state.bar, state.done, state.total = m["desc"].strip(), int(m["n"]), int(m["total"])
        state.stage = f"{state.bar} optimization"
        return state
    if m := _ERROR.match(line):
        state.error = m["msg"]
        return state
    if m := _LOG.match(line):
        msg = m["msg"]
        if state.total and state.done >= state.total:  # a finished bar gives way to the next stage
            state.bar, state.done, state.total = None, 0, 0
        if m["level"] in ("INFO", "WARNING", "ERROR"):
            state.stage = msg if len(msg) <= 160 else msg[:157] + "..."
            state.lines = (state.lines + [f"{m['level'].lower()}: {msg}"])[-keep:]
        return state
    if (m := _EXC.match(line)) and state.error is None:
        state.last_exception = f"{m['type'].rsplit('.', 1)[-1]}: {m['msg']}"
    return state


def fit_command(photos: Path, run_dir: Path, *, method: str, preset: str, steps: int, orbit_frames: int,
                threads: int = 1, device: str = "cpu", pose_opt: bool = False) -> list[str]:
    """The ``recon3d fit`` command line for one request (run with this interpreter)."""
    cmd = [sys.executable, "-m", "recon3d.cli", "--threads", str(int(threads)), "fit", "--images", str(photos),
           "--out", str(run_dir), "--method", method, "--preset", preset, "--max-steps", str(int(steps)),
           "--orbit-frames", str(int(orbit_frames)), "--device", device]
    return cmd + ["--pose-opt"] if pose_opt else cmd


def validate_fit_request(method: str, preset: str, steps, methods: tuple[str, ...], max_steps: int,
                         pose_opt: bool = False) -> int:
    """DataError unless method/preset are known, ``steps`` is an integer in [1, max_steps] and pose
    refinement, if asked for, is available for the method; returns steps."""
    if method not in methods:
        raise DataError("method", f"unknown method {method!r}; choose one of {', '.join(methods)}")
    if pose_opt and method not in POSE_OPT_METHODS:
        raise DataError("pose refinement", f"is available for {' and '.join(POSE_OPT_METHODS)}, not {method}")
    if preset not in ("quick", "default", "high"):
        raise DataError("preset", f"unknown preset {preset!r}")
    try:
        n = int(steps)
    except (TypeError, ValueError):
        raise DataError("steps", "must be a whole number") from None
    if not 1 <= n <= max_steps:
        raise DataError("steps", f"must be between 1 and {max_steps}")
    return n


class FitProcess:
    """One ``recon3d fit`` subprocess; a reader thread parses its output into :attr:`progress`.

    Use as a context manager: leaving the block (finished, failed, or the request cancelled) kills
    the process if it is still running.
    """

    def __init__(self, cmd: list[str], log_path: Path, cwd: Optional[Path] = None,
                 hide_prefix: Optional[str] = None) -> None:
        self.cmd, self.log_path, self.cwd = cmd, Path(log_path), cwd
        self.hide_prefix = hide_prefix  # server folder removed from messages shown in the page
        self.progress = FitProgress()
        self.proc: Optional[subprocess.Popen] = None
        self._reader: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def __enter__(self) -> "FitProcess":
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=self.cmd[self.cmd.index("--threads") + 1])
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.cwd,
                                     env=env, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        buf = b""
        with open(self.log_path, "wb") as log:
            while chunk := self.proc.stdout.read1(4096):  # type: ignore[attr-defined]
                log.write(chunk)
                log.flush()
                buf += chunk
                *parts, buf = re.split(rb"[\r\n]", buf)
                with self._lock:
                    for p in parts:
                        parse_line(p.decode("utf-8", "replace"), self.progress)
            if buf:
                with self._lock:
                    parse_line(buf.decode("utf-8", "replace"), self.progress)

    def poll(self) -> Optional[int]:
        """The exit status once finished (output fully parsed), else None."""
        assert self.proc is not None
        rc = self.proc.poll()
        if rc is not None and self._reader is not None:
            self._reader.join(timeout=5)
        return rc

    def _hide(self, text: Optional[str]) -> Optional[str]:
        """``text`` without the job's server folder (``/srv/.../job/run/sfm`` -> ``run/sfm``)."""
        if not text or not self.hide_prefix:
            return text
        return text.replace(self.hide_prefix.rstrip("/") + "/", "").replace(self.hide_prefix, ".")

    def snapshot(self) -> FitProgress:
        """A copy of the progress so far, server folders removed from its messages."""
        with self._lock:
            p = self.progress
            return FitProgress(self._hide(p.stage), p.bar, p.done, p.total, [self._hide(x) for x in p.lines],
                               self._hide(p.error), self._hide(p.last_exception))

    def error_message(self, rc: int) -> str:
        """A one-line message for a failed run: the CLI's own error, else the last exception line."""
        p = self.progress
        msg = p.error or p.last_exception or f"fitting stopped with exit status {rc}"
        if rc < 0 and not p.error:
            msg = "fitting was stopped (killed by a signal; out of memory?)"
        return self._hide(msg)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 15)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, 9)
                except ProcessLookupError:
                    pass

    def __exit__(self, *exc) -> None:
        self.kill()
        if self.proc is not None and self.proc.stdout is not None:
            if self._reader is not None:
                self._reader.join(timeout=5)
            self.proc.stdout.close()


def follow(proc: FitProcess, timeout_s: float, interval_s: float = 1.0) -> Iterator[FitProgress]:
    """Yield a progress snapshot every ``interval_s`` while the process runs, and a last one when it
    ends. Past ``timeout_s`` the process is killed and the snapshot carries the timeout error.
    Read the exit status with ``proc.poll()`` afterwards."""
    t0 = time.monotonic()
    while proc.poll() is None:
        if time.monotonic() - t0 > timeout_s:
            proc.kill()
            with proc._lock:
                proc.progress.error = f"fitting took longer than {timeout_s / 60:.0f} minutes and was stopped"
            break
        yield proc.snapshot()
        time.sleep(interval_s)
    proc.poll()
    yield proc.snapshot()
