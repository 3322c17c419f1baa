"""One run of a workflow at a time, per log dir: an OS lock that dies with its process.

A lock *file* that outlives a killed run is a classic cron complaint; `fcntl.flock`
is released by the kernel when the holder exits, however it exits. The file's text
says who holds it (pid, since when, and once made, the run directory), for the
message a second launch prints: refused (`fail`), `skip`ped, or waiting (`wait`).
"""
from __future__ import annotations

__all__ = ["WorkflowLock", "IF_RUNNING"]

import fcntl
import hashlib
import os
import threading
import time
from pathlib import Path

from opflow.errors import LockedError
from opflow.rundir.files import open_nofollow

#: What a launch does while another run of the workflow holds the lock (--if-running); the first is the default.
IF_RUNNING = ("fail", "skip", "wait")


class WorkflowLock:
    def __init__(self, log_dir: Path, workflow_path: Path, slug: str):
        digest = hashlib.sha1(str(workflow_path.resolve()).encode()).hexdigest()[:10]
        self.path = log_dir / ".locks" / f"{slug}-{digest}.lock"
        self._fd: int | None = None
        self._note = ""
        self._guard = threading.Lock()  # wait() takes the lock on another thread; abandon() may race it
        self._abandoned = False

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Never through a symlink planted at the lock's path (it would truncate its target).
        return open_nofollow(self.path, os.O_RDWR | os.O_CREAT)

    def try_acquire(self) -> str | None:
        """Take the lock if it is free (None); else who holds it, in words."""
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 1000).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            return holder
        self._took(fd)
        return None

    def acquire(self) -> None:
        holder = self.try_acquire()
        if holder is not None:
            raise LockedError(
                f"another run of this workflow is in progress ({holder}); lock {self.path}. "
                "Use --if-running skip or wait, or --no-lock to run anyway."
            )

    def wait(self) -> None:
        """Block until the holder lets go (the kernel wakes us: no polling), then hold it.
        A blocking call: run it off the event loop; `abandon()` if its caller gives up."""
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        with self._guard:
            if self._abandoned:  # the caller was interrupted meanwhile: never hold a lock no one will release
                os.close(fd)
                return
            self._took(fd)

    def abandon(self) -> None:
        """The caller of `wait()` gives up: release the lock if it came, and never take it after."""
        with self._guard:
            self._abandoned = True
            self.release()

    def note_run_dir(self, run_dir: Path) -> None:
        """Name the run directory in the lock's text (a waiting or skipped launch names it)."""
        if self._fd is not None:
            self._write(f"{self._note}, run dir {run_dir}")

    def _took(self, fd: int) -> None:
        self._fd = fd
        self._note = f"pid {os.getpid()}, since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}"
        self._write(self._note)

    def _write(self, text: str) -> None:
        # Written over the old text, then cut to length: a reader never sees it empty.
        data = text.encode()
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))

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
