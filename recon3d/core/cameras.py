"""Batched pinhole cameras with optional OpenCV distortion, in recon3d's one internal convention.

Convention (everywhere inside recon3d):
  * camera axes are OpenCV's: x right, y down, z forward (the camera looks along +z);
  * poses are camera-to-world 4x4 matrices (``c2w``), world units;
  * pixel coordinates are continuous with the image's top-left *corner* at (0, 0), so the center of
    pixel (row i, column j) is (u, v) = (j + 0.5, i + 0.5).

Other conventions (OpenGL/Blender/nerfstudio, PyTorch3D) are converted at the I/O boundary only,
see :mod:`recon3d.core.conventions`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import torch
from torch import Tensor

from .rays import RayBundle

PINHOLE = "pinhole"
OPENCV = "opencv"  # k1, k2, p1, p2, k3 (radial-tangential, Brown-Conrady)
OPENCV_FISHEYE = "opencv_fisheye"  # k1, k2, k3, k4 (equidistant), stored in the first 4 slots
CAMERA_MODELS = (PINHOLE, OPENCV, OPENCV_FISHEYE)
NUM_DIST = 5


def _as_batch(x, n: int | None, dtype=torch.float32) -> Tensor:
    t = torch.as_tensor(x, dtype=dtype)
    if t.ndim == 0 and n is not None:
        t = t.expand(n).clone()
    return t.reshape(-1)


@dataclass
class Cameras:
    """A batch of N cameras.

    Attributes:
        c2w: (N, 4, 4) float32 camera-to-world, OpenCV camera axes.
        fx, fy, cx, cy: (N,) float32 intrinsics in pixels (principal point from the image's corner).
        width, height: (N,) int64 image size in pixels.
        distortion: (N, 5) float32 distortion coefficients, meaning set by ``model``:
            ``opencv``: (k1, k2, p1, p2, k3); ``opencv_fisheye``: (k1, k2, k3, k4, 0); ``pinhole``: zeros.
        model: camera model shared by the batch, one of :data:`CAMERA_MODELS`.
    """

    c2w: Tensor
    fx: Tensor
    fy: Tensor
    cx: Tensor
    cy: Tensor
    width: Tensor
    height: Tensor
    distortion: Tensor = field(default=None)  # type: ignore[assignment]
    model: str = PINHOLE

    def __post_init__(self) -> None:
        c2w = torch.as_tensor(self.c2w, dtype=torch.float32)
        if c2w.ndim == 2:
            c2w = c2w[None]
        if c2w.shape[-2:] == (3, 4):
            bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], device=c2w.device).expand(c2w.shape[0], 1, 4)
            c2w = torch.cat([c2w, bottom], dim=1)
        if c2w.ndim != 3 or c2w.shape[-2:] != (4, 4):
            raise ValueError(f"c2w must be (N, 4, 4) or (N, 3, 4), got {tuple(c2w.shape)}")
        n = c2w.shape[0]
        self.c2w = c2w
        dev = c2w.device
        self.fx = _as_batch(self.fx, n).to(dev)
        self.fy = _as_batch(self.fy, n).to(dev)
        self.cx = _as_batch(self.cx, n).to(dev)
        self.cy = _as_batch(self.cy, n).to(dev)
        self.width = _as_batch(self.width, n, torch.int64).to(dev)
        self.height = _as_batch(self.height, n, torch.int64).to(dev)
        for name in ("fx", "fy", "cx", "cy", "width", "height"):
            if getattr(self, name).shape[0] != n:
                raise ValueError(f"{name} has {getattr(self, name).shape[0]} entries for {n} cameras")
        if self.model not in CAMERA_MODELS:
            raise ValueError(f"unknown camera model {self.model!r}; expected one of {CAMERA_MODELS}")
        if self.distortion is None:
            self.distortion = torch.zeros(n, NUM_DIST, device=dev)
        else:
            d = torch.as_tensor(self.distortion, dtype=torch.float32, device=dev)
            if d.ndim == 1:
                d = d.expand(n, -1)
            if d.shape[-1] < NUM_DIST:
                d = torch.cat([d, torch.zeros(n, NUM_DIST - d.shape[-1], device=dev)], dim=-1)
            self.distortion = d.reshape(n, NUM_DIST).clone()

    # ------------------------------------------------------------------ construction / batching
    @classmethod
    def from_K(cls, K: Tensor, c2w: Tensor, width, height, distortion=None, model: str = PINHOLE) -> "Cameras":
        """Build from (N, 3, 3) or (3, 3) intrinsic matrices."""
        K = torch.as_tensor(K, dtype=torch.float32)
        if K.ndim == 2:
            n = torch.as_tensor(c2w).reshape(-1, *torch.as_tensor(c2w).shape[-2:]).shape[0]
            K = K.expand(n, 3, 3)
        return cls(c2w, K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], width, height, distortion, model)

    @classmethod
    def cat(cls, cams: Sequence["Cameras"]) -> "Cameras":
        models = {c.model for c in cams}
        if len(models) > 1:
            raise ValueError(f"cannot concatenate cameras of different models {sorted(models)}")
        return cls(
            torch.cat([c.c2w for c in cams]),
            *(torch.cat([getattr(c, k) for c in cams]) for k in ("fx", "fy", "cx", "cy", "width", "height")),
            distortion=torch.cat([c.distortion for c in cams]),
            model=cams[0].model,
        )

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def __getitem__(self, idx) -> "Cameras":
        if isinstance(idx, int):
            idx = slice(idx, idx + 1) if idx != -1 else slice(-1, None)
        return Cameras(
            self.c2w[idx], self.fx[idx], self.fy[idx], self.cx[idx], self.cy[idx],
            self.width[idx], self.height[idx], self.distortion[idx], self.model,
        )

    def to(self, device) -> "Cameras":
        return Cameras(
            self.c2w.to(device), self.fx.to(device), self.fy.to(device), self.cx.to(device),
            self.cy.to(device), self.width.to(device), self.height.to(device),
            self.distortion.to(device), self.model,
        )

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    @property
    def is_distorted(self) -> bool:
        return self.model != PINHOLE and bool((self.distortion != 0).any())

    # ------------------------------------------------------------------ derived quantities
    @property
    def K(self) -> Tensor:
        """(N, 3, 3) intrinsic matrices."""
        K = torch.zeros(len(self), 3, 3, device=self.device)
        K[:, 0, 0], K[:, 1, 1] = self.fx, self.fy
        K[:, 0, 2], K[:, 1, 2] = self.cx, self.cy
        K[:, 2, 2] = 1.0
        return K

    @property
    def w2c(self) -> Tensor:
        """(N, 4, 4) world-to-camera (rigid inverse of c2w)."""
        R = self.c2w[:, :3, :3]
        t = self.c2w[:, :3, 3:]
        out = torch.eye(4, device=self.device).repeat(len(self), 1, 1)
        out[:, :3, :3] = R.transpose(1, 2)
        out[:, :3, 3:] = -R.transpose(1, 2) @ t
        return out

    @property
    def centers(self) -> Tensor:
        """(N, 3) camera centers in world coordinates."""
        return self.c2w[:, :3, 3]

    @property
    def forward(self) -> Tensor:
        """(N, 3) unit viewing directions (camera +z) in world coordinates."""
        return self.c2w[:, :3, 2]

    def fov(self) -> tuple[Tensor, Tensor]:
        """Horizontal and vertical field of view, (N,) radians each (pinhole approximation)."""
        return 2 * torch.atan(0.5 * self.width / self.fx), 2 * torch.atan(0.5 * self.height / self.fy)

    def rescale(self, factor: float | None = None, width: int | None = None, height: int | None = None) -> "Cameras":
        """Cameras for resized images: by ``factor`` (0.5 halves), or to an exact ``width``/``height``.

        With pixel centers at +0.5 the continuous image plane scales exactly, so every intrinsic
        (including cx, cy) is multiplied by the per-axis scale. Distortion is resolution independent.
        """
        if factor is not None:
            new_w = torch.round(self.width.float() * factor).long()
            new_h = torch.round(self.height.float() * factor).long()
        else:
            if width is None or height is None:
                raise ValueError("rescale needs a factor or both width and height")
            new_w = torch.full_like(self.width, int(width))
            new_h = torch.full_like(self.height, int(height))
        sx = new_w.float() / self.width.float()
        sy = new_h.float() / self.height.float()
        return replace(self, fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx, cy=self.cy * sy,
                       width=new_w, height=new_h, c2w=self.c2w.clone(), distortion=self.distortion.clone())

    # ------------------------------------------------------------------ distortion
    def distort(self, xy: Tensor, cam: Tensor | None = None) -> Tensor:
        """Apply lens distortion to normalized image coordinates.

        Args:
            xy: (N, P, 2) normalized coordinates (X/Z, Y/Z), or (R, 2) with ``cam`` (R,) indices.
        """
        if not self.is_distorted:
            return xy
        d = self._dist_for(xy, cam)
        if self.model == OPENCV_FISHEYE:
            return _fisheye_distort(xy, d)
        return _opencv_distort(xy, d)

    def undistort(self, xy_d: Tensor, cam: Tensor | None = None, iters: int = 10) -> Tensor:
        """Invert :meth:`distort` (Newton's method), same shapes."""
        if not self.is_distorted:
            return xy_d
        d = self._dist_for(xy_d, cam)
        if self.model == OPENCV_FISHEYE:
            return _fisheye_undistort(xy_d, d, iters)
        return _opencv_undistort(xy_d, d, iters)

    def _dist_for(self, xy: Tensor, cam: Tensor | None) -> Tensor:
        if cam is not None:
            return self.distortion[cam]  # (R, 5)
        return self.distortion[:, None, :].expand(*xy.shape[:-1], NUM_DIST)

    # ------------------------------------------------------------------ projection
    def world_to_camera(self, points: Tensor) -> Tensor:
        """(P, 3) or (N, P, 3) world points -> (N, P, 3) camera-space points."""
        if points.ndim == 2:
            points = points[None].expand(len(self), -1, -1)
        w2c = self.w2c
        return points @ w2c[:, :3, :3].transpose(1, 2) + w2c[:, None, :3, 3]

    def project(self, points: Tensor, eps: float = 1e-8) -> tuple[Tensor, Tensor]:
        """Project world points into every camera.

        Args:
            points: (P, 3) shared or (N, P, 3) per-camera world points.
        Returns:
            uv: (N, P, 2) pixel coordinates (corner origin, centers at +0.5);
            depth: (N, P) z-depth in camera space (<= 0 means behind the camera).
        """
        pc = self.world_to_camera(points)
        z = pc[..., 2]
        z_safe = torch.where(z.abs() < eps, torch.full_like(z, eps), z)
        xy = pc[..., :2] / z_safe[..., None]
        xy = self.distort(xy)
        u = xy[..., 0] * self.fx[:, None] + self.cx[:, None]
        v = xy[..., 1] * self.fy[:, None] + self.cy[:, None]
        return torch.stack([u, v], dim=-1), z

    def unproject(self, uv: Tensor, depth: Tensor) -> Tensor:
        """Pixels and z-depths -> world points.

        Args:
            uv: (N, P, 2) pixel coordinates; depth: (N, P) z-depth.
        Returns:
            (N, P, 3) world points.
        """
        x = (uv[..., 0] - self.cx[:, None]) / self.fx[:, None]
        y = (uv[..., 1] - self.cy[:, None]) / self.fy[:, None]
        xy = self.undistort(torch.stack([x, y], dim=-1))
        pc = torch.cat([xy, torch.ones_like(xy[..., :1])], dim=-1) * depth[..., None]
        return pc @ self.c2w[:, :3, :3].transpose(1, 2) + self.c2w[:, None, :3, 3]

    def unproject_depth(self, depth: Tensor, index: int | None = None, pixel_offset: float = 0.5) -> Tensor:
        """Depth maps -> one world point per pixel (lens distortion undone like :meth:`unproject`).

        Args:
            depth: (H, W) z-depth map of camera ``index``, or (N, H, W) maps of every camera when
                ``index`` is None; world units along the camera's +z axis (not ray lengths). Each
                map must have its camera's ``height`` x ``width``.
            index: the camera of a single (H, W) map; None for one map per camera.
            pixel_offset: where in each pixel the point is taken, in pixels from its top-left
                corner: 0.5 the pixel center (recon3d's convention, :meth:`pixel_centers`); 0.0
                integer pixel coordinates, as some published models compute.
        Returns:
            (H, W, 3) or (N, H, W, 3) world points, same dtype as the cameras (float32); a depth of
            0 maps to the camera center.
        """
        cams = self if index is None else self[index]
        maps = depth if index is None else depth[None]
        if maps.ndim != 3 or maps.shape[0] != len(cams):
            want = "(H, W)" if index is not None else f"({len(cams)}, H, W)"
            raise ValueError(f"depth must be {want}, got {tuple(depth.shape)}")
        N, H, W = maps.shape
        if bool((cams.height != H).any()) or bool((cams.width != W).any()):
            sizes = sorted({f"{w}x{h}" for w, h in zip(cams.width.tolist(), cams.height.tolist())})
            raise ValueError(f"depth maps are {W}x{H} (width x height) but the camera images are {', '.join(sizes)}")
        uv = cams.pixel_grid(0, pixel_offset).reshape(1, H * W, 2).expand(N, -1, -1)
        pts = cams.unproject(uv, maps.reshape(N, H * W))
        return pts.reshape(N, H, W, 3) if index is None else pts.reshape(H, W, 3)

    # ------------------------------------------------------------------ rays
    def pixel_centers(self, index: int) -> Tensor:
        """(H, W, 2) pixel-center coordinates (u, v) of camera ``index``."""
        return self.pixel_grid(index, 0.5)

    def pixel_grid(self, index: int, pixel_offset: float = 0.5) -> Tensor:
        """(H, W, 2) float32 pixel coordinates (u, v) = (column, row) + ``pixel_offset`` of camera
        ``index``, in pixels (0.5: the pixel centers, recon3d's convention; 0.0: integer coordinates)."""
        H, W = int(self.height[index]), int(self.width[index])
        v, u = torch.meshgrid(
            torch.arange(H, device=self.device, dtype=torch.float32) + pixel_offset,
            torch.arange(W, device=self.device, dtype=torch.float32) + pixel_offset,
            indexing="ij",
        )
        return torch.stack([u, v], dim=-1)

    def rays_at(self, cam: Tensor, uv: Tensor) -> RayBundle:
        """Rays through arbitrary pixel positions of arbitrary cameras (for random ray batches).

        Args:
            cam: (R,) int64 camera indices.
            uv: (R, 2) pixel coordinates (use +0.5 for pixel centers).
        Returns:
            RayBundle with (R, 3) origins and unit directions, (R, 1) ``z_scale``
            (cosine to the optical axis: z-depth = t * z_scale) and (R,) camera indices.
        """
        cam = cam.to(self.device).long()
        x = (uv[..., 0] - self.cx[cam]) / self.fx[cam]
        y = (uv[..., 1] - self.cy[cam]) / self.fy[cam]
        xy = self.undistort(torch.stack([x, y], dim=-1), cam=cam)
        d_cam = torch.cat([xy, torch.ones_like(xy[..., :1])], dim=-1)
        R = self.c2w[cam, :3, :3]
        d_world = (R @ d_cam[..., None])[..., 0]
        norm = d_world.norm(dim=-1, keepdim=True)
        return RayBundle(
            origins=self.c2w[cam, :3, 3],
            directions=d_world / norm,
            z_scale=1.0 / norm,
            camera_indices=cam,
        )

    def rays(self, index: int) -> RayBundle:
        """All rays of camera ``index`` through its pixel centers, shaped (H, W, ...)."""
        uv = self.pixel_centers(index)
        H, W = uv.shape[:2]
        cam = torch.full((H * W,), index, dtype=torch.long, device=self.device)
        return self.rays_at(cam, uv.reshape(-1, 2)).reshape(H, W)

    def rays_all(self, pixel_offset: float = 0.5) -> RayBundle:
        """Rays through every pixel of every camera (all cameras of one size), shaped (N, H, W, ...).

        Args:
            pixel_offset: as in :meth:`pixel_grid` (0.5: through the pixel centers).
        Returns:
            RayBundle with (N, H, W, 3) origins and unit directions (world units), (N, H, W, 1)
            ``z_scale`` and (N, H, W) camera indices; row-major pixels, like :meth:`rays` per camera.
        """
        H, W = int(self.height[0]), int(self.width[0])
        if bool((self.height != H).any()) or bool((self.width != W).any()):
            raise ValueError("rays_all needs cameras of one image size; use rays(index) per camera")
        N = len(self)
        uv = self.pixel_grid(0, pixel_offset).reshape(1, H * W, 2).expand(N, -1, -1).reshape(-1, 2)
        cam = torch.arange(N, device=self.device).repeat_interleave(H * W)
        return self.rays_at(cam, uv).reshape(N, H, W)

    def look_at(self) -> Tensor:
        """(3,) least-squares point closest to all optical axes (where the rig looks)."""
        d = self.forward
        o = self.centers
        A = torch.eye(3, device=self.device)[None] - d[:, :, None] * d[:, None, :]
        return torch.linalg.lstsq(A.sum(0), (A @ o[..., None]).sum(0)).solution[:, 0]


# ---------------------------------------------------------------------- distortion models
def flat_pixel_centers(pixels: Tensor, width: Tensor | int) -> Tensor:
    """(R,) row-major flat pixel indices of images ``width`` pixels wide (an int or (R,) widths) ->
    (R, 2) float32 pixel-centre coordinates ``(u, v)`` (centres at +0.5, the convention of this module)."""
    return torch.stack([(pixels % width).float() + 0.5, (pixels // width).float() + 0.5], dim=-1)


def _opencv_distort(xy: Tensor, d: Tensor) -> Tensor:
    x, y = xy[..., 0], xy[..., 1]
    k1, k2, p1, p2, k3 = d.unbind(-1)
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return torch.stack([xd, yd], dim=-1)


def _opencv_undistort(xy_d: Tensor, d: Tensor, iters: int) -> Tensor:
    k1, k2, p1, p2, k3 = d.unbind(-1)
    xy = xy_d.clone()
    for _ in range(iters):
        x, y = xy[..., 0], xy[..., 1]
        r2 = x * x + y * y
        radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        dradial_dr2 = k1 + r2 * (2 * k2 + 3 * k3 * r2)
        fx = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x) - xy_d[..., 0]
        fy = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y - xy_d[..., 1]
        j00 = radial + 2 * x * x * dradial_dr2 + 2 * p1 * y + 6 * p2 * x
        j01 = 2 * x * y * dradial_dr2 + 2 * p1 * x + 2 * p2 * y
        j10 = 2 * x * y * dradial_dr2 + 2 * p1 * x + 2 * p2 * y
        j11 = radial + 2 * y * y * dradial_dr2 + 6 * p1 * y + 2 * p2 * x
        det = j00 * j11 - j01 * j10
        det = torch.where(det.abs() < 1e-12, torch.full_like(det, 1e-12), det)
        dx = (j11 * fx - j01 * fy) / det
        dy = (-j10 * fx + j00 * fy) / det
        xy = torch.stack([x - dx, y - dy], dim=-1)
    return xy


def _fisheye_distort(xy: Tensor, d: Tensor) -> Tensor:
    k1, k2, k3, k4 = d[..., 0], d[..., 1], d[..., 2], d[..., 3]
    r = xy.norm(dim=-1)
    theta = torch.atan(r)
    t2 = theta * theta
    theta_d = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
    scale = torch.where(r > 1e-9, theta_d / r.clamp_min(1e-9), torch.ones_like(r))
    return xy * scale[..., None]


def _fisheye_undistort(xy_d: Tensor, d: Tensor, iters: int) -> Tensor:
    k1, k2, k3, k4 = d[..., 0], d[..., 1], d[..., 2], d[..., 3]
    theta_d = xy_d.norm(dim=-1)
    theta = theta_d.clone()
    for _ in range(iters):
        t2 = theta * theta
        f = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4)))) - theta_d
        df = 1 + t2 * (3 * k1 + t2 * (5 * k2 + t2 * (7 * k3 + 9 * t2 * k4)))
        theta = theta - f / df
    r = torch.tan(theta)
    scale = torch.where(theta_d > 1e-9, r / theta_d.clamp_min(1e-9), torch.ones_like(r))
    return xy_d * scale[..., None]
