"""Video files -> a folder of sharp, well-spread frames (``recon3d fit --video``), decoded with PyAV.

``extract_video_frames(video, run/video_frames, frames=300)`` turns a clip into the photo folder
that ``fit --images`` starts from::

    clip.mp4 (1920x1080, 30 fps, 40 s, "rotate 90")   probe: a video stream, 1200 frames, not truncated
      -> 300 equal time windows over the clip; in each, the sharpest usable frame (variance of the
         Laplacian of a small grayscale copy; blank frames are never picked)
      -> run/video_frames/frame_000003.jpg ... (upright, long side <= 1600 px, JPEG quality 95)
         run/video_frames/frames.json          (where each frame came from, and the cache key)

Decoding uses PyAV (the ``av`` wheel bundles FFmpeg's libraries; no ``ffmpeg`` binary is needed).
The stream's display rotation (phone videos shot in portrait) is applied to the written frames.

Writes are atomic: frames go to a hidden ``.video_frames.tmp-*`` folder that replaces the frame
folder only when complete, so a killed run never leaves a frame set a later run would trust (a
leftover temporary folder is removed by the run folder's clean-up). A later call with the same
video file (size and modification time) and the same frame count reuses the folder.

Every problem with the video (missing, not a video, no video stream, truncated, undecodable, fewer
than :data:`MIN_FRAMES` usable frames) raises a one-line :class:`DataError` naming the file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .errors import DataError

log = logging.getLogger(__name__)

#: frames kept by default (nerfstudio's ``ns-process-data video --num-frames-target`` default)
DEFAULT_FRAMES = 300
#: the fewest frames structure-from-motion can pose (recon3d.sfm.MIN_IMAGES)
MIN_FRAMES = 3
#: longest side of the written frames: what SfM prepares photos to (recon3d.sfm.scene_from_images)
MAX_SIZE = 1600
#: longest side of the grayscale copy the sharpness is measured on
ANALYSIS_SIZE = 512
#: a frame whose grayscale standard deviation (0-255) is below this is blank (black, a fade): unusable
BLANK_STD = 2.0
#: suffixes the web app takes for a video upload (the command line tries any file)
VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".3gp", ".mts", ".m2ts",
                    ".wmv", ".flv", ".ogv")
FRAMES_DIR = "video_frames"
MANIFEST = "frames.json"
_VERSION = 1
_JPEG_QUALITY = 95
_MASK = os.umask(0)
os.umask(_MASK)
_DIR_MODE = 0o777 & ~_MASK  # what mkdir gives (mkdtemp gives 0700)


# ---------------------------------------------------------------------------------- sharpness
def sharpness(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a (H, W) grayscale image (any range; 0-255 here).

    Higher is sharper: blur removes the high frequencies the Laplacian responds to. Comparable
    between frames of one clip (same content, same size), not between clips."""
    g = np.asarray(gray, dtype=np.float32)
    if g.ndim != 2 or min(g.shape) < 3:
        return 0.0
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def is_blank(gray: np.ndarray) -> bool:
    """True for a frame with (almost) no contrast: black, white or a flat fade (never picked)."""
    return float(np.asarray(gray, dtype=np.float32).std()) < BLANK_STD


# ---------------------------------------------------------------------------------- selection
class FramePicker:
    """Online choice of the sharpest usable frame in each of ``n`` equal time windows over [t0, t1].

    Feed frames in presentation order with :meth:`offer`; each returns the picks of windows that
    are now complete, :meth:`finish` the last one. A pick is ``(time, score, payload)``; a frame
    offered with ``payload=None`` (unusable) is never picked, so a window of blank frames gives none.
    Windows keep the picks spread over the clip; within a window the sharpest frame wins (the
    earliest on a tie)."""

    def __init__(self, n: int, t0: float, t1: float) -> None:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        self.n, self.t0, self.t1 = int(n), float(t0), float(t1)
        self._window = -1
        self._best: tuple[float, float, Any] | None = None

    def window(self, t: float) -> int:
        """The window (0 .. n-1) of time ``t``."""
        span = self.t1 - self.t0
        if not span > 0 or not math.isfinite(t):
            return 0
        return min(self.n - 1, max(0, int(math.floor((t - self.t0) / span * self.n))))

    def offer(self, t: float, score: float, payload: Any) -> list[tuple[float, float, Any]]:
        w = max(self.window(t), self._window)  # a time stepping back stays in the current window
        done = []
        if w != self._window:
            done = self.finish()
            self._window = w
        if payload is not None and (self._best is None or score > self._best[1]):
            self._best = (float(t), float(score), payload)
        return done

    def finish(self) -> list[tuple[float, float, Any]]:
        best, self._best = self._best, None
        return [best] if best is not None else []


