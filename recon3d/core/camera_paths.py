"""Camera trajectories for novel-view videos: ``orbit``, ``spiral`` and ``interpolate`` (``recon3d render --path``).

All cameras are OpenCV camera-to-world (x right, y down, z forward), like the rest of recon3d.

* :func:`orbit_path`: a full circle around the point the capture looks at (360 captures).
* :func:`spiral_path`: LLFF's / nerfstudio's forward-facing spiral around the mean camera.
* :func:`interpolate_path`: a smooth path through the (training) cameras, like ``ns-render
  interpolate``: visited in capture order or as a nearest-neighbour chain, positions on a C1 cubic
  (Catmull-Rom tangents), rotations on a spherical cubic of quaternions (hemisphere-checked slerps:
  no flips), intrinsics interpolated; the path passes through every camera it keeps.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .gaussians.projection import quat_to_rotmat  # noqa: F401  (also part of this module's quaternion helpers)

from .cameras import Cameras


def look_at_c2w(eyes: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """OpenCV camera-to-world (N, 4, 4) for cameras at ``eyes`` (N, 3) looking at ``target`` (3,).

    ``up`` (3,) is the world direction that appears upward in the image (image -y).
    """
    fwd = torch.nn.functional.normalize(target[None] - eyes, dim=-1)
    right = torch.nn.functional.normalize(torch.linalg.cross(fwd, up.expand_as(fwd)), dim=-1)
    down = torch.linalg.cross(fwd, right)
    c2w = torch.eye(4).repeat(eyes.shape[0], 1, 1)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, down, fwd, eyes
    return c2w


def orbit_path(cameras: Cameras, num_frames: int = 60, elevation_deg: float | None = None,
               radius_scale: float = 1.0) -> Cameras:
    """A full circle of cameras around the point the capture looks at.

    The orbit's axis is the capture's average "up" (minus the mean image y axis), its radius the
    median distance of the cameras to that point, and its height their mean elevation unless
    ``elevation_deg`` is given. Intrinsics and image size are those of the first camera.
    """
    cameras = cameras.to("cpu")
    center = cameras.look_at()
    up = torch.nn.functional.normalize(-cameras.c2w[:, :3, 1].mean(0), dim=0)
    offsets = cameras.centers - center
    radius = float(offsets.norm(dim=-1).median()) * radius_scale
    if elevation_deg is None:
        sin_el = (torch.nn.functional.normalize(offsets, dim=-1) @ up).mean().clamp(-0.95, 0.95)
        elevation = math.asin(float(sin_el))
    else:
        elevation = math.radians(elevation_deg)
    # an orthonormal basis of the orbit plane, starting from the first camera's azimuth
    a = offsets[0] - (offsets[0] @ up) * up
    if a.norm() < 1e-6:
        a = torch.linalg.cross(up, torch.tensor([1.0, 0.0, 0.0]))
    a = torch.nn.functional.normalize(a, dim=0)
    b = torch.linalg.cross(up, a)
    az = torch.linspace(0, 2 * math.pi, num_frames + 1)[:-1]
    ring = torch.cos(az)[:, None] * a + torch.sin(az)[:, None] * b
    eyes = center + radius * (math.cos(elevation) * ring + math.sin(elevation) * up)
    c2w = look_at_c2w(eyes, center, up)
    n = num_frames
    return Cameras(c2w, cameras.fx[:1].expand(n), cameras.fy[:1].expand(n), cameras.cx[:1].expand(n),
                   cameras.cy[:1].expand(n), cameras.width[:1].expand(n), cameras.height[:1].expand(n))


# ---------------------------------------------------------------------------------- rotations
# Quaternions are (..., 4) tensors (w, x, y, z). q and -q are the same rotation: every operation below
# that combines two of them first puts them in the same hemisphere (q0 . q1 >= 0), so a capture whose
# quaternions come with mixed signs never makes an interpolated camera spin the long way round.

def rotmat_to_quat(R: Tensor) -> Tensor:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions (w, x, y, z), ``w >= 0``.

    Shepperd's method: the largest of the four diagonal combinations is the pivot, so it is accurate
    for every rotation (also near 180 degrees)."""
    R = torch.as_tensor(R)
    m = R.reshape(-1, 3, 3).to(torch.float64)
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cand = torch.stack([tr, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], dim=-1)
    pivot = cand.argmax(-1)
    q = torch.empty(m.shape[0], 4, dtype=torch.float64)
    for k in range(4):
        sel = pivot == k
        if not sel.any():
            continue
        a = m[sel]
        if k == 0:
            s = 2.0 * torch.sqrt((1.0 + tr[sel]).clamp_min(1e-12))
            q[sel] = torch.stack([0.25 * s, (a[:, 2, 1] - a[:, 1, 2]) / s, (a[:, 0, 2] - a[:, 2, 0]) / s,
                                  (a[:, 1, 0] - a[:, 0, 1]) / s], -1)
        elif k == 1:
            s = 2.0 * torch.sqrt((1.0 + a[:, 0, 0] - a[:, 1, 1] - a[:, 2, 2]).clamp_min(1e-12))
            q[sel] = torch.stack([(a[:, 2, 1] - a[:, 1, 2]) / s, 0.25 * s, (a[:, 0, 1] + a[:, 1, 0]) / s,
                                  (a[:, 0, 2] + a[:, 2, 0]) / s], -1)
        elif k == 2:
            s = 2.0 * torch.sqrt((1.0 + a[:, 1, 1] - a[:, 0, 0] - a[:, 2, 2]).clamp_min(1e-12))
            q[sel] = torch.stack([(a[:, 0, 2] - a[:, 2, 0]) / s, (a[:, 0, 1] + a[:, 1, 0]) / s, 0.25 * s,
                                  (a[:, 1, 2] + a[:, 2, 1]) / s], -1)
        else:
            s = 2.0 * torch.sqrt((1.0 + a[:, 2, 2] - a[:, 0, 0] - a[:, 1, 1]).clamp_min(1e-12))
            q[sel] = torch.stack([(a[:, 1, 0] - a[:, 0, 1]) / s, (a[:, 0, 2] + a[:, 2, 0]) / s,
                                  (a[:, 1, 2] + a[:, 2, 1]) / s, 0.25 * s], -1)
    q = torch.nn.functional.normalize(q, dim=-1)
    q = torch.where(q[:, :1] < 0, -q, q)
    return q.reshape(*R.shape[:-2], 4).to(R.dtype if R.is_floating_point() else torch.float32)


