"""Structured progress events: what a long run is doing, as JSON lines that anyone can read.

The pipeline and the fit loop *emit* events; sinks consume them: :class:`JsonlSink` appends them to
``RUN/progress.jsonl`` (what the web app reads), :class:`ConsoleSink` draws the command line's tqdm
bars. One event is one JSON object per line::

    {"t": 1733230000.1, "kind": "stage", "stage": "sfm", "message": "structure from motion"}
    {"t": ..., "kind": "start", "stage": "splat", "step": 0, "total": 1500}
    {"t": ..., "kind": "step",  "stage": "splat", "step": 120, "total": 1500, "values": {"loss": 0.05}}
    {"t": ..., "kind": "eval",  "stage": "splat", "step": 500, "values": {"psnr": 24.1, "ssim": 0.9}}
    {"t": ..., "kind": "end",   "stage": "splat", "step": 1500, "total": 1500}
    {"t": ..., "kind": "done",  "values": {"test_psnr": 27.3, ...}}      (the run finished)
    {"t": ..., "kind": "error", "message": "photos/: fewer than 3 images"}

Kinds: ``stage`` (a pipeline stage begins), ``start``/``step``/``end`` (a counted phase: its step and
total), ``eval`` (held-out metrics during training), ``log`` (a notable message), ``done``,
``error``. ``step`` events are throttled in the file (at most every ``min_interval`` seconds).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

PROGRESS_FILE = "progress.jsonl"
KINDS = ("stage", "start", "step", "eval", "end", "log", "done", "error")


@dataclass
class Event:
    kind: str
    stage: str = ""
    step: Optional[int] = None
    total: Optional[int] = None
    message: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    t: float = field(default_factory=time.time)

    def to_json(self) -> str:
        d: dict[str, Any] = {"t": round(self.t, 3), "kind": self.kind}
        for k in ("stage", "step", "total", "message"):
            v = getattr(self, k)
            if v not in (None, ""):
                d[k] = v
        if self.values:
            d["values"] = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.values.items()}
        return json.dumps(d)

    @classmethod
    def from_dict(cls, d: dict) -> "Event":
        return cls(kind=str(d.get("kind", "log")), stage=str(d.get("stage", "")), step=d.get("step"),
                   total=d.get("total"), message=str(d.get("message", "")), values=dict(d.get("values") or {}),
                   t=float(d.get("t", 0.0)))


class JsonlSink:
    """Appends events to a JSON-lines file (one ``write`` + flush per line; ``step`` events throttled)."""

    def __init__(self, path: str | os.PathLike, min_interval: float = 0.5) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.min_interval = min_interval
        self._last_step: dict[str, float] = {}
        self._f = open(self.path, "a", encoding="utf-8")

    def __call__(self, ev: Event) -> None:
        if self._f.closed:
            return
        if ev.kind == "step" and ev.step != ev.total:
            last = self._last_step.get(ev.stage, 0.0)
            if ev.t - last < self.min_interval:
                return
            self._last_step[ev.stage] = ev.t
        self._f.write(ev.to_json() + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class ConsoleSink:
    """tqdm bars for counted phases (``start``/``step``/``end``), evaluation lines written above them."""

    def __init__(self, postfix: Iterable[str] | None = None) -> None:
        self._bars: dict[str, Any] = {}

    def __call__(self, ev: Event) -> None:
        from tqdm.auto import tqdm

        if ev.kind == "start":
            self._bars[ev.stage] = tqdm(total=ev.total, initial=ev.step or 0, desc=ev.stage, dynamic_ncols=True)
        elif ev.kind == "step" and ev.stage in self._bars:
            bar = self._bars[ev.stage]
            bar.update((ev.step or 0) - bar.n)
            if ev.values and ((ev.step or 0) % 10 == 0 or ev.step == ev.total):
                bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in ev.values.items()},
                                refresh=False)
        elif ev.kind == "eval":
            msg = (f"{ev.stage} step {ev.step} ({ev.values.get('seconds', 0):.0f} s): test PSNR "
                   f"{ev.values.get('psnr', float('nan')):.2f} SSIM {ev.values.get('ssim', float('nan')):.4f}")
            bar = self._bars.get(ev.stage)
            (bar.write if bar is not None else tqdm.write)(msg)
        elif ev.kind == "end" and ev.stage in self._bars:
            self._bars.pop(ev.stage).close()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()


class Progress:
    """An event emitter with sinks (callables taking an :class:`Event`). ``Progress()`` has none."""

    def __init__(self, *sinks) -> None:
        self.sinks = [s for s in sinks if s is not None]

    def emit(self, kind: str, stage: str = "", step: int | None = None, total: int | None = None,
             message: str = "", **values) -> None:
        ev = Event(kind, stage, step, total, message, values)
        for sink in self.sinks:
            sink(ev)

    def stage(self, stage: str, message: str = "") -> None:
        self.emit("stage", stage, message=message)

    def close(self) -> None:
        for s in self.sinks:
            if hasattr(s, "close"):
                s.close()

    @classmethod
    def console(cls, enabled: bool = True) -> "Progress":
        return cls(ConsoleSink()) if enabled else cls()


def read_events(path: str | os.PathLike, offset: int = 0) -> tuple[list[Event], int]:
    """Events appended to ``path`` since byte ``offset``; returns (events, new offset). A partly
    written last line is left for the next call; a missing file gives no events."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = []
    for line in data[:end].splitlines():
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(d, dict):
            events.append(Event.from_dict(d))
    return events, offset + end
