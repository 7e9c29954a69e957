"""Load a published OpenLRM checkpoint folder as users download it, strictly.

A folder (e.g. ``huggingface-cli download zxhezexin/openlrm-mix-base-1.1 --local-dir openlrm-mix-base-1.1``)
holds ``config.json`` (the official ``ModelLRM`` keyword arguments) and ``model.safetensors`` (its
plain state dict, float32 in the releases; float16/bfloat16 are upcast). :func:`load_checkpoint`
reads the architecture from ``config.json`` and the encoder's sizes from the encoder weights' shapes
(:mod:`.config`), builds the model on the meta device, checks that the file holds exactly its keys
with exactly its shapes, and assigns the tensors (float32, CPU; the caller moves the model). Any
problem -- a missing or unreadable file, a truncated or foreign weights file, a config that does not
describe those weights -- is one :class:`~recon3d.io.errors.DataError` naming the file.

``recon3d predict --model lrm --checkpoint DIR`` (or ``DIR/model.safetensors``) comes here through
:func:`recon3d.feedforward.registry.load_model`; :func:`find_checkpoints` lists the folders under a
directory that hold one (the web app's ``--checkpoints``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from recon3d.io.errors import DataError

from .config import REQUIRED_KEYS, OpenLRMConfig, encoder_arch_from_shapes

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
ENCODER_ARCH = "dinov2_arch.json"  #: optional: DINOv2 head count etc. for an encoder name recon3d does not know


def checkpoint_files(path: str | os.PathLike) -> tuple[Path, Path]:
    """(weights, config) of a checkpoint given as its folder or its ``.safetensors`` file."""
    path = Path(path)
    if path.is_dir():
        return path / WEIGHTS, path / CONFIG
    return path, path.parent / CONFIG


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` (folder or weights file) looks like an OpenLRM checkpoint (cheap: no weights read)."""
    weights, config = checkpoint_files(path)
    if not (weights.is_file() and config.is_file() and weights.suffix == ".safetensors"):
        return False
    try:
        doc = json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(doc, dict) and all(k in doc for k in REQUIRED_KEYS)


