"""Pickled task results kept for `resume`: one append-only file per run.

One file, not one per task: creating a file costs far more than appending to one
(0.2 to 0.7 ms against tens of µs on the machines we measured), and a run may have
100,000 tasks. Each record is written under flock on an O_APPEND descriptor, so
records from several worker processes never interleave, even one written in
several calls.

    record = MAGIC, len(task_id), len(blob), crc32 (little-endian u16, u64, u32), task_id, blob

A result whose buffers went to shared memory (shared_results.py) is kept as its
pickle stream and its buffers, written from where they lie, without joining them;
its CRC comes last, since the writer computes it as the parts go out:

    record = PARTS_MAGIC, len(task_id), len(stream), n (u16, u64, u32), n x len(buffer) (u64),
             task_id, stream, buffers, crc32 (u32)

The CRC covers the lengths, the id and the data. A record that fails it (torn by
a crash or a full disk, or damaged later) is skipped and the reader looks for the
next record after it, so one bad record never swallows the ones behind it: its
task simply has no result, and resume reruns it.

A file whose records are unpickled must be trustworthy (pickle runs code):
`read_results` reads only a regular file, not through a symlink, owned by this
user and writable by no one else (see rundir/files.py).
"""
from __future__ import annotations

__all__ = ["append_result", "append_result_parts", "append_result_from_file", "read_results", "parse_records",
           "close_results_logs", "create_results_log", "RESULTS_FILE"]

import fcntl
import os
import pickle
import re
import struct
import zlib

from opflow.rundir.files import open_nofollow, read_private

RESULTS_FILE = "results.pickles"
_MAGIC = b"OPR2"  # OPR1 (no checksum) records are not read: their tasks rerun
_HEADER = struct.Struct("<4sHQI")
_LENGTHS = struct.Struct("<HQ")
_PARTS_MAGIC = b"OPS1"
_PARTS_HEADER = struct.Struct("<4sHQI")
_CRC = struct.Struct("<I")
_ANY_MAGIC = re.compile(re.escape(_MAGIC) + b"|" + re.escape(_PARTS_MAGIC))
_descriptors: dict[str, int] = {}

#: What append_result_from_file copies at a time: the coordinator's memory for it.
COPY_CHUNK = 8 * 1024 * 1024


def create_results_log(path: str) -> None:
    """Create the (empty) log at the start of a run: O_EXCL, so nothing planted there is used."""
    os.close(open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))


def _descriptor(path: str) -> int:
    fd = _descriptors.get(path)
    if fd is None:
        fd = open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)  # owner only; never through a symlink
        _descriptors[path] = fd
    return fd


class _locked:
    """flock on the log for one record: writers in other processes wait their turn."""

    def __init__(self, fd: int):
        self.fd = fd

    def __enter__(self):
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)


def append_result(path: str, task_id: str, blob: bytes) -> None:
    fd = _descriptor(path)
    key = task_id.encode("utf-8")
    lengths = _LENGTHS.pack(len(key), len(blob))
    crc = zlib.crc32(blob, zlib.crc32(key, zlib.crc32(lengths)))
    with _locked(fd):
        _write_all(fd, _HEADER.pack(_MAGIC, len(key), len(blob), crc) + key + blob)


def _parts_header(task_id: str, stream: bytes, lengths: list[int]) -> tuple[bytes, int]:
    """The header of a parts record, and the CRC of what it covers so far."""
    key = task_id.encode("utf-8")
    header = _PARTS_HEADER.pack(_PARTS_MAGIC, len(key), len(stream), len(lengths))
    covered = header[4:] + struct.pack(f"<{len(lengths)}Q", *lengths) + key
    return header + covered[_PARTS_HEADER.size - 4:], zlib.crc32(stream, zlib.crc32(covered))


def append_result_parts(path: str, task_id: str, stream: bytes, buffers: list) -> None:
    """A result as a protocol-5 stream and its out-of-band buffers, written from where they lie."""
    fd = _descriptor(path)
    buffers = [memoryview(b).cast("B") for b in buffers]
    header, crc = _parts_header(task_id, stream, [b.nbytes for b in buffers])
    for buffer in buffers:
        crc = zlib.crc32(buffer, crc)
    parts = [memoryview(header), memoryview(stream), *buffers, memoryview(_CRC.pack(crc))]
    with _locked(fd):  # a huge record may take several writev calls
        while parts:
            written = os.writev(fd, parts[:1024])
            while parts and written >= parts[0].nbytes:
                written -= parts[0].nbytes
                parts.pop(0)
            if written:
                parts[0] = parts[0][written:]


