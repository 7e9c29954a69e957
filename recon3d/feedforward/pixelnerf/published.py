"""Strict loading of published pixelNeRF checkpoints (sxyu/pixel-nerf ``checkpoints/*/pixel_nerf_latest``).

Those files are plain ``state_dict`` s of the official ``PixelNeRFNet`` (``torch.save``; the released
ones float32, 278 tensors):

- ``encoder.model.*``: a torchvision ResNet (ResNet-34: ``conv1``, ``bn1``, ``layer1..4``; the classifier
  ``fc`` was replaced by an empty module, so it has no keys; ``layer4`` is stored though unused);
- ``code._freqs`` (1, 2F, 1), ``code._phases`` (1, 2F, 1): positional-encoding buffers;
- ``mlp_coarse.*`` and ``mlp_fine.*``: ResNet-FC with ``lin_in`` (hidden <- point input), ``lin_z.{i}``
  (hidden <- feature channels), ``blocks.{i}.fc_0/fc_1``, ``lin_out`` (4 <- hidden).

The architecture is read from the file (:func:`config_from_state`): stem and stage widths and block
counts from the ResNet's shapes, feature levels from ``lin_z``'s input size, MLP width, blocks and pooling
position from the MLP's shapes, positional encoding from ``code._freqs``. So the released ResNet-34 /
width-512 networks and smaller configurations of the same code load through the same path.
:class:`~recon3d.feedforward.pixelnerf.model.PixelNeRF` uses the official parameter names, so the
mapping is the identity; the file must hold exactly the expected keys with the expected shapes.

Not in the file, hence from the released variant (:data:`.config.VARIANTS`; ``--variant`` or the
file's folder name): ``use_first_pool`` (False for ``sn64``), the background, the ray range, the input
size and the canonical cameras. Every published model uses the official conventions
(``feature_sampling = renderer = "official"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from recon3d.io.errors import DataError

from .config import VARIANTS, PixelNeRFConfig

MAX_LISTED = 5


def extract_state_dict(path: Path, payload: dict) -> dict[str, torch.Tensor]:
    """The tensor dict inside ``payload``: the payload itself, or its ``state_dict`` / ``model`` entry.

    A ``module.`` prefix on every key (``DataParallel`` saves) is stripped.
    """
    state = payload
    if not all(torch.is_tensor(v) for v in state.values()):
        for key in ("state_dict", "model", "net"):
            inner = payload.get(key)
            if isinstance(inner, dict) and inner and all(torch.is_tensor(v) for v in inner.values()):
                state = inner
                break
        else:
            raise DataError(path, "not a pixelNeRF checkpoint: no state dict of tensors found")
    if not state:
        raise DataError(path, "not a pixelNeRF checkpoint: empty state dict")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def check_keys(path: Path, expected: dict[str, torch.Size], state: dict[str, torch.Tensor]) -> None:
    """DataError naming the file and the first mismatches unless ``state`` has exactly ``expected``."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(s)}" for k, s in expected.items()
             if k in state and tuple(state[k].shape) != tuple(s)]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            more = f" (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
            problems.append(f"{len(items)} {label} key(s): {', '.join(items[:MAX_LISTED])}{more}")
    if problems:
        raise DataError(path, "does not match the published pixelNeRF architecture: " + "; ".join(problems))


def _count(state: dict, prefix: str, suffix: str) -> int:
    """Number of consecutive indices ``i`` with ``f"{prefix}{i}{suffix}"`` in ``state``."""
    n = 0
    while f"{prefix}{n}{suffix}" in state:
        n += 1
    return n