def quat_mul(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product ``a * b`` of (..., 4) quaternions (the rotation ``b`` first, then ``a``)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], dim=-1)


def quat_conj(q: Tensor) -> Tensor:
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def quat_log(q: Tensor) -> Tensor:
    """(..., 4) unit quaternions -> (..., 3) ``v`` with ``q = exp(v)`` (half the rotation vector), taking
    the shorter of q and -q (``|v| <= pi/2``)."""
    q = torch.where(q[..., :1] < 0, -q, q)
    v = q[..., 1:]
    s = v.norm(dim=-1, keepdim=True)
    half = torch.atan2(s, q[..., :1])
    scale = torch.where(s > 1e-12, half / s.clamp_min(1e-12), 1.0 / q[..., :1].clamp_min(1e-12))
    return v * scale


def quat_exp(v: Tensor) -> Tensor:
    """(..., 3) -> (..., 4) unit quaternions ``(cos|v|, sin|v| v/|v|)`` (a rotation by ``2|v|``)."""
    a = v.norm(dim=-1, keepdim=True)
    sinc = torch.where(a > 1e-12, torch.sin(a) / a.clamp_min(1e-12), 1.0 - a * a / 6.0)
    return torch.cat([torch.cos(a), v * sinc], dim=-1)


def align_hemispheres(q: Tensor) -> Tensor:
    """(N, 4) quaternions with signs flipped so that consecutive ones lie in the same hemisphere
    (``q[i] . q[i+1] >= 0``): the same rotations, and no interpolation between them goes the long way."""
    q = q.clone()
    for i in range(1, q.shape[0]):
        if float((q[i] * q[i - 1]).sum()) < 0:
            q[i] = -q[i]
    return q


