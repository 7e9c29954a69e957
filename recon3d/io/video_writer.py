"""Frames -> an MP4 file (H.264, yuv420p) with PyAV, written atomically (``recon3d render --mp4``).

    with Mp4Writer("orbit.mp4", fps=30) as video:
        for rgb in frames:               # (H, W, 3) uint8, or float in [0, 1]
            video.write(rgb)

The file plays in browsers and common players: H.264 (libx264, CRF 18 by default), pixel format
yuv420p, the ``moov`` atom at the front (``+faststart``: it streams before it has fully loaded).
yuv420p needs even frame sizes: a frame with an odd width or height gets its last column / row
repeated (pick even sizes upstream, :func:`recon3d.core.camera_paths.even_size`, to avoid it).

The file appears complete or not at all: frames are encoded into a temporary file next to the
destination, which replaces it only when the encoder has been flushed and the file closed; an error
or interrupt while writing removes the temporary file and leaves an existing file untouched.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import DataError

#: the encoder and its defaults
CODEC = "libx264"
PIX_FMT = "yuv420p"
DEFAULT_CRF = 18
DEFAULT_PRESET = "medium"


def frame_rate(fps: float) -> Fraction:
    """``fps`` as the exact fraction the container stores (29.97 -> 2997/100, 30 -> 30)."""
    if not (isinstance(fps, (int, float, Fraction)) and float(fps) > 0 and np.isfinite(float(fps))):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    return Fraction(fps).limit_denominator(1001)


def to_uint8(frame) -> np.ndarray:
    """An (H, W, 3) RGB frame as contiguous uint8 (floats are taken as [0, 1] and clipped; a torch
    tensor is moved to the CPU)."""
    if hasattr(frame, "detach"):
        frame = frame.detach().cpu().numpy()
    a = np.asarray(frame)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) RGB frame, got shape {a.shape}")
    a = a[..., :3]
    if a.dtype != np.uint8:
        a = (np.clip(np.nan_to_num(a.astype(np.float32)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(a)


def pad_even(frame: np.ndarray) -> np.ndarray:
    """``frame`` with its last row / column repeated where its height / width is odd."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


class Mp4Writer:
    """An H.264 MP4 being written; a context manager (see the module doc). Frames must all have the
    size of the first one (after :func:`pad_even`)."""

    def __init__(self, path: str | os.PathLike, fps: float = 30, crf: int = DEFAULT_CRF,
                 preset: str = DEFAULT_PRESET, threads: int | None = None) -> None:
        self.path = Path(path)
        self.rate = frame_rate(fps)
        self.crf, self.preset, self.threads = int(crf), str(preset), threads
        self.frames = 0
        self.size: tuple[int, int] | None = None  # (width, height) as encoded
        self._ctx = self._container = self._stream = None

    def __enter__(self) -> "Mp4Writer":
        try:
            import av
        except ImportError:
            raise DataError(self.path, "writing MP4 videos needs PyAV; install it with `pip install av`") from None
        from .atomic import atomic_path

        if self.path.is_dir():
            raise DataError(self.path, "is a folder; give the MP4 file to write (e.g. out.mp4)")
        self._av = av
        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        try:
            self._container = av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
        except BaseException as e:
            self._ctx.__exit__(type(e), e, e.__traceback__)
            raise
        return self

    def _open_stream(self, width: int, height: int) -> None:
        s = self._container.add_stream(CODEC, rate=self.rate)
        s.width, s.height, s.pix_fmt = width, height, PIX_FMT
        s.codec_context.time_base = 1 / self.rate
        opts = {"crf": str(self.crf), "preset": self.preset}
        if self.threads:
            opts["threads"] = str(int(self.threads))
        s.options = opts
        self._stream, self.size = s, (width, height)

    def write(self, frame) -> None:
        """Encode one (H, W, 3) RGB frame (uint8, or float in [0, 1])."""
        rgb = pad_even(to_uint8(frame))
        h, w = rgb.shape[:2]
        if self._stream is None:
            self._open_stream(w, h)
        elif (w, h) != self.size:
            raise ValueError(f"frame {self.frames} is {w}x{h}; the video's frames are {self.size[0]}x{self.size[1]}")
        vf = self._av.VideoFrame.from_ndarray(rgb, format="rgb24")
        vf.pts = self.frames
        vf.time_base = 1 / self.rate
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.frames += 1

    def __exit__(self, exc_type, exc, tb) -> bool:
        ctx, self._ctx = self._ctx, None
        error = exc  # what the with-block raised, else what finishing the file raises
        try:
            if error is None:
                if self._stream is None:
                    raise ValueError("no frames were written")
                for packet in self._stream.encode():  # flush the encoder
                    self._container.mux(packet)
        except BaseException as e:  # noqa: BLE001
            error = e
        finally:
            try:
                self._container.close()
            except Exception as e:  # noqa: BLE001
                error = error or e
        if error is None:
            ctx.__exit__(None, None, None)  # fsync, then rename over the destination
            return False
        ctx.__exit__(type(error), error, error.__traceback__)  # removes the temporary file
        if error is not exc:
            raise error
        return False


def write_mp4(path: str | os.PathLike, frames, fps: float = 30, crf: int = DEFAULT_CRF,
              preset: str = DEFAULT_PRESET) -> Path:
    """Write an iterable of (H, W, 3) RGB frames to ``path`` as an H.264 MP4 (atomic); returns ``path``."""
    with Mp4Writer(path, fps=fps, crf=crf, preset=preset) as video:
        for f in frames:
            video.write(f)
    return Path(path)
