"""The one training loop of every feed-forward model (single process or DDP with ``torchrun``).

Usage notes for model authors
-----------------------------
Register the model in :data:`recon3d.feedforward.registry.MODELS`, then::

    recon3d train pixelnerf --data outputs/ffdata64 --out outputs/train/pixelnerf --steps 20000
    recon3d train lrm --data DIR --out DIR --set triplane_res=32 --set train.lr=2e-4   # model / trainer keys
    recon3d train lrm --data DIR --out DIR --resume            # continues exactly where it stopped
    torchrun --nproc_per_node 4 -m recon3d.cli train lrm --data DIR --out DIR    # DDP (nccl; gloo on CPU)
    /work/heavy .venv/bin/python -m recon3d.cli --threads 1 train ...             # on the shared CPU box

or from Python ``train("lrm", data_dir, out_dir, {"steps": 500}, {"triplane_res": 32})``.

Which settings win (lowest to highest): :class:`TrainConfig` defaults < the model class's
``default_train_config()`` (a dict of TrainConfig fields, ``warmup_steps`` is read as ``warmup``) <
the caller's ``train_config`` (a dict of overrides, or a complete TrainConfig). ``views_per_item = 0``
means the model config's ``num_views`` if it has one, else 4. The model is built from its
``config_cls()`` defaults with ``model_config_overrides`` applied (dotted keys reach nested configs).

What the loop gives the model: ``training_step(batch, step)`` in train mode under autocast (CUDA +
``amp``), with ``step`` = optimizer steps done so far; it may draw random numbers from torch's global
RNG (seeded ``seed + rank``, saved in checkpoints). ``validation_step``/``validation_images`` run on
rank 0 under ``no_grad`` in eval mode on fixed val views, in float32 (no autocast), with the RNG forked
(training is unaffected).
``batch_size`` is per process (global batch = batch_size x world size).

Output folder: ``config.json`` (model + train config), ``log.jsonl`` (one JSON object per line:
``{"split": "train", "step", "loss", "lr", "grad_norm", "it_per_s", ...model logs}`` and
``{"split": "val", "step", ...metrics}``), ``val/step_XXXXXXX_<name>.png``, ``checkpoints/step_XXXXXXX.pt``
(model payload, optimizer, scheduler, grad scaler, step, data position, RNG states of every rank;
written atomically, the last ``keep_checkpoints`` kept), and ``final.pt`` in the
:meth:`~recon3d.feedforward.base.FeedForwardModel.checkpoint_payload` format that
``registry.load_model(name, checkpoint=out/"final.pt")`` reads.

Resume is exact: data order and view choice are pure functions of (seed, epoch, position), so
"2N steps" and "N steps, stop, ``resume`` N more" end with identical weights (tested).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from recon3d.io.atomic import atomic_path, atomic_write_bytes, atomic_write_json
from recon3d.runtime.checkpoint import (atomic_torch_save, checkpoint_path, latest_checkpoint, load_checkpoint,
                                        prune_checkpoints, rng_state, set_rng_state)
from recon3d.runtime.config import ConfigIO
from recon3d.runtime.device import resolve_device

from . import registry
from .base import FeedForwardModel
from .data import MultiViewDataset

log = logging.getLogger(__name__)
TRAIN_CKPT_FORMAT = "recon3d-feedforward-train"
_ALIASES = {"warmup_steps": "warmup"}


@dataclass
class TrainConfig(ConfigIO):
    """Trainer settings (steps count optimizer updates).

    Attributes:
        steps: total optimizer steps; the cosine schedule ends here.
        batch_size: objects per batch, per process.
        views_per_item: views per object (0: the model config's ``num_views``, else 4).
        image_size: resize views to this square size (0: as stored).
        max_view_angle_deg: 0 (default): views drawn uniformly at random per object; > 0: overlapping
            baselines (first view random, the others within this angle of it, see
            :class:`~.data.MultiViewDataset`), for training and validation alike.
        lr, weight_decay, betas: AdamW (no weight decay on 0/1-D parameters: biases, norms).
        warmup: linear warm-up steps; then cosine decay to ``lr * min_lr_ratio`` at ``steps``.
        grad_clip: max global gradient norm (0: off).
        amp: ``"bf16"``, ``"fp16"`` (with a grad scaler) or ``"none"``; only on CUDA (CPU runs fp32).
        val_every, val_batches: validate every N steps (0: only at the end) on this many val batches.
        ckpt_every, keep_checkpoints: checkpoint every N steps (and at the end); keep the last K.
        log_every: JSONL/progress-bar train log period, steps.
        num_workers: DataLoader worker processes.
        seed: model init, data order, view choice and per-rank RNG seed.
        device: ``"auto"`` (CUDA when available), ``"cuda"`` or ``"cpu"``.
        find_unused_parameters: DDP option (True tolerates parameters without gradients).
        init_from: fine-tuning / curriculum stages: a model file (a trainer ``final.pt`` or
            checkpoint, a shipped or published checkpoint) whose weights and model config start a
            fresh run (new optimizer and schedule); ignored on resume. Model config overrides apply
            on top only where the weights still fit.
    """

    steps: int = 10000
    batch_size: int = 4
    views_per_item: int = 0
    image_size: int = 0
    max_view_angle_deg: float = 0.0
    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    warmup: int = 200
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    amp: str = "bf16"
    val_every: int = 500
    val_batches: int = 4
    ckpt_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 25
    num_workers: int = 2
    seed: int = 0
    device: str = "auto"
    find_unused_parameters: bool = True
    init_from: str = ""


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank): the unwrapped model, steps done, paths, last metrics."""

    model: FeedForwardModel
    step: int
    out_dir: Path
    final: Optional[Path]
    last_train: dict = field(default_factory=dict)
    last_val: dict = field(default_factory=dict)
    seconds: float = 0.0


# ----------------------------------------------------------------------------------- configs
def parse_value(text: str) -> Any:
    """``--set`` value: JSON when it parses (numbers, booleans, lists, null), else the raw string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """Copy of dataclass ``config`` with ``{"a": 1, "sub.b": 2}`` applied; KeyError on unknown keys."""
    out = config
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        names = {f.name for f in fields(out)}
        if head not in names:
            raise KeyError(f"{type(config).__name__} has no option {head!r} (known: {', '.join(sorted(names))})")
        cur = getattr(out, head)
        if rest:
            if not is_dataclass(cur):
                raise KeyError(f"{type(config).__name__}.{head} is not a nested config")
            value = apply_overrides(cur, {rest: value})
        elif isinstance(cur, tuple) and isinstance(value, list):
            value = tuple(value)
        elif isinstance(cur, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        out = replace(out, **{head: value})
    return out


def resolve_train_config(cls: type, train_config: TrainConfig | dict | None) -> TrainConfig:
    """Merge TrainConfig defaults < ``cls.default_train_config()`` < ``train_config`` (see module doc)."""
    if isinstance(train_config, TrainConfig):
        return train_config
    model_defaults = dict(getattr(cls, "default_train_config", lambda: {})() or {})
    merged = {_ALIASES.get(k, k): v for k, v in {**model_defaults, **(train_config or {})}.items()}
    return apply_overrides(TrainConfig(), merged)


def build_model(name: str, overrides: Optional[dict] = None, config_dict: Optional[dict] = None) -> FeedForwardModel:
    """Model ``name`` from its config defaults + ``overrides`` (or exactly ``config_dict``)."""
    cls = registry.model_class(name)
    if config_dict is not None:
        config = cls.config_cls.from_dict(config_dict)
    else:
        config = apply_overrides(cls.config_cls(), overrides or {})
    return cls(config)


# ---------------------------------------------------------------------------------- pieces
class ResumableSampler(DistributedSampler):
    """torch's DistributedSampler (seeded shuffle per epoch, sharded by rank) yielding
    ``(index, epoch)`` items, so the Dataset's view choice is a pure function of (seed, index, epoch);
    ``start`` skips the first items of the epoch (resume mid-epoch)."""

    def __init__(self, dataset, num_replicas: int, rank: int, seed: int, shuffle: bool = True):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.start = 0

    def __iter__(self):
        items = list(super().__iter__())[self.start:]
        return iter([(i, self.epoch) for i in items])

    def __len__(self) -> int:
        return self.num_samples - self.start


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of ``cfg.lr`` at optimizer step ``step``: linear warm-up, then cosine to min_lr_ratio."""
    if cfg.warmup > 0 and step < cfg.warmup:
        return (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


class _StepModule(nn.Module):
    """Routes DDP's forward to ``training_step`` (DDP syncs gradients of what forward touched)."""

    def __init__(self, model: FeedForwardModel):
        super().__init__()
        self.model = model

    def forward(self, batch, step: int):
        return self.model.training_step(batch, step)


def _dist_env() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def _pick_device(cfg: TrainConfig, local_rank: int, device: Optional[str]) -> torch.device:
    """``device`` (else ``cfg.device``) through :func:`resolve_device`; a bare ``cuda`` becomes this
    process's GPU ``cuda:{local_rank}`` (one GPU per rank under torchrun). ValueError for a bad name
    or CUDA without a GPU."""
    dev = resolve_device(device or cfg.device)
    if dev.type == "cuda" and dev.index is None:
        return torch.device(f"cuda:{local_rank}")
    return dev


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _save_png(path: Path, img: torch.Tensor) -> None:
    from PIL import Image

    arr = (img.detach().float().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


class _JsonlLog:
    def __init__(self, path: Path, enabled: bool, resume_step: Optional[int]):
        self.path, self.enabled = path, enabled
        if enabled and resume_step is not None and path.is_file():  # drop lines past the checkpoint
            keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= resume_step]
            atomic_write_bytes(path, ("\n".join(keep) + "\n" if keep else "").encode())
        elif enabled and resume_step is None:
            atomic_write_bytes(path, b"")

    def write(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


# ------------------------------------------------------------------------------------- train
def train(model_name: str, data_dir: str | Path, out_dir: str | Path, train_config: TrainConfig | dict | None = None,
          model_config_overrides: Optional[dict] = None, resume: bool = False, device: Optional[str] = None,
          stop_at: Optional[int] = None, show_progress: bool = True) -> TrainResult:
    """Train ``model_name`` on the data set ``data_dir`` into ``out_dir`` (see the module docstring).

    Args:
        train_config: dict of TrainConfig overrides (on top of the model's defaults) or a TrainConfig.
        model_config_overrides: model config keys to change (ignored on resume: the checkpoint's config wins).
        resume: continue from the latest checkpoint in ``out_dir/checkpoints`` (fresh start if none);
            explicit ``train_config`` keys override the saved train config (e.g. more ``steps``).
        device: overrides ``TrainConfig.device``.
        stop_at: stop after this step (and its checkpoint), as if interrupted; the schedule still
            runs to ``steps``.
    Under ``torchrun`` (WORLD_SIZE > 1) the process group is set up here (nccl on CUDA, gloo on CPU).
    """
    t_start = time.perf_counter()
    rank, world, local_rank = _dist_env()
    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    cls = registry.model_class(model_name)
    cfg = resolve_train_config(cls, train_config)
    ckpt_file = latest_checkpoint(ckpt_dir) if resume else None
    ckpt = load_checkpoint(ckpt_file) if ckpt_file is not None else None
    if ckpt is not None:
        if ckpt.get("format") != TRAIN_CKPT_FORMAT or ckpt.get("model_name") != model_name:
            raise ValueError(f"{ckpt_file}: not a recon3d training checkpoint of model {model_name!r}")
        explicit = train_config.to_dict() if isinstance(train_config, TrainConfig) else dict(train_config or {})
        cfg = apply_overrides(TrainConfig.from_dict(ckpt["train_config"]), {_ALIASES.get(k, k): v for k, v in explicit.items()})
        if model_config_overrides:
            log.warning("resume: model config overrides %s ignored (the checkpoint's config is used)", model_config_overrides)
    elif resume:
        log.warning("resume: no checkpoint in %s, starting from scratch", ckpt_dir)
    dev = _pick_device(cfg, local_rank, device)

    own_group = world > 1 and not dist.is_initialized()
    if own_group:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
    try:
        return _run(model_name, cls, cfg, Path(data_dir), out, ckpt, ckpt_file, model_config_overrides, dev,
                    rank, world, stop_at, show_progress, t_start)
    finally:
        if own_group:
            dist.destroy_process_group()


def _run(model_name, cls, cfg, data_dir, out, ckpt, ckpt_file, overrides, dev, rank, world, stop_at, show_progress,
         t_start) -> TrainResult:
    from tqdm import tqdm

    main = rank == 0
    torch.manual_seed(cfg.seed)  # identical init on every rank (DDP also broadcasts rank 0's weights)
    if ckpt is None and cfg.init_from:
        raw = registry.load_payload(Path(cfg.init_from))
        src = (cls.from_payload(raw["model_payload"]) if raw.get("format") == TRAIN_CKPT_FORMAT
               else registry.model_from_payload(model_name, Path(cfg.init_from), raw))
        model = build_model(model_name, None, apply_overrides(src.config, overrides or {}).to_dict())
        model.load_state_dict(src.state_dict())  # strict: a config override that changes shapes fails here
        model = model.to(dev)
        if main:
            log.info("initialized from %s", cfg.init_from)
        del src
    else:
        model = build_model(model_name, overrides, ckpt["model_payload"]["config"] if ckpt else None).to(dev)
    views = cfg.views_per_item or int(getattr(model.config, "num_views", 0) or 4)
    size = cfg.image_size or None
    angle = float(cfg.max_view_angle_deg) or None
    train_set = MultiViewDataset(data_dir, "train", views, size, seed=cfg.seed, max_view_angle_deg=angle)
    try:
        val_set = MultiViewDataset(data_dir, "val", views, size, seed=cfg.seed, max_view_angle_deg=angle)
    except Exception as e:  # noqa: BLE001 - a set without val objects just skips validation
        log.warning("no validation: %s", e)
        val_set = None

    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=tuple(cfg.betas))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp) if dev.type == "cuda" else None
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype is torch.float16)

    step, epoch, pos = 0, 0, 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model_payload"]["state_dict"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        step, epoch, pos = int(ckpt["step"]), int(ckpt["epoch"]), int(ckpt["batch_in_epoch"])
        rngs = ckpt["rng"]
        if len(rngs) == world:
            set_rng_state(rngs[rank])
        else:
            log.warning("checkpoint was written by %d processes, now %d: RNG streams reseeded", len(rngs), world)
            torch.manual_seed(cfg.seed + 1000 * step + rank)
        if main:
            log.info("resumed from %s at step %d", ckpt_file, step)
    else:
        torch.manual_seed(cfg.seed + rank)
        np.random.seed((cfg.seed + rank) % 2**32)
        random.seed(cfg.seed + rank)

    if main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", {"model": model_name, "model_config": model.checkpoint_payload()["config"],
                                                "train_config": cfg.to_dict(), "data": str(data_dir),
                                                "world_size": world, "views_per_item": views})
    jlog = _JsonlLog(out / "log.jsonl", main, step if ckpt is not None else None)
    step_module: nn.Module = _StepModule(model)
    if world > 1:
        step_module = nn.parallel.DistributedDataParallel(_StepModule(model), device_ids=[dev.index] if dev.type == "cuda" else None,
                                                  find_unused_parameters=cfg.find_unused_parameters)
    sampler = ResumableSampler(train_set, world, rank, cfg.seed)
    batches_per_epoch = len(sampler) // cfg.batch_size
    if batches_per_epoch == 0:
        raise ValueError(f"{data_dir}: {len(train_set)} training objects over {world} process(es) make no batch of {cfg.batch_size}")

    def loader_at(ep: int, start_batch: int):
        sampler.set_epoch(ep)
        sampler.start = start_batch * cfg.batch_size
        return iter(DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, drop_last=True,
                               num_workers=cfg.num_workers, pin_memory=dev.type == "cuda",
                               generator=torch.Generator().manual_seed(cfg.seed + ep)))

    def save_checkpoint() -> None:
        rngs = [None] * world
        if world > 1:
            dist.all_gather_object(rngs, rng_state())
        else:
            rngs = [rng_state()]
        if main:
            atomic_torch_save({"format": TRAIN_CKPT_FORMAT, "model_name": model_name,
                               "model_payload": model.checkpoint_payload(), "optimizer": opt.state_dict(),
                               "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "step": step,
                               "epoch": epoch, "batch_in_epoch": pos, "rng": rngs, "train_config": cfg.to_dict(),
                               "world_size": world}, checkpoint_path(out / "checkpoints", step))
            prune_checkpoints(out / "checkpoints", cfg.keep_checkpoints)

    end = min(cfg.steps, stop_at) if stop_at is not None else cfg.steps
    it = loader_at(epoch, pos)
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {model_name}", disable=not (main and show_progress),
               dynamic_ncols=True)
    last_train: dict = {}
    last_val: dict = {}
    acc: dict[str, float] = {}
    n_acc, t_log = 0, time.perf_counter()
    while step < end:
        if pos >= batches_per_epoch:
            epoch, pos = epoch + 1, 0
            it = loader_at(epoch, 0)
        batch = _to_device(next(it), dev)
        pos += 1
        model.train()
        with torch.autocast(dev.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext():
            loss, logs = step_module(batch, step)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {float(loss)} at step {step} (model {model_name})")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        params = [p for p in model.parameters() if p.grad is not None]
        gnorm = float(nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf")))
        scaler.step(opt)
        scaler.update()
        sched.step()
        step += 1
        for k, v in {"loss": float(loss.detach()), "grad_norm": gnorm, **{k: float(v) for k, v in logs.items()}}.items():
            acc[k] = acc.get(k, 0.0) + v
        n_acc += 1
        if step % cfg.log_every == 0 or step == end:
            now = time.perf_counter()
            last_train = {k: v / n_acc for k, v in acc.items()}
            rec = {"split": "train", "step": step, "epoch": epoch, "lr": sched.get_last_lr()[0],
                   "it_per_s": n_acc / max(now - t_log, 1e-9), **last_train}
            jlog.write(rec)
            bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{rec['lr']:.2e}", its=f"{rec['it_per_s']:.2f}")
            acc, n_acc, t_log = {}, 0, now
        bar.update(1)
        if val_set is not None and ((cfg.val_every and step % cfg.val_every == 0) or step == end):
            if main:
                last_val = validate(model, val_set, cfg, dev, amp_dtype, out, step)
                jlog.write({"split": "val", "step": step, **last_val})
                bar.write(f"step {step} val " + " ".join(f"{k} {v:.4f}" for k, v in last_val.items()))
            if world > 1:
                dist.barrier()
        if (cfg.ckpt_every and step % cfg.ckpt_every == 0) or step == end:
            save_checkpoint()
    bar.close()
    final = None
    if main and step >= cfg.steps:
        final = out / "final.pt"
        payload = model.checkpoint_payload()
        payload["train"] = {"steps": step, "data": str(data_dir), "world_size": world, "train_config": cfg.to_dict(),
                            "last_val": last_val}
        atomic_torch_save(payload, final)
    return TrainResult(model, step, out, final, last_train, last_val, time.perf_counter() - t_start)


@torch.no_grad()
def validate(model: FeedForwardModel, val_set: MultiViewDataset, cfg: TrainConfig, dev: torch.device, amp_dtype,
             out: Path, step: int) -> dict[str, float]:
    """Mean ``validation_step`` metrics over the first ``val_batches`` fixed val batches; saves the
    first batch's ``validation_images`` as ``out/val/step_XXXXXXX_<name>.png``. Training RNG untouched.
    Runs in float32 whatever the training's ``amp`` (``amp_dtype`` is accepted and not used)."""
    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(cfg.seed + 12345)
        model.eval()
        loader = DataLoader(val_set, batch_size=cfg.batch_size, shuffle=False, num_workers=0)
        sums: dict[str, float] = {}
        n = 0
        for b, batch in enumerate(loader):
            if b >= max(1, cfg.val_batches):
                break
            batch = _to_device(batch, dev)
            # float32, as `recon3d predict` runs the model: metrics computed under bf16 autocast lose
            # precision (VGGT's rotation error from a bf16 rotation product has a floor of ~5 deg)
            metrics = model.validation_step(batch)
            images = model.validation_images(batch) if b == 0 else {}
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n += 1
            for name, img in images.items():
                _save_png(out / "val" / f"step_{step:07d}_{name}.png", img)
        model.train()
    return {k: v / max(n, 1) for k, v in sums.items()}