def slerp(q0: Tensor, q1: Tensor, t) -> Tensor:
    """Spherical linear interpolation from ``q0`` (t=0) to ``q1`` (t=1) along the shorter arc.

    ``q0``, ``q1``: (..., 4) unit quaternions; ``t``: a number or (...,) tensor. ``q1`` is negated where
    it lies in the other hemisphere (the hemisphere check), so the result never flips."""
    t = torch.as_tensor(t, dtype=q0.dtype)
    if t.ndim < q0.ndim:
        t = t[..., None]
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)
    dot = dot.abs().clamp(max=1.0)
    theta = torch.acos(dot)
    sin = torch.sin(theta)
    near = sin < 1e-6
    w0 = torch.where(near, 1.0 - t, torch.sin((1.0 - t) * theta) / sin.clamp_min(1e-12))
    w1 = torch.where(near, t, torch.sin(t * theta) / sin.clamp_min(1e-12))
    return torch.nn.functional.normalize(w0 * q0 + w1 * q1, dim=-1)


def rotation_angle_deg(Ra: Tensor, Rb: Tensor) -> Tensor:
    """(...,) angles in degrees of the rotations taking (..., 3, 3) ``Ra`` to ``Rb``."""
    rel = Ra.transpose(-1, -2).to(torch.float64) @ Rb.to(torch.float64)
    cos = (rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0
    skew = torch.stack([rel[..., 2, 1] - rel[..., 1, 2], rel[..., 0, 2] - rel[..., 2, 0],
                        rel[..., 1, 0] - rel[..., 0, 1]], dim=-1)
    return torch.rad2deg(torch.atan2(skew.norm(dim=-1) / 2.0, cos))  # accurate for small angles too


# ---------------------------------------------------------------------------------- smooth curves
def _catmull_rom_tangents(values: Tensor, dt: Tensor) -> Tensor:
    """(K, D) knot values at knot intervals ``dt`` (K-1,) -> (K, D) time derivatives: the weighted
    three-point difference of non-uniform Catmull-Rom (one-sided at the two ends)."""
    K = values.shape[0]
    slopes = (values[1:] - values[:-1]) / dt[:, None]
    m = torch.empty_like(values)
    if K == 1:
        return torch.zeros_like(values)
    m[0], m[-1] = slopes[0], slopes[-1]
    if K > 2:
        d0, d1 = dt[:-1, None], dt[1:, None]
        m[1:-1] = (slopes[:-1] * d1 + slopes[1:] * d0) / (d0 + d1)
    return m


def _segment(times: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """(segment index, local parameter in [0, 1]) of each query time ``t`` on knots ``times``."""
    k = (torch.searchsorted(times, t.contiguous(), right=True) - 1).clamp(0, times.shape[0] - 2)
    s = ((t - times[k]) / (times[k + 1] - times[k])).clamp(0.0, 1.0)
    return k, s


def interpolate_values(values: Tensor, times: Tensor, t: Tensor) -> Tensor:
    """C1 cubic through (K, D) ``values`` at increasing knot ``times`` (K,), evaluated at ``t`` (M,):
    cubic Hermite segments with Catmull-Rom tangents (non-uniform knots). Exact at the knots."""
    values, times, t = values.to(torch.float64), times.to(torch.float64), t.to(torch.float64)
    if values.shape[0] == 1:
        return values.expand(t.shape[0], -1).clone()
    dt = times[1:] - times[:-1]
    m = _catmull_rom_tangents(values, dt)
    k, s = _segment(times, t)
    s = s[:, None]
    d = dt[k][:, None]
    h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
    return h00 * values[k] + h10 * d * m[k] + h01 * values[k + 1] + h11 * d * m[k + 1]


def interpolate_rotations(q: Tensor, times: Tensor, t: Tensor) -> Tensor:
    """C1 rotation curve through (K, 4) quaternions ``q`` at knot ``times`` (K,), at ``t`` (M,) -> (M, 4).

    Each segment is a spherical cubic Bezier (Shoemake: de Casteljau with :func:`slerp`) whose inner
    control points follow the Catmull-Rom angular velocity at each knot (measured in the knot's own
    frame), so the rotation passes through every knot and turns without kinks. The quaternions are
    first put in one hemisphere chain (:func:`align_hemispheres`) and every slerp checks hemispheres,
    so opposite-sign inputs give the same curve."""
    q = align_hemispheres(torch.nn.functional.normalize(q.to(torch.float64), dim=-1))
    times, t = times.to(torch.float64), t.to(torch.float64)
    K = q.shape[0]
    if K == 1:
        return q.expand(t.shape[0], -1).clone()
    dt = times[1:] - times[:-1]
    # body-frame steps: out[k] = log(q_k^-1 q_{k+1}) (k < K-1), inc[k] = -log(q_k^-1 q_{k-1}) (k > 0)
    out = quat_log(quat_mul(quat_conj(q[:-1]), q[1:]))
    inc = -quat_log(quat_mul(quat_conj(q[1:]), q[:-1]))
    w = torch.empty(K, 3, dtype=torch.float64)  # angular velocity (quaternion-log units per time) at knots
    w[0], w[-1] = out[0] / dt[0], inc[-1] / dt[-1]
    if K > 2:
        d0, d1 = dt[:-1, None], dt[1:, None]
        w[1:-1] = (inc[:-1] / d0 * d1 + out[1:] / d1 * d0) / (d0 + d1)
    b1 = quat_mul(q[:-1], quat_exp(w[:-1] * dt[:, None] / 3.0))
    b2 = quat_mul(q[1:], quat_exp(-w[1:] * dt[:, None] / 3.0))
    k, s = _segment(times, t)
    p0, p1, p2, p3 = q[k], b1[k], b2[k], q[k + 1]
    a, b, c = slerp(p0, p1, s), slerp(p1, p2, s), slerp(p2, p3, s)
    return slerp(slerp(a, b, s), slerp(b, c, s), s)


def _look_frames(eyes: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """(N, 3, 3) OpenCV rotations looking from ``eyes`` (N, 3) at ``target`` (3,) with image up ``up``
    (N, 3); NaN where ``up`` is (nearly) along the viewing direction."""
    fwd = torch.nn.functional.normalize(target[None] - eyes, dim=-1)
    right = torch.linalg.cross(fwd, up, dim=-1)
    n = right.norm(dim=-1, keepdim=True)
    right = torch.where(n > 1e-6, right / n.clamp_min(1e-12), torch.full_like(right, float("nan")))
    return torch.stack([right, torch.linalg.cross(fwd, right, dim=-1), fwd], dim=-1)


def interpolate_poses(c2w: Tensor, times: Tensor, t: Tensor, center: Tensor | None = None) -> Tensor:
    """Smooth camera-to-world (M, 4, 4) through (K, 4, 4) ``c2w`` at knot ``times`` (K,), at ``t`` (M,).

    Positions: C1 cubic (Catmull-Rom tangents); rotations: :func:`interpolate_rotations`. With
    ``center`` (3,) (cameras around an object) both are taken relative to it instead: positions in
    polar form (the offset's direction and its length interpolated apart, so the path goes round the
    object rather than cutting through it between far-apart cameras), rotations as the look-at frame
    towards ``center`` (with the interpolated image up) times each camera's own small aim offset
    from it (interpolated like rotations), so the object stays in view between the knots. Exact at
    the knots; the convention (OpenCV axes) is whatever ``c2w`` uses: rotations are interpolated as a
    whole, never axis by axis."""
    c2w = torch.as_tensor(c2w, dtype=torch.float64)
    times = torch.as_tensor(times, dtype=torch.float64)
    t = torch.as_tensor(t, dtype=torch.float64).reshape(-1)
    if center is None:
        pos = interpolate_values(c2w[:, :3, 3], times, t)
    else:
        c = torch.as_tensor(center, dtype=torch.float64).reshape(3)
        off = c2w[:, :3, 3] - c
        radius = off.norm(dim=-1, keepdim=True)
        direction = interpolate_values(off / radius.clamp_min(1e-12), times, t)
        r = torch.exp(interpolate_values(torch.log(radius.clamp_min(1e-12)), times, t))
        pos = c + r * torch.nn.functional.normalize(direction, dim=-1)
    rot = quat_to_rotmat(interpolate_rotations(rotmat_to_quat(c2w[:, :3, :3]), times, t))
    if center is not None:
        up_k = -c2w[:, :3, 1]
        look_k = _look_frames(c2w[:, :3, 3], c, up_k)
        aim = look_k.transpose(1, 2) @ c2w[:, :3, :3]  # each camera's rotation in its look-at frame
        up = interpolate_values(up_k, times, t)
        look = _look_frames(pos, c, up)
        aimed = look @ quat_to_rotmat(interpolate_rotations(rotmat_to_quat(aim), times, t))
        ok = torch.isfinite(aimed).all(-1).all(-1) & torch.isfinite(look_k).all()
        rot = torch.where(ok[:, None, None], aimed, rot)
    out = torch.eye(4, dtype=torch.float64).repeat(t.shape[0], 1, 1)
    out[:, :3, :3], out[:, :3, 3] = rot, pos
    return out.to(torch.float32)


# ---------------------------------------------------------------------------------- ordering
def _pose_distances(cameras: Cameras) -> Tensor:
    """(N, N) distance between cameras: centre distance in units of the rig's size plus the rotation
    angle in units of 90 degrees (a turn matters as much as a step across the rig)."""
    c = cameras.centers.to(torch.float64)
    spread = float((c - c.mean(0)).norm(dim=-1).mean())
    pos = torch.cdist(c, c) / max(spread, 1e-9)
    R = cameras.c2w[:, :3, :3]
    ang = rotation_angle_deg(R[:, None], R[None])
    return pos + ang / 90.0


def _chain_cost(order: list[int], D: list[list[float]]) -> float:
    return float(sum(D[a][b] for a, b in zip(order[:-1], order[1:])))


def _two_opt(order: list[int], D: list[list[float]], max_passes: int = 20) -> list[int]:
    """Improve an open chain by reversing sub-chains while that shortens it (2-opt)."""
    order = list(order)
    n = len(order)
    for _ in range(max_passes):
        improved = False
        for i in range(0, n - 2):
            a, b = order[i], order[i + 1]
            for j in range(i + 2, n):
                c = order[j]
                d = order[j + 1] if j + 1 < n else None
                old = D[a][b] + (D[c][d] if d is not None else 0.0)
                new = D[a][c] + (D[b][d] if d is not None else 0.0)
                if new < old - 1e-9:
                    order[i + 1:j + 1] = order[i + 1:j + 1][::-1]
                    a, b = order[i], order[i + 1]
                    improved = True
        if not improved:
            break
    return order


def camera_order(cameras: Cameras, order: str = "auto") -> list[int]:
    """A visiting order of the cameras for :func:`interpolate_path`.

    ``natural``: as given (the capture order). ``nearest``: a nearest-neighbour chain from the first
    camera, shortened with 2-opt (distance: centre distance over the rig size plus rotation angle over
    90 degrees). ``auto``: the natural order unless the nearest chain is more than 10% shorter (a
    video or a walk around the object is already in order; shuffled photo sets are not)."""
    n = len(cameras)
    natural = list(range(n))
    if order == "natural" or n <= 2:
        return natural
    if order not in ("auto", "nearest"):
        raise ValueError(f"unknown camera order {order!r}; expected auto, natural or nearest")
    D = _pose_distances(cameras.to("cpu")).tolist()
    chain, left = [0], set(range(1, n))
    while left:
        last = chain[-1]
        nxt = min(left, key=lambda j: D[last][j])
        chain.append(nxt)
        left.remove(nxt)
    if n <= 400:
        chain = _two_opt(chain, D)
    if order == "nearest" or _chain_cost(natural, D) > 1.1 * _chain_cost(chain, D):
        return chain
    return natural


# ---------------------------------------------------------------------------------- interpolation
def _subsample_chain(cameras: Cameras, order: list[int], max_knots: int) -> list[int]:
    """At most ``max_knots`` cameras of ``order`` (first and last kept), evenly spread along the chain."""
    if len(order) <= max_knots:
        return order
    D = _pose_distances(cameras.to("cpu"))
    steps = torch.tensor([0.0] + [float(D[a, b]) for a, b in zip(order[:-1], order[1:])], dtype=torch.float64)
    arc = torch.cumsum(steps, 0)
    if float(arc[-1]) <= 0:
        idx = torch.linspace(0, len(order) - 1, max_knots).round().long().tolist()
    else:
        targets = torch.linspace(0, float(arc[-1]), max_knots, dtype=torch.float64)
        idx = torch.searchsorted(arc, targets).clamp(max=len(order) - 1).tolist()
        idx[0], idx[-1] = 0, len(order) - 1
    keep, seen = [], set()
    for i in idx:
        if i not in seen:
            keep.append(order[i])
            seen.add(i)
    return keep


def _frames_per_segment(weights: Tensor, total: int) -> list[int]:
    """``total`` frame intervals shared over segments in proportion to ``weights`` (at least 1 each;
    largest remainder)."""
    n = weights.shape[0]
    spare = total - n
    share = weights / weights.sum() * spare
    base = share.floor()
    counts = (base + 1).long()
    rest = int(spare - int(base.sum()))
    if rest > 0:
        for i in torch.argsort(share - base, descending=True)[:rest].tolist():
            counts[i] += 1
    return counts.tolist()


def common_size(cameras: Cameras) -> Cameras:
    """The cameras at one image size (the most frequent one): others rescaled per axis to it (the same
    field of view, intrinsics scaled), as one video's frames need."""
    sizes = [(int(w), int(h)) for w, h in zip(cameras.width.tolist(), cameras.height.tolist())]
    w, h = max(set(sizes), key=sizes.count)
    if all(s == (w, h) for s in sizes):
        return cameras
    return cameras.rescale(width=w, height=h)


def path_knots(cameras: Cameras, num_frames: int, order: str = "auto", min_frames_per_segment: int = 4,
               max_knots: int | None = None) -> tuple[list[int], list[int]]:
    """Which cameras :func:`interpolate_path` passes through and at which frames.

    Returns (camera indices in visiting order, frame index of each): the first camera at frame 0, the
    last at ``num_frames - 1``, the frames in between shared in proportion to how far the camera moves
    (centre distance plus turn) so the speed is about even. Long captures are thinned to at most one
    knot every ``min_frames_per_segment`` frames (and ``max_knots``), evenly along the chain."""
    if num_frames < 2:
        raise ValueError(f"an interpolated path needs at least 2 frames, got {num_frames}")
    chain = camera_order(cameras, order)
    limit = max(2, (num_frames - 1) // max(1, int(min_frames_per_segment)) + 1)
    if max_knots is not None:
        limit = max(2, min(limit, int(max_knots)))
    chain = _subsample_chain(cameras, chain, limit)
    if len(chain) == 1:
        return chain, [0]
    D = _pose_distances(cameras.to("cpu"))
    weights = torch.tensor([float(D[a, b]) for a, b in zip(chain[:-1], chain[1:])], dtype=torch.float64)
    weights = weights.clamp_min(1e-3 * max(float(weights.mean()), 1e-9)) if float(weights.sum()) > 0 \
        else torch.ones_like(weights)
    counts = _frames_per_segment(weights, num_frames - 1)
    frames = [0]
    for c in counts:
        frames.append(frames[-1] + c)
    return chain, frames


def rig_center(cameras: Cameras, max_angle_deg: float = 30.0) -> Tensor | None:
    """The point a capture around an object looks at (:meth:`Cameras.look_at`), when it is one: in
    front of every camera and within ``max_angle_deg`` of the median camera's viewing direction; None
    for forward-facing or scattered captures (their optical axes meet nowhere in particular)."""
    if len(cameras) < 2:
        return None
    cameras = cameras.to("cpu")
    c = cameras.look_at()
    if not bool(torch.isfinite(c).all()):
        return None
    v = c - cameras.centers
    dist = v.norm(dim=-1)
    spread = float((cameras.centers - cameras.centers.mean(0)).norm(dim=-1).max())
    if float(dist.min()) < 1e-6 or float(dist.max()) > 100.0 * max(spread, 1e-6):
        return None
    cos = torch.einsum("nd,nd->n", v / dist[:, None], cameras.forward)
    if float(cos.min()) <= 0.0 or float(cos.median()) < math.cos(math.radians(max_angle_deg)):
        return None
    return c


def interpolate_path(cameras: Cameras, num_frames: int = 300, order: str = "auto",
                     min_frames_per_segment: int = 4, max_knots: int | None = None) -> Cameras:
    """A smooth path through the cameras (e.g. the training views), like ``ns-render interpolate``.

    The cameras are visited in :func:`camera_order` (``order``) and passed through exactly at the
    frames :func:`path_knots` gives; between them positions follow a C1 cubic (Catmull-Rom tangents;
    for cameras around an object, in polar form about :func:`rig_center`), rotations a spherical cubic (:func:`interpolate_rotations`, hemisphere-checked: no flips) and the
    intrinsics (fx, fy, cx, cy) the same cubic as positions. All cameras are brought to one image size
    first (:func:`common_size`). The path cameras are pinhole (a video has no lens distortion)."""
    cameras = common_size(cameras.to("cpu"))
    chain, frames = path_knots(cameras, num_frames, order, min_frames_per_segment, max_knots)
    knots = cameras[chain]
    n = int(num_frames)
    if len(chain) == 1:
        c2w = knots.c2w.expand(n, 4, 4).clone()
        intr = torch.stack([knots.fx, knots.fy, knots.cx, knots.cy], -1).expand(n, 4)
    else:
        times = torch.tensor(frames, dtype=torch.float64)
        t = torch.arange(n, dtype=torch.float64)
        c2w = interpolate_poses(knots.c2w, times, t, center=rig_center(cameras))
        intr = interpolate_values(torch.stack([knots.fx, knots.fy, knots.cx, knots.cy], -1), times, t).float()
        lo = torch.stack([knots.fx, knots.fy, knots.cx, knots.cy], -1).min(0).values
        intr = torch.maximum(intr, 0.5 * lo.clamp_min(1e-6))  # a cubic's overshoot never makes fx <= 0
    w, h = knots.width[:1].expand(n), knots.height[:1].expand(n)
    return Cameras(c2w, intr[:, 0], intr[:, 1], intr[:, 2], intr[:, 3], w, h)


# ---------------------------------------------------------------------------------- spiral
def average_pose(cameras: Cameras) -> Tensor:
    """(4, 4) OpenCV c2w of the "mean camera": the mean centre, looking along the mean viewing
    direction, with the mean image up (LLFF's ``poses_avg``)."""
    cameras = cameras.to("cpu")
    fwd = cameras.forward.mean(0)
    if float(fwd.norm()) < 1e-6:
        fwd = cameras.forward[0]
    up = -cameras.c2w[:, :3, 1].mean(0)
    fwd = torch.nn.functional.normalize(fwd, dim=0)
    up = up - (up @ fwd) * fwd
    if float(up.norm()) < 1e-6:
        up = -cameras.c2w[0, :3, 1]
    center = cameras.centers.mean(0)
    return look_at_c2w(center[None], center + fwd, torch.nn.functional.normalize(up, dim=0))[0]


def forwardness(cameras: Cameras) -> float:
    """Length of the mean viewing direction: 1 when all cameras look the same way (a forward-facing
    capture, what :func:`spiral_path` is for), near 0 for a capture all around an object."""
    return float(cameras.forward.mean(0).norm())


def spiral_focus(cameras: Cameras, near_far: Tensor | tuple[float, float] | None = None,
                 points: Tensor | None = None) -> float:
    """Distance in front of the mean camera that the spiral looks at.

    LLFF's focus depth ``1 / (0.25 / near + 0.75 / far)`` from the scene's depth bounds (``near_far``:
    (N, 2) per-view bounds or a pair, near * 0.9 and far * 5 as LLFF), else from the depths of the
    sparse ``points`` in the mean camera, else where the optical axes meet along the mean view, else
    the distance of the world origin (recon3d centres normalized scenes) along it."""
    avg = average_pose(cameras)
    fwd, center = avg[:3, 2], avg[:3, 3]
    near = far = None
    if near_far is not None:
        nf = torch.as_tensor(near_far, dtype=torch.float32).reshape(-1, 2)
        if nf.numel() and bool(torch.isfinite(nf).all()) and float(nf[:, 0].min()) > 0:
            near, far = float(nf[:, 0].min()) * 0.9, float(nf[:, 1].max()) * 5.0
    if near is None and points is not None and len(points) >= 8:
        z = (torch.as_tensor(points, dtype=torch.float32).reshape(-1, 3) - center) @ fwd
        z = z[z > 1e-6]
        if z.numel() >= 8:
            near = float(torch.quantile(z, 0.01)) * 0.9
            far = float(torch.quantile(z, 0.99)) * 5.0
    if near is not None and far is not None and far > near > 0:
        return 1.0 / (0.25 / near + 0.75 / far)
    spread = float((cameras.centers - center).norm(dim=-1).max())
    scale = max(spread, 1e-3)
    if len(cameras) >= 2:
        d = float((cameras.to("cpu").look_at() - center) @ fwd)
        if math.isfinite(d) and 1e-3 * scale < d < 1e3 * scale + 10.0:
            return d
    d = float(-center @ fwd)
    return d if d > 1e-6 else 1.0


def spiral_path(cameras: Cameras, num_frames: int = 120, rotations: float = 2.0, zrate: float = 0.5,
                radius_scale: float = 1.0, focus_distance: float | None = None,
                near_far: Tensor | tuple[float, float] | None = None, points: Tensor | None = None) -> Cameras:
    """A forward-facing spiral around the mean camera (LLFF's ``render_path_spiral``, nerfstudio's
    ``spiral``), for captures taken facing one way.

    In the mean camera's frame (:func:`average_pose`, OpenCV axes) the eye goes round
    ``radii * (cos t, sin t, sin(zrate t))`` for ``t`` over ``rotations`` turns, the radii being the
    90th percentile of the cameras' offsets from the mean camera along each of its axes (times
    ``radius_scale``), and always looks at the point ``focus_distance`` (default :func:`spiral_focus`)
    in front of the mean camera, with the mean camera's up. Intrinsics and image size: the first
    camera's. The path loops (its last frame leads back into the first)."""
    cameras = cameras.to("cpu")
    avg = average_pose(cameras)
    R, center = avg[:3, :3], avg[:3, 3]
    focus = float(focus_distance) if focus_distance is not None else spiral_focus(cameras, near_far, points)
    local = (cameras.centers - center) @ R  # offsets in the mean camera's axes
    radii = torch.quantile(local.abs(), 0.9, dim=0) * radius_scale
    if float(radii[:2].max()) < 1e-6 * max(focus, 1e-6):  # one camera, or all at one place
        radii = torch.tensor([0.05, 0.05, 0.025]) * focus * radius_scale
    theta = torch.linspace(0.0, 2.0 * math.pi * rotations, num_frames + 1)[:-1]
    offs = torch.stack([torch.cos(theta), torch.sin(theta), torch.sin(zrate * theta)], dim=-1) * radii
    eyes = center + offs @ R.T
    target = center + focus * R[:, 2]
    c2w = look_at_c2w(eyes, target, -R[:, 1])
    n = num_frames
    return Cameras(c2w, cameras.fx[:1].expand(n), cameras.fy[:1].expand(n), cameras.cx[:1].expand(n),
                   cameras.cy[:1].expand(n), cameras.width[:1].expand(n), cameras.height[:1].expand(n))


# ---------------------------------------------------------------------------------- frame size
def even_size(width: int, height: int, long_side: int | None = None) -> tuple[int, int]:
    """(width, height) scaled so the longer side is ``long_side`` (kept when None), each rounded to an
    even number of pixels (H.264 in yuv420p needs even sizes), at least 2."""
    s = 1.0 if long_side is None else float(long_side) / max(width, height)
    return max(2, 2 * math.floor(width * s / 2 + 0.5)), max(2, 2 * math.floor(height * s / 2 + 0.5))


def resize_path(cameras: Cameras, long_side: int | None = None) -> Cameras:
    """Path cameras (one image size) rescaled to :func:`even_size` (intrinsics scaled per axis)."""
    w, h = even_size(int(cameras.width[0]), int(cameras.height[0]), long_side)
    if bool((cameras.width == w).all()) and bool((cameras.height == h).all()):
        return cameras
    return cameras.rescale(width=w, height=h)


PATHS = ("orbit", "spiral", "interpolate")
