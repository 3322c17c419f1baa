"""Caching by inputs: reuse a task's result from an earlier run when nothing it depends on changed.

The cache key of a task (sha256, recorded as `cache_key` in its record) covers:
  - the code it runs: the plugin (its name, and the content of a workers/ file, or the
    installed version), opflow's version, and for a `python` task the content of its
    function's module where that is a .py beside the workflow (plugins/python_call.py's
    rule); an installed module counts by its name and opflow's version only;
  - the config after templating, and the params where the plugin may read them other than
    through its config (`Plugin.reads_params`: context["params"], a shell command's
    $OPFLOW_PARAM_*; not csv_ingest or metrics);
  - the results of its direct upstream tasks (the sha256 of each pickled result);
  - the content of every file its `inputs:` name (paths or globs, relative to the workflow
    file). A directory counts by every file under it, recursively: each one's path and
    content (a directory is how one names a data folder, so a validate error would refuse a
    natural spelling; a constant, as before, served stale results). Symlinked folders are
    not followed (their target is hashed as a name). Contents, never sizes or mtimes: an edit
    that keeps both still changes the key. Past `MAX_INPUT_FILES` files under one name the
    key is new on every run: such a task never reuses, rather than reuse on a partial hash.
    A FIFO or other non-regular file counts as its kind, never opened for reading.

A secret (opflow/masking.py) is in the key by its sha256, never its value: the caller
passes the config and params `Masker.keyed`.

A hit whose record lists `outputs` is reused only while each of those files is there with
its recorded sha256 (`stale_outputs`, rundir/outputs.py: the rule resume and `plan
--explain` use too); else the task runs, and its record's `reason` says why.

A hit is the newest earlier run of the same workflow file, in the same log dir, that
resume would trust (rundir/layout.py `trusted_runs_of_file`: a real directory, this user's,
writable by no one else), whose record of this task id (read as resume reads: no symlink,
a regular file of this user's, never blocking) succeeded with the same key, and which kept
the pickled result where a downstream task needs it, in a results.pickles it trusts. An
earlier run it cannot trust or read is a miss, never an error: a run dir another user
planted in a shared log dir serves nothing, and a damaged one never ends a later run.
"""
from __future__ import annotations

__all__ = ["CacheStore", "CacheHit", "cache_key", "open_cache", "stale_outputs", "MAX_INPUT_FILES"]

import glob
import hashlib
import json
import os
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

from opflow._version import __version__
from opflow.errors import UsageError
from opflow.rundir.layout import read_trusted_task_record, trusted_runs_of_file
from opflow.rundir.results_log import RESULTS_FILE, read_results
# stale_outputs: the rule for declared outputs, the cache's as resume's (and plan --explain's).
from opflow.rundir.outputs import file_digest as _file_digest, stale_outputs

#: Files hashed under one `inputs:` name (a directory, a glob) before the key gives up on reuse.
MAX_INPUT_FILES = 100_000


@dataclass
class CacheHit:
    run_dir: str
    result: object  # the JSON rendering recorded
    digest: str  # sha256 of the pickled result
    blob: bytes | None  # the pickled result (None where nothing reads it)
    outputs: dict | None = None  # the record's `outputs` (file -> sha256)


