"""How opflow writes files and which it trusts, in one place: files it writes, files it unpickles.

Writing: every file opflow writes is opened without following a final symlink
(O_NOFOLLOW, and O_EXCL for a file that must be new), owner-only (0600). A
symlink planted where opflow writes is refused with `UnsafePathError`, never
written through. A file that must never be seen half written is written to a new
temporary file and renamed over its name (`write_*_atomic`): a crash at any instant
leaves the old version or the new one, and a symlink planted at the name is
replaced, never written through. With `dir_fd` (a descriptor of the run directory),
the name is taken in that directory, so a run dir renamed or replaced by a symlink
mid-run is never written through either.

Reading what `resume` reuses: a run directory and the files in it are trusted
only when they are what this user's own runs make: not symlinks, owned by this
user, writable by no one else. Anything else may hold someone else's pickle,
and unpickling runs code.
"""
from __future__ import annotations

__all__ = ["UnsafePathError", "open_nofollow", "check_private_fd", "check_private_dir", "read_private", "FILE_MODE", "DIR_MODE",
           "write_json_atomic", "write_text_atomic", "write_lines_atomic", "write_bytes_atomic_in", "write_new_file"]

import errno
import itertools
import json
import os
import secrets
import stat
from pathlib import Path

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


def read_private(path, max_bytes: int | None = None) -> bytes:
    """A file's bytes, if it is a regular file of this user's that no one else may
    write (else UnsafePathError); FileNotFoundError if there is none.

    Opened with O_NONBLOCK, and checked (fstat) before a byte is read: a FIFO planted
    at the name is refused at once, never waited on. Over `max_bytes`: UnsafePathError."""
    fd = open_nofollow(path, os.O_RDONLY | os.O_NONBLOCK)
    with open(fd, "rb") as handle:
        check_private_fd(handle.fileno(), path)
        if max_bytes is None:
            return handle.read()
        data = handle.read(max_bytes + 1)  # not the size fstat saw: the file may grow meanwhile
        if len(data) > max_bytes:
            raise UnsafePathError(f"{path}: larger than {max_bytes} bytes; refusing to read it")
        return data


def write_json_atomic(path: Path, document, *, pretty: bool = True, dir_fd: int | None = None) -> None:
    """Write JSON to a temporary file, then rename it into place.

    `pretty=False` for the per-task records: one-shot `json.dumps` without indent
    runs CPython's C encoder, several times faster than the indented one, and
    this runs once per task. With `dir_fd`, `path`'s name is taken in that directory.
    """
    if not pretty:
        write_text_atomic(path, json.dumps(document, allow_nan=False, default=str) + "\n", dir_fd=dir_fd)
        return
    # The indented text is written piece by piece: json.dumps would hold a list of
    # every piece and then the whole text (run.json of 100,000 tasks: ~30 MB at once).
    pieces = json.JSONEncoder(indent=2, allow_nan=False, default=str).iterencode(document)
    write_lines_atomic(path, itertools.chain(pieces, ("\n",)), dir_fd=dir_fd)


_tmp_serial = itertools.count()


def write_text_atomic(path: Path, text: str, *, dir_fd: int | None = None, unguessable: bool = False,
                      mode: int = FILE_MODE) -> None:
    """A new file (O_EXCL, 0600, never through a symlink) renamed over `path`: a symlink
    planted at `path` is replaced, never written through. `unguessable` for a folder others
    may write (`opflow report -o /tmp/x.html`): the temporary name gets a random part, so no
    one can plant it first (O_EXCL would refuse a planted name, never write through it, but
    the write would fail). `mode`: for a file another user's program reads (a metrics file)."""
    write_lines_atomic(path, (text,), dir_fd=dir_fd, unguessable=unguessable, mode=mode)


def write_lines_atomic(path: Path, pieces, *, dir_fd: int | None = None, unguessable: bool = False,
                       mode: int = FILE_MODE) -> None:
    """`write_text_atomic` of the text the strings `pieces` make up, written as they come."""
    if dir_fd is not None:
        path = Path(path.name)
    # One name per write, any thread; in the run directory (ours alone, 0700) pid and serial
    # suffice, and cost no system call per record.
    tag = secrets.token_hex(8) if unguessable else f"{os.getpid()}.{next(_tmp_serial)}"
    tmp = path.with_name(f".{path.name}.{tag}.tmp")
    fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode, dir_fd=dir_fd)
    try:
        try:
            _write_all(fd, pieces)
        finally:
            os.close(fd)
        os.replace(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise


def write_bytes_atomic_in(dir_fd: int, name: str, data: bytes) -> None:
    """`write_text_atomic` of `data` as `name` in the directory `dir_fd`, with plain strings:
    a task's record, once per task on the audit writer's thread, where pathlib's objects
    cost a seventh of its time (py-spy, 2,500 no-op tasks) and every line holds the GIL."""
    tmp = f".{name}.{os.getpid()}.{next(_tmp_serial)}.tmp"
    fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, dir_fd=dir_fd)
    try:
        try:
            _write_bytes(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise


def _write_all(fd: int, pieces, chunk: int = 1 << 16) -> None:
    """The UTF-8 of `pieces` to `fd` with os.write, 64 KB at a time. A task's record
    is one system call: a file object would add three (fstat, isatty, and a
    flush), and each system call hands the GIL to the coordinator's loop and
    waits to get it back (up to 5 ms): the writer fell thousands of records behind."""
    buffered: list[str] = []
    size = 0
    for piece in pieces:
        buffered.append(piece)
        size += len(piece)
        if size >= chunk:
            _write_bytes(fd, "".join(buffered).encode("utf-8"))
            buffered, size = [], 0
    if buffered:
        _write_bytes(fd, "".join(buffered).encode("utf-8"))


def _write_bytes(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_new_file(path: Path, data: bytes) -> None:
    """Create `path` (O_EXCL, 0600, never through a symlink) holding `data`."""
    with open(open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as handle:
        handle.write(data)
