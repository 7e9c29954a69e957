"""Visual hull: the region of space every silhouette (object mask) agrees is the object.

Carved on a voxel grid from posed silhouettes (masks, or thresholded alpha), coarse to fine: a coarse grid over
the box every camera frames finds the object's bounding box, then a fine grid over that box. A voxel
is kept when it falls inside the (slightly dilated) silhouette of nearly every view that sees it; a
small fraction of misses (``miss_fraction``) is forgiven, because hand-drawn or crowdsourced masks cut into the
object here and there. The surface of the hull (occupied voxels next to an empty one) with outward
normals and colours looked up in the views facing each point is what Gaussian splatting of a masked
capture starts from when it has no SfM points (:meth:`VisualHull.sample_surface`).

Units: world units of the cameras; pixel coordinates with centers at +0.5 (recon3d's convention).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .cameras import Cameras
from .scene_bounds import object_box

log = logging.getLogger(__name__)


class EmptyHullError(ValueError):
    """The silhouettes carve away everything (masks that do not match the poses, or no mask pixels)."""


@dataclass
class VisualHull:
    """A carved voxel grid.

    occupied: (R, R, R) bool, indexed [ix, iy, iz] along world x, y, z.
    lo: (3,) world position of the grid's lower corner; voxel: edge length (world units).
    """

    occupied: Tensor
    lo: Tensor
    voxel: float

    @property
    def resolution(self) -> tuple[int, int, int]:
        return tuple(self.occupied.shape)

    def centers(self, idx: Tensor) -> Tensor:
        """(K, 3) world centers of voxels with integer indices ``idx`` (K, 3)."""
        return self.lo + (idx.float() + 0.5) * self.voxel

    def bounds(self) -> Tensor:
        """(2, 3) world box around the occupied voxels."""
        idx = self.occupied.nonzero()
        return torch.stack([self.lo + idx.min(0).values * self.voxel, self.lo + (idx.max(0).values + 1) * self.voxel])

    def surface(self) -> Tensor:
        """(S, 3) int64 indices of occupied voxels with at least one empty (or out-of-grid) 6-neighbour."""
        occ = self.occupied.float()[None, None]
        # a voxel is interior when all 6 neighbours are occupied: min-pool over the cross = 1
        pad = F.pad(occ, (1, 1, 1, 1, 1, 1))
        inner = torch.ones_like(self.occupied)
        for dim in range(3):
            for shift in (0, 2):
                sl = [slice(1, -1)] * 3
                sl[dim] = slice(shift, shift + self.occupied.shape[dim])
                inner &= pad[0, 0][tuple(sl)] > 0.5
        return (self.occupied & ~inner).nonzero()

    def normals(self, idx: Tensor) -> Tensor:
        """(K, 3) unit outward normals at voxels ``idx``: minus the gradient of the smoothed occupancy."""
        occ = self.occupied.float()[None, None]
        k = torch.tensor([1.0, 2.0, 1.0])
        smooth = occ
        for dim in range(3):  # separable [1, 2, 1] blur, twice
            shape = [1, 1, 1, 1, 1]
            shape[2 + dim] = 3
            w = (k / k.sum()).reshape(shape)
            pad = [0, 0, 0, 0, 0, 0]
            pad[2 * (2 - dim)] = pad[2 * (2 - dim) + 1] = 1
            for _ in range(2):
                smooth = F.conv3d(F.pad(smooth, pad, mode="replicate"), w)
        s = F.pad(smooth, (1, 1, 1, 1, 1, 1), mode="replicate")[0, 0]
        i, j, l = (idx + 1).unbind(-1)
        g = torch.stack([s[i + 1, j, l] - s[i - 1, j, l], s[i, j + 1, l] - s[i, j - 1, l],
                         s[i, j, l + 1] - s[i, j, l - 1]], dim=-1)
        return -F.normalize(g, dim=-1, eps=1e-12)

    def sample_surface(self, n: int, generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
        """``n`` points on the hull surface, spread evenly over its voxels, jittered inside each.

        Returns (n, 3) world points and (n, 3) unit outward normals (of their voxels)."""
        surf = self.surface()
        if len(surf) == 0:
            raise EmptyHullError("the visual hull is empty")
        if n <= len(surf):
            pick = torch.randperm(len(surf), generator=generator)[:n]
        else:
            pick = torch.cat([torch.arange(len(surf)), torch.randint(len(surf), (n - len(surf),), generator=generator)])
        idx = surf[pick]
        pts = self.lo + (idx.float() + torch.rand(len(idx), 3, generator=generator)) * self.voxel
        return pts, self.normals(idx)


class _Silhouettes:
    """Per view: the silhouette's distance map (pixels from each pixel to the nearest object pixel)."""

    def __init__(self, silhouettes: Sequence[Tensor]):
        from scipy.ndimage import distance_transform_edt

        self.dist = [torch.from_numpy(distance_transform_edt(~s.cpu().numpy().astype(bool))).float()
                     if bool(s.any()) else torch.full(tuple(s.shape), float("inf")) for s in silhouettes]

    def __len__(self) -> int:
        return len(self.dist)