def select_frames(times: Sequence[float], scores: Sequence[float], n: int,
                  usable: Sequence[bool] | None = None) -> list[int]:
    """Indices of the frames :class:`FramePicker` keeps: the sharpest usable frame of each of
    ``min(n, len(times))`` equal windows over the span of ``times`` (seconds, presentation order)."""
    times = [float(t) for t in times]
    if not times:
        return []
    picker = FramePicker(min(int(n), len(times)), min(times), max(times))
    picks: list[tuple[float, float, Any]] = []
    for i, (t, s) in enumerate(zip(times, scores)):
        picks += picker.offer(t, float(s), i if usable is None or usable[i] else None)
    picks += picker.finish()
    return [p[2] for p in picks]


# ---------------------------------------------------------------------------------- probing
@dataclass
class VideoInfo:
    """What :func:`probe_video` found: the video stream, its frame count and time span."""

    path: Path
    stream_index: int  # index of the video stream among the file's video streams
    codec: str
    width: int  # stored (coded) size, pixels
    height: int
    rotation: int  # display rotation, degrees counter-clockwise (0, 90, 180 or 270)
    pixel_aspect: float  # sample aspect ratio (1 for square pixels)
    frames: int  # video packets (one per frame)
    t0: float  # first and last frame time, seconds
    t1: float
    duration: float | None  # the duration the file declares for the video, seconds

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as shown: pixel aspect and rotation applied."""
        w, h = max(1, round(self.width * self.pixel_aspect)), self.height
        return (h, w) if self.rotation % 180 else (w, h)


def _av(path: Path):
    try:
        import av
    except ImportError:
        raise DataError(path, "reading videos needs PyAV; install it with `pip install av`") from None
    return av


def _reason(e: Exception) -> str:
    """FFmpeg's reason without the file name PyAV appends (``...: 'clip.mp4'``)."""
    msg = getattr(e, "strerror", None) or str(e)
    return str(msg).split(": '")[0].strip().rstrip(".") or type(e).__name__


def _open(av, path: Path):
    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as e:
        raise DataError(path, f"not a readable video ({_reason(e)}); is it a video file, complete and "
                              f"undamaged?") from None
    except OSError as e:
        raise DataError(path, f"cannot open ({e.strerror or e})") from None


def _video_stream(container, path: Path):
    try:
        from av.stream import Disposition

        pic = Disposition.attached_pic  # the cover art of an audio file is no video
    except (ImportError, AttributeError):
        pic = 0
    streams = [s for s in container.streams.video if not (pic and s.disposition & pic)]
    if not streams:
        raise DataError(path, "has no video stream")
    return streams[0]


def _stream_seconds(stream, pts) -> float | None:
    return None if pts is None or stream.time_base is None else float(pts * stream.time_base)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Check that ``path`` is a complete, decodable video with at least :data:`MIN_FRAMES` frames.

    Reads every packet (no decoding: fast) to count the frames and find their time span, and
    decodes the first frame. Raises DataError naming the file: missing, a folder, not a video, no
    video stream, fewer than MIN_FRAMES frames, truncated (the frames end well before the declared
    duration, or fewer frames than the header lists), or a codec that cannot be decoded."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "no such video file")
    if path.is_dir():
        raise DataError(path, "is a folder; --video takes a video file (for a folder of photos use --images)")
    st = path.stat()
    if st.st_size == 0:
        raise DataError(path, "is empty (0 bytes)")
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if _PROBED.get("key") == key:  # the fit's early check and the extraction read the file once
        return replace(_PROBED["info"], path=path)
    info = _probe(path)
    _PROBED.update(key=key, info=info)
    return info


_PROBED: dict = {}  # the last probe_video result, by (path, size, mtime)


