"""Caching by inputs: reuse a task's result from an earlier run when nothing it depends on changed.

The cache key of a task (sha256, recorded as `cache_key` in its record) covers:
the plugin (its name, and the content of a workers/ file, or the installed
version), the config after templating, the params where the plugin may read
them other than through its config (`Plugin.reads_params`: context["params"], a
shell command's $OPFLOW_PARAM_*; not csv_ingest or metrics), the results of its
direct upstream tasks (the sha256 of each pickled result), and the content of
every file its `inputs:` name (paths or globs, relative to the workflow file).

A hit is the newest earlier run of the same workflow file, in the same log dir,
whose record of this task id succeeded with the same key, and which kept the
pickled result where a downstream task needs it.
"""
from __future__ import annotations

__all__ = ["CacheStore", "CacheHit", "cache_key"]

import glob
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from opflow.rundir.results_log import RESULTS_FILE, read_results


@dataclass
class CacheHit:
    run_dir: str
    result: object  # the JSON rendering recorded
    digest: str  # sha256 of the pickled result
    blob: bytes | None  # the pickled result (None where nothing reads it)


def cache_key(plugin: str, plugin_code: str, config: dict, params: dict, upstream: list[tuple[str, str]],
              inputs: tuple[str, ...], workflow_dir: Path) -> str:
    files = []
    for pattern in inputs:
        full = os.path.join(workflow_dir, os.path.expanduser(pattern))
        matched = sorted(glob.glob(full, recursive=True)) if glob.has_magic(full) else [full]
        for name in matched:
            try:
                with open(name, "rb") as handle:
                    digest = hashlib.file_digest(handle, "sha256").hexdigest() if hasattr(hashlib, "file_digest") \
                        else hashlib.sha256(handle.read()).hexdigest()
            except FileNotFoundError:
                digest = "missing"
            except IsADirectoryError:
                digest = "directory"
            files.append((pattern, os.path.relpath(name, workflow_dir), digest))
    document = {"plugin": plugin, "code": plugin_code, "config": config, "params": params,
                "upstream": upstream, "inputs": files}
    text = json.dumps(document, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CacheStore:
    """Earlier runs of one workflow file under a log dir, searched newest first."""

    def __init__(self, run_dirs: list[Path]):
        self._runs = list(reversed(run_dirs))  # newest first
        self._blobs: dict[Path, dict] = {}

    def lookup(self, task_id: str, key: str, need_blob: bool) -> CacheHit | None:
        for run_dir in self._runs:
            try:
                record = json.loads((run_dir / "tasks" / f"{task_id}.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if record.get("status") != "succeeded" or record.get("cache_key") != key or not record.get("result_sha256"):
                continue
            blob = None
            if need_blob:
                if run_dir not in self._blobs:
                    self._blobs[run_dir] = read_results(str(run_dir / RESULTS_FILE))
                blob = self._blobs[run_dir].get(task_id)
                if blob is None or hashlib.sha256(blob).hexdigest() != record["result_sha256"]:
                    continue
            return CacheHit(str(record.get("reused_from") or run_dir), record.get("result"), record["result_sha256"], blob)
        return None
