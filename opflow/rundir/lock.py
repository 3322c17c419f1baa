"""One run of a workflow at a time, per log dir: an OS lock that dies with its process.

A lock *file* that outlives a killed run is a classic cron complaint; `fcntl.flock`
is released by the kernel when the holder exits, however it exits.
"""
from __future__ import annotations

__all__ = ["WorkflowLock"]

import fcntl
import hashlib
import os
import time
from pathlib import Path

from opflow.errors import LockedError
from opflow.rundir.files import open_nofollow


class WorkflowLock:
    def __init__(self, log_dir: Path, workflow_path: Path, slug: str):
        digest = hashlib.sha1(str(workflow_path.resolve()).encode()).hexdigest()[:10]
        self.path = log_dir / ".locks" / f"{slug}-{digest}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Never through a symlink planted at the lock's path (it would truncate its target).
        fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockedError(
                f"another run of this workflow is in progress ({holder}); lock {self.path}. "
                "Use --no-lock to run anyway."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
