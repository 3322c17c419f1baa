"""Large results in shared memory: published once, mapped by each reader, never copied.

Process backend only. A result whose pickle (protocol 5) carries large
out-of-band buffers (the arrays of a numpy array or a pandas DataFrame) is
written once, by the worker that made it, into one file in shared memory
(/dev/shm, a tmpfs). What travels through the usual channels (the outcome, the
readers' requests, the Manager store) is a small `SharedRef`: the pickle stream
and where each buffer lies in that file. A reader maps the file and unpickles
a frame whose arrays point into the mapping.

    worker: pickle.dumps(value, 5, buffer_callback) ─▶ stream + buffers
            buffers ─▶ /dev/shm/opflow-<coordinator pid>-<random>-<worker pid>-<n> (O_EXCL, 0600)
            pickle(SharedRef(path, stream, spans)) ─▶ outcome.blob / store (small)
    reader: SharedRef.load() ─▶ mmap(ACCESS_COPY) ─▶ pickle.loads(stream, buffers=views)

Copy-on-write: the mapping is private (MAP_PRIVATE). Reading shares the pages
with every other reader; a reader that writes to its frame gets its own copy of
the pages it writes (the kernel's copy-on-write), so no other task ever sees
the change, and nothing fails.

Ownership: every file of a run starts with the run's prefix, so the run can
find them all. The coordinator's backend unlinks a result's file when no
remaining task reads it, sweeps the prefix at the end of the run, and removes
a dead worker's unfinished files; a coordinator killed outright is covered by
the helpers' parent watches (see `procs.start_parent_watch`), and the next run
sweeps files whose coordinator is gone.
"""
from __future__ import annotations

__all__ = ["SharedRef", "new_prefix", "shm_dir", "free_bytes", "dumps_out_of_band", "publish", "load_result",
           "remove", "sweep", "sweep_stale", "forget_own_files"]

import mmap
import os
import pickle
import secrets
import threading

import psutil

from opflow import knobs

#: A buffer at least this large goes out of band (smaller ones stay in the stream).
BUFFER_MIN_BYTES = 64 * 1024
#: Shared memory only for results whose out-of-band buffers total at least this:
#: below it the ordinary pickle costs less than creating and mapping a file.
SHARED_MIN_BYTES = 1024 * 1024
#: Buffers start on this boundary in the file (what numpy's SIMD loops like).
ALIGN = 64
#: Leave this much of /dev/shm free for everyone else.
HEADROOM_BYTES = 64 * 1024 * 1024
NAME_START = "opflow-"

_lock = threading.Lock()
_counter = 0
#: The file this process is writing, if any: removed if the process is told to
#: die (its parent watch, SIGTERM) in the middle of a publish.
_own_files: set[str] = set()


def shm_dir() -> str:
    """Where shared results live: OPFLOW_SHM_DIR (tests), else /dev/shm."""
    return knobs.read("OPFLOW_SHM_DIR") or "/dev/shm"


def new_prefix() -> str | None:
    """A prefix unique to this run (None where there is no usable shared-memory folder)."""
    directory = shm_dir()
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK | os.X_OK):
        return None
    return os.path.join(directory, f"{NAME_START}{os.getpid()}-{secrets.token_hex(4)}-")


def free_bytes(directory: str) -> int:
    """Free shared memory, less a headroom; OPFLOW_SHM_LIMIT (bytes) caps it (tests)."""
    try:
        stat = os.statvfs(directory)
        free = stat.f_bavail * stat.f_frsize - HEADROOM_BYTES
    except OSError:
        return 0
    limit = knobs.read("OPFLOW_SHM_LIMIT")  # a bad value is refused before the run starts (knobs.check)
    if limit is not None:
        free = min(free, limit)
    return max(0, free)