def _probe(path: Path) -> VideoInfo:
    av = _av(path)
    with _open(av, path) as c:
        s = _video_stream(c, path)
        index = list(c.streams.video).index(s)
        codec = s.codec_context.name if s.codec_context is not None else "?"
        width, height = int(s.codec_context.width or 0), int(s.codec_context.height or 0)
        sar = s.sample_aspect_ratio
        declared_frames = int(s.frames or 0)
        declared = _stream_seconds(s, s.duration) if s.duration else None
        if declared is None and c.duration and len(c.streams) == 1:  # the file's duration is the video's
            declared = c.duration / 1e6
        n, t0, t1, end = 0, math.inf, -math.inf, -math.inf
        try:
            for p in c.demux(s):
                if p.size == 0:
                    continue  # the flush packet
                n += 1
                t = _stream_seconds(s, p.pts)
                if t is not None:
                    t0, t1 = min(t0, t), max(t1, t)
                    end = max(end, t + (_stream_seconds(s, p.duration) or 0.0))
        except av.FFmpegError as e:
            raise DataError(path, f"damaged after {n} frames ({_reason(e)})") from None
    if n < MIN_FRAMES:
        raise DataError(path, f"has {n} video frame{'s' * (n != 1)}; structure-from-motion needs at least "
                              f"{MIN_FRAMES} (a clip of a few seconds moving around the object works)")
    if not math.isfinite(t0):  # no timestamps: frame order only
        t0, t1, end = 0.0, float(n - 1), float(n)
    start = t0 if t0 > 0 else 0.0
    if declared and declared > 0 and (declared - (end - start)) > max(0.5, 0.05 * declared):
        raise DataError(path, f"is truncated or damaged: its frames end at {end - start:.1f} s of the "
                              f"{declared:.1f} s it declares")
    if declared_frames and n < 0.95 * declared_frames - 1:
        raise DataError(path, f"is truncated or damaged: {n} of the {declared_frames} frames it declares")
    rotation = _first_frame_rotation(av, path, index)
    if not width or not height:
        raise DataError(path, f"its {codec} video stream has no frame size")
    return VideoInfo(path, index, codec, width, height, rotation, float(sar) if sar else 1.0, n, t0, t1, declared)


def _first_frame_rotation(av, path: Path, index: int) -> int:
    """Decode the first frame (the codec works); its display rotation rounded to 90 degrees."""
    with _open(av, path) as c:
        s = c.streams.video[index]
        try:
            frame = next(iter(c.decode(s)), None)
        except av.FFmpegError as e:
            raise DataError(path, f"cannot decode its video ({_reason(e)})") from None
    if frame is None:
        raise DataError(path, "no frame of its video decodes (damaged or an unsupported codec)")
    rot = getattr(frame, "rotation", 0) or 0
    return int(round(float(rot) / 90.0)) % 4 * 90 if rot else 0


# ---------------------------------------------------------------------------------- extraction
@dataclass
class VideoFrames:
    """The frames :func:`extract_video_frames` wrote (or reused) and where they came from."""

    folder: Path
    paths: list[Path]
    video: Path
    decoded: int  # frames decoded (and scored)
    mean_sharpness: float  # of the kept frames
    reused: bool = False
    records: list[dict] = field(default_factory=list)  # per frame: name, index, time, sharpness

    @property
    def kept(self) -> int:
        return len(self.paths)

    def info(self) -> dict:
        """metrics.json entries: where the frames came from."""
        return {"video": str(self.video), "video_frames_decoded": self.decoded, "video_frames_kept": self.kept,
                "video_mean_sharpness": round(self.mean_sharpness, 2), "video_frames_dir": str(self.folder)}


def _cache_key(video: Path, frames: int, max_size: int) -> dict:
    st = video.stat()
    return {"version": _VERSION, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "frames": int(frames),
            "max_size": int(max_size)}


def _cached(folder: Path, key: dict, video: Path) -> VideoFrames | None:
    try:
        m = json.loads((folder / MANIFEST).read_text())
        if m.get("key") != key:
            return None
        recs = m["frames"]
        paths = [folder / r["name"] for r in recs]
        if any("/" in r["name"] or not p.is_file() or p.stat().st_size != r["bytes"] for p, r in zip(paths, recs)):
            return None
        return VideoFrames(folder, paths, video, int(m["decoded"]), float(m["mean_sharpness"]), True, recs)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _fit_size(w: int, h: int, max_size: int) -> tuple[int, int]:
    if max(w, h) <= max_size:
        return w, h
    s = max_size / max(w, h)
    return max(2, round(w * s)), max(2, round(h * s))


def _decode(av, info: VideoInfo) -> Iterator[tuple[int, float, Any]]:
    """(index, time in seconds, av.VideoFrame) of every frame, in presentation order."""
    with _open(av, info.path) as c:
        s = c.streams.video[info.stream_index]
        s.thread_type = "AUTO"
        i = 0
        try:
            for frame in c.decode(s):
                t = frame.time
                yield i, (float(t) if t is not None else info.t0 + i * (info.t1 - info.t0) / max(1, info.frames - 1)), frame
                i += 1
        except av.FFmpegError as e:
            raise DataError(info.path, f"damaged: decoding stopped after {i} frames ({_reason(e)})") from None


