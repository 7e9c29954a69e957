"""What an OpenLRM checkpoint folder says about its architecture, and what recon3d adds for inference.

A published OpenLRM v1.1 folder (Hugging Face ``zxhezexin/openlrm-{obj,mix}-{small,base,large}-1.1``)
holds ``config.json`` (the model constructor's keyword arguments, :class:`OpenLRMConfig`) and
``model.safetensors`` (the plain state dict). The DINOv2 encoder's sizes are not all in
``config.json``: width, depth, MLP width, patch size, register count and position-embedding grid are
read from the encoder weights' shapes (:func:`encoder_arch_from_shapes`); the head count, which no
shape carries, from the encoder name (``dinov2_vits14_reg`` -> 6 heads, ...) or, for a name recon3d
does not know, from a ``dinov2_arch.json`` beside the weights (the parity fixture has one).

Released v1.1 sizes (OpenLRM ``model_card.md``, ``configs/infer-{s,b,l}.yaml``):

======  ==================================  ======  ===========  ==============  =====  ===========
size    transformer dim / layers / heads    camera  triplane     encoder         rays   input px /
                                                    32->64 ch                    samples render px
======  ==================================  ======  ===========  ==============  =====  ===========
small   512 / 12 / 8                        1024    32           ViT-S/14 + reg  96     224 / 192
base    768 / 12 / 12                       1024    48           ViT-B/14 + reg  96     336 / 288
large   1024 / 16 / 16                      1024    80           ViT-B/14 + reg  128    448 / 384
======  ==================================  ======  ===========  ==============  =====  ===========
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, Optional

#: config.json keys without a default in the official constructor.
REQUIRED_KEYS = ("camera_embed_dim", "rendering_samples_per_ray", "transformer_dim", "transformer_layers",
                 "transformer_heads", "triplane_low_res", "triplane_high_res", "triplane_dim")

#: official DINOv2 hub backbones: name -> (embed_dim, depth, heads, registers, interpolate antialias, offset)
DINOV2_BACKBONES: dict[str, tuple[int, int, int, int, bool, float]] = {
    "dinov2_vits14": (384, 12, 6, 0, False, 0.1),
    "dinov2_vitb14": (768, 12, 12, 0, False, 0.1),
    "dinov2_vitl14": (1024, 24, 16, 0, False, 0.1),
    "dinov2_vits14_reg": (384, 12, 6, 4, True, 0.0),
    "dinov2_vitb14_reg": (768, 12, 12, 4, True, 0.0),
    "dinov2_vitl14_reg": (1024, 24, 16, 4, True, 0.0),
}

#: released sizes, keyed by (transformer_dim, transformer_layers, triplane_dim): (input px, render px)
RELEASED_IMAGE_SIZES: dict[tuple[int, int, int], tuple[int, int]] = {
    (512, 12, 32): (224, 192),
    (768, 12, 48): (336, 288),
    (1024, 16, 80): (448, 384),
}

DEFAULT_SOURCE_SIZE = 224  #: input side for a configuration that is not a released one
SOURCE_CAMERA_DISTANCE = 2.0  #: official ``source_cam_dist`` of ``configs/infer-*.yaml``
SOURCE_FOCAL = 0.75  #: official source / render focal length, in units of the image side
MESH_THRESHOLD = 3.0  #: official ``mesh_thres`` (density softplus(raw - 1), model units)
BOX_HALF = 1.0  #: the triplanes span [-1, 1]^3 (official ``box_warp`` 2, sampler box [-1, 1])


@dataclass
class DinoV2Arch:
    """A DINOv2 ViT: sizes (from the weights' shapes, heads from the name) and the interpolation flags."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_hidden: int
    patch_size: int = 14
    num_register_tokens: int = 4
    pos_grid: int = 37  #: the stored position embeddings cover pos_grid x pos_grid patches (518 px)
    qkv_bias: bool = True
    proj_bias: bool = True
    ffn_bias: bool = True
    layerscale: bool = True
    interpolate_antialias: bool = True
    interpolate_offset: float = 0.0


@dataclass
class OpenLRMConfig:
    """The ``config.json`` of a published checkpoint (the official ``ModelLRM`` keyword arguments)
    plus the encoder architecture and recon3d's inference settings (not in the file).

    Attributes (config.json): camera_embed_dim, rendering_samples_per_ray (half coarse, half
    importance), transformer_dim / _layers / _heads, triplane_low_res (tokens per plane side),
    triplane_high_res (plane side after the x2 transposed convolution), triplane_dim (channels),
    encoder_type (only ``dinov2``: the v1.1 releases), encoder_model_name, encoder_feat_dim,
    encoder_freeze (ignored: inference only).
    Extra: encoder (:class:`DinoV2Arch`), source_size / render_size (input and rendered side, px),
    source_cam_dist (world units), mesh_threshold (model units), stochastic (jittered ray samples as
    the official inference draws them; False: the official deterministic mode, reproducible).
    """

    camera_embed_dim: int
    rendering_samples_per_ray: int
    transformer_dim: int
    transformer_layers: int
    transformer_heads: int
    triplane_low_res: int
    triplane_high_res: int
    triplane_dim: int
    encoder_type: str = "dinov2"
    encoder_model_name: str = "dinov2_vitb14_reg"
    encoder_feat_dim: int = 768
    encoder_freeze: bool = False
    encoder: Optional[DinoV2Arch] = None
    source_size: int = 0
    render_size: int = 0
    source_cam_dist: float = SOURCE_CAMERA_DISTANCE
    mesh_threshold: float = MESH_THRESHOLD
    stochastic: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.encoder, Mapping):
            self.encoder = DinoV2Arch(**self.encoder)
        sizes = RELEASED_IMAGE_SIZES.get((self.transformer_dim, self.transformer_layers, self.triplane_dim))
        if not self.source_size:
            self.source_size = sizes[0] if sizes else DEFAULT_SOURCE_SIZE
        if not self.render_size:
            self.render_size = sizes[1] if sizes else self.source_size

    @property
    def official_keys(self) -> dict[str, Any]:
        """The config.json content (constructor keyword arguments), in the official names."""
        names = ("camera_embed_dim", "rendering_samples_per_ray", "transformer_dim", "transformer_layers",
                 "transformer_heads", "triplane_low_res", "triplane_high_res", "triplane_dim", "encoder_type",
                 "encoder_model_name", "encoder_feat_dim", "encoder_freeze")
        return {k: getattr(self, k) for k in names}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "OpenLRMConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def validate(self) -> None:
        """ValueError naming the first inconsistent value."""
        for k in REQUIRED_KEYS + ("encoder_feat_dim",):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{k} must be a positive integer, got {v!r}")
        if str(self.encoder_type).lower() != "dinov2":
            raise ValueError(f"encoder_type {self.encoder_type!r} is not supported (recon3d reads the v1.1 "
                             "releases, encoder_type 'dinov2'; v1.0 'dino' checkpoints are not supported)")
        if self.transformer_dim % self.transformer_heads:
            raise ValueError(f"transformer_dim {self.transformer_dim} is not divisible by transformer_heads "
                             f"{self.transformer_heads}")
        if self.triplane_high_res != 2 * self.triplane_low_res:
            raise ValueError(f"triplane_high_res {self.triplane_high_res} must be 2 x triplane_low_res "
                             f"{self.triplane_low_res} (stride-2 upsampler)")
        if self.rendering_samples_per_ray < 6 or self.rendering_samples_per_ray % 2:
            raise ValueError(f"rendering_samples_per_ray must be even and >= 6, got {self.rendering_samples_per_ray}")
        enc = self.encoder
        if enc is not None:
            if enc.embed_dim != self.encoder_feat_dim:
                raise ValueError(f"encoder_feat_dim {self.encoder_feat_dim} does not match the encoder width "
                                 f"{enc.embed_dim}")
            if enc.embed_dim % enc.num_heads:
                raise ValueError(f"encoder width {enc.embed_dim} is not divisible by its {enc.num_heads} heads")