def _carve_points(cameras: Cameras, sils: _Silhouettes, pts: Tensor, half_diag: float, miss_fraction: float,
                  min_seen_fraction: float, dilate_px: float) -> Tensor:
    """(P,) bool: which voxel centers ``pts`` (P, 3) survive carving (see :func:`carve`)."""
    seen = torch.zeros(len(pts), dtype=torch.int32)
    missed = torch.zeros(len(pts), dtype=torch.int32)
    for i, dist in enumerate(sils.dist):
        cam = cameras[i]
        uv, z = cam.project(pts)
        uv, z = uv[0], z[0]
        H, W = dist.shape
        col, row = torch.floor(uv[:, 0]).long(), torch.floor(uv[:, 1]).long()
        inside = (z > 1e-6) & (col >= 0) & (col < W) & (row >= 0) & (row < H)
        # the voxel's projected half-diagonal (+ dilate_px): a voxel counts as hit when any part of it may be
        reach = float(torch.maximum(cam.fx[0].abs(), cam.fy[0].abs())) * half_diag / z.clamp_min(1e-6) + dilate_px
        d = torch.full((len(pts),), float("inf"))
        d[inside] = dist[row[inside], col[inside]]
        seen += inside.int()
        missed += (inside & (d > reach)).int()
    return (seen.float() >= max(1.0, min_seen_fraction * len(sils))) & (missed.float() <= miss_fraction * seen.float())


def carve(cameras: Cameras, silhouettes: Sequence[Tensor], lo: Tensor, hi: Tensor, resolution: int,
          miss_fraction: float = 0.05, min_seen_fraction: float = 0.5, dilate_px: float = 1.0) -> VisualHull:
    """Carve a cubic-voxel grid over the box [lo, hi] (world units) with the views' silhouettes.

    Args:
        cameras: N pinhole cameras (distortion is applied by :meth:`Cameras.project`).
        silhouettes: N (H_i, W_i) bool masks at the cameras' image sizes (True = object).
        resolution: voxels along the longest box side.
        miss_fraction: a voxel survives when it projects outside the silhouette in at most this
            fraction of the views that see it (in front of the camera, inside the frame) ...
        min_seen_fraction: ... and at least this fraction of all views sees it (a voxel few views see
            is barely constrained: an object capture frames its object in most views).
        dilate_px: a voxel is inside a silhouette when its center projects within its projected
            half-diagonal plus this many pixels of it (so parts thinner than a voxel are kept).
    """
    if len(silhouettes) != len(cameras):
        raise ValueError(f"carve: {len(cameras)} cameras but {len(silhouettes)} silhouettes")
    sils = silhouettes if isinstance(silhouettes, _Silhouettes) else _Silhouettes(silhouettes)
    cameras = cameras.to("cpu")
    lo, hi = torch.as_tensor(lo, dtype=torch.float32), torch.as_tensor(hi, dtype=torch.float32)
    voxel = float((hi - lo).max()) / resolution
    dims = [max(1, int(math.ceil(float(hi[d] - lo[d]) / voxel - 1e-6))) for d in range(3)]
    idx = torch.stack(torch.meshgrid(*[torch.arange(n) for n in dims], indexing="ij"), dim=-1).reshape(-1, 3)
    ok = _carve_points(cameras, sils, lo + (idx.float() + 0.5) * voxel, 0.5 * math.sqrt(3.0) * voxel,
                       miss_fraction, min_seen_fraction, dilate_px)
    return VisualHull(ok.reshape(*dims), lo, voxel)


