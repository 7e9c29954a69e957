"""Adaptive density control for 3D Gaussian splatting (clone, split, prune, opacity reset).

The schedule follows the 3DGS paper's defaults for 30k steps, scaled to the run's step count
(:meth:`DensifyConfig.scaled_to`). Screen-space gradients are read from the rasterizer's ``means2d``
(pixels) and converted to the NDC-like units of the paper's 0.0002 threshold by (W/2, H/2).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from recon3d.core.conventions import qvec_to_rotmat

from .model import PARAM_NAMES, GaussianModel


@dataclass
class DensifyConfig:
    refine_start: int = 500
    refine_stop: int = 15_000
    refine_every: int = 100
    reset_every: int = 3_000
    grow_grad2d: float = 2e-4  # mean screen-space gradient norm (NDC units) that triggers growth
    grow_scale3d: float = 0.01  # clone below / split above this fraction of the scene extent
    prune_opacity: float = 0.005
    prune_scale3d: float = 0.1  # prune Gaussians larger than this fraction of the extent (after a reset)
    max_gaussians: int = 1_000_000

    def scaled_to(self, max_steps: int, reference_steps: int = 30_000) -> "DensifyConfig":
        """The same schedule stretched to ``max_steps`` (refine_every kept >= 25, reset_every >= 4x it)."""
        f = max_steps / reference_steps
        every = max(25, min(self.refine_every, int(round(self.refine_every * f * 3))))
        return replace(
            self,
            refine_start=max(every, int(self.refine_start * f)),
            refine_stop=int(self.refine_stop * f),
            refine_every=every,
            reset_every=max(4 * every, int(self.reset_every * f)),
        )


class DensifyStrategy:
    """Accumulates screen-space gradient statistics and edits the Gaussian set on schedule."""

    def __init__(self, cfg: DensifyConfig, extent: float) -> None:
        self.cfg = cfg
        self.extent = float(extent)
        self.grad2d: Tensor | None = None
        self.count: Tensor | None = None

    # ------------------------------------------------------------------ state (for exact resume)
    def state_dict(self) -> dict:
        return {"grad2d": self.grad2d, "count": self.count, "extent": self.extent}

    def load_state_dict(self, state: dict) -> None:
        self.grad2d, self.count, self.extent = state["grad2d"], state["count"], state["extent"]

    # ------------------------------------------------------------------ hooks
    def accumulate(self, means2d: Tensor, radii: Tensor, width: int, height: int) -> None:
        """Record this step's screen-space gradients. means2d: (C, N, 2) with .grad; radii: (C, N)."""
        if means2d.grad is None:
            return
        g = means2d.grad.detach().clone()
        C = g.shape[0]
        g[..., 0] *= width / 2.0 * C
        g[..., 1] *= height / 2.0 * C
        norms = g.norm(dim=-1)  # (C, N)
        vis = radii > 0
        n = norms.shape[1]
        if self.grad2d is None or self.grad2d.shape[0] != n:
            self.grad2d = torch.zeros(n, device=g.device)
            self.count = torch.zeros(n, device=g.device)
        self.grad2d += (norms * vis).sum(0)
        self.count += vis.sum(0).float()

    def step(self, step: int, model: GaussianModel, optimizers: dict, generator: torch.Generator | None = None) -> dict:
        """Run the refinement due at ``step`` (after the optimizer step). Returns counts of edits."""
        cfg = self.cfg
        info = {"cloned": 0, "split": 0, "pruned": 0, "reset": False}
        if step >= cfg.refine_stop:
            return info
        if step > cfg.refine_start and step % cfg.refine_every == 0 and self.grad2d is not None:
            info.update(self._grow(model, optimizers, generator))
            info["pruned"] = self._prune(model, optimizers, step)
            self.grad2d = torch.zeros(len(model), device=model.means.device)
            self.count = torch.zeros(len(model), device=model.means.device)
        if step > 0 and step % cfg.reset_every == 0:
            self._reset_opacity(model, optimizers)
            info["reset"] = True
        return info

    # ------------------------------------------------------------------ operations
    def _grow(self, model: GaussianModel, optimizers: dict, generator) -> dict:
        cfg = self.cfg
        avg = self.grad2d / self.count.clamp_min(1)
        high = avg > cfg.grow_grad2d
        big = model.scales.detach().max(dim=-1).values > cfg.grow_scale3d * self.extent
        room = max(cfg.max_gaussians - len(model), 0)
        clone = high & ~big
        split = high & big
        if int(clone.sum()) + int(split.sum()) > room:  # keep the strongest gradients within the cap
            order = torch.argsort(avg.masked_fill(~high, -1), descending=True)[:room]
            keep = torch.zeros_like(high)
            keep[order] = True
            clone &= keep
            split &= keep
        n_clone, n_split = int(clone.sum()), int(split.sum())
        if n_clone:
            self._duplicate(model, optimizers, clone)
            split = torch.cat([split, torch.zeros(n_clone, dtype=torch.bool, device=split.device)])
        if n_split:
            self._split(model, optimizers, split, generator)
        return {"cloned": n_clone, "split": n_split}

    def _prune(self, model: GaussianModel, optimizers: dict, step: int) -> int:
        cfg = self.cfg
        drop = model.opacities.detach() < cfg.prune_opacity
        if step > cfg.reset_every:
            drop |= model.scales.detach().max(dim=-1).values > cfg.prune_scale3d * self.extent
        if drop.all():  # never remove everything
            drop[torch.argmax(model.opacities.detach())] = False
        n = int(drop.sum())
        if n:
            _edit(model, optimizers, lambda name, p: p[~drop], lambda name, s: s[~drop])
        return n

    def _reset_opacity(self, model: GaussianModel, optimizers: dict) -> None:
        cap = torch.logit(torch.tensor(self.cfg.prune_opacity * 2.0)).item()
        with torch.no_grad():
            model.opacity_logits.clamp_(max=cap)
        st = optimizers["opacity_logits"].state.get(model.opacity_logits)
        if st:
            st["exp_avg"].zero_()
            st["exp_avg_sq"].zero_()

    def _duplicate(self, model: GaussianModel, optimizers: dict, sel: Tensor) -> None:
        _edit(model, optimizers,
              lambda name, p: torch.cat([p, p[sel]]),
              lambda name, s: torch.cat([s, torch.zeros_like(s[sel])]))

    def _split(self, model: GaussianModel, optimizers: dict, sel: Tensor, generator) -> None:
        """Replace each selected Gaussian by two, sampled from it, with scales divided by 1.6."""
        n = int(sel.sum())
        scales = model.scales.detach()[sel]
        R = qvec_to_rotmat(model.quats.detach()[sel])
        noise = torch.randn(2, n, 3, generator=generator).to(scales.device)
        offsets = (R[None] @ (scales[None] * noise)[..., None])[..., 0]  # (2, n, 3)
        new = {
            "means": (model.means.detach()[sel][None] + offsets).reshape(-1, 3),
            "log_scales": torch.log(scales / 1.6).repeat(2, 1),
        }
        keep = ~sel

        def param_fn(name: str, p: Tensor) -> Tensor:
            added = new[name] if name in new else p[sel].repeat(2, *([1] * (p.ndim - 1)))
            return torch.cat([p[keep], added])

        def state_fn(name: str, s: Tensor) -> Tensor:
            return torch.cat([s[keep], torch.zeros((2 * n, *s.shape[1:]), dtype=s.dtype, device=s.device)])

        _edit(model, optimizers, param_fn, state_fn)


def _edit(model: GaussianModel, optimizers: dict, param_fn, state_fn) -> None:
    """Apply a row edit to every parameter and to its Adam moments, keeping step counts."""
    with torch.no_grad():
        new_params = {k: param_fn(k, p.detach()) for k, p in model.params().items()}
    for name in PARAM_NAMES:
        opt = optimizers[name]
        old = getattr(model, name)
        st = opt.state.pop(old, None)
        setattr(model, name, torch.nn.Parameter(new_params[name].contiguous()))
        newp = getattr(model, name)
        opt.param_groups[0]["params"] = [newp]
        if st:
            opt.state[newp] = {k: (state_fn(name, v) if torch.is_tensor(v) and v.ndim > 0 else v) for k, v in st.items()}