class SharedRef:
    """The small part of a shared result: its pickle stream and where its buffers lie."""

    __slots__ = ("path", "stream", "spans", "size")

    def __init__(self, path: str, stream: bytes, spans: list[tuple[int, int]], size: int):
        self.path, self.stream, self.spans, self.size = path, stream, spans, size

    def __reduce__(self):
        return SharedRef, (self.path, self.stream, self.spans, self.size)

    def load(self):
        """The value, its buffers mapped copy-on-write from the file (no copy made here)."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            mapping = mmap.mmap(fd, self.size, access=mmap.ACCESS_COPY)
        finally:
            os.close(fd)  # the mapping keeps the pages; the file may be unlinked from now on
        view = memoryview(mapping)
        return pickle.loads(self.stream, buffers=[view[offset:offset + length] for offset, length in self.spans])


def load_result(blob: bytes):
    """Unpickle a published result, mapping it if it lies in shared memory."""
    value = pickle.loads(blob)
    return value.load() if type(value) is SharedRef else value


def dumps_out_of_band(value) -> tuple[bytes, list]:
    """Pickle `value`; buffers of BUFFER_MIN_BYTES or more come back apart (PickleBuffers).

    With no large buffer, the stream is the ordinary in-band pickle.
    """
    buffers: list = []

    def take(buffer: pickle.PickleBuffer):
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: in band
            return True
        if raw.nbytes < BUFFER_MIN_BYTES:
            return True
        buffers.append(raw)
        return None  # out of band

    stream = pickle.dumps(value, protocol=5, buffer_callback=take)
    return stream, buffers


def publish(prefix: str, stream: bytes, buffers: list) -> tuple[SharedRef | None, str | None]:
    """Write `buffers` into one new file under `prefix`: (ref, None), or (None, why not).

    Never raises for lack of room: a result that does not fit goes the ordinary way.
    """
    spans, offset = [], 0
    for raw in buffers:
        offset = -(-offset // ALIGN) * ALIGN
        spans.append((offset, raw.nbytes))
        offset += raw.nbytes
    size = max(offset, 1)
    directory = os.path.dirname(prefix)
    free = free_bytes(directory)
    if size > free:
        return None, f"{_mb(size)} of buffers is more than the free shared memory ({_mb(free)} in {directory})"
    global _counter
    with _lock:
        _counter += 1
        path = f"{prefix}{os.getpid()}-{_counter}"
        _own_files.add(path)  # before it exists: a watch that fires now removes it
    fd = None
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)  # owner only; never an existing file
        # Written, never mapped for writing: a full /dev/shm is an ENOSPC from pwrite
        # (caught below), never a SIGBUS. No fallocate: it would zero every page first.
        for (start, length), raw in zip(spans, buffers):
            view = raw.cast("B") if raw.format != "B" else raw
            done = 0
            while done < length:
                done += os.pwrite(fd, view[done:done + (1 << 30)], start + done)
    except OSError as exc:
        _discard(path)
        return None, f"{_mb(size)} of buffers could not go into shared memory ({exc.strerror or exc})"
    finally:
        if fd is not None:
            os.close(fd)
    with _lock:
        _own_files.discard(path)  # complete: the run's now (its outcome says where it is)
    return SharedRef(path, stream, spans, size), None


def forget_own_files() -> None:
    """Remove a file this process is still writing (it is being stopped, or orphaned)."""
    with _lock:
        paths = list(_own_files)
        _own_files.clear()
    for path in paths:
        remove(path)


def _discard(path: str) -> None:
    remove(path)
    with _lock:
        _own_files.discard(path)


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        pass


def sweep(prefix: str, keep: set[str] | frozenset = frozenset()) -> list[str]:
    """Remove every file whose path starts with `prefix` (but those in `keep`)."""
    directory, start = os.path.split(prefix)
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if name.startswith(start):
            path = os.path.join(directory, name)
            if path not in keep:
                remove(path)
                removed.append(path)
    return removed


def sweep_stale(directory: str | None = None) -> list[str]:
    """Remove shared results of runs whose coordinator is gone (killed before it could clean up)."""
    directory = directory or shm_dir()
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(NAME_START):
            continue
        pid = name[len(NAME_START):].split("-", 1)[0]
        if not pid.isdigit() or _coordinator_alive(int(pid)):
            continue
        path = os.path.join(directory, name)
        try:
            if os.stat(path).st_uid != os.getuid():  # only our own
                continue
        except OSError:
            continue
        remove(path)
        removed.append(path)
    return removed


def _coordinator_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
