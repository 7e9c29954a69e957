"""An advisory lock on a run folder: one process writes a run at a time.

``RUN/.lock`` is held with ``fcntl.flock`` (released by the kernel when the process exits, even on
SIGKILL) and records the holder's pid, host and command. A second process asking for a busy folder
gets :class:`RunBusy` at once; a lock file left by a dead process is taken over with a log message.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"


class RunBusy(RuntimeError):
    """The run folder is locked by another live process (``holder``: what its lock file says)."""

    def __init__(self, folder: Path, holder: dict) -> None:
        self.folder, self.holder = folder, holder
        who = f"pid {holder.get('pid', '?')}" + (f" ({holder['command']})" if holder.get("command") else "")
        super().__init__(f"busy: another recon3d process ({who}) is writing this run folder; wait for it to "
                         f"finish or use another --out")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """``with RunLock(run_dir): ...`` holds the folder's lock (creating the folder); re-entrant per object."""

    def __init__(self, run_dir: str | os.PathLike, command: str | None = None) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.command = command if command is not None else " ".join(Path(a).name if i == 0 else a
                                                                   for i, a in enumerate(sys.argv[:6]))
        self._fd: int | None = None

    def _holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "RunLock":
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        previous = self._holder()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunBusy(self.path.parent, self._holder()) from None
        pid = previous.get("pid")
        if isinstance(pid, int) and pid != os.getpid() and previous.get("host") == socket.gethostname():
            state = "still running but not holding it" if _pid_alive(pid) else "no longer running"
            log.warning("%s: taking over the lock left by pid %s (%s)", self.path.parent, pid, state)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
                                 "command": self.command}).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # an empty lock file: nobody holds it
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
