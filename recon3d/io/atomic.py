"""Atomic file writes: outputs appear complete or not at all, never half-written.

Every writer in recon3d (images, JSON, PLY, checkpoints, GIFs) goes through these helpers: the data
goes to a temporary file in the destination's folder, is flushed to disk, and is renamed over the
destination with ``os.replace`` (atomic on POSIX and Windows).
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return (stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IWGRP | stat.S_IROTH | stat.S_IWOTH) & ~mask


_UMASK_MODE = _umask_mode()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on error it is removed.

    For libraries that insist on writing to a file name themselves (``torch.save``, imageio, ...).
    The temporary name keeps ``path``'s suffix so format detection by extension still works.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _UMASK_MODE)  # mkstemp creates 0600; give the file the usual umask-derived mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as JSON atomically; numpy/torch scalars become floats, paths strings."""

    def default(o):
        if hasattr(o, "item") and getattr(o, "ndim", 1) == 0:
            return o.item()
        if hasattr(o, "tolist"):
            return o.tolist()
        return str(o)

    return atomic_write_bytes(path, (json.dumps(obj, indent=indent, default=default) + "\n").encode("utf-8"))
