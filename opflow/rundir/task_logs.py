"""The end of a task's log: what a failure shows, `opflow show` and the report print.

Read by the coordinator and the commands, and in the worker by worker/output.py
(which writes the log, and reads back the tail of the attempt it wrote), so this
module imports nothing that runs a task.
"""
from __future__ import annotations

__all__ = ["read_tail", "remove_spools", "LOG_TAIL_LINES", "SPOOL_PREFIX"]

import errno
import os
import stat

LOG_TAIL_LINES = 20  # lines of a failed attempt's output kept in its error record
TAIL_BYTES = 16384
#: Names of the workers' scratch files in tasks/ (worker/output.py): not logs until renamed.
SPOOL_PREFIX = ".spool-"


def read_tail(path, lines: int = LOG_TAIL_LINES, since: int = 0) -> str:
    """The last `lines` lines of a file (from offset `since` on), reading at most 16 KiB.

    `path` may be an open descriptor (closed here). A path is opened without following a
    symlink or blocking: a log that is a symlink, a FIFO or not a regular file is an OSError,
    never read (its target may be anyone's file)."""
    if not isinstance(path, int):
        path = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with open(path, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        size = handle.seek(0, os.SEEK_END)
        begin = max(since, size - TAIL_BYTES)
        handle.seek(begin)
        data = handle.read()
    text = data.decode("utf-8", errors="replace")
    if begin > since:
        text = text.partition("\n")[2]  # drop a partial first line
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def remove_spools(tasks_dir_fd: int) -> None:
    """Remove the spools workers left in a run's tasks/ folder (the audit trail, at the end)."""
    try:
        names = os.listdir(tasks_dir_fd)
    except OSError:
        return
    for name in names:
        if name.startswith(SPOOL_PREFIX):
            try:
                os.unlink(name, dir_fd=tasks_dir_fd)
            except OSError:
                pass
