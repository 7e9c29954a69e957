"""Small helpers of :mod:`recon3d.sfm`: content hashing and atomic JSON (not public API)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from recon3d.io.atomic import atomic_write_bytes

log = logging.getLogger("recon3d.sfm")

_CHUNK = 1 << 20


def file_sha1(path: Path) -> str:
    """Hex SHA-1 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def json_key(obj: Any) -> str:
    """Stable hex SHA-256 of a JSON-serializable object (keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def read_json_or_none(path: Path) -> Any:
    """Parsed JSON, or None when the file is missing or unreadable (a cache miss, never an error)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8"))
