"""Declared outputs read back: where a recorded output is, its digest now, and whether a
recorded result may still be reused for them (the cache, resume and `plan --explain` ask).

A task's record holds `outputs: {file: sha256}` (worker/outputs.py writes them after a
success); a later run reuses that result only while each file is there with that sha256.
"""
from __future__ import annotations

__all__ = ["stale_outputs", "output_path", "file_digest"]

import fnmatch
import hashlib
import os
import stat


def stale_outputs(declared: tuple[str, ...], recorded: dict | None, workflow_dir) -> str | None:
    """Why a cached result cannot be reused for its outputs (None: it can): a declared
    output the earlier run recorded no file for, or a recorded file now missing or changed.
    The one rule for the cache, resume, and what `plan --explain` says."""
    recorded = recorded or {}
    for pattern in declared:
        if not any(shown == pattern or fnmatch.fnmatchcase(shown, pattern) or
                   os.path.normpath(output_path(shown, str(workflow_dir))) ==
                   os.path.normpath(output_path(pattern, str(workflow_dir))) for shown in recorded):
            return f"output {pattern} was not recorded by the earlier run"
    for shown, digest in recorded.items():
        now = file_digest(output_path(shown, str(workflow_dir)))
        if now == "missing":
            return f"output {shown} is missing"
        if now != digest:
            return f"output {shown} changed"
    return None


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