def read_config(config: Path, shapes: dict[str, tuple]) -> OpenLRMConfig:
    """:class:`OpenLRMConfig` from ``config.json`` and the weights' shapes; DataError naming the file."""
    if not config.is_file():
        raise DataError(config, f"not found: an OpenLRM checkpoint folder holds {WEIGHTS} and {CONFIG}")
    try:
        doc = json.loads(config.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(config, f"cannot read ({e})") from e
    except json.JSONDecodeError as e:
        raise DataError(config, f"malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
    if not isinstance(doc, dict):
        raise DataError(config, "does not hold a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in doc]
    if missing:
        raise DataError(config, f"not an OpenLRM config.json: missing {', '.join(missing)}")
    arch_json = None
    arch_path = config.parent / ENCODER_ARCH
    if arch_path.is_file():
        try:
            arch_json = json.loads(arch_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(arch_path, f"unreadable encoder description ({type(e).__name__}: {e})") from e
    keys = {k: doc[k] for k in ("camera_embed_dim", "rendering_samples_per_ray", "transformer_dim",
                                "transformer_layers", "transformer_heads", "triplane_low_res", "triplane_high_res",
                                "triplane_dim", "encoder_type", "encoder_model_name", "encoder_feat_dim",
                                "encoder_freeze") if k in doc}
    try:
        if str(keys.get("encoder_type", "dino")).lower() != "dinov2":
            raise ValueError(f"encoder_type {keys.get('encoder_type', 'dino')!r} is not supported (recon3d reads "
                             "the v1.1 releases, encoder_type 'dinov2')")
        arch = encoder_arch_from_shapes(shapes, str(keys.get("encoder_model_name", "")), arch_json)
        cfg = OpenLRMConfig(**keys, encoder=arch)
        cfg.validate()
    except (TypeError, ValueError) as e:
        raise DataError(config, str(e)) from e
    return cfg


def _header(weights: Path) -> dict[str, tuple]:
    """{key: shape} of a safetensors file, reading only its header; DataError if not one."""
    try:
        from safetensors import SafetensorError, safe_open
    except ImportError as e:
        raise DataError(weights, f"reading .safetensors files needs the safetensors package ({e}); "
                                 "pip install safetensors") from e

    if not weights.is_file():
        raise DataError(weights, "weights file not found")
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise DataError(weights, f"not a readable safetensors file (truncated or corrupt?): {e}") from e


def _compare(weights: Path, expected: dict[str, tuple], found: dict[str, tuple]) -> None:
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    wrong = [k for k in expected if k in found and tuple(found[k]) != tuple(expected[k])]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} of another shape (e.g. {k}: {list(found[k])} in the file, "
                         f"{list(expected[k])} from config.json)")
        raise DataError(weights, f"does not match its {CONFIG}: " + "; ".join(parts))


def load_checkpoint(path: str | os.PathLike):
    """The :class:`~.model.OpenLRM` of a checkpoint folder (or its ``.safetensors`` file), on the CPU in
    float32, eval mode; DataError naming the file for anything that does not load strictly."""
    from .model import OpenLRM

    weights, config = checkpoint_files(path)
    if Path(path).is_dir() and not weights.is_file():
        raise DataError(Path(path), f"no {WEIGHTS} in this folder (an OpenLRM checkpoint folder holds "
                                    f"{WEIGHTS} and {CONFIG})")
    shapes = _header(weights)  # DataError when safetensors is missing or the file is not one
    from safetensors import SafetensorError, safe_open

    cfg = read_config(config, shapes)
    with torch.device("meta"):
        model = OpenLRM(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    _compare(weights, expected, shapes)
    state = {}
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as f:
            for k in expected:
                t = f.get_tensor(k)
                if not t.is_floating_point():
                    raise DataError(weights, f"{k} holds {t.dtype}, not floating-point weights")
                state[k] = t.float()
    except (SafetensorError, OSError, RuntimeError) as e:
        raise DataError(weights, f"cannot read the tensors (truncated or corrupt?): {e}") from e
    model.load_state_dict(state, strict=True, assign=True)
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:  # cannot happen for this layout (no buffers); guards future edits
        raise DataError(weights, f"{len(leftover)} tensors were not filled (e.g. {leftover[0]})")
    model.checkpoint_path = str(Path(path))
    return model.eval()


def checkpoint_label(folder: Path) -> str:
    """A short name for a checkpoint folder: its name, or the repository of a Hugging Face cache snapshot."""
    for part in reversed(folder.parts):
        if part.startswith("models--"):
            return part.split("--")[-1]
    return folder.name


def find_checkpoints(root: str | os.PathLike, max_depth: int = 4, limit: int = 64) -> list[Path]:
    """Folders at or below ``root`` (up to ``max_depth`` levels; hidden folders skipped) that hold an
    OpenLRM checkpoint, sorted by path; at most ``limit``."""
    root = Path(root).expanduser()
    found: list[Path] = []
    if not root.is_dir():
        return found
    stack = [(root, 0)]
    while stack and len(found) < limit:
        folder, depth = stack.pop()
        if is_checkpoint(folder):
            found.append(folder)
            continue
        if depth >= max_depth:
            continue
        try:
            subs = sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), reverse=True)
        except OSError:
            continue
        stack += [(p, depth + 1) for p in subs]
    return sorted(found)


def save_checkpoint(model, folder: str | os.PathLike, dtype: torch.dtype = torch.float32) -> Path:
    """Write ``model`` (an :class:`~.model.OpenLRM`) in the published layout: ``model.safetensors`` +
    ``config.json`` (for tests and conversions; the files a download holds)."""
    from safetensors.torch import save_file

    from recon3d.io.atomic import atomic_path, atomic_write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    atomic_write_json(folder / CONFIG, model.config.official_keys)
    return folder
