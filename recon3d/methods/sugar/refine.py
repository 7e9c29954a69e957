"""Optional SuGaR refinement: Gaussians bound to the mesh triangles, optimized with the mesh.

Each triangle carries ``per_face`` flat Gaussians at fixed barycentric positions. A Gaussian's
frame is its triangle's (first edge, in-plane perpendicular, normal) turned by a learnable in-plane
angle; its two in-plane scales, opacity and colour are learnable, its thickness along the normal is
a small constant. Means, rotations and sizes are functions of the mesh vertices, so the photometric
loss through the rasterizer moves the vertices themselves; a uniform Laplacian term and a normal
consistency term keep the mesh smooth.

Usage::

    bound = BoundGaussians.from_mesh(mesh, per_face=3, thickness=1e-3 * extent)
    refine_bound_gaussians(bound, cameras, images, steps=2000)
    refined_mesh = bound.to_mesh()                 # vertices moved, colours from the Gaussians
    save_splat_ply(bound.to_model(), "bound.ply")  # a regular 3DGS file
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recon3d.core.conventions import rotmat_to_qvec
from recon3d.core.gaussians import Gaussians, rasterize, rgb_to_sh0, sh0_to_rgb
from recon3d.core.metrics import dssim_loss, psnr
from recon3d.mesh import TriangleMesh
from recon3d.methods.splat.model import GaussianModel
from recon3d.runtime.optim import adam

log = logging.getLogger(__name__)

# barycentric coordinates of the Gaussians of one triangle (rows sum to 1)
LAYOUTS = {
    1: [[1 / 3, 1 / 3, 1 / 3]],
    3: [[2 / 3, 1 / 6, 1 / 6], [1 / 6, 2 / 3, 1 / 6], [1 / 6, 1 / 6, 2 / 3]],
    4: [[1 / 3, 1 / 3, 1 / 3], [2 / 3, 1 / 6, 1 / 6], [1 / 6, 2 / 3, 1 / 6], [1 / 6, 1 / 6, 2 / 3]],
}


class BoundGaussians(nn.Module):
    """Gaussians attached to a triangle mesh (see the module docstring).

    Parameters: ``vertices`` (V, 3) world units; ``log_scales`` (F*K, 2) in-plane log std;
    ``angles`` (F*K,) in-plane rotation (radians); ``opacity_logits`` (F*K,); ``sh0`` (F*K, 1, 3),
    ``shN`` (F*K, (d+1)^2 - 1, 3). Buffers: ``faces`` (F, 3), ``bary`` (K, 3), ``thickness``.
    Gaussian ``f * K + k`` sits on face f at barycentric coordinates ``bary[k]``.
    """

    def __init__(self, vertices: Tensor, faces: Tensor, bary: Tensor, log_scales: Tensor, angles: Tensor,
                 opacity_logits: Tensor, sh0: Tensor, shN: Tensor, thickness: float, max_sh_degree: int = 0):
        super().__init__()
        self.vertices = nn.Parameter(vertices.float().contiguous())
        self.register_buffer("faces", faces.long().contiguous())
        self.register_buffer("bary", bary.float().contiguous())
        self.log_scales = nn.Parameter(log_scales.float().contiguous())
        self.angles = nn.Parameter(angles.float().contiguous())
        self.opacity_logits = nn.Parameter(opacity_logits.float().contiguous())
        self.sh0 = nn.Parameter(sh0.float().contiguous())
        self.shN = nn.Parameter(shN.float().contiguous())
        self.thickness = float(thickness)
        self.max_sh_degree = int(max_sh_degree)

    @classmethod
    def from_mesh(cls, mesh: TriangleMesh, per_face: int = 3, thickness: float = 1e-3, opacity: float = 0.9,
                  max_sh_degree: int = 0) -> "BoundGaussians":
        """Bind ``per_face`` (1, 3 or 4) Gaussians to every triangle; colours from the vertex colours
        (grey without), in-plane std ~ half the spacing of the Gaussians on the triangle."""
        if per_face not in LAYOUTS:
            raise ValueError(f"per_face must be one of {sorted(LAYOUTS)}, got {per_face}")
        V = torch.tensor(mesh.vertices, dtype=torch.float32)  # copies: the input mesh is never modified
        Fc = torch.tensor(mesh.faces, dtype=torch.long)
        bary = torch.tensor(LAYOUTS[per_face], dtype=torch.float32)
        a, b, c = V[Fc[:, 0]], V[Fc[:, 1]], V[Fc[:, 2]]
        area = 0.5 * torch.linalg.cross(b - a, c - a).norm(dim=-1).clamp_min(1e-12)
        s = 0.5 * torch.sqrt(area / per_face)
        log_scales = torch.log(s).repeat_interleave(per_face)[:, None].repeat(1, 2)
        n = len(Fc) * per_face
        if mesh.vertex_colors is not None:
            vc = torch.as_tensor(mesh.vertex_colors, dtype=torch.float32)[Fc]  # (F, 3, 3)
            rgb = torch.einsum("kj,fjc->fkc", bary, vc).reshape(n, 3)
        else:
            rgb = torch.full((n, 3), 0.5)
        k = (max_sh_degree + 1) ** 2
        return cls(V, Fc, bary, log_scales, torch.zeros(n), torch.logit(torch.full((n,), float(opacity))),
                   rgb_to_sh0(rgb.clamp(0, 1))[:, None], torch.zeros(n, k - 1, 3), thickness, max_sh_degree)

    def __len__(self) -> int:
        return self.faces.shape[0] * self.bary.shape[0]

    # ------------------------------------------------------------------ the Gaussians
    def frames(self) -> tuple[Tensor, Tensor]:
        """(F*K, 3) means and (F*K, 3, 3) rotations [in-plane axis 1, in-plane axis 2, normal]."""
        V, Fc, K = self.vertices, self.faces, self.bary.shape[0]
        tri = V[Fc]  # (F, 3, 3)
        means = torch.einsum("kj,fjc->fkc", self.bary, tri).reshape(-1, 3)
        e1 = F.normalize(tri[:, 1] - tri[:, 0], dim=-1)
        nrm = F.normalize(torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), dim=-1)
        e2 = torch.linalg.cross(nrm, e1)
        e1, e2, nrm = (x.repeat_interleave(K, dim=0) for x in (e1, e2, nrm))
        ca, sa = torch.cos(self.angles)[:, None], torch.sin(self.angles)[:, None]
        u, v = ca * e1 + sa * e2, -sa * e1 + ca * e2
        return means, torch.stack([u, v, nrm], dim=-1)

    def gaussians(self) -> Gaussians:
        """The activated (F*K) Gaussians for :func:`recon3d.core.gaussians.rasterize`, differentiable
        w.r.t. the vertices and the per-Gaussian parameters: means on the faces, quats (wxyz) of the
        frames, scales (in-plane std-devs, ``thickness`` along the normal), opacities in (0, 1),
        colors = (F*K, K_sh, 3) SH coefficients."""
        means, R = self.frames()
        quats = rotmat_to_qvec(R)
        thick = torch.full_like(self.log_scales[:, :1], math.log(max(self.thickness, 1e-12)))
        scales = torch.exp(torch.cat([self.log_scales, thick], dim=-1))
        return Gaussians(means, quats, scales, torch.sigmoid(self.opacity_logits),
                         torch.cat([self.sh0, self.shN], dim=1))

    def to_model(self) -> GaussianModel:
        """A detached :class:`GaussianModel` copy (for rendering elsewhere or ``save_splat_ply``)."""
        with torch.no_grad():
            g = self.gaussians()
            return GaussianModel(g.means, g.quats, g.scales.log(), self.opacity_logits.detach(),
                                 self.sh0.detach(), self.shN.detach(), self.max_sh_degree)

    def to_mesh(self, metadata: dict | None = None) -> TriangleMesh:
        """The current mesh; vertex colours = mean degree-0 colour of the Gaussians around each vertex."""
        with torch.no_grad():
            V = self.vertices.detach().cpu().numpy()
            Fc = self.faces.cpu().numpy()
            K = self.bary.shape[0]
            rgb = sh0_to_rgb(self.sh0[:, 0].detach().cpu()).clamp(0, 1).reshape(-1, K, 3)
            w = self.bary.cpu()  # a Gaussian counts toward each corner by its barycentric weight
            acc = torch.zeros(len(V), 3)
            wsum = torch.zeros(len(V))
            for j in range(3):
                idx = torch.as_tensor(Fc[:, j])
                acc.index_add_(0, idx, (rgb * w[None, :, j, None]).sum(1))
                wsum.index_add_(0, idx, w[:, j].sum().expand(len(Fc)))
            cols = (acc / wsum.clamp_min(1e-12)[:, None]).numpy()
        from recon3d.mesh.ops import vertex_normals

        return TriangleMesh(V, Fc, vertex_colors=cols, vertex_normals=vertex_normals(V, Fc),
                            metadata=dict(metadata or {}, method="sugar-refined", bound_gaussians=len(self)))


# ---------------------------------------------------------------------------------- regularizers
def uniform_laplacian_loss(vertices: Tensor, faces: Tensor) -> Tensor:
    """Mean squared distance of each vertex to the mean of its neighbours (uniform Laplacian)."""
    V = vertices.shape[0]
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = torch.cat([e, e.flip(1)])
    nsum = torch.zeros_like(vertices).index_add(0, e[:, 0], vertices[e[:, 1]])
    deg = torch.zeros(V, device=vertices.device).index_add(0, e[:, 0], torch.ones(len(e), device=vertices.device))
    lap = vertices - nsum / deg.clamp_min(1)[:, None]
    return (lap ** 2).sum(-1)[deg > 0].mean()


def face_adjacency(faces: np.ndarray) -> np.ndarray:
    """(E, 2) pairs of faces sharing an edge (manifold edges only)."""
    f = np.asarray(faces, np.int64)
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    fid = np.tile(np.arange(len(f)), 3)
    key = edges[:, 0] * (int(f.max()) + 1) + edges[:, 1]
    order = np.argsort(key, kind="stable")
    k, fo = key[order], fid[order]
    same = np.nonzero(k[1:] == k[:-1])[0]
    return np.stack([fo[same], fo[same + 1]], axis=1)


def normal_consistency_loss(vertices: Tensor, faces: Tensor, adjacency: Tensor) -> Tensor:
    """Mean ``1 - cos`` between the normals of adjacent faces."""
    tri = vertices[faces]
    n = F.normalize(torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), dim=-1)
    if len(adjacency) == 0:
        return vertices.sum() * 0.0
    return (1 - (n[adjacency[:, 0]] * n[adjacency[:, 1]]).sum(-1)).mean()


# ---------------------------------------------------------------------------------- optimization
@dataclass
class RefineConfig:
    steps: int = 2_000
    vertices_lr: float = 2e-6  # x scene extent (SuGaR moves bound vertices very little: ~1.6e-6); 1e-4 drifted
    scales_lr: float = 5e-3
    angles_lr: float = 1e-3
    opacity_lr: float = 5e-2
    sh0_lr: float = 2.5e-3
    shN_lr: float = 2.5e-3 / 20
    ssim_lambda: float = 0.2
    laplacian_weight: float = 5.0  # relative to the squared scene extent
    normal_weight: float = 0.1
    backend: str = "auto"
    seed: int = 0


def refine_bound_gaussians(bound: BoundGaussians, cameras, images: list[Tensor], cfg: RefineConfig | None = None,
                           background: Tensor | None = None, extent: float = 1.0, progress: bool = False) -> dict:
    """Optimize ``bound`` (in place) to reproduce ``images`` (H, W, 3) seen by ``cameras``.

    Returns a summary: steps, seconds, first/last loss and PSNR (moving averages).
    """
    cfg = cfg or RefineConfig()
    dev = bound.vertices.device
    cams = cameras.to(dev)
    imgs = [torch.as_tensor(im, dtype=torch.float32, device=dev)[..., :3] for im in images]
    groups = [("vertices", cfg.vertices_lr * extent), ("log_scales", cfg.scales_lr), ("angles", cfg.angles_lr),
              ("opacity_logits", cfg.opacity_lr), ("sh0", cfg.sh0_lr), ("shN", cfg.shN_lr)]
    opt = adam([{"params": [getattr(bound, n)], "lr": lr} for n, lr in groups], eps=1e-15)
    adjacency = torch.as_tensor(face_adjacency(bound.faces.cpu().numpy()), device=dev)
    gen = torch.Generator().manual_seed(cfg.seed)
    bg = None if background is None else background.to(dev).reshape(1, 3)
    t0 = time.perf_counter()
    first = last = None
    ema = {}
    for step in range(cfg.steps):
        i = int(torch.randint(0, len(cams), (1,), generator=gen))
        cam = cams[i]
        out = rasterize(bound.gaussians(), cam.w2c, cam.K, int(cam.width[0]), int(cam.height[0]),
                        sh_degree=bound.max_sh_degree, backgrounds=bg, backend=cfg.backend)
        pred, gt = out.colors[0], imgs[i]
        photo = (1 - cfg.ssim_lambda) * (pred - gt).abs().mean() + cfg.ssim_lambda * dssim_loss(pred, gt)
        lap = uniform_laplacian_loss(bound.vertices, bound.faces) / extent ** 2
        nc = normal_consistency_loss(bound.vertices, bound.faces, adjacency)
        loss = photo + cfg.laplacian_weight * lap + cfg.normal_weight * nc
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            stats = {"loss": float(loss), "psnr": float(psnr(pred.clamp(0, 1), gt))}
        ema = stats if not ema else {k: 0.9 * ema[k] + 0.1 * v for k, v in stats.items()}
        first = dict(stats) if first is None else first
        last = ema
        if progress and (step + 1) % 100 == 0:
            log.info("refine step %d: loss %.4f psnr %.2f", step + 1, ema["loss"], ema["psnr"])
    return {"steps": cfg.steps, "seconds": time.perf_counter() - t0, "first": first, "last": last,
            "gaussians": len(bound)}


def refine_mesh(mesh: TriangleMesh, cameras, images: list[Tensor], cfg: RefineConfig | None = None,
                per_face: int = 3, thickness: float | None = None, extent: float = 1.0,
                background: Tensor | None = None, progress: bool = False) -> tuple[TriangleMesh, BoundGaussians, dict]:
    """Bind Gaussians to ``mesh``, refine them with it, and return (refined mesh, bound Gaussians, summary)."""
    bound = BoundGaussians.from_mesh(mesh, per_face=per_face, thickness=thickness or 1e-3 * extent)
    summary = refine_bound_gaussians(bound, cameras, images, cfg, background, extent, progress)
    return bound.to_mesh(dict(mesh.metadata, refine_steps=summary["steps"])), bound, summary


__all__ = ["BoundGaussians", "RefineConfig", "refine_bound_gaussians", "refine_mesh", "uniform_laplacian_loss",
           "normal_consistency_loss", "face_adjacency", "LAYOUTS"]
