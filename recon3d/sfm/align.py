"""Similarity alignment of point sets and pose-accuracy figures (SfM vs. ground truth).

SfM recovers cameras up to a similarity (scale, rotation, translation). To compare them with ground
truth, align the estimated camera centres onto the true ones (Umeyama 1991, least squares), then
measure what is left::

    s, R, t = align_similarity(est_centers, gt_centers)     # gt ~ s * R @ est + t
    acc = pose_accuracy(est_c2w, gt_c2w)                    # errors after that alignment
"""

from __future__ import annotations

import math

import numpy as np


def _as_array(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"{name} must be (N, 3), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has non-finite values")
    return a


def align_similarity(src_points, dst_points, with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity taking ``src_points`` onto ``dst_points`` (Umeyama).

    Args:
        src_points, dst_points: (N, 3) corresponding points (numpy or torch), N >= 3 and not all
            collinear for a unique rotation.
        with_scale: estimate the scale (else s = 1: a rigid alignment).
    Returns:
        ``(s, R, t)``: float scale, (3, 3) float64 rotation (det +1), (3,) float64 translation with
        ``dst ~ s * src @ R.T + t``.
    """
    src = _as_array(src_points, "src_points")
    dst = _as_array(dst_points, "dst_points")
    if len(src) != len(dst):
        raise ValueError(f"src_points and dst_points differ in length: {len(src)} vs {len(dst)}")
    if len(src) < 3:
        raise ValueError(f"need at least 3 point pairs, got {len(src)}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    var_s = (xs ** 2).sum() / len(src)
    if var_s <= 0:
        raise ValueError("src_points are all identical; the alignment is undefined")
    cov = xd.T @ xs / len(src)
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1.0  # reflection -> closest rotation
    R = U @ S @ Vt
    s = float(np.trace(np.diag(D) @ S) / var_s) if with_scale else 1.0
    t = mu_d - s * R @ mu_s
    return s, R, t


def apply_similarity(points, s: float, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(N, 3) ``s * R @ p + t`` for each point, float64."""
    return s * _as_array(points, "points") @ np.asarray(R).T + np.asarray(t)


def _rotation_angle_deg(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    """(N,) angles in degrees of the relative rotations ``Ra[i]^T Rb[i]``."""
    rel = np.einsum("nji,njk->nik", Ra, Rb)
    # ||R - I||_F = 2 sqrt(2) sin(angle / 2): accurate near 0, where arccos((trace - 1) / 2) is not
    d = np.linalg.norm(rel - np.eye(3), axis=(1, 2)) / math.sqrt(8.0)
    return np.degrees(2.0 * np.arcsin(np.clip(d, 0.0, 1.0)))


def pose_accuracy(est_c2w, gt_c2w) -> dict:
    """Errors of estimated camera poses after aligning their centres onto the ground truth.

    Args:
        est_c2w, gt_c2w: (N, 4, 4) (or (N, 3, 4)) camera-to-world matrices of the same N cameras,
            in the same camera-axis convention (recon3d: OpenCV).
    Returns:
        dict with ``scale``, ``R`` (3, 3), ``t`` (3,) of the alignment (est -> gt), per-camera
        ``center_errors`` (N,) in ground-truth units, ``rotation_errors_deg`` (N,), their
        ``mean_center_error`` / ``max_center_error``, those divided by the mean distance of the true
        cameras from their centroid (``*_rel``), and ``mean_rotation_error_deg`` /
        ``max_rotation_error_deg``.
    """
    def mats(x, name):
        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        a = np.asarray(x, dtype=np.float64)
        if a.ndim != 3 or a.shape[1:] not in ((4, 4), (3, 4)):
            raise ValueError(f"{name} must be (N, 4, 4) or (N, 3, 4), got shape {a.shape}")
        return a

    est, gt = mats(est_c2w, "est_c2w"), mats(gt_c2w, "gt_c2w")
    if len(est) != len(gt):
        raise ValueError(f"est_c2w and gt_c2w differ in length: {len(est)} vs {len(gt)}")
    s, R, t = align_similarity(est[:, :3, 3], gt[:, :3, 3])
    centers = apply_similarity(est[:, :3, 3], s, R, t)
    cerr = np.linalg.norm(centers - gt[:, :3, 3], axis=1)
    rerr = _rotation_angle_deg(gt[:, :3, :3], R[None] @ est[:, :3, :3])
    spread = float(np.linalg.norm(gt[:, :3, 3] - gt[:, :3, 3].mean(0), axis=1).mean())
    spread = spread if spread > 0 else 1.0
    return {
        "scale": s, "R": R, "t": t, "center_errors": cerr, "rotation_errors_deg": rerr,
        "mean_center_error": float(cerr.mean()), "max_center_error": float(cerr.max()),
        "mean_center_error_rel": float(cerr.mean() / spread), "max_center_error_rel": float(cerr.max() / spread),
        "mean_rotation_error_deg": float(rerr.mean()), "max_rotation_error_deg": float(rerr.max()),
    }