def cache_key(plugin: str, plugin_code: str, config: dict, params: dict, upstream: list[tuple[str, str]],
              inputs: tuple[str, ...], workflow_dir: Path) -> str:
    files = []
    for pattern in inputs:
        full = os.path.join(workflow_dir, os.path.expanduser(pattern))
        matched = sorted(glob.glob(full, recursive=True)) if glob.has_magic(full) else [full]
        budget, seen = [MAX_INPUT_FILES], set()
        for name in matched:
            for path, digest in _digests(name, budget, seen):
                files.append((pattern, os.path.relpath(path, workflow_dir), digest))
    document = {"plugin": plugin, "code": plugin_code, "opflow": __version__,
                "module": _module_digest(plugin, config, workflow_dir),
                "config": config, "params": params, "upstream": upstream, "inputs": files}
    text = json.dumps(document, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _module_digest(plugin: str, config: dict, workflow_dir: Path) -> str | None:
    """The content hash of a python task's module, where it is a .py beside the workflow."""
    if plugin != "python":  # (a workers/ plugin named python: one more file in its key, never a stale hit)
        return None
    function = config.get("function") if isinstance(config, dict) else None
    if not isinstance(function, str) or ":" not in function:
        return None
    from opflow.plugins.python_call import local_module_file

    module_name = function.partition(":")[0]
    local = local_module_file(workflow_dir, module_name)
    digest = _file_digest(str(local))
    return f"installed:{module_name}" if digest == "missing" else digest


def _digests(name: str, budget: list[int], seen: set):
    """(path, digest) for a file, or for each file under a directory (sorted, recursive,
    symlinked folders not followed), at most budget[0] files in all, none in `seen` (a `**`
    glob matches a folder and the files under it) twice."""
    if name in seen:
        return
    seen.add(name)
    try:
        is_dir = stat.S_ISDIR(os.stat(name).st_mode)
    except OSError:
        is_dir = False
    if not is_dir:
        budget[0] -= 1
        yield name, _file_digest(name) if budget[0] >= 0 else f"too many files: {uuid.uuid4()}"
        return
    yield name, "directory"
    for root, dirs, names in os.walk(name, followlinks=False):
        dirs.sort()
        for entry in sorted(names):
            path = os.path.join(root, entry)
            if path in seen:
                continue
            seen.add(path)
            budget[0] -= 1
            if budget[0] < 0:  # a key no earlier run can have: never reused on a partial hash
                yield path, f"too many files: {uuid.uuid4()}"
                return
            yield path, _file_digest(path)
        for entry in dirs:
            path = os.path.join(root, entry)
            if os.path.islink(path):
                yield path, f"symlink to {os.readlink(path)}"


def open_cache(log_dir: Path, workflow) -> CacheStore:
    """The cache of earlier runs of `workflow` under log_dir: only run dirs resume would trust.
    Lists and checks every run dir: call it off the event loop."""
    return CacheStore(trusted_runs_of_file(Path(log_dir), workflow))


class CacheStore:
    """Earlier runs of one workflow file under a log dir, searched newest first.

    `run_dirs` must be trusted already (`trusted_runs_of_file`); their files are still
    read as resume reads them, each on its own (a record or results.pickles it cannot
    trust or read is a miss in that run, and the search goes on to an older one)."""

    def __init__(self, run_dirs: list[Path]):
        self._runs = list(reversed(run_dirs))  # newest first
        self._blobs: dict[Path, dict] = {}

    def lookup(self, task_id: str, key: str, need_blob: bool) -> CacheHit | None:
        for run_dir in self._runs:
            record = read_trusted_task_record(run_dir, task_id)
            if record is None or record.get("status") != "succeeded" or record.get("cache_key") != key:
                continue
            digest = record.get("result_sha256")
            if not isinstance(digest, str) or not digest:
                continue
            blob = None
            if need_blob:
                blob = self._results(run_dir).get(task_id)
                if blob is None or hashlib.sha256(blob).hexdigest() != digest:
                    continue
            source = record.get("reused_from")
            outputs = record.get("outputs")
            return CacheHit(str(source) if isinstance(source, str) and source else str(run_dir),
                            record.get("result"), digest, blob, outputs if isinstance(outputs, dict) else None)
        return None

    def _results(self, run_dir: Path) -> dict[str, bytes]:
        if run_dir not in self._blobs:
            try:
                self._blobs[run_dir] = read_results(str(run_dir / RESULTS_FILE))
            except (UsageError, OSError):  # not ours alone, or unreadable: nothing in it is reused
                self._blobs[run_dir] = {}
        return self._blobs[run_dir]