def append_result_from_file(path: str, task_id: str, stream: bytes, source: str, spans: list[tuple[int, int]]) -> None:
    """Like append_result_parts, the buffers read from `source` at `spans` (offset, length) a chunk at a time.

    For the coordinator, keeping a shared result for resume: it never maps the
    whole result, so its memory stays flat however large the result.
    """
    fd = _descriptor(path)
    chunk = bytearray(min(COPY_CHUNK, max((n for _, n in spans), default=1)))
    src = os.open(source, os.O_RDONLY)
    try:
        header, crc = _parts_header(task_id, stream, [n for _, n in spans])
        with _locked(fd):
            _write_all(fd, header + stream)
            view = memoryview(chunk)
            for offset, length in spans:
                done = 0
                while done < length:
                    got = os.preadv(src, [view[:min(len(chunk), length - done)]], offset + done)
                    if got <= 0:
                        raise OSError(f"{source} ended early")
                    crc = zlib.crc32(view[:got], crc)
                    _write_all(fd, view[:got])
                    done += got
            _write_all(fd, _CRC.pack(crc))
    finally:
        os.close(src)


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:  # a regular file takes it in one write; loop only for a short write
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
    """task_id -> the last intact blob recorded for it.

    Raises `UsageError` for a file that is not safe to unpickle (see rundir/files.py).
    """
    try:
        return parse_records(read_private(path))
    except FileNotFoundError:
        return {}


def parse_records(data: bytes) -> dict[str, bytes]:
    results: dict[str, bytes] = {}
    offset = 0
    while offset + _HEADER.size <= len(data):
        magic = data[offset:offset + 4]
        parse = _parse_blob if magic == _MAGIC else _parse_parts if magic == _PARTS_MAGIC else None
        end = parse(data, offset, results) if parse is not None else None
        if end is not None:
            offset = end
            continue
        # Damage: resynchronise on the next record after this one.
        found = _ANY_MAGIC.search(data, offset + 1)
        if found is None:
            break
        offset = found.start()
    return results


def _parse_blob(data: bytes, offset: int, results: dict) -> int | None:
    """One blob record into `results`; the next offset, or None if it is torn or damaged."""
    _, key_len, blob_len, crc = _HEADER.unpack_from(data, offset)
    start = offset + _HEADER.size
    end = start + key_len + blob_len
    if end > len(data):
        return None
    key = data[start:start + key_len]
    blob = data[start + key_len:end]
    if zlib.crc32(blob, zlib.crc32(key, zlib.crc32(_LENGTHS.pack(key_len, blob_len)))) != crc:
        return None
    try:
        results[key.decode("utf-8")] = blob
    except UnicodeDecodeError:  # a CRC collision on garbage: treat as damage
        return None
    return end


def _parse_parts(data: bytes, offset: int, results: dict) -> int | None:
    """One parts record into `results` as an ordinary pickle; the next offset, or None if torn or damaged."""
    if offset + _PARTS_HEADER.size > len(data):
        return None
    _, key_len, stream_len, count = _PARTS_HEADER.unpack_from(data, offset)
    start = offset + _PARTS_HEADER.size
    if start + 8 * count > len(data):
        return None
    lengths = struct.unpack_from(f"<{count}Q", data, start)
    body = start + 8 * count
    end = body + key_len + stream_len + sum(lengths)
    if end + _CRC.size > len(data):
        return None
    view = memoryview(data)
    crc = zlib.crc32(view[offset + 4:end])
    if crc != _CRC.unpack_from(data, end)[0]:
        return None
    try:
        key = data[body:body + key_len].decode("utf-8")
    except UnicodeDecodeError:
        return None
    start = body + key_len
    stream = view[start:start + stream_len]
    start += stream_len
    buffers = []
    for length in lengths:
        buffers.append(view[start:start + length])
        start += length
    # An ordinary pickle that rebuilds the value where it is loaded (a worker),
    # so that the coordinator never needs the classes of the user's result.
    results[key] = pickle.dumps(_Parts(bytes(stream), [bytes(b) for b in buffers]), pickle.HIGHEST_PROTOCOL)
    return end + _CRC.size


class _Parts:
    def __init__(self, stream: bytes, buffers: list):
        self.stream, self.buffers = stream, buffers

    def __reduce__(self):
        return _loads_parts, (self.stream, self.buffers)


def _loads_parts(stream: bytes, buffers: list):
    return pickle.loads(stream, buffers=buffers)
