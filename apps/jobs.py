"""Bounded job folders: the app's image-to-3D jobs and fit runs do not pile up (no gradio here).

Every request gets a fresh folder under one parent (``workdir/jobs`` or ``workdir/runs``). A
:class:`JobStore` keeps at most ``max_count`` of them, and none older than ``max_age_s`` when that
is set: each new folder first makes room, deleting the oldest beyond the bound.

A folder a session still uses is *held*: from its creation while the request runs, then while the
page shows its results (the page releases it when the same session starts another request, or when
the session ends). A held folder is never deleted by the bound (the count may then exceed it for a
while). Image-to-3D results are deleted as soon as they are no longer shown (:meth:`JobStore.discard`);
fit runs stay listed in the viewer until the bound removes them (:meth:`JobStore.release`).

Holds are known to this server process only. Files the page shows are served from Gradio's own
copies (``workdir/gradio``, cleared after a day), so removing a job folder never breaks a page.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Optional

from .safety import new_job_dir
from .settings import AppSettings

log = logging.getLogger(__name__)


class JobStore:
    """The job folders directly under ``parent``, bounded by count and age (see the module docstring).

    Args:
        parent: the folder holding one sub-folder per request.
        max_count: most folders kept, held ones included (0: no count limit).
        max_age_s: folders whose modification time is older than this are removed (0: no age limit).
    """

    def __init__(self, parent: str | os.PathLike, max_count: int = 0, max_age_s: float = 0.0) -> None:
        self.parent = Path(parent).resolve()
        self.max_count, self.max_age_s = int(max_count), float(max_age_s)
        self._held: dict[Path, int] = {}  # job folder -> number of holds
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ listing
    def folders(self) -> list[Path]:
        """The job folders (not hidden, not symlinks), newest first (modification time, then name)."""
        found = []
        try:
            entries = list(os.scandir(self.parent))
        except FileNotFoundError:
            return []
        for e in entries:
            if e.name.startswith(".") or not e.is_dir(follow_symlinks=False):
                continue
            try:
                found.append((e.stat(follow_symlinks=False).st_mtime_ns, e.name))
            except FileNotFoundError:  # removed meanwhile
                continue
        return [self.parent / name for _, name in sorted(found, reverse=True)]

    def job_of(self, path: str | os.PathLike | None) -> Optional[Path]:
        """The job folder holding ``path`` (the folder itself or anything inside it), None when
        ``path`` is not inside one of this store's job folders."""
        if not path:
            return None
        try:
            rel = Path(path).resolve().relative_to(self.parent)
        except ValueError:
            return None
        return self.parent / rel.parts[0] if rel.parts else None

    def is_held(self, path) -> bool:
        job = self.job_of(path)
        with self._lock:
            return job is not None and job in self._held

    # ------------------------------------------------------------------ use
    def create(self, label: str = "job") -> Path:
        """A fresh, held job folder; older unheld folders beyond the bound are removed first."""
        with self._lock:
            path = new_job_dir(self.parent, label)
            self._held[path] = self._held.get(path, 0) + 1
            self.prune()
        return path

    def hold(self, path) -> Optional[Path]:
        """Keep the job folder of ``path`` from the bound (a session shows it); returns the job folder,
        None when ``path`` is not in this store."""
        job = self.job_of(path)
        if job is not None:
            with self._lock:
                self._held[job] = self._held.get(job, 0) + 1
        return job

    def release(self, path) -> None:
        """Undo one :meth:`hold` (or :meth:`create`) of the job folder of ``path``; the folder stays
        until the bound removes it."""
        job = self.job_of(path)
        with self._lock:
            if job in self._held:
                self._held[job] -= 1
                if self._held[job] <= 0:
                    del self._held[job]

    def discard(self, path) -> None:
        """Release the job folder of ``path`` and delete it unless another hold remains."""
        job = self.job_of(path)
        if job is None:
            return
        with self._lock:
            self.release(job)
            if job not in self._held:
                self._remove(job)

    def prune(self) -> list[Path]:
        """Remove unheld folders older than ``max_age_s`` or beyond ``max_count``: the held ones count
        first, then the newest unheld ones fill the places left. Returns the folders removed."""
        removed = []
        with self._lock:
            now_ns = time.time_ns()
            folders = self.folders()
            kept = sum(job in self._held for job in folders)  # held folders take their places first
            for job in folders:
                if job in self._held:
                    continue
                try:
                    age_s = (now_ns - job.stat().st_mtime_ns) / 1e9
                except FileNotFoundError:
                    continue
                if (self.max_count and kept >= self.max_count) or (self.max_age_s and age_s > self.max_age_s):
                    self._remove(job)
                    removed.append(job)
                else:
                    kept += 1
        if removed:
            log.info("removed %d old job folder(s) from %s", len(removed), self.parent)
        return removed

    def _remove(self, job: Path) -> None:
        shutil.rmtree(job, ignore_errors=True)


_STORES: dict[Path, JobStore] = {}
_STORES_LOCK = threading.Lock()


def job_store(parent: str | os.PathLike, max_count: int = 0, max_age_s: float = 0.0) -> JobStore:
    """The one :class:`JobStore` of ``parent`` in this process (so every request sees the same holds),
    its bounds set to the given ones."""
    key = Path(parent).resolve()
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            store = _STORES[key] = JobStore(key, max_count, max_age_s)
        store.max_count, store.max_age_s = int(max_count), float(max_age_s)
        return store


def image_jobs(settings: AppSettings) -> JobStore:
    """The image-to-3D job folders (``workdir/jobs``), bounded by ``max_jobs`` / ``max_job_age_h``."""
    return job_store(settings.jobs_dir, settings.max_jobs, settings.max_job_age_h * 3600.0)


def fit_runs(settings: AppSettings) -> JobStore:
    """The fit run folders (``workdir/runs``), bounded by ``max_fit_runs`` / ``max_job_age_h``."""
    return job_store(settings.fit_runs_dir, settings.max_fit_runs, settings.max_job_age_h * 3600.0)
