"""Room kept for the last word: a run directory's reserve against a full disk.

When the log dir's disk fills mid-run, the journal and the task records can no
longer be written, and neither could the final run.json that says so. The run
directory therefore holds a small reserve file from the start; when a write
fails for lack of space, the reserve is freed and the final run.json (status
failed, with the reason) is written into the room it leaves.
"""
from __future__ import annotations

__all__ = ["SpaceReserve", "reserve_size"]

import os
from pathlib import Path

RESERVE_NAME = ".reserve"
BASE_BYTES = 256 * 1024
PER_TASK_BYTES = 128  # run.json lists every task's status


def reserve_size(task_count: int) -> int:
    return BASE_BYTES + PER_TASK_BYTES * task_count


class SpaceReserve:
    def __init__(self, run_dir: Path, size: int):
        self.path = run_dir / RESERVE_NAME
        self.held = False
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError:
            return  # no reserve: the run goes on, with a worse record if the disk fills
        try:
            try:
                os.posix_fallocate(fd, 0, size)
            except (AttributeError, OSError):
                os.write(fd, b"\0" * size)  # where fallocate is not supported: real blocks
            self.held = True
        except OSError:
            pass
        finally:
            os.close(fd)
        if not self.held:
            self.release()

    def release(self) -> None:
        """Free the room (on a full disk, or once the run is recorded)."""
        try:
            os.unlink(self.path)
        except OSError:
            pass
        self.held = False
