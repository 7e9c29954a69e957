"""3DGS ``.ply`` files in the layout common splat viewers read (and write back).

Vertex properties, all float32 little-endian: x y z, nx ny nz (zeros), f_dc_0..2, f_rest_0..3(K-1)-1,
opacity (logit), scale_0..2 (log), rot_0..3 (quaternion w x y z). ``f_rest`` is stored channel-major:
all red coefficients of degrees >= 1, then green, then blue.

This is also what nerfstudio's ``ns-export gaussian-splat`` writes (same names, order, activations
and SH layout; checked against it in ``tests/nerfstudio/test_exports.py``). Its remaining options
map to :func:`save_splat_ply` arguments: Gaussians with a non-finite value are always dropped (as
nerfstudio does), ``min_opacity=1/255`` drops the nearly transparent ones like nerfstudio's exporter,
``color_mode="rgb"`` writes ``red green blue`` uchar instead of SH (``--ply-color-mode rgb``), and
``transform=`` maps into another frame (nerfstudio exports in its dataparser's frame; see
:func:`recon3d.io.nerfstudio.read_dataparser_transform`). Quaternions are written unit-length
(nerfstudio writes them unnormalized; viewers normalize either).
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


def save_splat_ply(model: GaussianModel, path: str | os.PathLike, transform: np.ndarray | None = None,
                   min_opacity: float = 0.0, color_mode: str = "sh_coeffs") -> Path:
    """Write ``model`` as a 3DGS .ply (atomic).

    transform: optional 4x4 similarity (uniform scale s, rotation R, translation t) applied to the
    Gaussians first, e.g. the inverse scene normalization to go back to the capture's units.
    Means map as points, rotations are left-multiplied by R, log-scales shift by log(s).
    SH coefficients are not rotated (exact for degree 0; higher degrees assume R = I).
    min_opacity: drop Gaussians whose opacity is below this (nerfstudio's exporter uses 1/255).
    color_mode: ``"sh_coeffs"`` (f_dc / f_rest floats) or ``"rgb"`` (degree-0 colour as
    ``red green blue`` uchar, view dependence dropped), like nerfstudio's ``--ply-color-mode``.
    Gaussians with any non-finite parameter are dropped.
    """
    if color_mode not in ("sh_coeffs", "rgb"):
        raise ValueError(f"color_mode must be 'sh_coeffs' or 'rgb', got {color_mode!r}")
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
    keep = np.isfinite(data).all(axis=1)
    if min_opacity > 0:
        keep &= 1.0 / (1.0 + np.exp(-opac[:, 0].astype(np.float64))) >= min_opacity
    data, sh0 = data[keep], sh0[keep]
    names = _fields(rest.shape[1])
    if color_mode == "rgb":
        from recon3d.core.gaussians.sh import sh0_to_rgb

        rgb = sh0_to_rgb(torch.from_numpy(np.ascontiguousarray(sh0)).float()).clamp(0, 1).numpy()
        rgb_u8 = (rgb * 255).astype(np.uint8)  # truncation, as nerfstudio's exporter does
        dc = [names.index(f"f_dc_{c}") for c in range(3)]
        nonsh = [i for i, f in enumerate(names) if not f.startswith(("f_dc_", "f_rest_"))]
        names = names[:dc[0]] + ["red", "green", "blue"] + [names[i] for i in nonsh if i > dc[0]]
        fields = [(f, "u1" if f in ("red", "green", "blue") else "<f4") for f in names]
        rec = np.empty(len(data), dtype=fields)
        for f in names:
            rec[f] = rgb_u8[:, ("red", "green", "blue").index(f)] if f in ("red", "green", "blue") else \
                data[:, _fields(rest.shape[1]).index(f)]
        body = rec.tobytes()
    else:
        body = np.ascontiguousarray(data).tobytes()
    header = "ply\nformat binary_little_endian 1.0\nelement vertex %d\n" % len(data)
    header += "".join(f"property {'uchar' if f in ('red', 'green', 'blue') else 'float'} {f}\n" for f in names)
    return atomic_write_bytes(path, (header + "end_header\n").encode("ascii") + body)


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
    n, props, types = 0, [], []
    for ln in lines:
        parts = ln.split()
        if parts[:2] == ["element", "vertex"]:
            n = int(parts[2])
        elif parts[:1] == ["property"]:
            ok = ("float", "float32") + (("uchar", "uint8") if parts[-1] in ("red", "green", "blue") else ())
            if parts[1] not in ok:
                raise ValueError(f"{path}: property {parts[-1]} has type {parts[1]}, expected float")
            props.append(parts[-1])
            types.append("<f4" if parts[1] in ("float", "float32") else "u1")
    colors = {"f_dc_0", "f_dc_1", "f_dc_2"} if "red" not in props else {"red", "green", "blue"}
    need = {"x", "y", "z", "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"} | colors
    missing = sorted(need - set(props))
    if missing:
        raise ValueError(f"{path}: not a Gaussian-splat PLY (missing properties {', '.join(missing)})")
    dtype = np.dtype([(p, t) for p, t in zip(props, types)])
    if len(raw) - (end + len(b"end_header\n")) < n * dtype.itemsize:
        raise ValueError(f"{path}: file is shorter than its header's {n} vertices")
    rec = np.frombuffer(raw, dtype=dtype, count=n, offset=end + len(b"end_header\n"))
    col = {p: rec[p].astype(np.float32) for p in props}
    if "red" in props and "f_dc_0" not in props:  # ns-export --ply-color-mode rgb: degree-0 colour only
        from recon3d.core.gaussians.sh import rgb_to_sh0

        rgb = torch.from_numpy(np.stack([col[c] for c in ("red", "green", "blue")], axis=1) / 255.0).float()
        for c in range(3):
            col[f"f_dc_{c}"] = rgb_to_sh0(rgb)[:, c].numpy()
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
