"""A tiny but real image-conditioned radiance field for the feed-forward trainer / predict tests.

``TinyField``: the latent is a small vector from the source images (per-channel mean and std of the
first source view through a linear layer); the field is an MLP on (Fourier features of the point,
latent), plus a fixed soft-sphere density prior of radius ``prior_radius`` so that even an untrained
model has a surface to mesh. Trained with an L2 photometric loss on random target rays rendered
through :mod:`recon3d.feedforward.rendering` (stratified sampling: uses torch's global RNG, which the
trainer must checkpoint for exact resume).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from recon3d.feedforward.base import ConditionedRadianceField
from recon3d.feedforward.rendering import RenderOptions, camera_rays, render_rays, render_view
from recon3d.runtime.config import ConfigIO

NAME = "tinyff"


@dataclass
class TinyConfig(ConfigIO):
    hidden: int = 16
    latent: int = 8
    num_views: int = 3
    rays: int = 48
    samples: int = 8
    prior_radius: float = 0.5
    prior_density: float = 30.0


class TinyField(ConditionedRadianceField):
    name = NAME
    config_cls = TinyConfig

    def __init__(self, config: TinyConfig):
        super().__init__(config)
        c = config
        self.enc = nn.Linear(6, c.latent)
        self.register_buffer("freqs", torch.randn(3, 6) * 2.0)
        self.mlp = nn.Sequential(nn.Linear(12 + c.latent, c.hidden), nn.ReLU(), nn.Linear(c.hidden, 4))
        self.opts = RenderOptions(num_coarse=c.samples, num_fine=0, stratified=True)

    def encode(self, images: Tensor, K: Tensor, c2w: Tensor) -> Tensor:
        x = images[:, 0]  # (B, 3, H, W)
        stats = torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)
        return self.enc(stats)  # (B, latent)

    def query(self, latent: Tensor, points: Tensor, directions: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        proj = points @ self.freqs
        feat = torch.cat([proj.sin(), proj.cos(), latent[:, None].expand(-1, points.shape[1], -1)], dim=-1)
        out = self.mlp(feat)
        prior = self.config.prior_density * torch.sigmoid(20 * (self.config.prior_radius - points.norm(dim=-1)))
        return nn.functional.softplus(out[..., 0]) + prior, torch.sigmoid(out[..., 1:])

    def _targets(self, batch):
        B, V, _, H, W = batch["images"].shape
        o, d = camera_rays(batch["K"][:, 1:].reshape(-1, 3, 3), batch["c2w"][:, 1:].reshape(-1, 4, 4), H, W)
        rgb = batch["images"][:, 1:].permute(0, 1, 3, 4, 2).reshape(B, -1, 3)
        return o.reshape(B, -1, 3), d.reshape(B, -1, 3), rgb

    def training_step(self, batch, step):
        latent = self.encode(batch["images"][:, :1], batch["K"][:, :1], batch["c2w"][:, :1])
        o, d, rgb = self._targets(batch)
        idx = torch.randint(0, o.shape[1], (o.shape[0], self.config.rays), device=o.device)
        pick = lambda t: torch.gather(t, 1, idx[..., None].expand(-1, -1, 3))  # noqa: E731
        out = render_rays(self, latent, pick(o), pick(d), self.opts)
        loss = ((out["rgb"] - pick(rgb)) ** 2).mean()
        return loss, {"mse": float(loss.detach())}

    def validation_step(self, batch):
        img = self.validation_images(batch)
        mse = ((img["render"] - img["target"]) ** 2).mean()
        return {"psnr": float(-10 * torch.log10(mse.clamp_min(1e-10)))}

    def validation_images(self, batch):
        latent = self.encode(batch["images"][:1, :1], batch["K"][:1, :1], batch["c2w"][:1, :1])
        H, W = batch["images"].shape[-2:]
        opts = RenderOptions(num_coarse=self.config.samples, num_fine=0, stratified=False)
        out = render_view(self, latent, batch["K"][:1, 1], batch["c2w"][:1, 1], H, W, opts)
        return {"render": out["rgb"][0], "target": batch["images"][0, 1].permute(1, 2, 0)}


def register() -> None:
    from recon3d.feedforward import registry

    registry.MODELS[NAME] = f"{__name__}:TinyField"


def ddp_worker(rank: int, world: int, port: int, data: str, out: str, result_dir: str, steps: int) -> None:
    """torch.multiprocessing entry: one DDP rank (gloo, CPU) training TinyField; saves its weights."""
    import os

    from recon3d.feedforward.train import train

    torch.set_num_threads(1)
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    register()
    res = train(NAME, data, out, {"steps": steps, "batch_size": 2, "num_workers": 0, "val_every": 0, "ckpt_every": 0,
                                  "log_every": 1, "device": "cpu"}, show_progress=False)
    torch.save({"state_dict": res.model.state_dict(), "step": res.step, "final": str(res.final)},
               os.path.join(result_dir, f"rank{rank}.pt"))