def encoder_heads(name: str, embed_dim: int, arch_json: Optional[Mapping[str, Any]] = None) -> int:
    """Attention heads of the DINOv2 encoder ``name`` (no weight shape carries them): a
    ``dinov2_arch.json`` beside the weights, else the official backbone table, else width / 64
    (every official DINOv2 has 64-wide heads)."""
    if arch_json and "num_heads" in arch_json:
        return int(arch_json["num_heads"])
    base = DINOV2_BACKBONES.get(name)
    if base is not None and base[0] == embed_dim:
        return base[2]
    return max(1, embed_dim // 64)


def encoder_arch_from_shapes(shapes: Mapping[str, tuple], name: str,
                             arch_json: Optional[Mapping[str, Any]] = None, prefix: str = "encoder.model.") -> DinoV2Arch:
    """:class:`DinoV2Arch` from the encoder's parameter shapes (``{key: shape}``); ValueError when
    the encoder weights are missing or not a DINOv2 ViT."""
    def shape(key: str) -> tuple:
        if prefix + key not in shapes:
            raise ValueError(f"no encoder weight {prefix + key!r}")
        return tuple(shapes[prefix + key])

    cls = shape("cls_token")
    if len(cls) != 3:
        raise ValueError(f"{prefix}cls_token has shape {list(cls)}, expected [1, 1, D]")
    dim = int(cls[-1])
    pe = shape("patch_embed.proj.weight")
    if len(pe) != 4 or pe[1] != 3 or pe[2] != pe[3]:
        raise ValueError(f"{prefix}patch_embed.proj.weight has shape {list(pe)}, expected [D, 3, p, p]")
    blocks = {int(m.group(1)) for k in shapes if (m := re.match(re.escape(prefix) + r"blocks\.(\d+)\.", k))}
    if not blocks or blocks != set(range(len(blocks))):
        raise ValueError("the encoder blocks are missing or not numbered 0..N-1")
    if any(k.startswith(prefix + "blocks.0.mlp.w12") for k in shapes):
        raise ValueError("SwiGLU encoder blocks (ViT-g) are not supported")
    fc1 = shape("blocks.0.mlp.fc1.weight")
    pos = shape("pos_embed")
    grid = math.isqrt(int(pos[1]) - 1)
    if grid * grid != int(pos[1]) - 1:
        raise ValueError(f"{prefix}pos_embed has {pos[1]} rows, not 1 + a square")
    regs = tuple(shapes[prefix + "register_tokens"])[1] if prefix + "register_tokens" in shapes else 0
    base = DINOV2_BACKBONES.get(name)
    antialias, offset = (base[4], base[5]) if base else (True, 0.0)
    if arch_json:
        antialias = bool(arch_json.get("interpolate_antialias", antialias))
        offset = float(arch_json.get("interpolate_offset", offset))
    return DinoV2Arch(embed_dim=dim, depth=len(blocks), num_heads=encoder_heads(name, dim, arch_json),
                      mlp_hidden=int(fc1[0]), patch_size=int(pe[2]), num_register_tokens=int(regs), pos_grid=grid,
                      qkv_bias=prefix + "blocks.0.attn.qkv.bias" in shapes,
                      proj_bias=prefix + "blocks.0.attn.proj.bias" in shapes,
                      ffn_bias=prefix + "blocks.0.mlp.fc1.bias" in shapes,
                      layerscale=prefix + "blocks.0.ls1.gamma" in shapes,
                      interpolate_antialias=antialias, interpolate_offset=offset)


def official_encoder_arch(name: str) -> DinoV2Arch:
    """The architecture of an official DINOv2 backbone by name (for building a released layout)."""
    if name not in DINOV2_BACKBONES:
        raise ValueError(f"unknown DINOv2 backbone {name!r}; known: {', '.join(sorted(DINOV2_BACKBONES))}")
    dim, depth, heads, regs, antialias, offset = DINOV2_BACKBONES[name]
    return DinoV2Arch(embed_dim=dim, depth=depth, num_heads=heads, mlp_hidden=4 * dim, num_register_tokens=regs,
                      interpolate_antialias=antialias, interpolate_offset=offset)


def released_config(size: str) -> OpenLRMConfig:
    """The config.json of the released ``openlrm-{obj,mix}-{size}-1.1`` (``small``, ``base``, ``large``)."""
    table = {
        "small": (512, 12, 8, 32, "dinov2_vits14_reg", 384, 96),
        "base": (768, 12, 12, 48, "dinov2_vitb14_reg", 768, 96),
        "large": (1024, 16, 16, 80, "dinov2_vitb14_reg", 768, 128),
    }
    if size not in table:
        raise ValueError(f"unknown OpenLRM size {size!r}; known: small, base, large")
    dim, layers, heads, tdim, enc, feat, samples = table[size]
    return OpenLRMConfig(camera_embed_dim=1024, rendering_samples_per_ray=samples, transformer_dim=dim,
                         transformer_layers=layers, transformer_heads=heads, triplane_low_res=32,
                         triplane_high_res=64, triplane_dim=tdim, encoder_type="dinov2", encoder_model_name=enc,
                         encoder_feat_dim=feat, encoder_freeze=False, encoder=official_encoder_arch(enc))


__all__ = ["OpenLRMConfig", "DinoV2Arch", "released_config", "official_encoder_arch", "encoder_arch_from_shapes",
           "DINOV2_BACKBONES", "RELEASED_IMAGE_SIZES", "REQUIRED_KEYS"]
