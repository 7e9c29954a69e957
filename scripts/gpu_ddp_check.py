#!/usr/bin/env python
"""DDP check of the feed-forward trainer, one process per GPU (nccl), or gloo on CPU:

    torchrun --standalone --nproc_per_node=NGPU scripts/gpu_ddp_check.py --data FFDATA --out DIR --json F
    torchrun --standalone --nproc_per_node=2 scripts/gpu_ddp_check.py --data FFDATA --out DIR --device cpu

1. the process group (nccl on CUDA, gloo on CPU) answers: all_reduce of the ranks, all_gather_object
   (what the trainer's checkpoints use);
2. a few bf16-autocast steps of the model's ``training_step`` under ``DistributedDataParallel``
   (the trainer's wrapper), then the parameters are compared across ranks (DDP keeps them equal);
3. ``recon3d.feedforward.train.train`` itself for ``--steps`` steps inside that process group (its
   DDP path when there are 2+ processes; with one GPU it is the single-process path on the group).

Rank 0 writes the JSON (``--json``) and prints it. Exit status 0 when every check passed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a data set made by `recon3d ffdata`")
    ap.add_argument("--out", type=Path, required=True, help="run folder of the train() part")
    ap.add_argument("--model", default="vggt", help="registered feed-forward model (default vggt)")
    ap.add_argument("--steps", type=int, default=20, help="train() steps (default 20)")
    ap.add_argument("--ddp-steps", type=int, default=3, help="hand-written DDP steps (default 3)")
    ap.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.utils.data import DataLoader

    from recon3d.feedforward.data import MultiViewDataset
    from recon3d.feedforward.train import (
        ResumableSampler,
        _StepModule,
        _to_device,
        build_model,
        train,
    )

    rank, world, local = (int(os.environ.get(k, d)) for k, d in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)))
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    backend = "nccl" if use_cuda else "gloo"
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    t0 = time.perf_counter()
    dist.init_process_group(backend, rank=rank, world_size=world)
    res: dict = {"backend": backend, "world_size": world, "device": str(dev),
                 "gpus_visible": torch.cuda.device_count() if use_cuda else 0}
    ok = True
    try:
        # 1. collectives
        x = torch.tensor([float(rank)], device=dev)
        dist.all_reduce(x)
        res["all_reduce_ok"] = bool(float(x) == world * (world - 1) / 2)
        gathered = [None] * world
        dist.all_gather_object(gathered, {"rank": rank})
        res["all_gather_object_ok"] = [g["rank"] for g in gathered] == list(range(world))
        ok &= res["all_reduce_ok"] and res["all_gather_object_ok"]

        # 2. DDP steps of training_step, parameters equal across ranks afterwards
        torch.manual_seed(0)
        model = build_model(args.model).to(dev)
        views = int(getattr(model.config, "num_views", 0) or 4)
        data = MultiViewDataset(args.data, "train", views, None, seed=0)
        sampler = ResumableSampler(data, world, rank, seed=0)
        loader = iter(DataLoader(data, batch_size=2, sampler=sampler, drop_last=True))
        step_module = nn.parallel.DistributedDataParallel(_StepModule(model), device_ids=[local] if use_cuda else None,
                                                          find_unused_parameters=True)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if use_cuda else nullcontext()
        t1 = time.perf_counter()
        for step in range(args.ddp_steps):
            batch = _to_device(next(loader), dev)
            with amp:
                loss, _ = step_module(batch, step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if use_cuda:
            torch.cuda.synchronize()
        res["ddp_step_seconds"] = round((time.perf_counter() - t1) / max(args.ddp_steps, 1), 4)
        checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
        sums = [torch.zeros_like(checksum) for _ in range(world)]
        dist.all_gather(sums, checksum)
        res["params_equal_across_ranks"] = all(bool(torch.equal(s, sums[0])) for s in sums)
        res["ddp_loss"] = float(loss.detach())
        ok &= res["params_equal_across_ranks"]
        del step_module, opt, model

        # 3. the trainer itself inside this process group
        t2 = time.perf_counter()
        r = train(args.model, args.data, args.out, {"steps": args.steps, "amp": "bf16", "val_every": 0, "ckpt_every": args.steps,
                                                    "log_every": max(1, args.steps // 4), "num_workers": 0,
                                                    "batch_size": 2, "warmup": 2},
                  device=str(dev), show_progress=False)
        res["train_seconds"] = round(time.perf_counter() - t2, 2)
        res["train_steps"] = r.step
        res["train_loss"] = round(r.last_train.get("loss", float("nan")), 5)
        res["train_ddp"] = world > 1
        res["final_written"] = bool(r.final and Path(r.final).is_file()) if rank == 0 else None
        ok &= r.step == args.steps
        if use_cuda:
            res["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
        dist.barrier()
    except Exception as e:  # noqa: BLE001 - reported in the JSON, not a traceback per rank only
        import traceback

        traceback.print_exc()
        res["error"] = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
        ok = False
    finally:
        res["ok"] = bool(ok)
        res["seconds"] = round(time.perf_counter() - t0, 2)
        if rank == 0:
            text = json.dumps(res, indent=2)
            print(text)
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(text)
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001
            pass
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
