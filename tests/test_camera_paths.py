"""Camera paths for videos (orbit, spiral, interpolate): smooth, flip-free, through the cameras, OpenCV c2w."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recon3d.core.camera_paths import (
    align_hemispheres,
    average_pose,
    camera_order,
    even_size,
    interpolate_path,
    interpolate_rotations,
    orbit_path,
    path_knots,
    quat_exp,
    quat_to_rotmat,
    resize_path,
    rig_center,
    rotation_angle_deg,
    rotmat_to_quat,
    slerp,
    spiral_focus,
    spiral_path,
)
from recon3d.core.cameras import Cameras
from recon3d.io._testing import look_at_c2w, ring_cameras


def random_rotations(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(n, 4, generator=g, dtype=torch.float64), dim=-1)
    return quat_to_rotmat(q)


def steps_deg(cams: Cameras, closed: bool = False) -> torch.Tensor:
    R = cams.c2w[:, :3, :3]
    if closed:
        R = torch.cat([R, R[:1]])
    return rotation_angle_deg(R[:-1], R[1:])


def assert_rigid_opencv(cams: Cameras) -> None:
    R = cams.c2w[:, :3, :3].double()
    eye = torch.eye(3, dtype=torch.float64).expand_as(R)
    assert torch.allclose(R.transpose(1, 2) @ R, eye, atol=1e-5)
    assert torch.allclose(torch.det(R), torch.ones(len(cams), dtype=torch.float64), atol=1e-5)
    assert torch.equal(cams.c2w[:, 3], torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(len(cams), 4))


def forward_facing_cameras(n: int = 12, seed: int = 0) -> Cameras:
    """An LLFF-like capture: cameras on a small jittered grid in the z=0 plane, all looking roughly
    along +z at a scene 4 units away (OpenCV c2w)."""
    rng = np.random.default_rng(seed)
    c2w = []
    for i in range(n):
        eye = np.array([(i % 4) * 0.2 - 0.3, (i // 4) * 0.15 - 0.15, 0.0]) + rng.normal(0, 0.01, 3)
        target = np.array([0.0, 0.0, 4.0]) + rng.normal(0, 0.05, 3)
        c2w.append(look_at_c2w(eye, target, up=(0.0, -1.0, 0.0)))
    return Cameras(torch.tensor(np.stack(c2w), dtype=torch.float32), 30.0, 30.0, 20.0, 15.0, 40, 30)


# ------------------------------------------------------------------------------------ rotations
def test_quaternion_round_trip_including_half_turns():
    R = torch.cat([random_rotations(200).float(),
                   quat_to_rotmat(torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.7071, 0.7071],
                                                [1e-4, 0.0, 0.0, 1.0]]))])
    q = rotmat_to_quat(R)
    assert (q[:, 0] >= 0).all() and torch.allclose(q.norm(dim=-1), torch.ones(len(q)), atol=1e-6)
    assert (quat_to_rotmat(q) - R).abs().max() < 1e-5


def test_slerp_takes_the_short_way_whatever_the_signs():
    q0 = rotmat_to_quat(random_rotations(50, seed=1)).double()
    q1 = rotmat_to_quat(random_rotations(50, seed=2)).double()
    for t in (0.0, 0.3, 0.5, 1.0):
        a, b = slerp(q0, q1, t), slerp(q0, -q1, t)
        assert (quat_to_rotmat(a) - quat_to_rotmat(b)).abs().max() < 1e-9
    total = rotation_angle_deg(quat_to_rotmat(q0), quat_to_rotmat(q1))
    half = rotation_angle_deg(quat_to_rotmat(q0), quat_to_rotmat(slerp(q0, -q1, 0.5)))
    assert torch.allclose(half, total / 2, atol=1e-6) and (total <= 180 + 1e-9).all()


def test_interpolated_rotations_ignore_quaternion_signs_and_never_flip():
    """Knots whose quaternions come with alternating signs (the same rotations): the same curve, through
    the knots, with small steps everywhere (a flip would be a step of up to 180 degrees)."""
    angles = torch.linspace(0, 2.5 * math.pi, 9, dtype=torch.float64)  # a turn of 450 deg about a tilted axis
    axis = torch.nn.functional.normalize(torch.tensor([0.3, 1.0, 0.2], dtype=torch.float64), dim=0)
    q = torch.cat([torch.cos(angles / 2)[:, None], torch.sin(angles / 2)[:, None] * axis], dim=-1)
    signs = torch.tensor([1.0, -1, -1, 1, -1, 1, 1, -1, -1], dtype=torch.float64)[:, None]
    assert ((q[1:] * signs[1:] * q[:-1] * signs[:-1]).sum(-1) < 0).any()  # mixed hemispheres
    times = torch.arange(9, dtype=torch.float64) * 10
    t = torch.arange(81, dtype=torch.float64)
    a = quat_to_rotmat(interpolate_rotations(q, times, t))
    b = quat_to_rotmat(interpolate_rotations(q * signs, times, t))
    assert (a - b).abs().max() < 1e-9
    assert (a[::10] - quat_to_rotmat(q)).abs().max() < 1e-9  # through every knot
    step = rotation_angle_deg(a[:-1], a[1:])
    assert float(step.max()) < 1.2 * (450 / 80) and float(step.min()) > 0.8 * (450 / 80)  # even turn, no flip
    assert (align_hemispheres(q * signs)[1:] * align_hemispheres(q * signs)[:-1]).sum(-1).min() >= 0


def _kinks(path: Cameras, k: int) -> tuple[float, float]:
    """How much the rotation step (degrees) and the position step change from frame k-1..k to k..k+1."""
    R, p = path.c2w[:, :3, :3].double(), path.c2w[:, :3, 3].double()
    rot = float(rotation_angle_deg(R[k - 1].T @ R[k], R[k].T @ R[k + 1]))  # body-frame steps
    return rot, float(((p[k] - p[k - 1]) - (p[k + 1] - p[k])).norm())


@pytest.mark.parametrize("rig", ["around", "scattered"])
def test_interpolation_is_smooth_at_the_knots(rig):
    """C1: the path turns and moves through each knot as it does on either side of it (a piecewise
    slerp/linear path would kink there: its step changes at once), with uneven segments and turns whose
    axis changes at every knot."""
    rng = np.random.default_rng(3)
    if rig == "around":  # looking at an object, each camera rolled differently
        c2w = []
        for a in np.cumsum(rng.uniform(0.3, 1.0, 6)):
            m = look_at_c2w([4 * np.cos(a), 4 * np.sin(a), rng.uniform(0.5, 1.5)], (0, 0, 0))
            roll = rng.uniform(-0.3, 0.3)
            m[:3, :2] = m[:3, :2] @ np.array([[np.cos(roll), -np.sin(roll)], [np.sin(roll), np.cos(roll)]])
            c2w.append(m)
        c2w = torch.tensor(np.stack(c2w), dtype=torch.float32)
    else:  # random orientations along a wandering line: no common centre
        c2w = torch.eye(4).repeat(6, 1, 1)
        c2w[:, :3, :3] = quat_to_rotmat(quat_exp(torch.tensor(rng.normal(0, 0.4, (6, 3))))).float()
        c2w[:, :3, 3] = torch.tensor(np.cumsum(rng.uniform(0.2, 1.0, (6, 3)), 0)).float()
    cams = Cameras(c2w, 30.0, 30.0, 20.0, 15.0, 40, 30)
    assert (rig_center(cams) is None) == (rig == "scattered")
    path = interpolate_path(cams, 301, order="natural", min_frames_per_segment=1)
    _, frames = path_knots(cams, 301, order="natural", min_frames_per_segment=1)
    assert len(set(np.diff(frames))) > 1  # uneven segments
    assert (path.c2w[frames] - cams.c2w).abs().max() < 1e-5
    for k in frames[1:-1]:
        at, near = _kinks(path, k), [_kinks(path, k - 2), _kinks(path, k + 2)]
        assert at[0] < 1.5 * max(n[0] for n in near) + 0.005, (k, at, near)
        assert at[1] < 1.5 * max(n[1] for n in near) + 1e-4, (k, at, near)


# ------------------------------------------------------------------------------------ orbit
def test_orbit_is_smooth_and_looks_at_the_object():
    cams = ring_cameras(8, width=40, height=30, focal=30.0)
    path = orbit_path(cams, num_frames=120)
    assert_rigid_opencv(path)
    step = steps_deg(path, closed=True)
    assert float(step.max()) < 4.0 and float(step.max() - step.min()) < 0.1  # 3 deg a frame, loops
    to_center = torch.nn.functional.normalize(cams.look_at() - path.centers, dim=-1)
    assert (torch.einsum("nd,nd->n", to_center, path.forward) > 0.999).all()  # +z looks at the object


# ------------------------------------------------------------------------------------ spiral
def test_spiral_circles_the_mean_camera_and_looks_at_the_focus():
    cams = forward_facing_cameras()
    focus = spiral_focus(cams, near_far=(2.0, 10.0))
    assert focus == pytest.approx(1.0 / (0.25 / 1.8 + 0.75 / 50.0))  # LLFF's focus depth
    path = spiral_path(cams, num_frames=120, focus_distance=4.0)
    assert_rigid_opencv(path)
    avg = average_pose(cams)
    target = avg[:3, 3] + 4.0 * avg[:3, 2]
    to_target = torch.nn.functional.normalize(target - path.centers, dim=-1)
    assert (torch.einsum("nd,nd->n", to_target, path.forward) > 0.9999).all()
    local = (path.centers - avg[:3, 3]) @ avg[:3, :3]
    spread = ((cams.centers - avg[:3, 3]) @ avg[:3, :3]).abs()
    radii = torch.quantile(spread, 0.9, dim=0)
    assert torch.allclose(local.abs().max(0).values[:2], radii[:2], rtol=0.02)  # radii from the spread
    assert float(local.mean(0).norm()) < 0.05 * float(radii.max())  # around the mean camera
    assert float(steps_deg(path, closed=True).max()) < 0.5  # smooth, and loops
    up = -path.c2w[:, :3, 1]
    assert (up @ -avg[:3, 1] > 0.99).all()  # the image stays upright
    assert (path.width == 40).all() and (path.fx == 30).all()


def test_spiral_focus_from_points_or_axes():
    cams = forward_facing_cameras()
    pts = torch.tensor([[0.0, 0.0, 3.0], [0.5, 0.2, 6.0]]).repeat(10, 1)
    f = spiral_focus(cams, points=pts)
    assert 3.0 < f < 20.0
    f_axes = spiral_focus(cams)  # no bounds or points: where the optical axes meet (about 4 ahead)
    assert f_axes == pytest.approx(4.0, rel=0.1)


# ------------------------------------------------------------------------------------ interpolate
def test_interpolation_passes_through_the_training_cameras():
    cams = ring_cameras(7, width=40, height=30, focal=30.0)
    cams.fx[3] = 45.0  # one camera zoomed: intrinsics are interpolated
    chain, frames = path_knots(cams, 120, min_frames_per_segment=1)
    assert chain == list(range(7)) and frames[0] == 0 and frames[-1] == 119
    path = interpolate_path(cams, 120, min_frames_per_segment=1)
    assert len(path) == 120 and path.model == "pinhole"
    assert_rigid_opencv(path)
    assert (path.c2w[frames] - cams.c2w[chain]).abs().max() < 1e-5
    assert torch.allclose(path.fx[frames], cams.fx[chain]) and torch.allclose(path.cy[frames], cams.cy[chain])
    between = path.fx[frames[2] + 1:frames[3]]
    assert (between > 30.0).all() and (between < 45.0 + 1e-3).all()
    step = steps_deg(path)
    seg = [float(rotation_angle_deg(cams.c2w[a, :3, :3], cams.c2w[b, :3, :3])) for a, b in zip(chain, chain[1:])]
    assert float(step.max()) < 2.5 * max(seg) / min(np.diff(frames))  # a dense path: small, even steps
    to_center = torch.nn.functional.normalize(-path.centers, dim=-1)
    assert (torch.einsum("nd,nd->n", to_center, path.forward) > 0.95).all()  # still looking at the object


def test_interpolation_orders_shuffled_photos_and_keeps_a_capture_order():
    cams = ring_cameras(10, width=40, height=30, focal=30.0)
    assert camera_order(cams) == list(range(10))  # already a walk around: kept
    perm = [0, 5, 2, 8, 1, 9, 4, 7, 3, 6]
    order = camera_order(cams[perm])
    ring = [perm[i] for i in order]
    gaps = [min((b - a) % 10, (a - b) % 10) for a, b in zip(ring, ring[1:])]
    assert sorted(ring) == list(range(10)) and max(gaps) == 1  # neighbours on the ring follow each other
    path = interpolate_path(cams[perm], 200)
    assert float(steps_deg(path).max()) < 5.0  # no jumps across the ring


def test_long_captures_are_thinned_and_opposite_cameras_do_not_flip():
    # 60 cameras of a 1-frame-per-camera capture: at most one knot every 4 frames
    cams = ring_cameras(60, width=40, height=30, focal=30.0)
    chain, frames = path_knots(cams, 41)
    assert len(chain) == 11 and chain[0] == 0 and chain[-1] == 59 and frames == list(range(0, 41, 4))
    # two cameras facing almost opposite ways: interpolated along the short arc, no spin
    c2w = torch.stack([torch.eye(4), torch.eye(4)])
    c2w[1, :3, :3] = quat_to_rotmat(torch.tensor([math.cos(math.radians(85)), 0.0, math.sin(math.radians(85)), 0.0]))
    two = Cameras(c2w, 30.0, 30.0, 20.0, 15.0, 40, 30)
    path = interpolate_path(two, 61)
    step = steps_deg(path)
    assert float(step.sum()) == pytest.approx(170.0, abs=0.5) and float(step.max()) < 2 * 170 / 60


def test_mixed_image_sizes_and_even_video_sizes():
    a = ring_cameras(4, width=40, height=30, focal=30.0)
    b = ring_cameras(4, width=80, height=60, focal=60.0)
    mixed = Cameras.cat([a, b[:1]])
    path = interpolate_path(mixed, 20)
    assert (path.width == 40).all() and (path.height == 30).all()
    assert even_size(1920, 1081) == (1920, 1082) and even_size(1920, 1080, 1080) == (1080, 608)
    assert even_size(33, 17, 49) == (50, 26)
    big = resize_path(path, 101)
    assert (big.width == 102).all() and (big.height == 76).all()
    assert torch.allclose(big.fx, path.fx * 102 / 40) and torch.allclose(big.cy, path.cy * 76 / 30)


def test_interpolation_goes_round_an_object_not_through_it():
    """Few knots far apart on a hemisphere around an object: the path keeps its distance to the object
    and keeps it in view (a straight cubic through the knots would pass through the object)."""
    rng = np.random.default_rng(0)
    eyes = []
    while len(eyes) < 30:
        d = rng.normal(size=3)
        if d[2] > 0.2:
            eyes.append(3.0 * d / np.linalg.norm(d))
    c2w = torch.tensor(np.stack([look_at_c2w(e, (0, 0, 0)) for e in eyes]), dtype=torch.float32)
    cams = Cameras(c2w, 30.0, 30.0, 20.0, 15.0, 40, 30)
    assert torch.allclose(rig_center(cams), torch.zeros(3), atol=1e-4)
    assert rig_center(forward_facing_cameras()) is not None  # converging on the scene 4 ahead: fine either way
    parallel = torch.eye(4).repeat(6, 1, 1)
    parallel[:, 0, 3] = torch.arange(6.0) * 0.1  # optical axes that never meet
    assert rig_center(Cameras(parallel, 30.0, 30.0, 20.0, 15.0, 40, 30)) is None
    path = interpolate_path(cams, 40, min_frames_per_segment=8)  # 5 segments through 6 of the 30
    assert float((path.centers.norm(dim=-1) - 3.0).abs().max()) < 1e-3
    uv, depth = path.project(torch.zeros(1, 3))  # the object's centre: in front, in the middle of the frame
    assert (depth > 0).all() and ((uv[..., 0] - 20).abs() < 5).all() and ((uv[..., 1] - 15).abs() < 4).all()
