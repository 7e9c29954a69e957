"""Fused ``(quaternion, scale, projection rows) -> 2D covariance`` with a hand-written backward.

The projected covariance of a 3D Gaussian is ``T Sigma T^T`` with ``Sigma = R diag(s)^2 R^T`` and
``T = J W`` the (2, 3) Jacobian of the pinhole projection times the camera rotation. Written with
autograd this is dozens of small tensor ops per Gaussian (quaternion -> matrix, batched 3x3
products) whose backward dominates the projection cost on CPU; here the forward and the backward are
explicit formulas on per-component (C, N) arrays, which is several times faster and keeps no
autograd graph. Checked against the autograd formulation by ``tests/test_gaussian_projection.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


def _components(t: Tensor) -> tuple[Tensor, ...]:
    """Split the last dim into contiguous component arrays (strided views are several times slower
    in elementwise ops)."""
    return tuple(t.movedim(-1, 0).contiguous().unbind(0))


def _rotation(n: tuple[Tensor, Tensor, Tensor, Tensor]) -> list[list[Tensor]]:
    """Rotation matrix entries ``R[j][k]`` of a unit quaternion ``n = (w, x, y, z)``, each (N,)."""
    w, x, y, z = n
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz = x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    return [
        [1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy)],
        [2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx)],
        [2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy)],
    ]


class ProjectedCovariance(torch.autograd.Function):
    """``(quats (N, 4), scales (N, 3), T0 (C, N, 3), T1 (C, N, 3)) -> (a, b, c)``, each (C, N):
    the entries of ``T Sigma T^T`` (no low-pass) with rows ``T0``, ``T1`` of ``T``."""

    @staticmethod
    def forward(ctx, quats: Tensor, scales: Tensor, T0: Tensor, T1: Tensor):
        norm = quats.norm(dim=-1).clamp_min(1e-12)
        n = _components(quats / norm[:, None])
        R = _rotation(n)
        s = _components(scales)
        M = [[R[j][k] * s[k] for k in range(3)] for j in range(3)]  # Sigma = M M^T
        t0, t1 = _components(T0), _components(T1)
        U0 = [t0[0] * M[0][k] + t0[1] * M[1][k] + t0[2] * M[2][k] for k in range(3)]
        U1 = [t1[0] * M[0][k] + t1[1] * M[1][k] + t1[2] * M[2][k] for k in range(3)]
        a = U0[0] * U0[0] + U0[1] * U0[1] + U0[2] * U0[2]
        b = U0[0] * U1[0] + U0[1] * U1[1] + U0[2] * U1[2]
        c = U1[0] * U1[0] + U1[1] * U1[1] + U1[2] * U1[2]
        ctx.save_for_backward(quats, scales, T0, T1)
        return a, b, c

    @staticmethod
    @once_differentiable
    def backward(ctx, ga: Tensor, gb: Tensor, gc: Tensor):
        quats, scales, T0, T1 = ctx.saved_tensors
        norm = quats.norm(dim=-1).clamp_min(1e-12)
        nq = quats / norm[:, None]
        n = _components(nq)
        R = _rotation(n)
        s = _components(scales)
        M = [[R[j][k] * s[k] for k in range(3)] for j in range(3)]
        t0, t1 = _components(T0), _components(T1)
        U0 = [t0[0] * M[0][k] + t0[1] * M[1][k] + t0[2] * M[2][k] for k in range(3)]
        U1 = [t1[0] * M[0][k] + t1[1] * M[1][k] + t1[2] * M[2][k] for k in range(3)]
        ga2, gc2 = 2 * ga, 2 * gc
        dU0 = [ga2 * U0[k] + gb * U1[k] for k in range(3)]
        dU1 = [gb * U0[k] + gc2 * U1[k] for k in range(3)]
        dT0 = torch.stack([dU0[0] * M[j][0] + dU0[1] * M[j][1] + dU0[2] * M[j][2] for j in range(3)], -1)
        dT1 = torch.stack([dU1[0] * M[j][0] + dU1[1] * M[j][1] + dU1[2] * M[j][2] for j in range(3)], -1)
        # dM[j][k] = sum over cameras of dU0_k T0_j + dU1_k T1_j
        dM = [[(dU0[k] * t0[j] + dU1[k] * t1[j]).sum(0) for k in range(3)] for j in range(3)]
        ds = torch.stack([dM[0][k] * R[0][k] + dM[1][k] * R[1][k] + dM[2][k] * R[2][k] for k in range(3)], -1)
        d = [[dM[j][k] * s[k] for k in range(3)] for j in range(3)]  # dL/dR
        w, x, y, z = n
        dw = 2 * (-z * d[0][1] + y * d[0][2] + z * d[1][0] - x * d[1][2] - y * d[2][0] + x * d[2][1])
        dx = 2 * (y * d[0][1] + z * d[0][2] + y * d[1][0] - 2 * x * d[1][1] - w * d[1][2] + z * d[2][0]
                  + w * d[2][1] - 2 * x * d[2][2])
        dy = 2 * (-2 * y * d[0][0] + x * d[0][1] + w * d[0][2] + x * d[1][0] + z * d[1][2] - w * d[2][0]
                  + z * d[2][1] - 2 * y * d[2][2])
        dz = 2 * (-2 * z * d[0][0] - w * d[0][1] + x * d[0][2] + w * d[1][0] - 2 * z * d[1][1] + y * d[1][2]
                  + x * d[2][0] + y * d[2][1])
        dn = torch.stack([dw, dx, dy, dz], -1)
        dq = (dn - nq * (nq * dn).sum(-1, keepdim=True)) / norm[:, None]  # through the normalization
        return dq, ds, dT0, dT1


def projected_covariance(quats: Tensor, scales: Tensor, T0: Tensor, T1: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """See :class:`ProjectedCovariance`."""
    return ProjectedCovariance.apply(quats, scales, T0, T1)