def config_from_state(path: Path, state: dict[str, torch.Tensor], base: PixelNeRFConfig) -> PixelNeRFConfig:
    """``base`` with the architecture the published-layout ``state`` holds; DataError naming ``path``
    when it is not such a state dict."""
    from dataclasses import replace

    def shape(key: str) -> tuple:
        if key not in state:
            raise DataError(path, f"not a pixelNeRF checkpoint: no {key}")
        return tuple(state[key].shape)

    stem = shape("encoder.model.conv1.weight")
    if len(stem) != 4 or stem[1] != 3:
        raise DataError(path, f"not a pixelNeRF checkpoint: encoder.model.conv1.weight is {stem}")
    widths, blocks = [], []
    i = 1
    while f"encoder.model.layer{i}.0.conv1.weight" in state:
        widths.append(shape(f"encoder.model.layer{i}.0.conv1.weight")[0])
        blocks.append(_count(state, f"encoder.model.layer{i}.", ".conv1.weight"))
        i += 1
    if not widths:
        raise DataError(path, "not a pixelNeRF checkpoint: no encoder.model.layer1")
    hidden, d_in = shape("mlp_coarse.lin_in.weight")
    n_blocks = _count(state, "mlp_coarse.blocks.", ".fc_0.weight")
    n_lin_z = _count(state, "mlp_coarse.lin_z.", ".weight")
    if n_blocks == 0 or n_lin_z == 0:
        raise DataError(path, "not a pixelNeRF checkpoint: mlp_coarse has no blocks or no lin_z")
    d_latent = shape("mlp_coarse.lin_z.0.weight")[1]
    levels = [L for L in range(1, len(widths) + 2) if stem[0] + sum(widths[:L - 1]) == d_latent]
    if not levels:
        raise DataError(path, f"mlp_coarse.lin_z takes {d_latent} feature channels, which no number of encoder "
                              f"levels gives (stem {stem[0]}, stages {widths})")
    freqs = shape("code._freqs")
    if len(freqs) != 3 or freqs[1] % 2:
        raise DataError(path, f"code._freqs has shape {freqs}, not (1, 2 * num_freqs, 1)")
    num_freqs = freqs[1] // 2
    extra = d_in - 3 * (1 + 2 * num_freqs)
    if extra not in (0, 3):
        raise DataError(path, f"mlp_coarse.lin_in takes {d_in} inputs: not 3 x (1 + 2 x {num_freqs}) encoded "
                              "coordinates (+ 3 view-direction values)")
    freq_factor = float(state["code._freqs"].reshape(-1)[0])
    norm = "batch" if "encoder.model.bn1.running_mean" in state else "group"
    separate = any(k.startswith("mlp_fine.") for k in state)
    try:
        return replace(base, encoder_stem_width=stem[0], encoder_widths=widths, encoder_blocks=blocks,
                       encoder_num_layers=levels[0], encoder_norm=norm, num_freqs=num_freqs,
                       freq_factor=freq_factor, use_viewdirs=extra == 3, mlp_hidden=hidden, mlp_blocks=n_blocks,
                       combine_layer=min(n_lin_z, n_blocks), separate_fine_mlp=separate)
    except ValueError as e:
        raise DataError(path, f"unsupported pixelNeRF architecture: {e}") from e


def resolve_variant(path: Path, variant: Optional[str]) -> str:
    """The released variant: ``variant`` when given, else the name of the file's folder (the official
    layout ``checkpoints/<variant>/pixel_nerf_latest``); DataError listing the variants otherwise."""
    known = ", ".join(VARIANTS)
    if variant is not None:
        if variant not in VARIANTS:
            raise DataError(path, f"unknown pixelNeRF variant {variant!r}; released variants: {known}")
        return variant
    for name in (path.parent.name, path.stem):
        if name in VARIANTS:
            return name
    raise DataError(path, f"cannot tell which released pixelNeRF variant this is from its folder name; "
                          f"pass --variant ({known})")


def load_published(cls, path, payload: dict, config: Optional[PixelNeRFConfig] = None,
                   variant: Optional[str] = None):
    """Build ``cls`` with the architecture ``payload`` holds (:func:`config_from_state`) on top of
    ``config`` (default: the released ``variant``'s settings, :func:`resolve_variant`) and load it strictly.

    Returns the model (fp32). Raises DataError naming ``path`` (one line) for an unknown variant, a file
    that is not a pixelNeRF state dict, or missing / unexpected / mis-shaped keys.
    """
    path = Path(path)
    state = extract_state_dict(path, payload)
    if config is None:
        config = PixelNeRFConfig.released(resolve_variant(path, variant))
    model = cls(config_from_state(path, state, config))
    expected = {k: v.shape for k, v in model.state_dict().items()}
    check_keys(path, expected, state)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    return model


def official_cameras(c2w_opengl: torch.Tensor, focal, width: int, height: int, c=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Official camera inputs -> recon3d's: OpenGL camera-to-world (..., 4, 4) and the official focal
    (pixels; scalar or (fx, fy)) and principal point ``c`` (integer pixel coordinates, default the official
    ``(W / 2, H / 2)``) -> ``K`` (..., 3, 3) with pixel centres at +0.5 and OpenCV ``c2w`` (..., 4, 4)."""
    c2w = c2w_opengl.float() * c2w_opengl.new_tensor([1.0, -1.0, -1.0, 1.0]).float()
    f = torch.as_tensor(focal, dtype=torch.float32).reshape(-1)
    fx, fy = float(f[0]), float(f[-1])
    cx, cy = (width / 2, height / 2) if c is None else (float(torch.as_tensor(c).reshape(-1)[0]),
                                                       float(torch.as_tensor(c).reshape(-1)[-1]))
    K = torch.tensor([[fx, 0.0, cx + 0.5], [0.0, fy, cy + 0.5], [0.0, 0.0, 1.0]])
    return K.expand(*c2w.shape[:-2], 3, 3).clone(), c2w
