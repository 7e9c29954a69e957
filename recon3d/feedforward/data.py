"""Multi-object, multi-view training data for feed-forward models: generation, shards, Dataset.

Generation (:func:`generate_dataset`, ``recon3d ffdata``, ``scripts/make_ff_dataset.py``) renders many
procedural textured objects (:func:`recon3d.io.synthetic.make_object`: 60 % multi-primitive unions,
10 % each single box / torus / cylinder / cone; 80 % low-frequency per-part colours
(:class:`~recon3d.io.synthetic.PartTexture`), 20 % the fine Voronoi solid texture) with the open3d CPU ray caster,
each from ``views`` cameras drawn at random on a sphere band around it:

* azimuth uniform in [0, 360) degrees, elevation uniform *in area* (uniform sin) in
  ``elevation_range`` degrees, distance uniform in ``radius_range`` world units, every camera looking
  exactly at the origin with world +Z up (no roll); square images, fixed horizontal FOV ``fov_deg``,
  fx = fy = W / (2 tan(fov / 2)), cx = cy = W / 2 (pixel centers at +0.5);
* world frame of :mod:`recon3d.feedforward.base`: +Z up, object centered at the origin inside the ball
  of radius :data:`recon3d.io.synthetic.OBJECT_RADIUS` (0.95).

Layout of a data set folder::

    manifest.json          version, config (sizes, camera ranges, seed...), per-object records
                           {index, seed, kind, split, shard, offset, bounding_radius}, shard list
    generation.json        the generation config (written first; a resumed run must match it)
    shard_00000.npz ...    ``objects_per_shard`` consecutive objects each (the last may hold fewer):
        rgb    (N, V, H, W, 3) uint8   RGB composited over white
        mask   (N, V, H, W)    uint8   coverage (alpha) * 255, anti-aliased (3x3 supersampling)
        depth  (N, V, H, W)    float16 z-depth along the camera +z axis, world units, 0 = background
        K      (N, V, 3, 3)    float32 intrinsics, pixels
        c2w    (N, V, 4, 4)    float32 camera-to-world, OpenCV axes
        index  (N,)            int64   global object indices
        meta   (bytes,)        uint8   UTF-8 JSON list of per-object {seed, kind, bounding_radius}
    READY                  (written by the caller when the set is published; not read here)

Everything is a pure function of the config: the same seed gives byte-identical shards (fixed zip
timestamps, fixed array order). Shards and the manifest are written atomically; a rerun skips shards
that are already complete, so an interrupted generation resumes.

The object-level split is a seeded permutation of the object indices: the first ``num_val`` go to
``val``, the next ``num_test`` to ``test``, the rest to ``train``.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from recon3d.io.atomic import atomic_path, atomic_write_json
from recon3d.io.errors import DataError
from recon3d.runtime.config import ConfigIO

DATASET_FORMAT = "recon3d-ffdata"
DATASET_VERSION = 1
SPLITS = ("train", "val", "test")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed zip entry timestamps: byte-identical reruns
_KEYS = ("rgb", "mask", "depth", "K", "c2w", "index", "meta")


@dataclass
class GenerationConfig(ConfigIO):
    """What :func:`generate_dataset` renders (every field goes into ``manifest.json``).

    Attributes:
        num_objects: objects in the set; ``num_val`` / ``num_test`` of them go to val / test.
        views: cameras (images) per object.
        image_size: square image side, pixels.
        seed: the one seed everything derives from.
        objects_per_shard: objects per ``shard_XXXXX.npz``.
        radius_range: (min, max) camera distance to the origin, world units.
        elevation_range: (min, max) camera elevation above the xy-plane, degrees.
        azimuth_range: (min, max) camera azimuth, degrees (default the full circle; a narrower arc
            gives partial walk-around captures, e.g. for benchmarks).
        fov_deg: horizontal (= vertical) field of view, degrees.
        supersample: s x s rays per pixel for colour and coverage.
        kind_weights: probability of each :func:`~recon3d.io.synthetic.make_object` kind.
        texture_weights: probability of ``"part"`` (:class:`~recon3d.io.synthetic.PartTexture`, low
            frequency per-part colours) and ``"voronoi"`` (the fine multi-coloured solid texture).
        background: ``"white"`` (the object alone, composited on white) or ``"ground"`` (the object
            standing on a tiled floor, :func:`~recon3d.io.synthetic.add_ground`, the space above the
            floor white; ``mask``/``depth`` then cover the floor too). Pose models (VGGT) learn from
            the textured surrounding as they would from a real capture; needs elevations >= 0.
    """

    num_objects: int = 480
    views: int = 24
    image_size: int = 64
    seed: int = 0
    num_val: int = 20
    num_test: int = 20
    objects_per_shard: int = 16
    radius_range: tuple[float, float] = (3.2, 4.0)
    elevation_range: tuple[float, float] = (-20.0, 70.0)
    azimuth_range: tuple[float, float] = (0.0, 360.0)
    fov_deg: float = 40.0
    supersample: int = 3
    kind_weights: dict[str, float] = field(default_factory=lambda: {
        "random": 0.6, "box": 0.1, "torus": 0.1, "cylinder": 0.1, "cone": 0.1})
    texture_weights: dict[str, float] = field(default_factory=lambda: {"part": 0.8, "voronoi": 0.2})
    background: str = "white"

    def validate(self) -> None:
        if self.num_objects < 1 or self.views < 1 or self.image_size < 4 or self.objects_per_shard < 1:
            raise ValueError("num_objects, views, objects_per_shard must be >= 1 and image_size >= 4")
        if self.num_val < 0 or self.num_test < 0 or self.num_val + self.num_test >= self.num_objects:
            raise ValueError(f"num_val + num_test ({self.num_val} + {self.num_test}) must leave training objects "
                             f"out of {self.num_objects}")
        if not 0 < self.radius_range[0] <= self.radius_range[1] or not 0 < self.fov_deg < 180:
            raise ValueError(f"bad radius_range {self.radius_range} or fov_deg {self.fov_deg}")
        if not -90 <= self.elevation_range[0] <= self.elevation_range[1] <= 90:
            raise ValueError(f"bad elevation_range {self.elevation_range}")
        if not self.azimuth_range[0] <= self.azimuth_range[1] <= self.azimuth_range[0] + 360:
            raise ValueError(f"bad azimuth_range {self.azimuth_range}")
        if self.background not in ("white", "ground"):
            raise ValueError(f"background must be 'white' or 'ground', got {self.background!r}")
        if self.background == "ground" and self.elevation_range[0] < 0:
            raise ValueError(f"background 'ground' needs cameras above the floor: elevation_range "
                             f"{self.elevation_range} starts below 0")

    @property
    def focal(self) -> float:
        """fx = fy in pixels."""
        return 0.5 * self.image_size / math.tan(0.5 * math.radians(self.fov_deg))

    @property
    def num_shards(self) -> int:
        return -(-self.num_objects // self.objects_per_shard)

    def canonical(self) -> dict:
        """JSON-normalized dict (tuples as lists) used to compare configs across runs."""
        return json.loads(json.dumps(self.to_dict()))


# ------------------------------------------------------------------------------------ generation
def object_cameras(cfg: GenerationConfig, rng: np.random.Generator):
    """``cfg.views`` random cameras (see the module docstring) as :class:`recon3d.core.cameras.Cameras`."""
    from recon3d.core.cameras import Cameras
    from recon3d.io.synthetic import look_at

    V = cfg.views
    az = rng.uniform(math.radians(cfg.azimuth_range[0]), math.radians(cfg.azimuth_range[1]), V)
    z0, z1 = (math.sin(math.radians(e)) for e in cfg.elevation_range)
    z = rng.uniform(z0, z1, V)
    r = rng.uniform(cfg.radius_range[0], cfg.radius_range[1], V)
    rho = np.sqrt(np.clip(1 - z * z, 0.0, 1.0))
    eyes = r[:, None] * np.stack([rho * np.cos(az), rho * np.sin(az), z], -1)
    f, s = cfg.focal, cfg.image_size
    return Cameras(look_at(eyes, np.zeros((V, 3))), fx=f, fy=f, cx=s / 2, cy=s / 2, width=s, height=s)


def render_object(cfg: GenerationConfig, index: int) -> dict:
    """Render object ``index`` of the set; arrays as stored in a shard (without the leading N axis)."""
    from recon3d.io.synthetic import Renderer, add_ground, make_object, make_part_textured_object

    rng = np.random.default_rng([cfg.seed, index, 17])
    kind = _pick(rng, cfg.kind_weights)
    texture = _pick(rng, cfg.texture_weights)
    obj_seed = int(rng.integers(0, 2**31 - 1))
    cams = object_cameras(cfg, rng)
    obj = (make_part_textured_object if texture == "part" else make_object)(obj_seed, kind)
    if cfg.background == "ground":
        obj = add_ground(obj, obj_seed)
    renderer = Renderer(obj, supersample=cfg.supersample)
    S, V = cfg.image_size, cfg.views
    rgb = np.empty((V, S, S, 3), np.uint8)
    mask = np.empty((V, S, S), np.uint8)
    depth = np.empty((V, S, S), np.float16)
    for v in range(V):
        out = renderer.render(cams, v)
        a = np.clip(out["rgba"][..., 3:], 0.0, 1.0)
        rgb[v] = np.round(np.clip(out["rgba"][..., :3] * a + (1.0 - a), 0, 1) * 255)
        mask[v] = np.round(a[..., 0] * 255)
        depth[v] = out["depth"]
    return {"rgb": rgb, "mask": mask, "depth": depth, "K": cams.K.numpy().astype(np.float32), "c2w": cams.c2w.numpy().astype(np.float32),
            "meta": {"seed": obj_seed, "kind": kind, "texture": texture, "bounding_radius": round(obj.description["bounding_radius"], 6)}}


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = sorted(weights)
    p = np.array([weights[k] for k in names], np.float64)
    return str(names[int(rng.choice(len(names), p=p / p.sum()))])


def write_npz(path: str | Path, arrays: dict[str, np.ndarray], compresslevel: int = 6) -> Path:
    """Atomic, deterministic ``.npz`` (deflate, fixed timestamps, sorted keys): same arrays -> same bytes."""
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as zf:
            for name in sorted(arrays):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, buf.getvalue(), compresslevel=compresslevel)
    return Path(path)


def shard_name(k: int) -> str:
    return f"shard_{k:05d}.npz"


def _shard_objects(cfg: GenerationConfig, k: int) -> range:
    return range(k * cfg.objects_per_shard, min((k + 1) * cfg.objects_per_shard, cfg.num_objects))


def render_shard(cfg: GenerationConfig, k: int, out_dir: str | Path, progress=None) -> list[dict]:
    """Render and atomically write shard ``k``; returns its per-object meta records."""
    parts = []
    for i in _shard_objects(cfg, k):
        parts.append(render_object(cfg, i))
        if progress is not None:
            progress(1)
    meta = [p.pop("meta") for p in parts]
    arrays = {key: np.stack([p[key] for p in parts]) for key in ("rgb", "mask", "depth", "K", "c2w")}
    arrays["index"] = np.asarray(list(_shard_objects(cfg, k)), np.int64)
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    write_npz(Path(out_dir) / shard_name(k), arrays)
    return meta


def _worker(args):
    cfg_dict, k, out_dir = args
    torch.set_num_threads(1)
    return k, render_shard(GenerationConfig.from_dict(cfg_dict), k, out_dir)


def read_shard_meta(path: Path, expected: Sequence[int]) -> Optional[list[dict]]:
    """Meta records of a complete shard holding exactly objects ``expected``, else None."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if set(_KEYS) - set(z.files) or z["index"].tolist() != list(expected):
                return None
            return json.loads(z["meta"].tobytes().decode())
    except Exception:  # noqa: BLE001 - any unreadable file counts as unfinished
        return None


