"""Pickled task results kept for `resume`: one append-only file per run.

One file, not one per task: creating a file costs far more than appending to one
(0.2 to 0.7 ms against tens of µs on the machines we measured), and a run may have
100,000 tasks. Each record is a single `os.write` on an O_APPEND descriptor, so
records from several worker processes never interleave; a record cut short by a
crash fails its length check and is ignored on reading.

    record = MAGIC, len(task_id), len(blob) (little-endian u16, u64), task_id, blob

A result whose buffers went to shared memory (shared_results.py) is kept as its
pickle stream and its buffers, written from where they lie, without joining them:

    record = MAGIC2, len(task_id), len(stream), n (u16, u64, u32), n x len(buffer) (u64), task_id, stream, buffers
"""
from __future__ import annotations

__all__ = ["append_result", "append_result_parts", "append_result_from_file", "read_results", "close_results_logs", "RESULTS_FILE"]

import fcntl
import os
import struct

RESULTS_FILE = "results.pickles"
_MAGIC = b"OPR1"
_HEADER = struct.Struct("<4sHQ")
_MAGIC2 = b"OPR2"
_HEADER2 = struct.Struct("<4sHQI")
_descriptors: dict[str, int] = {}


def _descriptor(path: str) -> int:
    fd = _descriptors.get(path)
    if fd is None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # owner only
        _descriptors[path] = fd
    return fd


def append_result(path: str, task_id: str, blob: bytes) -> None:
    fd = _descriptor(path)
    key = task_id.encode("utf-8")
    record = _HEADER.pack(_MAGIC, len(key), len(blob)) + key + blob
    view = memoryview(record)
    with _locked(fd):  # a large record may be written in several calls (below): never between them
        while view:  # a regular file takes it in one write; loop only for a short write
            written = os.write(fd, view)
            view = view[written:]


class _locked:
    """flock on the log for one record: writers in other processes wait their turn."""

    def __init__(self, fd: int):
        self.fd = fd

    def __enter__(self):
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)


def _parts_header(task_id: str, stream: bytes, lengths: list[int]) -> bytes:
    key = task_id.encode("utf-8")
    return (_HEADER2.pack(_MAGIC2, len(key), len(stream), len(lengths)) + struct.pack(f"<{len(lengths)}Q", *lengths)
            + key)


def append_result_parts(path: str, task_id: str, stream: bytes, buffers: list) -> None:
    """A result as a protocol-5 stream and its out-of-band buffers, written from where they lie."""
    fd = _descriptor(path)
    buffers = [memoryview(b).cast("B") for b in buffers]
    parts = [memoryview(_parts_header(task_id, stream, [b.nbytes for b in buffers])), memoryview(stream), *buffers]
    with _locked(fd):  # a huge record may take several writev calls
        while parts:
            written = os.writev(fd, parts[:1024])
            while parts and written >= parts[0].nbytes:
                written -= parts[0].nbytes
                parts.pop(0)
            if written:
                parts[0] = parts[0][written:]


#: What append_result_from_file copies at a time: the coordinator's memory for it.
COPY_CHUNK = 8 * 1024 * 1024


def append_result_from_file(path: str, task_id: str, stream: bytes, source: str, spans: list[tuple[int, int]]) -> None:
    """Like append_result_parts, the buffers read from `source` at `spans` (offset, length) a chunk at a time.

    For the coordinator, keeping a shared result for resume: it never maps the
    whole result, so its memory stays flat however large the result.
    """
    fd = _descriptor(path)
    chunk = bytearray(min(COPY_CHUNK, max((n for _, n in spans), default=1)))
    src = os.open(source, os.O_RDONLY)
    try:
        with _locked(fd):
            _write_all(fd, _parts_header(task_id, stream, [n for _, n in spans]) + stream)
            view = memoryview(chunk)
            for offset, length in spans:
                done = 0
                while done < length:
                    got = os.preadv(src, [view[:min(len(chunk), length - done)]], offset + done)
                    if got <= 0:
                        raise OSError(f"{source} ended early")
                    _write_all(fd, view[:got])
                    done += got
    finally:
        os.close(src)


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def close_results_logs() -> None:
    """Close this process's descriptors (the coordinator, at the end of a run)."""
    while _descriptors:
        _, fd = _descriptors.popitem()
        try:
            os.close(fd)
        except OSError:
            pass


def read_results(path: str) -> dict[str, bytes]:
    """task_id -> the last complete blob recorded for it."""
    results: dict[str, bytes] = {}
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return results
    offset = 0
    while offset + _HEADER.size <= len(data):
        if data[offset:offset + 4] == _MAGIC2:
            offset = _read_parts(data, offset, results)
            if offset is None:
                break
            continue
        magic, key_len, blob_len = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        end = start + key_len + blob_len
        if magic != _MAGIC or end > len(data):
            break  # a torn record at the end (a crash mid-write): ignore it and what follows
        results[data[start:start + key_len].decode("utf-8")] = data[start + key_len:end]
        offset = end
    return results


def _read_parts(data: bytes, offset: int, results: dict) -> int | None:
    """One MAGIC2 record into `results` as an ordinary pickle; the next offset, or None if torn."""
    import pickle

    if offset + _HEADER2.size > len(data):
        return None
    _, key_len, stream_len, count = _HEADER2.unpack_from(data, offset)
    start = offset + _HEADER2.size
    if start + 8 * count > len(data):
        return None
    lengths = struct.unpack_from(f"<{count}Q", data, start)
    start += 8 * count
    end = start + key_len + stream_len + sum(lengths)
    if end > len(data):
        return None
    view = memoryview(data)
    key = data[start:start + key_len].decode("utf-8")
    start += key_len
    stream = view[start:start + stream_len]
    start += stream_len
    buffers = []
    for length in lengths:
        buffers.append(view[start:start + length])
        start += length
    # An ordinary pickle that rebuilds the value where it is loaded (a worker),
    # so that the coordinator never needs the classes of the user's result.
    results[key] = pickle.dumps(_Parts(bytes(stream), [bytes(b) for b in buffers]), pickle.HIGHEST_PROTOCOL)
    return end


class _Parts:
    def __init__(self, stream: bytes, buffers: list):
        self.stream, self.buffers = stream, buffers

    def __reduce__(self):
        return _loads_parts, (self.stream, self.buffers)


def _loads_parts(stream: bytes, buffers: list):
    import pickle

    return pickle.loads(stream, buffers=buffers)
