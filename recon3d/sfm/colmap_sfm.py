"""Structure-from-motion with pycolmap: a folder of unposed photos in, a posed :class:`Scene` out.

Stages (each logged with counts and times)::

    prepare_images   validate + normalize the photos          work_dir/images/ (+ prepared.json)
    run_sfm          SIFT features (CPU) -> matching ->        work_dir/sparse/0/{cameras,images,points3D}.bin
                     incremental mapping, largest model kept   work_dir/database.db, work_dir/sfm_cache.json
    read_colmap      the project's COLMAP reader -> Scene      work_dir/transforms.json (+ sparse_pc.ply)

Matching: ``'exhaustive'`` (every pair) for up to :data:`EXHAUSTIVE_MAX_IMAGES` images under
``'auto'``, ``'sequential'`` (each image against the next :data:`SEQUENTIAL_OVERLAP` by name, loop
detection off: it would need a downloaded vocabulary tree) beyond that.

Caching: ``sfm_cache.json`` keys the run on the image names, sizes and content hashes, the options
that change the result, and the pycolmap version. A matching key with an intact model skips SfM.

The world frame is COLMAP's (arbitrary similarity); the Scene is not normalized here.

Note: the pycolmap wheel bundles its own zlib. Importing ``pycolmap`` before Pillow's C module has
been loaded corrupts the heap on the next PNG save, so this module imports Pillow (via
``recon3d.io``) at import time and pycolmap only lazily.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from recon3d.io.colmap import read_colmap
from recon3d.io.errors import DataError
from recon3d.io.images import image_size, list_images
from recon3d.io.nerfstudio import write_nerfstudio_transforms
from recon3d.io._common import natural_key

from ._common import file_sha1, json_key, log, read_json_or_none, write_json
from .prepare import MANIFEST, MIN_IMAGES, prepare_images

MATCHERS = ("auto", "exhaustive", "sequential")
#: COLMAP camera models offered (all readable by :func:`recon3d.io.read_colmap`).
CAMERA_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
EXHAUSTIVE_MAX_IMAGES = 100
SEQUENTIAL_OVERLAP = 20
#: Below this median keypoint count per image (small photos, little texture) the mapper's inlier
#: thresholds are relaxed: COLMAP's defaults (100 to initialize, 30 to register) assume thousands.
FEW_FEATURES = 1000
CACHE_FILE = "sfm_cache.json"
_VERSION = 1
_MODEL_FILES = ("cameras.bin", "images.bin", "points3D.bin")


@dataclass
class SfmResult:
    """What :func:`run_sfm` produced.

    Attributes:
        model_dir: the COLMAP binary model (``work_dir/sparse/0``).
        num_images: images given to SfM.
        num_registered: images with a pose in the model.
        registered_names: their file names (natural order); ``unregistered_names`` the others.
        num_points: 3D points in the model.
        mean_reprojection_error: mean over all observations, pixels.
        seconds: wall time of the SfM run (of the original run when ``cached``).
        cached: True when the model was reused from ``sfm_cache.json``.
        stage_seconds: per stage (``extract``, ``match``, ``map``) wall times.
        options: the options that produced the model (resolved matcher etc.).
    """

    model_dir: Path
    num_images: int
    num_registered: int
    registered_names: list[str]
    num_points: int
    mean_reprojection_error: float
    seconds: float
    cached: bool = False
    unregistered_names: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model_dir"] = str(self.model_dir)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SfmResult":
        d = dict(d)
        d["model_dir"] = Path(d["model_dir"])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


# ------------------------------------------------------------------------------------ helpers
@contextlib.contextmanager
def _colmap_log_level(verbose: bool):
    """Show only COLMAP's errors (glog, process-wide) unless ``verbose``; restored afterwards."""
    import pycolmap

    old = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 0 if verbose else 2
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = old


def _check_options(matcher: str, camera_model: str, max_features: int) -> None:
    if matcher not in MATCHERS:
        raise ValueError(f"matcher must be one of {MATCHERS}, got {matcher!r}")
    if camera_model not in CAMERA_MODELS:
        raise ValueError(f"camera_model must be one of {CAMERA_MODELS}, got {camera_model!r}")
    if int(max_features) < 100:
        raise ValueError(f"max_features must be at least 100, got {max_features!r}")


