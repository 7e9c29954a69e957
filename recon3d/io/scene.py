"""The Scene: what every reader returns and every method consumes.

A Scene holds cameras for *all* frames, the image (and optional mask) files they belong to, the
train/test(/val) split, optional 3D points, and the normalization applied to the world. Images are
loaded lazily at the cameras' sizes: ``cameras.width[i] x cameras.height[i]`` is always the size of
``scene.image(i)``, whatever downscale was asked for.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from recon3d.core.cameras import Cameras

from ._common import rescale_cameras_to, resolve_background
from .errors import DataError
from .images import downscaled_size, image_size, load_image, load_mask
from .normalize import Normalization, camera_center

SPLITS = ("train", "test", "val", "all")


@dataclass(eq=False, repr=False)
class Scene:
    """A multi-view dataset.

    Attributes:
        cameras: N cameras (OpenCV axes, camera-to-world, world units of the *current* world), sized
            like the images as loaded (downscale already applied).
        image_paths: N image files.
        train_indices, test_indices: frame indices (ints into ``cameras``) of each split.
        val_indices: optional validation split.
        mask_paths: optional N mask files (entries may be None for frames without a mask).
        points: optional (P, 3) float32 world points (SfM / VGGT), current world.
        point_colors: optional (P, 3) float32 colours in [0, 1].
        background: optional (3,) float32 colour that RGBA images are composited onto.
        downscale: the factor the images were shrunk by relative to the source images (informational).
        normalization: source world -> current world similarity (identity when not normalized).
        name: dataset name (usually its folder name).
        source_format: ``'blender' | 'nerfstudio' | 'colmap' | 'llff' | ''``.
        near_far: optional (N, 2) float32 per-frame depth bounds, current world units (LLFF).
        metadata: free-form extras kept from the source (e.g. nerfstudio ``applied_transform``).
        cache_size: how many loaded images :meth:`image` keeps (LRU); 0 disables caching.
        masks_as_alpha: the masks cut the object out: :meth:`image` composites each photo with its mask
            as alpha onto :attr:`background` and :meth:`alpha` is the mask, so every method sees a
            cut-out (turntables: the background that moves with the object never enters a loss).
    """

    cameras: Cameras
    image_paths: list[Path]
    train_indices: list[int] = field(default_factory=list)
    test_indices: list[int] = field(default_factory=list)
    val_indices: list[int] | None = None
    mask_paths: list[Path | None] | None = None
    points: Tensor | None = None
    point_colors: Tensor | None = None
    background: Tensor | None = None
    downscale: float = 1
    normalization: Normalization = field(default_factory=Normalization.identity)
    name: str = ""
    source_format: str = ""
    near_far: Tensor | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    cache_size: int = 0
    masks_as_alpha: bool = False
    _cache: OrderedDict = field(default_factory=OrderedDict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.cameras)
        self.image_paths = [Path(p) for p in self.image_paths]
        if len(self.image_paths) != n:
            raise ValueError(f"Scene has {n} cameras but {len(self.image_paths)} image paths")
        if self.mask_paths is not None:
            self.mask_paths = [None if p is None else Path(p) for p in self.mask_paths]
            if len(self.mask_paths) != n:
                raise ValueError(f"Scene has {n} cameras but {len(self.mask_paths)} mask paths")
        for name in ("train_indices", "test_indices", "val_indices"):
            idx = getattr(self, name)
            if idx is None:
                continue
            idx = [int(i) for i in idx]
            bad = [i for i in idx if not 0 <= i < n]
            if bad:
                raise ValueError(f"{name} has out-of-range entries {bad[:5]} for {n} frames")
            setattr(self, name, idx)
        if self.points is not None:
            self.points = torch.as_tensor(self.points, dtype=torch.float32).reshape(-1, 3)
            if self.point_colors is not None:
                self.point_colors = torch.as_tensor(self.point_colors, dtype=torch.float32).reshape(-1, 3)
                if len(self.point_colors) != len(self.points):
                    raise ValueError(f"{len(self.points)} points but {len(self.point_colors)} point colours")
        else:
            self.point_colors = None
        if self.near_far is not None:
            self.near_far = torch.as_tensor(self.near_far, dtype=torch.float32).reshape(n, 2)
        self.background = resolve_background(self.background)

    def __len__(self) -> int:
        return len(self.cameras)

    def __repr__(self) -> str:
        sizes = sorted({(int(w), int(h)) for w, h in zip(self.cameras.width, self.cameras.height)})
        size = f"{sizes[0][0]}x{sizes[0][1]}" if len(sizes) == 1 else f"{len(sizes)} sizes"
        val = "" if self.val_indices is None else f", val={len(self.val_indices)}"
        pts = "" if self.points is None else f", points={len(self.points)}"
        return (f"Scene({self.name!r}, format={self.source_format!r}, frames={len(self)}, "
                f"train={len(self.train_indices)}, test={len(self.test_indices)}{val}, images={size}, "
                f"camera={self.cameras.model!r}, downscale={self.downscale}{pts}, "
                f"normalized={not self.normalization.is_identity})")

    # ------------------------------------------------------------------ lazy pixels
    def _size(self, i: int) -> tuple[int, int]:
        return int(self.cameras.height[i]), int(self.cameras.width[i])

    def image(self, i: int) -> Tensor:
        """(H, W, 3) float32 image of frame ``i`` in [0, 1], at the camera's size, composited on
        :attr:`background` if the file has alpha. With ``cache_size > 0`` the same tensor is returned
        on repeated calls: do not modify it in place."""
        i = int(i)
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        img = load_image(self.image_paths[i], background=self.background, size=self._size(i))
        m = self.mask(i) if self.masks_as_alpha else None
        if m is not None:
            bg = torch.zeros(3) if self.background is None else self.background
            img = torch.where(m[..., None], img, bg.to(img))
        if self.cache_size > 0:
            self._cache[i] = img
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return img

    def alpha(self, i: int) -> Tensor:
        """(H, W) float32 alpha of frame ``i`` in [0, 1] (ones if the file has no alpha; the mask with
        :attr:`masks_as_alpha`)."""
        m = self.mask(i) if self.masks_as_alpha else None
        if m is not None:
            return m.float()
        return load_image(self.image_paths[int(i)], with_alpha=True, size=self._size(int(i)))[..., 3]

    def mask(self, i: int) -> Tensor | None:
        """(H, W) bool mask of frame ``i`` (True = use the pixel), or None when it has none."""
        if self.mask_paths is None or self.mask_paths[int(i)] is None:
            return None
        return load_mask(self.mask_paths[int(i)], size=self._size(int(i)))

    @property
    def has_masks(self) -> bool:
        return self.mask_paths is not None and any(p is not None for p in self.mask_paths)

    # ------------------------------------------------------------------ splits and subsets
    def split_indices(self, name: str) -> list[int]:
        """Frame indices of split ``'train' | 'test' | 'val' | 'all'``."""
        if name == "all":
            return list(range(len(self)))
        if name == "train":
            return list(self.train_indices)
        if name == "test":
            return list(self.test_indices)
        if name == "val":
            if self.val_indices is None:
                raise ValueError(f"scene {self.name!r} has no 'val' split (it has train and test)")
            return list(self.val_indices)
        raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")

    def split(self, name: str) -> tuple[Cameras, list[int]]:
        """(cameras of the split, their frame indices into this scene)."""
        idx = self.split_indices(name)
        return self.cameras[idx], idx

    def subset(self, indices: Sequence[int]) -> "Scene":
        """A Scene of the frames ``indices`` (in that order); splits are remapped, points kept."""
        indices = [int(i) for i in indices]
        pos = {old: new for new, old in enumerate(indices)}

        def remap(idx: list[int] | None) -> list[int] | None:
            return None if idx is None else sorted(pos[i] for i in idx if i in pos)

        return replace(
            self,
            cameras=self.cameras[indices],
            image_paths=[self.image_paths[i] for i in indices],
            mask_paths=None if self.mask_paths is None else [self.mask_paths[i] for i in indices],
            train_indices=remap(self.train_indices),
            test_indices=remap(self.test_indices),
            val_indices=remap(self.val_indices),
            near_far=None if self.near_far is None else self.near_far[indices],
            metadata=dict(self.metadata),
        )

    # ------------------------------------------------------------------ extent helpers
    @property
    def center(self) -> Tensor:
        """(3,) where the cameras look (see :func:`recon3d.io.normalize.camera_center`)."""
        return camera_center(self.cameras).to(self.cameras.device)

    @property
    def radius(self) -> float:
        """Largest distance from :attr:`center` to a camera centre (current world units)."""
        return float((self.cameras.centers - self.center).norm(dim=-1).max())

    @property
    def aabb(self) -> Tensor:
        """(2, 3) [min, max] corners bounding the scene content.

        From the points when present (0.5 / 99.5 percentiles per axis, robust to stray SfM points),
        otherwise from the camera centres and :attr:`center` (objects lie inside the camera rig).
        """
        if self.points is not None and len(self.points) > 0:
            q = torch.quantile(self.points.double(), torch.tensor([0.005, 0.995], dtype=torch.float64), dim=0)
            return q.float()
        pts = torch.cat([self.cameras.centers, self.center[None]], dim=0)
        return torch.stack([pts.min(0).values, pts.max(0).values])

    # ------------------------------------------------------------------ misc
    def with_downscale(self, downscale: float) -> "Scene":
        """The same scene at another downscale factor relative to the source images (reads headers)."""
        baked = float(self.metadata.get("files_downscale", 1))  # e.g. LLFF images_4/ is already 4x smaller
        sizes = [downscaled_size(*image_size(p), downscale / baked) for p in self.image_paths]
        cams = rescale_cameras_to(self.cameras, [s[0] for s in sizes], [s[1] for s in sizes])
        return replace(self, cameras=cams, downscale=downscale, metadata=dict(self.metadata))


def finalize_scene(
    cameras: Cameras,
    image_paths: Sequence[Path],
    *,
    downscale: float = 1,
    allow_resized: bool = False,
    source: Path | None = None,
    **kwargs,
) -> Scene:
    """Readers' last step: check image files against cameras (headers only), apply ``downscale``.

    ``cameras`` must be sized like the image files on disk: every image must exist and its header
    size must equal its camera's, else DataError naming the image. With ``allow_resized``, files
    whose size differs but whose aspect ratio agrees (to a pixel) are accepted as resized copies
    and the camera is scaled to them. Cameras end up at ``round(file size / downscale)``
    (:func:`downscaled_size`), the size :meth:`Scene.image` returns. ``kwargs`` go to :class:`Scene`.
    """
    image_paths = [Path(p) for p in image_paths]
    if len(image_paths) != len(cameras):
        raise DataError(source or Path("."), f"{len(image_paths)} images but {len(cameras)} camera poses")
    sizes = []
    for i, p in enumerate(image_paths):
        w, h = image_size(p)  # DataError if missing / unreadable
        cw, ch = int(cameras.width[i]), int(cameras.height[i])
        if (w, h) != (cw, ch):
            same_aspect = abs(w * ch - h * cw) <= max(cw, ch)
            if not (allow_resized and same_aspect):
                raise DataError(p, f"image is {w}x{h} but its camera says {cw}x{ch}" + (f" (from {source})" if source else ""))
        sizes.append(downscaled_size(w, h, downscale))
    cameras = rescale_cameras_to(cameras, [s[0] for s in sizes], [s[1] for s in sizes])
    for i, m in enumerate(kwargs.get("mask_paths") or []):
        if m is not None and not Path(m).is_file():
            raise DataError(m, f"mask file of frame {i} not found")
    return Scene(cameras=cameras, image_paths=image_paths, downscale=downscale, **kwargs)
