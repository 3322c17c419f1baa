"""A task's declared `outputs:` once it succeeded: each file's sha256, and which are missing.

Paths and globs are relative to the workflow file's folder (or absolute); a record
names each file as it was matched: relative to that folder where the pattern was.
The cache (dispatch/cache.py `stale_outputs`) reads the same digests back.
"""
from __future__ import annotations

__all__ = ["output_digests", "output_path", "file_digest"]

import glob
import hashlib
import os
import stat


def output_digests(patterns: tuple[str, ...], workflow_dir: str) -> tuple[dict[str, str], list[str]]:
    """(file as recorded -> its sha256, the patterns that name no file)."""
    found: dict[str, str] = {}
    missing: list[str] = []
    for pattern in patterns:
        full = output_path(pattern, workflow_dir)
        names = sorted(glob.glob(full, recursive=True)) if glob.has_magic(full) else [full]
        names = [n for n in names if os.path.lexists(n)]
        if not names:
            missing.append(pattern)
            continue
        for name in names:
            shown = name if os.path.isabs(os.path.expanduser(pattern)) else os.path.relpath(name, workflow_dir)
            found[shown] = file_digest(name)
    return found, missing


def output_path(shown: str, workflow_dir: str) -> str:
    """Where a recorded (or declared) output is: relative ones under the workflow's folder."""
    return os.path.join(workflow_dir, os.path.expanduser(shown))


def file_digest(name: str) -> str:
    """sha256 of a regular file's content; its kind for anything else. Never blocks: O_NONBLOCK,
    and the kind checked (fstat) before a byte is read, so a FIFO is named, not waited on."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    with open(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            return "directory"
        if not stat.S_ISREG(mode):
            return f"not a regular file (mode {stat.S_IFMT(mode):o})"
        try:
            return hashlib.file_digest(handle, "sha256").hexdigest() if hasattr(hashlib, "file_digest") \
                else hashlib.sha256(handle.read()).hexdigest()
        except OSError as exc:
            return f"unreadable: {exc.strerror}"
