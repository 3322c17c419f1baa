"""`scope: machine` limits: N lock files per name, in one folder per user, each held with
`fcntl.flock` by the coordinator for a task's run.

No daemon, and no stale hold: the kernel drops a flock when its holder's last descriptor
closes, however it exits (SIGKILL included), as the workflow lock does (lock.py). Every
opflow run of this uid on the machine meets in the same folder, whatever its HOME or log
dir: /tmp/opflow-limits-<uid> (not $TMPDIR, nor $XDG_RUNTIME_DIR, which differ between a
login and cron), or OPFLOW_LIMITS_DIR. The folder is made 0700 and trusted only if it is a
real directory of ours that no one else may write; the files are opened without
following a symlink, and checked to be our regular files.
"""
from __future__ import annotations

__all__ = ["limits_dir", "limits_dir_checked", "try_hold", "release"]

import errno
import fcntl
import os
from pathlib import Path

from opflow import knobs
from opflow.rundir.files import DIR_MODE, UnsafePathError, check_private_dir, check_private_fd, open_nofollow


def limits_dir() -> Path:
    chosen = knobs.read("OPFLOW_LIMITS_DIR")
    return Path(chosen) if chosen else Path("/tmp") / f"opflow-limits-{os.geteuid()}"


def limits_dir_checked() -> Path:
    """The folder, made if need be and checked (UnsafePathError, exit 2, where it cannot be trusted)."""
    return _folder()


def _folder() -> Path:
    folder = limits_dir()
    try:
        os.mkdir(folder, DIR_MODE)
    except FileExistsError:
        pass
    if folder.is_symlink():
        raise UnsafePathError(f"{folder}: is a symlink; machine-scope limits keep their locks only in a real directory")
    check_private_dir(folder)  # another user's, or writable by others: refused
    return folder


def try_hold(name: str, count: int) -> int | None:
    """One of `count` slots of limit `name`, if one is free now: its open descriptor
    (the hold, until `release`), else None. Never blocks."""
    folder = _folder()
    for i in range(count):
        fd = open_nofollow(folder / f"{name}.{i}.lock", os.O_RDWR | os.O_CREAT)
        try:
            check_private_fd(fd, folder / f"{name}.{i}.lock")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                continue  # another holder: the next slot
            raise
        except BaseException:
            os.close(fd)
            raise
        return fd
    return None


def release(fd: int) -> None:
    os.close(fd)  # closing drops the flock