def _write_frame(frame, path: Path, info: VideoInfo, max_size: int) -> tuple[int, int]:
    """Write ``frame`` upright as a JPEG with its long side at most ``max_size``; returns (w, h) written."""
    from PIL import Image

    dw, dh = info.display_size
    ow, oh = _fit_size(dw, dh, max_size)
    sw, sh = (oh, ow) if info.rotation % 180 else (ow, oh)  # the stored orientation
    rgb = frame.reformat(width=sw, height=sh, format="rgb24", interpolation="AREA").to_ndarray()
    k = (info.rotation // 90) % 4
    if k:
        rgb = np.ascontiguousarray(np.rot90(rgb, k))  # rotation is counter-clockwise, like np.rot90
    Image.fromarray(rgb, "RGB").save(path, format="JPEG", quality=_JPEG_QUALITY)
    return rgb.shape[1], rgb.shape[0]


def _analysis_gray(frame, info: VideoInfo) -> np.ndarray:
    w, h = _fit_size(info.width, info.height, ANALYSIS_SIZE)
    return frame.reformat(width=w, height=h, format="gray").to_ndarray()


def _replace_dir(new: Path, dst: Path) -> None:
    """Move folder ``new`` to ``dst``, replacing an existing ``dst`` (renames only, same filesystem)."""
    old = None
    if dst.exists() or dst.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
        os.replace(dst, old / dst.name)
    os.replace(new, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def extract_video_frames(video: str | os.PathLike, out_dir: str | os.PathLike, frames: int = DEFAULT_FRAMES,
                         max_size: int = MAX_SIZE, info: VideoInfo | None = None) -> VideoFrames:
    """Pick about ``frames`` sharp, well-spread frames of ``video`` and write them into ``out_dir``.

    Args:
        video: the video file (any container and codec FFmpeg decodes).
        out_dir: the frame folder (replaced as a whole; its parent is created).
        frames: how many frames to keep at most: one per equal time window (all frames of a shorter clip).
        max_size: longest side of the written frames, pixels.
        info: a :func:`probe_video` result for ``video`` (probed here when None).
    Returns:
        the :class:`VideoFrames` written, or reused when ``out_dir`` holds the frames of the same file
        (size, modification time), ``frames`` and ``max_size``.
    Raises:
        DataError naming the video (see :func:`probe_video`; also: damaged mid-stream, fewer than
        :data:`MIN_FRAMES` usable frames). Nothing is left in ``out_dir``'s parent then.
    """
    video, out_dir = Path(video), Path(out_dir)
    if int(frames) < MIN_FRAMES:
        raise DataError("--frames", f"must be at least {MIN_FRAMES}, got {frames}")
    if not video.is_file():
        probe_video(video)  # the DataError for a missing file / folder
    key = _cache_key(video, frames, max_size)
    hit = _cached(out_dir, key, video)
    if hit is not None:
        log.info("reusing %d frames of %s in %s", hit.kept, video, out_dir)
        return hit
    info = info or probe_video(video)
    av = _av(video)
    t_start = time.perf_counter()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        os.chmod(tmp, _DIR_MODE)  # mkdtemp makes it 0700; the frame folder gets the usual mode
        picker = FramePicker(min(int(frames), info.frames), info.t0, info.t1)
        records: list[dict] = []
        size = None

        def keep(picks):
            nonlocal size
            for t, score, (index, frame) in picks:
                name = f"frame_{index:06d}.jpg"
                size = _write_frame(frame, tmp / name, info, max_size)
                records.append({"name": name, "index": index, "time": round(t, 4), "sharpness": round(score, 3),
                                "bytes": (tmp / name).stat().st_size})

        decoded = 0
        for index, t, frame in _decode(av, info):
            decoded = index + 1
            gray = _analysis_gray(frame, info)
            usable = not is_blank(gray)
            keep(picker.offer(t, sharpness(gray) if usable else 0.0, (index, frame) if usable else None))
        keep(picker.finish())
        if len(records) < MIN_FRAMES:
            raise DataError(video, f"{len(records)} usable frame{'s' * (len(records) != 1)} of {decoded} decoded "
                                   f"(blank frames are skipped); structure-from-motion needs at least {MIN_FRAMES}")
        mean = float(np.mean([r["sharpness"] for r in records]))
        manifest = {"key": key, "video": str(video.resolve()), "decoded": decoded, "kept": len(records),
                    "mean_sharpness": mean, "codec": info.codec, "rotation": info.rotation,
                    "stored_size": [info.width, info.height], "size": list(size), "frames": records}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("kept %d of %d frames of %s (mean sharpness %.1f, %s%s) in %.1fs", len(records), decoded, video, mean,
             f"{size[0]}x{size[1]}", f", rotated {info.rotation} deg" if info.rotation else "",
             time.perf_counter() - t_start)
    return VideoFrames(out_dir, [out_dir / r["name"] for r in records], video, decoded, mean, False, records)
