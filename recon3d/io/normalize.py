"""Scene normalization: a similarity transform (uniform scale, rotation, translation) of the world.

Methods work in a *normalized* world (scene centred at the origin, inside a sphere of radius ~1);
exports undo it with :meth:`Normalization.inverse_points` / :meth:`Normalization.inverse_c2w`.

A similarity ``x' = s R x + t`` applied to points and cameras leaves every projection unchanged:
camera rotations are rotated (never scaled, so they stay orthonormal), camera centres are
transformed like points, and camera-space depths are multiplied by ``s``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from recon3d.core.cameras import Cameras

if TYPE_CHECKING:
    from .scene import Scene

METHODS = ("cameras", "points", "none")


def _eye() -> Tensor:
    return torch.eye(4, dtype=torch.float64)


@dataclass
class Normalization:
    """A world -> normalized-world similarity.

    Attributes:
        transform: (4, 4) float64 ``[[s R, t], [0, 1]]`` with R a rotation and s > 0.
    """

    transform: Tensor = field(default_factory=_eye)

    def __post_init__(self) -> None:
        T = torch.as_tensor(self.transform, dtype=torch.float64).detach().cpu().clone()
        if T.shape != (4, 4):
            raise ValueError(f"normalization transform must be 4x4, got {tuple(T.shape)}")
        if not torch.isfinite(T).all():
            raise ValueError("normalization transform has non-finite entries")
        s = T[:3, :3].det().abs().pow(1.0 / 3.0)
        if s <= 0:
            raise ValueError("normalization transform is singular")
        R = T[:3, :3] / s
        if (R.T @ R - torch.eye(3, dtype=torch.float64)).abs().max() > 1e-5 or R.det() < 0:
            raise ValueError("normalization transform must be a similarity (uniform scale x proper rotation)")
        self.transform = T

    # ------------------------------------------------------------------ construction
    @classmethod
    def identity(cls) -> "Normalization":
        return cls(_eye())

    @classmethod
    def from_parts(cls, scale: float = 1.0, rotation: Tensor | None = None, translation: Tensor | None = None) -> "Normalization":
        """``x' = scale * rotation @ x + translation``; rotation (3, 3), translation (3,)."""
        T = _eye()
        R = torch.eye(3, dtype=torch.float64) if rotation is None else torch.as_tensor(rotation, dtype=torch.float64)
        T[:3, :3] = float(scale) * R
        if translation is not None:
            T[:3, 3] = torch.as_tensor(translation, dtype=torch.float64).reshape(3)
        return cls(T)

    # ------------------------------------------------------------------ parts
    @property
    def scale(self) -> float:
        """The uniform scale factor s (normalized units per world unit)."""
        return float(self.transform[:3, :3].det().abs().pow(1.0 / 3.0))

    @property
    def rotation(self) -> Tensor:
        """(3, 3) float64 rotation R."""
        return self.transform[:3, :3] / self.scale

    @property
    def translation(self) -> Tensor:
        """(3,) float64 translation t."""
        return self.transform[:3, 3].clone()

    @property
    def is_identity(self) -> bool:
        return bool(torch.allclose(self.transform, _eye(), atol=1e-12))

    def inverse(self) -> "Normalization":
        """The normalized -> world similarity."""
        s, R, t = self.scale, self.rotation, self.translation
        T = _eye()
        T[:3, :3] = R.T / s
        T[:3, 3] = -(R.T @ t) / s
        return Normalization(T)

    def then(self, other: "Normalization") -> "Normalization":
        """Composition: apply ``self`` first, then ``other``."""
        return Normalization(other.transform @ self.transform)

    # ------------------------------------------------------------------ application
    def apply_points(self, points: Tensor) -> Tensor:
        """(..., 3) world points -> (..., 3) normalized points (same dtype/device as the input)."""
        T = self.transform.to(device=points.device)
        p = points.to(torch.float64)
        return (p @ T[:3, :3].T + T[:3, 3]).to(points.dtype)

    def apply_c2w(self, c2w: Tensor) -> Tensor:
        """(..., 4, 4) camera-to-world -> normalized camera-to-world (rotation stays orthonormal)."""
        return _similarity_c2w(self.transform, c2w)

    def apply_distances(self, d: Tensor) -> Tensor:
        """World-unit lengths (depths, near/far bounds) -> normalized units (multiplied by s)."""
        return d * self.scale

    def inverse_points(self, points: Tensor) -> Tensor:
        """(..., 3) normalized points -> world points."""
        return self.inverse().apply_points(points)

    def inverse_c2w(self, c2w: Tensor) -> Tensor:
        """(..., 4, 4) normalized camera-to-world -> world camera-to-world."""
        return self.inverse().apply_c2w(c2w)

    def apply_cameras(self, cameras: Cameras) -> Cameras:
        """Cameras with transformed poses; intrinsics untouched (projections are invariant)."""
        return replace(cameras, c2w=self.apply_c2w(cameras.c2w), distortion=cameras.distortion.clone())

    # ------------------------------------------------------------------ serialization
    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly ``{"transform": 4x4 nested list, "scale": s}``."""
        return {"transform": [[float(x) for x in row] for row in self.transform.tolist()], "scale": self.scale}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Normalization":
        return cls(torch.tensor(d["transform"], dtype=torch.float64))


def _similarity_c2w(T: Tensor, c2w: Tensor) -> Tensor:
    T = T.to(device=c2w.device)
    s = T[:3, :3].det().abs().pow(1.0 / 3.0)
    R = T[:3, :3] / s
    c = c2w.to(torch.float64)
    out = c.clone()
    out[..., :3, :3] = R @ c[..., :3, :3]
    out[..., :3, 3] = c[..., :3, 3] @ T[:3, :3].T + T[:3, 3]
    out[..., 3, :] = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64, device=c2w.device)
    return out.to(c2w.dtype)


# ---------------------------------------------------------------------------------- centre / scale
def camera_center(cameras: Cameras, min_spread: float = 0.05) -> Tensor:
    """(3,) where the rig looks: ``Cameras.look_at`` when the optical axes converge in front of the
    cameras, else the mean camera centre (forward-facing captures with near-parallel axes).

    ``min_spread`` bounds the smallest eigenvalue of ``mean(I - d d^T)`` (about sin^2 of the axes' spread).
    """
    cameras = cameras.to("cpu")
    centers = cameras.centers.double()
    if len(cameras) < 2:
        return centers.mean(0).float()
    d = cameras.forward.double()
    d = d / d.norm(dim=-1, keepdim=True)
    A = (torch.eye(3, dtype=torch.float64)[None] - d[:, :, None] * d[:, None, :]).mean(0)
    if torch.linalg.eigvalsh(A)[0] < min_spread:
        return centers.mean(0).float()
    p = cameras.look_at().double()
    in_front = (((p - centers) * d).sum(-1) > 0).double().mean()
    return p.float() if in_front >= 0.5 else centers.mean(0).float()


def robust_points_center(points: Tensor, lo: float = 1.0, hi: float = 99.0) -> Tensor:
    """(3,) midpoint of the per-axis ``lo``/``hi`` percentiles of (P, 3) points (ignores outliers)."""
    p = points.double()
    q = torch.quantile(p, torch.tensor([lo / 100.0, hi / 100.0], dtype=torch.float64), dim=0)
    return (0.5 * (q[0] + q[1])).float()


def up_rotation(cameras: Cameras) -> Tensor:
    """(3, 3) float64 rotation taking the average camera up vector (OpenCV -y) to +z."""
    up = -cameras.c2w[:, :3, 1].detach().cpu().double().mean(0)
    up = up / up.norm().clamp_min(1e-12)
    z = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    v = torch.linalg.cross(up, z)
    c = float(up @ z)
    if c < -1 + 1e-9:  # up is -z: rotate 180 degrees about x
        return torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    K = torch.tensor([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + K + K @ K / (1.0 + c)  # Rodrigues for unit vectors


def compute_normalization(
    cameras: Cameras,
    points: Tensor | None = None,
    method: str = "cameras",
    target_radius: float = 1.0,
    align_up: bool = False,
) -> Normalization:
    """The similarity that centres and scales a scene.

    Args:
        cameras: the scene's cameras (all frames).
        points: optional (P, 3) world points (needed for ``method='points'``).
        method: ``'cameras'``: centre = :func:`camera_center`, scale so every camera centre lies
            within ``target_radius``; ``'points'``: centre = :func:`robust_points_center`, scale so
            99% of the points lie within ``target_radius``; ``'none'``: identity.
        target_radius: radius (normalized units) of the sphere the cameras / points are fitted in.
        align_up: also rotate so the average camera up vector becomes +z (off by default).
    Returns:
        :class:`Normalization` (world -> normalized).
    """
    if method not in METHODS:
        raise ValueError(f"normalization method must be one of {METHODS}, got {method!r}")
    if method == "none":
        return Normalization.identity()
    cameras = cameras.to("cpu")
    points = None if points is None else points.detach().cpu()
    if method == "points":
        if points is None or len(points) == 0:
            raise ValueError("method='points' needs a non-empty (P, 3) points tensor")
        center = robust_points_center(points).double()
        dist = (points.double() - center).norm(dim=-1)
        extent = float(torch.quantile(dist, 0.99))
    else:
        center = camera_center(cameras).double()
        extent = float((cameras.centers.double() - center).norm(dim=-1).max())
    scale = target_radius / extent if extent > 1e-12 else 1.0
    R = up_rotation(cameras) if align_up else torch.eye(3, dtype=torch.float64)
    return Normalization.from_parts(scale, R, -scale * (R @ center))


def normalize_scene(
    scene: "Scene",
    method: str = "cameras",
    target_radius: float = 1.0,
    align_up: bool = False,
) -> "Scene":
    """A new Scene in a normalized world (see :func:`compute_normalization` for the arguments).

    Cameras, points and near/far bounds are transformed; ``scene.normalization`` becomes the
    composition (original world -> normalized), so exports can undo everything at once.
    """
    norm = compute_normalization(scene.cameras, scene.points, method, target_radius, align_up)
    return apply_normalization(scene, norm)


def apply_normalization(scene: "Scene", norm: Normalization) -> "Scene":
    """A new Scene with ``norm`` applied on top of ``scene.normalization``."""
    return replace(
        scene,
        cameras=norm.apply_cameras(scene.cameras),
        points=None if scene.points is None else norm.apply_points(scene.points),
        near_far=None if scene.near_far is None else norm.apply_distances(scene.near_far),
        normalization=scene.normalization.then(norm),
    )
