"""What opflow trusts on disk, in one place: files it writes, files it unpickles.

Writing: every file opflow writes is opened without following a final symlink
(O_NOFOLLOW, and O_EXCL for a file that must be new), owner-only (0600). A
symlink planted where opflow writes is refused with `UnsafePathError`, never
written through.

Reading what `resume` reuses: a run directory and the files in it are trusted
only when they are what this user's own runs make: not symlinks, owned by this
user, writable by no one else. Anything else may hold someone else's pickle,
and unpickling runs code.
"""
from __future__ import annotations

__all__ = ["UnsafePathError", "open_nofollow", "check_private_fd", "check_private_dir", "read_private", "FILE_MODE", "DIR_MODE"]

import errno
import os
import stat

from opflow.errors import UsageError

FILE_MODE = 0o600  # run records hold params (tokens...) and pickles: owner only
DIR_MODE = 0o700


class UnsafePathError(UsageError):
    """A path opflow would write or trust is a symlink, or not the user's own."""


def open_nofollow(path, flags: int, mode: int = FILE_MODE, *, dir_fd: int | None = None) -> int:
    """os.open that refuses a symlink at the final component, with a clear error."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (exc.errno == errno.EEXIST and _is_symlink(path, dir_fd)):
            raise UnsafePathError(f"{path}: is a symlink; opflow does not write through symlinks") from None
        raise


def _is_symlink(path, dir_fd) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def check_private_fd(fd: int, path) -> None:
    """Refuse an open file that is not a regular file of ours that only we may write."""
    _check(os.fstat(fd), path, stat.S_ISREG, "a regular file")


def check_private_dir(path) -> None:
    """Refuse a run directory that is a symlink, not ours, or writable by others."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such directory") from None
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePathError(f"{path}: is a symlink; resume trusts only a real run directory")
    _check(info, path, stat.S_ISDIR, "a directory")


def _check(info: os.stat_result, path, kind, kind_name: str) -> None:
    if not kind(info.st_mode):
        raise UnsafePathError(f"{path}: not {kind_name}; refusing to trust it")
    if info.st_uid != os.geteuid():
        raise UnsafePathError(f"{path}: owned by uid {info.st_uid}, not by you (uid {os.geteuid()}); "
                              "refusing to trust it")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafePathError(f"{path}: writable by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
                              "refusing to trust it")


def read_private(path) -> bytes:
    """A file's bytes, if it is a regular file of this user's that no one else may
    write (else UnsafePathError); FileNotFoundError if there is none."""
    fd = open_nofollow(path, os.O_RDONLY)
    with open(fd, "rb") as handle:
        check_private_fd(handle.fileno(), path)
        return handle.read()
