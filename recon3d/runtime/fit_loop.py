"""The one training loop of every per-scene method (splat, SuGaR, NeRF, SDF): :func:`run_fit_loop`."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from recon3d.runtime.checkpoint import (check_run_id, checkpoint_path, latest_checkpoint, prune_checkpoints,
                                        save_run_checkpoint)
from recon3d.runtime.progress import ConsoleSink, Progress

log = logging.getLogger(__name__)


@dataclass
class FitLoop:
    """What :func:`run_fit_loop` needs besides the trainer (see there).

    Attributes:
        ckpt_dir: checkpoint folder (``step_XXXXXXX.pt``; resume reads the latest).
        end_step: train while ``trainer.step < end_step``.
        start_step: the step this phase starts at (SuGaR runs after the splat steps): the progress
            bar and the periodic checkpoint / log / eval counters count from here.
        checkpoint_every, keep_checkpoints: periodic checkpoints (0: only the final one), how many kept.
        eval_every, eval_views: periodic test-split evaluation (0: none), on at most this many views.
        max_seconds: also stop after this much training time (0: no limit).
        desc: progress-bar label; postfix: running-average stats shown on the bar (when present).
        extra: ``() -> dict`` of extra numbers for the bar and history (e.g. the number of Gaussians).
    """

    ckpt_dir: Path
    end_step: int
    start_step: int = 0
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    eval_every: int = 0
    eval_views: Optional[int] = None
    max_seconds: float = 0.0
    desc: str = "fit"
    postfix: tuple = ("loss", "psnr")
    extra: Optional[Callable[[], dict]] = None


def run_fit_loop(trainer, loop: FitLoop, resume: bool = False, progress: "bool | Progress" = True,
                 log_every: int = 50) -> dict:
    """The one training loop of every per-scene method: optional resume from the latest checkpoint,
    ``trainer.train_step()`` until ``loop.end_step`` (or ``loop.max_seconds``), running averages of
    the step stats as progress events (a tqdm bar on the console, ``progress.jsonl`` in a run
    folder: :mod:`recon3d.runtime.progress`) and in a history, periodic checkpoints (pruned) and
    evaluations, and a final checkpoint.

    ``progress``: a :class:`~recon3d.runtime.progress.Progress` emitter, or True (a console bar) /
    False (log lines every ``log_every`` steps instead).

    The trainer provides ``step``, ``train_step() -> dict``, ``state_dict()``, ``load(path)`` and, for
    ``eval_every``, ``evaluate(save_renders=False, max_views=N)``. Its ``elapsed`` attribute, when it
    has one, accumulates training seconds across resumes (it is saved in checkpoints). Its ``run_id``,
    when set, goes into every checkpoint, and resuming from a checkpoint of another run is refused.

    Returns ``{"steps", "train_seconds", "history"}`` (history: ``{"step", "seconds", averages...}``
    every ``log_every`` steps plus ``test_psnr``/``test_ssim`` rows at evaluations).
    """
    events = progress if isinstance(progress, Progress) else Progress.console(bool(progress))
    quiet = not events.sinks or not any(isinstance(s, ConsoleSink) for s in events.sinks)
    if resume:
        latest = latest_checkpoint(loop.ckpt_dir)
        if latest is not None:
            check_run_id(latest, getattr(trainer, "run_id", None))
            trainer.load(latest)
            log.info("%s: resumed from %s (step %d)", loop.desc, latest, trainer.step)
    trainer.run_dir.mkdir(parents=True, exist_ok=True)
    keeps_time = hasattr(trainer, "elapsed")
    elapsed = float(trainer.elapsed) if keeps_time else 0.0
    total = loop.end_step - loop.start_step
    events.emit("start", loop.desc, step=trainer.step - loop.start_step, total=total)
    ema: dict[str, float] = {}
    history = []

    def extras() -> dict:
        return loop.extra() if loop.extra is not None else {}

    while trainer.step < loop.end_step and not (loop.max_seconds > 0 and elapsed >= loop.max_seconds):
        t0 = time.perf_counter()
        stats = trainer.train_step()
        elapsed += time.perf_counter() - t0
        if keeps_time:
            trainer.elapsed = elapsed
        for k, v in stats.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                ema[k] = v if k not in ema else 0.9 * ema[k] + 0.1 * v
        rel = trainer.step - loop.start_step
        shown = {k: ema[k] for k in loop.postfix if k in ema}
        if rel % 10 == 0 or trainer.step == loop.end_step:
            shown.update(extras())
        events.emit("step", loop.desc, step=rel, total=total, **shown)
        if rel % log_every == 0:
            history.append({"step": trainer.step, "seconds": round(elapsed, 2), **ema, **extras()})
            if quiet:
                log.info("%s step %d (%.0f s): %s", loop.desc, trainer.step, elapsed,
                         ", ".join(f"{k} {v:.4g}" for k, v in ema.items()))
        if loop.checkpoint_every and rel % loop.checkpoint_every == 0 and trainer.step < loop.end_step:
            saved = save_run_checkpoint(trainer, checkpoint_path(loop.ckpt_dir, trainer.step))
            prune_checkpoints(loop.ckpt_dir, loop.keep_checkpoints, protect=saved)
        if loop.eval_every and rel % loop.eval_every == 0 and trainer.step < loop.end_step:
            m = trainer.evaluate(save_renders=False, max_views=loop.eval_views)
            history.append({"step": trainer.step, "seconds": round(elapsed, 2), "test_psnr": m["psnr"],
                            "test_ssim": m["ssim"], "test_views": m["views"]})
            events.emit("eval", loop.desc, step=trainer.step, seconds=round(elapsed, 2), psnr=m["psnr"],
                        ssim=m["ssim"], views=m["views"])
            if quiet:
                log.info("%s step %d (%.0f s): test PSNR %.2f SSIM %.4f on %d views", loop.desc, trainer.step,
                         elapsed, m["psnr"], m["ssim"], m["views"])
    saved = save_run_checkpoint(trainer, checkpoint_path(loop.ckpt_dir, trainer.step))
    prune_checkpoints(loop.ckpt_dir, loop.keep_checkpoints, protect=saved)
    events.emit("end", loop.desc, step=trainer.step - loop.start_step, total=total, seconds=round(elapsed, 2))
    if not isinstance(progress, Progress):
        events.close()
    return {"steps": trainer.step, "train_seconds": elapsed, "history": history}
