"""A task's declared `outputs:` once it succeeded: each file's sha256, and which are missing.

Paths and globs are relative to the workflow file's folder (or absolute); a record
names each file as it was matched: relative to that folder where the pattern was.
rundir/outputs.py reads them back (the cache, resume).
"""
from __future__ import annotations

__all__ = ["output_digests"]

import glob
import os

from opflow.rundir.outputs import file_digest, output_path


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