def _model_hashes(model_dir: Path) -> dict[str, str] | None:
    if not all((model_dir / f).is_file() for f in _MODEL_FILES):
        return None
    return {f: file_sha1(model_dir / f) for f in _MODEL_FILES}


def _replace_dir(new: Path, dst: Path) -> None:
    """Move folder ``new`` to ``dst``, replacing an existing ``dst`` (renames only, same filesystem)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if dst.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
        os.replace(dst, old / dst.name)
    os.replace(new, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _database_stats(db_path: Path, min_inliers: int = 15) -> dict:
    """Keypoints per image and image pairs with a verified geometry of >= ``min_inliers`` inliers."""
    import pycolmap

    db = pycolmap.Database.open(str(db_path))
    try:
        kps = {im.name: int(db.num_keypoints_for_image(im.image_id)) for im in db.read_all_images()}
        good = 0
        if db.num_verified_image_pairs() > 0:
            bad = {pycolmap.TwoViewGeometryConfiguration.UNDEFINED, pycolmap.TwoViewGeometryConfiguration.DEGENERATE}
            _, geoms = db.read_two_view_geometries()
            good = sum(1 for g in geoms if g.config not in bad and len(g.inlier_matches) >= min_inliers)
    finally:
        db.close()
    counts = np.array(list(kps.values()) or [0])
    return {"keypoints": kps, "median_keypoints": int(np.median(counts)), "min_keypoints": int(counts.min()),
            "max_keypoints": int(counts.max()), "verified_pairs": good}


def _stage(name: str, image_dir: Path, fn, *args, **kwargs):
    """Run a pycolmap stage; its exceptions become a one-line DataError naming ``image_dir``."""
    try:
        return fn(*args, **kwargs)
    except DataError:
        raise
    except Exception as e:  # pycolmap raises RuntimeError / ValueError with its own wording
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise DataError(image_dir, f"structure-from-motion failed during {name} ({msg})") from e


# ------------------------------------------------------------------------------------ stages
def _extract(db: Path, image_dir: Path, names: list[str], camera_model: str, single_camera: bool,
             threads: int, max_features: int, mask_dir: Path | None = None) -> None:
    import pycolmap

    sizes = {image_size(image_dir / n) for n in names}
    mode = pycolmap.CameraMode.SINGLE if single_camera else pycolmap.CameraMode.AUTO
    if single_camera and len(sizes) > 1:
        log.warning("images have %d different sizes; estimating one camera per image size instead of one "
                    "shared camera", len(sizes))
        mode = pycolmap.CameraMode.AUTO
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = camera_model
    if mask_dir is not None:  # COLMAP reads mask_dir/<image name>.png; black pixels get no features
        reader.mask_path = str(mask_dir)
    opts = pycolmap.FeatureExtractionOptions()
    opts.num_threads = threads
    opts.use_gpu = False
    opts.sift.max_num_features = int(max_features)
    pycolmap.extract_features(str(db), str(image_dir), image_names=names, camera_mode=mode, reader_options=reader,
                              extraction_options=opts, device=pycolmap.Device.cpu)


def _match(db: Path, matcher: str, threads: int) -> None:
    import pycolmap

    opts = pycolmap.FeatureMatchingOptions()
    opts.num_threads = threads
    opts.use_gpu = False
    if matcher == "exhaustive":
        pycolmap.match_exhaustive(str(db), matching_options=opts, device=pycolmap.Device.cpu)
    else:
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = SEQUENTIAL_OVERLAP
        pairing.quadratic_overlap = True
        pairing.loop_detection = False  # needs a vocabulary tree file
        pycolmap.match_sequential(str(db), matching_options=opts, pairing_options=pairing,
                                  device=pycolmap.Device.cpu)


def _map(db: Path, image_dir: Path, out: Path, threads: int, seed: int, few_features: bool) -> dict:
    import pycolmap

    opts = pycolmap.IncrementalPipelineOptions()
    opts.num_threads = threads
    opts.random_seed = int(seed)
    opts.min_model_size = MIN_IMAGES  # keep small models: the caller decides what is too few
    opts.extract_colors = True
    if few_features:
        opts.mapper.init_min_num_inliers = 50
        opts.mapper.abs_pose_min_num_inliers = 15
    out.mkdir(parents=True, exist_ok=True)
    return pycolmap.incremental_mapping(str(db), str(image_dir), str(out), options=opts)


# ------------------------------------------------------------------------------------ public
def run_sfm(
    image_dir: str | Path,
    work_dir: str | Path,
    matcher: str = "auto",
    camera_model: str = "SIMPLE_RADIAL",
    single_camera: bool = True,
    num_threads: int | None = None,
    seed: int = 0,
    max_features: int = 8192,
    verbose: bool = False,
    report_as: str | Path | None = None,
    mask_dir: str | Path | None = None,
) -> SfmResult:
    """Pose the images of ``image_dir`` with pycolmap (SIFT on CPU, matching, incremental mapping).

    Args:
        image_dir: folder of images (normally the output of :func:`prepare_images`).
        work_dir: output folder: ``sparse/0/`` (binary model), ``database.db``, ``sfm_cache.json``.
        matcher: ``'auto'`` (exhaustive up to :data:`EXHAUSTIVE_MAX_IMAGES` images, else sequential),
            ``'exhaustive'`` or ``'sequential'`` (by file name order: for video frames).
        camera_model: one of :data:`CAMERA_MODELS`.
        single_camera: all images share one camera (same intrinsics); falls back to one camera per
            image size if sizes differ. False lets COLMAP group by size and EXIF.
        num_threads: CPU threads (None: all cores). With 1 the result is bit-reproducible; with more,
            runs may differ slightly (thread scheduling). Not part of the cache key.
        seed: random seed (RANSAC, mapper).
        max_features: SIFT keypoints per image at most.
        mask_dir: masks named ``<image name>.png`` (black = not the object): features are taken only
            inside them, so a background that moves with a turntable does not break registration.
        report_as: the folder named in errors (the user's photos; default ``image_dir``).
        verbose: show COLMAP's own INFO log.
    Returns:
        :class:`SfmResult` of the largest model (most registered images).
    Raises:
        DataError: fewer than 3 images, SfM failing, or fewer than 3 images registered.
    """
    _check_options(matcher, camera_model, max_features)
    image_dir, work_dir = Path(image_dir), Path(work_dir)
    shown = Path(report_as) if report_as is not None else image_dir  # the folder errors name
    images = list_images(image_dir)
    n = len(images)
    if n < MIN_IMAGES:
        raise DataError(shown, f"found {n} image{'s' * (n != 1)}; structure-from-motion needs at least {MIN_IMAGES}")
    import pycolmap

    resolved = matcher if matcher != "auto" else ("exhaustive" if n <= EXHAUSTIVE_MAX_IMAGES else "sequential")
    options = {"matcher": resolved, "camera_model": camera_model, "single_camera": bool(single_camera),
               "seed": int(seed), "max_features": int(max_features)}
    key = json_key({"version": _VERSION, "pycolmap": pycolmap.__version__, "options": options,
                    "images": [(p.name, p.stat().st_size, file_sha1(p)) for p in images],
                    "masks": None if mask_dir is None else sorted((p.name, file_sha1(p))
                                                                  for p in Path(mask_dir).glob("*.png"))})
    model_dir = work_dir / "sparse" / "0"
    cache_path = work_dir / CACHE_FILE
    cache = read_json_or_none(cache_path)
    if isinstance(cache, dict) and cache.get("key") == key and cache.get("model_sha1") == _model_hashes(model_dir):
        try:
            res = replace(SfmResult.from_dict(cache["result"]), model_dir=model_dir, cached=True)
        except (KeyError, TypeError, ValueError):
            res = None
        if res is not None:
            log.info("reusing cached SfM in %s: %d of %d images registered, %d points (delete %s to recompute)",
                     work_dir, res.num_registered, res.num_images, res.num_points, cache_path.name)
            return res

    threads = -1 if num_threads is None else max(1, int(num_threads))
    work_dir.mkdir(parents=True, exist_ok=True)
    cache_path.unlink(missing_ok=True)
    names = [p.name for p in images]
    t0 = time.perf_counter()
    stages: dict[str, float] = {}
    tmp = Path(tempfile.mkdtemp(prefix=".sfm-", dir=work_dir))
    try:
        db = tmp / "database.db"
        pycolmap.set_random_seed(int(seed))
        with _colmap_log_level(verbose):
            log.info("SfM: extracting SIFT features from %d images (%s, %s camera)", n, camera_model,
                     "one shared" if single_camera else "per-size")
            t = time.perf_counter()
            _stage("feature extraction", shown, _extract, db, image_dir, names, camera_model, single_camera,
                   threads, max_features, None if mask_dir is None else Path(mask_dir))
            stats = _database_stats(db)
            stages["extract"] = time.perf_counter() - t
            log.info("SfM: %d features per image (median; min %d, max %d) in %.1fs", stats["median_keypoints"],
                     stats["min_keypoints"], stats["max_keypoints"], stages["extract"])
            empty = [k for k, v in stats["keypoints"].items() if v == 0]
            if empty:
                log.warning("SfM: no features found in %d images (blank or blurry?): %s", len(empty),
                            ", ".join(sorted(empty, key=natural_key)[:10]))

            t = time.perf_counter()
            npairs = n * (n - 1) // 2 if resolved == "exhaustive" else None
            log.info("SfM: %s matching%s", resolved, f" of {npairs} image pairs" if npairs else "")
            _stage("feature matching", shown, _match, db, resolved, threads)
            stats = _database_stats(db)
            stages["match"] = time.perf_counter() - t
            log.info("SfM: %d image pairs with verified matches in %.1fs", stats["verified_pairs"], stages["match"])

            t = time.perf_counter()
            few = stats["median_keypoints"] < FEW_FEATURES
            if few:
                log.info("SfM: few features per image; relaxing the mapper's inlier thresholds")
            recs = _stage("incremental mapping", shown, _map, db, image_dir, tmp / "mapper", threads, seed, few)
            stages["map"] = time.perf_counter() - t

        models = sorted(recs.values(), key=lambda r: (r.num_reg_images(), r.num_points3D()), reverse=True)
        best = models[0] if models else None
        k = best.num_reg_images() if best is not None else 0
        log.info("SfM: mapping gave %d model(s) in %.1fs; the largest registers %d of %d images",
                 len(models), stages["map"], k, n)
        if k < MIN_IMAGES:
            raise DataError(shown, f"structure-from-motion registered only {k} of {n} images "
                                       f"({stats['median_keypoints']} features per image, {stats['verified_pairs']} "
                                       "matching image pairs); try more overlapping photos")
        registered = sorted((best.images[i].name for i in best.reg_image_ids()), key=natural_key)
        elsewhere = {m.images[i].name for m in models[1:] for i in m.reg_image_ids()} - set(registered)
        if elsewhere:
            log.warning("SfM: the photos split into %d separate models (%s images); keeping the largest",
                        len(models), ", ".join(str(m.num_reg_images()) for m in models))
        missing = [m for m in names if m not in set(registered)]
        if missing:
            log.warning("SfM: %d of %d images did not register and are dropped: %s%s", len(missing), n,
                        ", ".join(missing[:10]), " ..." if len(missing) > 10 else "")
        (tmp / "model").mkdir()
        best.write(str(tmp / "model"))
        _replace_dir(tmp / "model", model_dir)
        os.replace(db, work_dir / "database.db")
        result = SfmResult(
            model_dir=model_dir, num_images=n, num_registered=k, registered_names=registered,
            num_points=int(best.num_points3D()), mean_reprojection_error=float(best.compute_mean_reprojection_error()),
            seconds=time.perf_counter() - t0, unregistered_names=missing,
            stage_seconds={s: round(v, 3) for s, v in stages.items()}, options=options)
        write_json(cache_path, {"key": key, "model_sha1": _model_hashes(model_dir), "result": result.to_dict()})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("SfM: registered %d of %d images, %d points, mean reprojection error %.3f px, %.1fs",
             result.num_registered, n, result.num_points, result.mean_reprojection_error, result.seconds)
    return result


def prepare_masks(prepared: list[Path], src_dir: Path, masks_dir: str | Path, out: Path) -> Path:
    """Masks of the photos (``masks_dir``: same names or stems as the photos, any image format,
    thresholded at 128) written as ``out/<prepared image name>.png`` (0 / 255) at the prepared images'
    sizes: what COLMAP's feature extraction and the Scene read (``masks/`` beside ``images/``)."""
    from PIL import Image

    from recon3d.io.atomic import atomic_path
    from recon3d.io.images import find_masks, load_mask

    records = {r["name"]: r["source"] for r in (read_json_or_none(prepared[0].parent / MANIFEST) or {})
               .get("images", [])}
    sources = [Path(src_dir) / records.get(p.name, p.name) for p in prepared]
    masks = find_masks(sources, masks_dir, required=True)
    out.mkdir(parents=True, exist_ok=True)
    for p, m in zip(prepared, masks):
        w, h = image_size(p)
        arr = load_mask(m, size=(h, w)).numpy().astype(np.uint8) * 255
        if not arr.any():
            raise DataError(m, "mask is empty (no pixel of the object); check the mask folder")
        with atomic_path(out / f"{p.name}.png") as tmp:
            Image.fromarray(arr).save(tmp, format="PNG")
    for stale in out.glob("*.png"):
        if stale.name not in {f"{p.name}.png" for p in prepared}:
            stale.unlink()
    log.info("masks: %d from %s (features only inside them)", len(masks), masks_dir)
    return out


def scene_from_images(src_dir: str | Path, work_dir: str | Path, max_size: int = 1600,
                      masks_dir: str | Path | None = None, **sfm_options):
    """Photos in ``src_dir`` -> (posed :class:`~recon3d.io.Scene`, :class:`SfmResult`).

    Runs :func:`prepare_images` into ``work_dir/images``, :func:`run_sfm` in ``work_dir`` (both
    cached), reads the model with :func:`recon3d.io.read_colmap` (registered images only, natural
    name order, every 8th the test split) and writes ``work_dir/transforms.json`` (nerfstudio).
    The scene is in COLMAP's world frame (not normalized); ``scene.metadata['sfm']`` holds the result.

    Args:
        src_dir: folder of photos.
        work_dir: output folder (created).
        max_size: longest image side for SfM and the Scene, pixels.
        masks_dir: optional masks of the photos (see :func:`prepare_masks`): SfM features only inside
            them, and the scene carries them (``mask_paths``).
        sfm_options: passed to :func:`run_sfm` (``matcher``, ``camera_model``, ``num_threads``, ...).
    """
    src, work = Path(src_dir), Path(work_dir)
    t0 = time.perf_counter()
    images_dir = work / "images"
    prepared = prepare_images(src, images_dir, max_size=max_size)
    mask_dir = prepare_masks(prepared, src, masks_dir, work / "masks") if masks_dir is not None else None
    if mask_dir is None and (work / "masks").is_dir():  # masks of an earlier fit with --masks: not this one's
        import shutil

        shutil.rmtree(work / "masks")
    result = run_sfm(images_dir, work, report_as=src_dir, mask_dir=mask_dir, **sfm_options)
    # Cut-out photos (all with alpha) were composited onto white: tell the methods, so they render
    # the same background instead of having to paint it with Gaussians.
    records = (read_json_or_none(images_dir / MANIFEST) or {}).get("images", [])
    cutouts = bool(records) and all(r.get("has_alpha") for r in records)
    scene = read_colmap(result.model_dir, images_dir=images_dir, background="white" if cutouts else None)
    if len(scene) != result.num_registered:
        log.warning("COLMAP model holds %d posed images but SfM reported %d", len(scene), result.num_registered)
    scene = replace(scene, name=src.resolve().name,
                    metadata={**scene.metadata, "sfm": result.to_dict(), "source_images": str(src)})
    write_nerfstudio_transforms(scene, work / "transforms.json")
    log.info("posed %d of %d photos in %.1fs (%d train, %d test)", len(scene), result.num_images,
             time.perf_counter() - t0, len(scene.train_indices), len(scene.test_indices))
    return scene, result