def refine(hull: VisualHull, cameras: Cameras, silhouettes: Sequence[Tensor], miss_fraction: float = 0.05,
           min_seen_fraction: float = 0.5, dilate_px: float = 1.0) -> VisualHull:
    """The hull at twice the resolution: the children of its surface voxels (and of their occupied
    neighbours) are carved again, the children of interior voxels stay occupied."""
    sils = silhouettes if isinstance(silhouettes, _Silhouettes) else _Silhouettes(silhouettes)
    occ = hull.occupied
    surf = torch.zeros_like(occ)
    s = hull.surface()
    surf[s[:, 0], s[:, 1], s[:, 2]] = True
    near = (F.max_pool3d(surf.float()[None, None], 3, stride=1, padding=1)[0, 0] > 0.5) & occ

    def up(x: Tensor) -> Tensor:
        return x.repeat_interleave(2, 0).repeat_interleave(2, 1).repeat_interleave(2, 2)

    fine_occ, redo = up(occ), up(near)
    voxel = 0.5 * hull.voxel
    idx = redo.nonzero()
    ok = _carve_points(cameras.to("cpu"), sils, hull.lo + (idx.float() + 0.5) * voxel, 0.5 * math.sqrt(3.0) * voxel,
                       miss_fraction, min_seen_fraction, dilate_px)
    fine_occ[idx[:, 0], idx[:, 1], idx[:, 2]] = ok
    return VisualHull(fine_occ, hull.lo, voxel)


def visual_hull(cameras: Cameras, silhouettes: Sequence[Tensor], resolution: int = 256,
                miss_fraction: float = 0.05, min_seen_fraction: float = 0.5,
                box: Optional[Tensor] = None) -> VisualHull:
    """The visual hull of an object capture, coarse to fine.

    A 32-voxel grid over ``box`` (default: :func:`recon3d.core.scene_bounds.object_box` with
    margin, the region every camera frames) locates the object; a grid over its bounding box (plus
    two coarse voxels) is carved at 1/8 of ``resolution`` and refined by halving the voxels
    (:func:`refine`, only near the surface) until the longest side has ``resolution`` voxels or more.
    ``miss_fraction`` / ``min_seen_fraction``: see :func:`carve`. Raises :class:`EmptyHullError`
    when nothing survives.
    """
    if box is None:
        box = object_box(cameras.to("cpu"), scale=1.5).aabb
    box = torch.as_tensor(box, dtype=torch.float32)
    sils = _Silhouettes(silhouettes)
    kw = dict(miss_fraction=miss_fraction, min_seen_fraction=min_seen_fraction)
    coarse = carve(cameras, sils, box[0], box[1], 32, **kw)
    if not bool(coarse.occupied.any()):
        raise EmptyHullError("the silhouettes carve away the whole region the cameras look at "
                             "(masks that do not match the poses?)")
    b = coarse.bounds()
    pad = 2 * coarse.voxel
    lo, hi = torch.maximum(b[0] - pad, box[0]), torch.minimum(b[1] + pad, box[1])
    levels = max(0, math.ceil(math.log2(resolution / 32)))
    hull = carve(cameras, sils, lo, hi, max(8, math.ceil(resolution / 2 ** levels)), **kw)
    for _ in range(levels):
        hull = refine(hull, cameras, sils, **kw)
    if not bool(hull.occupied.any()):
        raise EmptyHullError("the silhouettes carve away everything at the fine resolution")
    log.info("visual hull: %d of %d voxels (%.4f world units each) from %d views",
             int(hull.occupied.sum()), hull.occupied.numel(), hull.voxel, len(sils))
    return hull


def surface_colors(points: Tensor, normals: Tensor, cameras: Cameras, image: Callable[[int], Tensor],
                   views: Sequence[int], min_facing: float = 0.3) -> Tensor:
    """(P, 3) colours of surface ``points`` (P, 3) with outward ``normals`` (P, 3): the mean of the
    pixels they project to in the ``views`` (indices into ``cameras``) that face them
    (cos(normal, direction to the camera) >= ``min_facing``), mid-grey where none does.
    ``image(i)`` returns view ``i``'s (H, W, 3) image in [0, 1]."""
    cameras = cameras.to("cpu")
    acc = torch.zeros(len(points), 3)
    cnt = torch.zeros(len(points))
    for i in views:
        cam = cameras[int(i)]
        img = image(int(i)).to("cpu", torch.float32)
        H, W = img.shape[:2]
        uv, z = cam.project(points)
        uv, z = uv[0], z[0]
        to_cam = F.normalize(cam.centers[0] - points, dim=-1)
        col, row = torch.floor(uv[:, 0]).long(), torch.floor(uv[:, 1]).long()
        use = (z > 0) & (col >= 0) & (col < W) & (row >= 0) & (row < H) & ((to_cam * normals).sum(-1) >= min_facing)
        acc[use] += img[row[use], col[use]]
        cnt[use] += 1
    out = torch.full((len(points), 3), 0.5)
    has = cnt > 0
    out[has] = acc[has] / cnt[has, None]
    return out
