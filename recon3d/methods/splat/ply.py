"""3DGS ``.ply`` files in the layout common splat viewers read (and write back).

Vertex properties, all float32 little-endian: x y z, nx ny nz (zeros), f_dc_0..2, f_rest_0..3(K-1)-1,
opacity (logit), scale_0..2 (log), rot_0..3 (quaternion w x y z). ``f_rest`` is stored channel-major:
all red coefficients of degrees >= 1, then green, then blue.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from recon3d.io.atomic import atomic_write_bytes

from .model import GaussianModel


def _fields(num_rest: int) -> list[str]:
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(num_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def save_splat_ply(model: GaussianModel, path: str | os.PathLike, transform: np.ndarray | None = None) -> Path:
    """Write ``model`` as a 3DGS .ply (atomic).

    transform: optional 4x4 similarity (uniform scale s, rotation R, translation t) applied to the
    Gaussians first, e.g. the inverse scene normalization to go back to the capture's units.
    Means map as points, rotations are left-multiplied by R, log-scales shift by log(s).
    SH coefficients are not rotated (exact for degree 0; higher degrees assume R = I).
    """
    with torch.no_grad():
        means = model.means.detach().cpu().double().numpy()
        quats = torch.nn.functional.normalize(model.quats.detach().cpu(), dim=-1).double().numpy()
        log_scales = model.log_scales.detach().cpu().double().numpy()
        if transform is not None:
            means, quats, log_scales = _apply_similarity(np.asarray(transform, dtype=np.float64), means, quats, log_scales)
        n = means.shape[0]
        sh0 = model.sh0.detach().cpu().numpy().reshape(n, 3)
        shN = model.shN.detach().cpu().numpy()  # (N, K-1, 3)
        rest = shN.transpose(0, 2, 1).reshape(n, -1)  # channel-major
        opac = model.opacity_logits.detach().cpu().numpy().reshape(n, 1)
        data = np.concatenate([means, np.zeros((n, 3)), sh0, rest, opac, log_scales, quats], axis=1).astype("<f4")
    names = _fields(rest.shape[1])
    header = "ply\nformat binary_little_endian 1.0\nelement vertex %d\n" % n
    header += "".join(f"property float {f}\n" for f in names) + "end_header\n"
    return atomic_write_bytes(path, header.encode("ascii") + np.ascontiguousarray(data).tobytes())


def load_splat_ply(path: str | os.PathLike) -> GaussianModel:
    """Read a 3DGS .ply (binary little-endian, float properties) into a :class:`GaussianModel`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror})") from e
    end = raw.find(b"end_header\n")
    if not raw.startswith(b"ply") or end < 0:
        raise ValueError(f"{path}: not a PLY file")
    lines = raw[:end].decode("ascii", "replace").splitlines()
    if "format binary_little_endian 1.0" not in lines:
        raise ValueError(f"{path}: only binary little-endian splat PLY files are supported")
    n, props = 0, []
    for ln in lines:
        parts = ln.split()
        if parts[:2] == ["element", "vertex"]:
            n = int(parts[2])
        elif parts[:1] == ["property"]:
            if parts[1] not in ("float", "float32"):
                raise ValueError(f"{path}: property {parts[-1]} has type {parts[1]}, expected float")
            props.append(parts[-1])
    need = {"x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"}
    missing = sorted(need - set(props))
    if missing:
        raise ValueError(f"{path}: not a Gaussian-splat PLY (missing properties {', '.join(missing)})")
    body = np.frombuffer(raw, dtype="<f4", count=n * len(props), offset=end + len(b"end_header\n"))
    arr = body.reshape(n, len(props))
    col = {p: arr[:, i] for i, p in enumerate(props)}
    num_rest = sum(p.startswith("f_rest_") for p in props)
    if num_rest % 3:
        raise ValueError(f"{path}: {num_rest} f_rest properties is not a multiple of 3")
    k = num_rest // 3 + 1
    degree = int(round(k ** 0.5)) - 1
    if (degree + 1) ** 2 != k:
        raise ValueError(f"{path}: {num_rest} f_rest properties do not match any SH degree")
    t = lambda names: torch.from_numpy(np.stack([col[c] for c in names], axis=1).copy())  # noqa: E731
    rest = t([f"f_rest_{i}" for i in range(num_rest)]) if num_rest else torch.zeros(n, 0)
    shN = rest.reshape(n, 3, k - 1).transpose(1, 2)
    return GaussianModel(
        means=t(["x", "y", "z"]), quats=t(["rot_0", "rot_1", "rot_2", "rot_3"]),
        log_scales=t(["scale_0", "scale_1", "scale_2"]), opacity_logits=torch.from_numpy(col["opacity"].copy()),
        sh0=t(["f_dc_0", "f_dc_1", "f_dc_2"])[:, None, :], shN=shN.contiguous(), max_sh_degree=degree,
    )


def _apply_similarity(T: np.ndarray, means, quats, log_scales):
    A = T[:3, :3]
    s = np.cbrt(np.linalg.det(A))
    R = A / s
    means = means @ A.T + T[:3, 3]
    qR = _rotmat_to_quat(R)
    quats = _quat_mul(qR[None], quats)
    return means, quats, log_scales + np.log(s)


def _rotmat_to_quat(R: np.ndarray) -> np.ndarray:
    from recon3d.core.conventions import rotmat_to_qvec

    return rotmat_to_qvec(torch.from_numpy(R).float()).double().numpy()


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], axis=-1)