def split_assignment(cfg: GenerationConfig) -> list[str]:
    """Split name of every object index (seeded permutation; see the module docstring)."""
    perm = np.random.default_rng([cfg.seed, 99]).permutation(cfg.num_objects)
    split = ["train"] * cfg.num_objects
    for j in perm[:cfg.num_val]:
        split[j] = "val"
    for j in perm[cfg.num_val:cfg.num_val + cfg.num_test]:
        split[j] = "test"
    return split


def generate_dataset(out_dir: str | Path, cfg: GenerationConfig, workers: int = 1, overwrite: bool = False,
                     show_progress: bool = True) -> dict:
    """Render the data set into ``out_dir`` (resumable; see the module docstring). Returns the manifest.

    Raises FileExistsError when ``out_dir`` holds a set made with a different config (unless
    ``overwrite``, which deletes its shards first).
    """
    from tqdm import tqdm

    cfg.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen_path = out / "generation.json"
    if gen_path.exists():
        try:
            old = json.loads(gen_path.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if isinstance(old, dict):  # fields added later take their defaults
            old = {**{k: v for k, v in GenerationConfig().canonical().items() if k not in old}, **old}
        if old != cfg.canonical():
            if not overwrite:
                raise FileExistsError(f"{out} holds a data set with a different config ({gen_path}); "
                                      "pass overwrite=True / --overwrite to replace it")
            for p in [*out.glob("shard_*.npz"), out / "manifest.json", out / "READY"]:
                p.unlink(missing_ok=True)
    atomic_write_json(gen_path, cfg.canonical())

    metas: dict[int, list[dict]] = {}
    todo = []
    for k in range(cfg.num_shards):
        m = read_shard_meta(out / shard_name(k), _shard_objects(cfg, k))
        if m is None:
            todo.append(k)
        else:
            metas[k] = m
    if todo:  # the set is incomplete until the new manifest is written
        for p in (out / "READY", out / "manifest.json"):
            p.unlink(missing_ok=True)
    done_objects = sum(len(m) for m in metas.values())
    bar = tqdm(total=cfg.num_objects, initial=done_objects, unit="obj", desc="ffdata", disable=not show_progress)
    if workers > 1 and len(todo) > 1:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        with ctx.Pool(workers) as pool:
            for k, m in pool.imap_unordered(_worker, [(cfg.to_dict(), k, str(out)) for k in todo]):
                metas[k] = m
                bar.update(len(m))
    else:
        for k in todo:
            metas[k] = render_shard(cfg, k, out, progress=bar.update)
    bar.close()
    return write_manifest(out, cfg, metas)


def write_manifest(out: Path, cfg: GenerationConfig, metas: dict[int, list[dict]]) -> dict:
    split = split_assignment(cfg)
    objects = []
    for k in range(cfg.num_shards):
        for off, (i, m) in enumerate(zip(_shard_objects(cfg, k), metas[k])):
            objects.append({"index": i, "split": split[i], "shard": shard_name(k), "offset": off, **m})
    manifest = {
        "format": DATASET_FORMAT, "version": DATASET_VERSION, "config": cfg.canonical(),
        "image_size": cfg.image_size, "views_per_object": cfg.views, "num_objects": cfg.num_objects,
        "cameras": {"radius_range": list(cfg.radius_range), "elevation_range_deg": list(cfg.elevation_range),
                    "azimuth_range_deg": [0.0, 360.0], "fov_deg": cfg.fov_deg, "focal_px": cfg.focal,
                    "look_at": [0.0, 0.0, 0.0], "up": [0.0, 0.0, 1.0], "convention": "OpenCV c2w"},
        "splits": {s: sum(o["split"] == s for o in objects) for s in SPLITS},
        "shards": [{"file": shard_name(k), "objects": len(metas[k]),
                    "bytes": (out / shard_name(k)).stat().st_size} for k in range(cfg.num_shards)],
        "units": {"depth": "camera z-depth, world units, 0 = background", "rgb": "uint8 over white",
                  "mask": "uint8 coverage * 255", "world": "+Z up, object at the origin, radius <= 0.95"},
        "objects": objects,
    }
    atomic_write_json(out / "manifest.json", manifest)
    return manifest


# --------------------------------------------------------------------------------------- reading
def load_manifest(root: str | Path) -> dict:
    """Read and check ``root/manifest.json``; DataError naming the file on any problem."""
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise DataError(path, "no manifest.json: not a recon3d feed-forward data set (or generation unfinished)")
    try:
        m = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(path, f"unreadable manifest ({type(e).__name__}: {e})") from e
    if not isinstance(m, dict) or m.get("format") != DATASET_FORMAT:
        raise DataError(path, f"not a {DATASET_FORMAT} manifest")
    if m.get("version") != DATASET_VERSION:
        raise DataError(path, f"manifest version {m.get('version')!r}; this recon3d reads version {DATASET_VERSION}")
    for key in ("objects", "image_size", "views_per_object"):
        if key not in m:
            raise DataError(path, f"manifest has no {key!r}")
    return m


class MultiViewDataset(Dataset):
    """Objects of one split of a generated data set; items follow the batch format of :mod:`.base`.

    Args:
        root: data set folder (with ``manifest.json``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        views_per_item: V views returned per object (<= views per object in the set).
        image_size: resize to this square size (None: as stored); K is scaled to match.
        seed: seeds the view choice.
        cache_shards: decoded shards kept in memory (LRU, per process).
        max_view_angle_deg: None (default): the V views are a uniform random subset of the object's
            views. Set: overlapping baselines, like real captures: the first view is random, the
            other V - 1 are drawn at random among the views whose viewing direction (camera centre
            direction from the origin) is within this angle of the first view's; when fewer than
            V - 1 qualify, the V - 1 nearest (by that angle) are taken instead.

    View choice: for ``train`` a fresh random subset per access; index with an ``(i, draw)`` tuple to
    make it a pure function of ``(seed, i, draw)`` (the trainer does, so resume is exact), with a plain
    ``i`` the draw comes from torch's global RNG. For ``val``/``test`` the subset is fixed per object.

    Item: ``images`` (V, 3, H, W), ``masks`` (V, 1, H, W), ``depths`` (V, 1, H, W) float32,
    ``K`` (V, 3, 3), ``c2w`` (V, 4, 4) float32, ``object_index`` () int64.
    """

    def __init__(self, root: str | Path, split: str = "train", views_per_item: int = 4,
                 image_size: Optional[int] = None, seed: int = 0, cache_shards: int = 32,
                 max_view_angle_deg: Optional[float] = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        self.root = Path(root)
        self.manifest = load_manifest(self.root)
        self.split = split
        self.items = [o for o in self.manifest["objects"] if o.get("split") == split]
        if not self.items:
            raise DataError(self.root / "manifest.json", f"no objects in split {split!r}")
        self.num_views = int(self.manifest["views_per_object"])
        if not 1 <= views_per_item <= self.num_views:
            raise ValueError(f"views_per_item {views_per_item} not in [1, {self.num_views}] for {self.root}")
        self.views_per_item = int(views_per_item)
        self.stored_size = int(self.manifest["image_size"])
        self.image_size = int(image_size) if image_size else self.stored_size
        self.seed = int(seed)
        self.cache_shards = max(1, int(cache_shards))
        if max_view_angle_deg is not None and not 0 <= float(max_view_angle_deg) <= 180:
            raise ValueError(f"max_view_angle_deg {max_view_angle_deg} not in [0, 180]")
        self.max_view_angle_deg = None if max_view_angle_deg is None else float(max_view_angle_deg)
        self._cache: OrderedDict[str, dict] = OrderedDict()

    def __len__(self) -> int:
        return len(self.items)

    def view_indices(self, i: int, draw: Optional[int] = None) -> np.ndarray:
        """(V,) int64 indices of the views returned for item ``i`` (and ``draw``, train only)."""
        if self.split != "train":
            rng = np.random.default_rng([self.seed, self.items[i]["index"], 3])
        else:
            if draw is None:
                draw = int(torch.randint(0, 2**62, ()).item())
            rng = np.random.default_rng([self.seed, self.items[i]["index"], int(draw), 5])
        if self.max_view_angle_deg is None:
            return rng.permutation(self.num_views)[:self.views_per_item]
        return self._overlapping_views(i, rng)

    def view_directions(self, i: int) -> np.ndarray:
        """(num_views, 3) unit viewing directions (camera centre direction from the origin) of item ``i``."""
        rec = self.items[i]
        centers = self._shard(rec["shard"])["c2w"][int(rec["offset"]), :, :3, 3].astype(np.float64)
        return centers / np.maximum(np.linalg.norm(centers, axis=-1, keepdims=True), 1e-12)

    def _overlapping_views(self, i: int, rng: np.random.Generator) -> np.ndarray:
        """First view random, the rest among views within ``max_view_angle_deg`` of it (else the nearest)."""
        V = self.views_per_item
        first = int(rng.integers(self.num_views))
        d = self.view_directions(i)
        ang = np.degrees(np.arccos(np.clip(d @ d[first], -1.0, 1.0)))
        others = np.array([j for j in range(self.num_views) if j != first], np.int64)
        near = others[ang[others] <= self.max_view_angle_deg]
        if len(near) < V - 1:
            near = others[np.argsort(ang[others], kind="stable")[:V - 1]]
        rest = rng.permutation(near)[:V - 1]
        return np.concatenate([[first], rest]).astype(np.int64)

    def _shard(self, name: str) -> dict:
        if name in self._cache:
            self._cache.move_to_end(name)
            return self._cache[name]
        path = self.root / name
        if not path.is_file():
            raise DataError(path, "shard listed in manifest.json is missing")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in ("rgb", "mask", "depth", "K", "c2w", "index")}
        except Exception as e:  # noqa: BLE001 - zip, npy header or decompression errors
            raise DataError(path, f"corrupt shard ({type(e).__name__}: {e})") from e
        n, s, v = len(arrays["index"]), self.stored_size, self.num_views
        if arrays["rgb"].shape != (n, v, s, s, 3) or arrays["depth"].shape != (n, v, s, s):
            raise DataError(path, f"shard arrays have shape {arrays['rgb'].shape}, expected ({n}, {v}, {s}, {s}, 3)")
        self._cache[name] = arrays
        while len(self._cache) > self.cache_shards:
            self._cache.popitem(last=False)
        return arrays

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        i, draw = (index if isinstance(index, (tuple, list)) else (index, None))
        i = int(i)
        rec = self.items[i]
        a = self._shard(rec["shard"])
        off = int(rec["offset"])
        if int(a["index"][off]) != int(rec["index"]):
            raise DataError(self.root / rec["shard"], f"object {rec['index']} not at offset {off} as the manifest says")
        views = self.view_indices(i, draw)
        images = torch.from_numpy(a["rgb"][off, views]).permute(0, 3, 1, 2).float() / 255.0
        masks = torch.from_numpy(a["mask"][off, views])[:, None].float() / 255.0
        depths = torch.from_numpy(a["depth"][off, views].astype(np.float32))[:, None]
        K = torch.from_numpy(a["K"][off, views].copy())
        if self.image_size != self.stored_size:
            images, masks, depths, K = resize_views(images, masks, depths, K, self.image_size)
        return {"images": images, "masks": masks, "depths": depths, "K": K,
                "c2w": torch.from_numpy(a["c2w"][off, views].copy()),
                "object_index": torch.tensor(int(rec["index"]), dtype=torch.int64)}


def resize_views(images, masks, depths, K, size: int):
    """Resize (V, C, H, W) views to ``size`` x ``size``: area/antialiased bilinear for images and
    masks, nearest for depth (no mixing of surface and background depths); K scaled to match."""
    H, W = images.shape[-2:]
    mode = {"mode": "area"} if size < H else {"mode": "bilinear", "align_corners": False}
    images = F.interpolate(images, size=(size, size), **mode).clamp(0, 1)
    masks = F.interpolate(masks, size=(size, size), **mode).clamp(0, 1)
    depths = F.interpolate(depths, size=(size, size), mode="nearest-exact")
    K = K.clone()
    K[:, 0, :] *= size / W
    K[:, 1, :] *= size / H
    return images, masks, depths, K
