import math

import torch

from recon3d.core import Cameras
from recon3d.core import conventions as cv
from tests.conftest import orbit_c2w


def _random_poses(n=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    R = cv.qvec_to_rotmat(torch.randn(n, 4, generator=g))
    T = torch.eye(4).repeat(n, 1, 1)
    T[:, :3, :3] = R
    T[:, :3, 3] = torch.randn(n, 3, generator=g) * 3
    return T


def test_opengl_round_trip_and_meaning():
    T = _random_poses()
    gl = cv.opencv_to_opengl(T)
    assert torch.allclose(cv.opengl_to_opencv(gl), T, atol=1e-6)
    # OpenGL cameras look along -z: the OpenCV forward axis is minus the GL z column
    assert torch.allclose(gl[:, :3, 2], -T[:, :3, 2])
    assert torch.allclose(gl[:, :3, 1], -T[:, :3, 1])  # y up vs y down
    assert torch.allclose(gl[:, :3, 3], T[:, :3, 3])  # centers unchanged


def test_blender_camera_looking_down_minus_z():
    # A Blender camera with identity rotation looks down world -z with image-up = world +y.
    gl = torch.eye(4)
    c = cv.blender_to_opencv(gl)
    cams = Cameras(c, 10.0, 10.0, 5.0, 5.0, 10, 10)
    uv, z = cams.project(torch.tensor([[0.0, 1.0, -2.0]]))  # above the axis, in front
    assert z.item() > 0 and uv[0, 0, 1] < 5.0  # appears in the upper half of the image


def test_pytorch3d_round_trip_and_projection():
    T = _random_poses()
    R, t = cv.opencv_to_pytorch3d(T)
    assert torch.allclose(cv.pytorch3d_to_opencv(R, t), T, atol=1e-5)
    X = torch.randn(7, 3)
    x_p3d = (X[:, None, :] @ R)[:, 0] + t
    w2c = cv.rigid_inverse(T)
    x_cv = (w2c[:, :3, :3] @ X[..., None])[..., 0] + w2c[:, :3, 3]
    assert torch.allclose(x_p3d, x_cv * torch.tensor([-1.0, -1.0, 1.0]), atol=1e-5)


def test_pytorch3d_ndc_intrinsics_round_trip():
    f, p = cv.intrinsics_to_pytorch3d_ndc(300.0, 310.0, 170.0, 118.0, 320, 240)
    fx, fy, cx, cy = cv.intrinsics_from_pytorch3d_ndc(f, p, 320, 240)
    assert torch.allclose(torch.stack([fx, fy, cx, cy]), torch.tensor([300.0, 310.0, 170.0, 118.0]), atol=1e-4)
    # principal point right of center -> negative NDC x (PyTorch3D +x points left)
    assert p[0] < 0


def test_quaternion_round_trip():
    q = torch.randn(100, 4)
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[:, :1] < 0, -q, q)
    assert torch.allclose(cv.rotmat_to_qvec(cv.qvec_to_rotmat(q)), q, atol=1e-5)
    R = cv.qvec_to_rotmat(q)
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(100, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(R), torch.ones(100), atol=1e-5)


def test_w2c_c2w_and_fov():
    T = orbit_c2w(5)
    assert torch.allclose(cv.c2w_to_w2c(cv.w2c_to_c2w(T)), T, atol=1e-5)
    f = cv.fov_to_focal(0.6911112070083618, 200)
    assert abs(float(f) - 277.7777) < 1e-2
    assert abs(float(cv.focal_to_fov(f, 200)) - 0.6911112070083618) < 1e-6
    assert math.isclose(float(cv.fov_to_focal(math.pi / 2, 2)), 1.0, rel_tol=1e-6)
