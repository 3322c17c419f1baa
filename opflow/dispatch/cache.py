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

A hit is the newest earlier run of the same workflow file, in the same log dir, that
resume would trust (rundir/layout.py `trusted_runs_of_file`: a real directory, this user's,
writable by no one else), whose record of this task id (read as resume reads: no symlink,
a regular file of this user's, never blocking) succeeded with the same key, and which kept
the pickled result where a downstream task needs it, in a results.pickles it trusts. An
earlier run it cannot trust or read is a miss, never an error: a run dir another user
planted in a shared log dir serves nothing, and a damaged one never ends a later run.
"""
from __future__ import annotations

__all__ = ["CacheStore", "CacheHit", "CacheVerdict", "cache_document", "task_cache_document", "cache_key",
           "cache_parts", "open_cache", "MAX_INPUT_FILES", "NO_EARLIER_RESULT"]

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

#: Files hashed under one `inputs:` name (a directory, a glob) before the key gives up on reuse.
MAX_INPUT_FILES = 100_000

#: Why a task with no earlier success to compare with runs.
NO_EARLIER_RESULT = "no earlier result"


@dataclass
class CacheHit:
    run_dir: str
    result: object  # the JSON rendering recorded
    digest: str  # sha256 of the pickled result
    blob: bytes | None  # the pickled result (None where nothing reads it)


@dataclass
class CacheVerdict:
    """What `CacheStore.lookup` decided: a hit, or None and why not (the run's record
    says it as `cache_miss`, `opflow plan --explain` says it before a run)."""
    hit: CacheHit | None
    reason: str


def cache_document(plugin: str, plugin_code: str, config: dict, params: dict, upstream: list[tuple[str, str | None]],
                   inputs: tuple[str, ...], workflow_dir: Path) -> dict:
    """Everything the cache key covers, as one document (`cache_key` hashes it). An
    upstream digest None: not known yet (`opflow plan --explain`, that upstream runs first)."""
    files = []
    for pattern in inputs:
        full = os.path.join(workflow_dir, os.path.expanduser(pattern))
        matched = sorted(glob.glob(full, recursive=True)) if glob.has_magic(full) else [full]
        budget, seen = [MAX_INPUT_FILES], set()
        for name in matched:
            for path, digest in _digests(name, budget, seen):
                files.append((pattern, os.path.relpath(path, workflow_dir), digest))
    return {"plugin": plugin, "code": plugin_code, "opflow": __version__,
            "module": _module_digest(plugin, config, workflow_dir),
            "config": config, "params": params, "upstream": upstream, "inputs": files}


def task_cache_document(spec, ref, workflow, upstream: list[tuple[str, str | None]]) -> dict:
    """The cache document of task `spec` (plugin `ref`) of `workflow`, its direct upstream
    results' digests given: the one place that says which params and code count."""
    from opflow.plugins import plugin_reads_params, plugin_source_digest

    params = workflow.params if plugin_reads_params(ref) else None
    return cache_document(spec.plugin, plugin_source_digest(ref), spec.config, params, upstream, spec.inputs,
                          workflow.directory)


def cache_key(document: dict) -> str:
    text = json.dumps(document, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_parts(document: dict) -> dict:
    """What a record keeps of its cache document (`cache_parts`): enough to say, next
    time, which part changed. Config and params as digests (the record has the config)."""
    return {"plugin": document["plugin"], "code": document["code"], "opflow": document["opflow"],
            "module": document["module"], "config": _json_digest(document["config"]),
            "params": _json_digest(document["params"]), "upstream": dict(document["upstream"]),
            "inputs": {path: digest for _, path, digest in document["inputs"]}}


def _json_digest(value) -> str:
    text = json.dumps(value, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def miss_reason(document: dict, earlier: dict | None, earlier_run: Path | None) -> str:
    """Why `document` misses, against the newest earlier success of the task (its record)."""
    if earlier is None:
        return NO_EARLIER_RESULT
    old = earlier.get("cache_parts")
    if not isinstance(old, dict):
        return f"its cache key differs from {earlier_run}'s (which recorded no parts to compare)"
    new = cache_parts(document)
    why = []
    if old.get("opflow") != new["opflow"]:
        why.append(f"opflow's version changed ({old.get('opflow')} -> {new['opflow']})")
    if old.get("plugin") != new["plugin"]:
        why.append(f"its plugin changed ({old.get('plugin')} -> {new['plugin']})")
    elif old.get("code") != new["code"]:
        why.append(f"the code of plugin '{new['plugin']}' changed")
    if old.get("module") != new["module"]:
        function = str(document["config"].get("function", ""))
        why.append(f"the code of {function.partition(':')[0].replace('.', '/')}.py changed")
    if old.get("config") != new["config"]:
        before = earlier.get("config") if isinstance(earlier.get("config"), dict) else {}
        now = document["config"] if isinstance(document["config"], dict) else {}
        keys = sorted(k for k in {*before, *now} if before.get(k, _ABSENT) != now.get(k, _ABSENT))
        why.append(f"config changed ({', '.join(keys)})" if keys else "config changed")
    if old.get("params") != new["params"]:
        why.append("params changed")
    old_upstream = old.get("upstream") if isinstance(old.get("upstream"), dict) else {}
    for task_id, digest in new["upstream"].items():
        if digest is None:
            why.append(f"upstream '{task_id}' runs first (reused only if its new result is the same)")
        elif task_id not in old_upstream:
            why.append(f"upstream '{task_id}' is new")
        elif old_upstream[task_id] != digest:
            why.append(f"upstream '{task_id}' returned another result")
    why += [f"upstream '{task_id}' is gone" for task_id in old_upstream if task_id not in new["upstream"]]
    old_inputs = old.get("inputs") if isinstance(old.get("inputs"), dict) else {}
    for path, digest in new["inputs"].items():
        if path not in old_inputs:
            why.append(f"input {path} is new")
        elif old_inputs[path] != digest:
            why.append(f"input {path} {'is gone' if digest == 'missing' else 'changed'}")
    why += [f"input {path} is gone" for path in old_inputs if path not in new["inputs"]]
    return "; ".join(why) or f"its cache key differs from {earlier_run}'s"


_ABSENT = object()


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


def _file_digest(name: str) -> str:
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

    def lookup(self, task_id: str, document: dict, need_blob: bool) -> CacheVerdict:
        """A hit for `task_id` whose cache document is `document`, or why there is none."""
        key = cache_key(document)
        earlier: tuple[dict, Path] | None = None  # the newest success to say what changed against
        missing = None
        for run_dir in self._runs:
            record = read_trusted_task_record(run_dir, task_id)
            if record is None or record.get("status") != "succeeded" or not record.get("cache_key"):
                continue
            if earlier is None:
                earlier = (record, run_dir)
            if record.get("cache_key") != key:
                continue
            digest = record.get("result_sha256")
            if not isinstance(digest, str) or not digest:
                continue
            blob = None
            if need_blob:
                blob = self._results(run_dir).get(task_id)
                if blob is None or hashlib.sha256(blob).hexdigest() != digest:
                    missing = missing or f"its result is missing from {run_dir / RESULTS_FILE}"
                    continue
            source = record.get("reused_from")
            hit = CacheHit(str(source) if isinstance(source, str) and source else str(run_dir),
                           record.get("result"), digest, blob)
            return CacheVerdict(hit, f"cache: reused from {hit.run_dir}")
        if missing:
            return CacheVerdict(None, missing)
        return CacheVerdict(None, miss_reason(document, *(earlier or (None, None))))

    def last_digest(self, task_id: str) -> tuple[str, Path] | None:
        """The result digest of the task's newest recorded success, and its run dir."""
        for run_dir in self._runs:
            record = read_trusted_task_record(run_dir, task_id)
            if record is not None and record.get("status") == "succeeded" and record.get("result_sha256"):
                return str(record["result_sha256"]), run_dir
        return None

    def _results(self, run_dir: Path) -> dict[str, bytes]:
        if run_dir not in self._blobs:
            try:
                self._blobs[run_dir] = read_results(str(run_dir / RESULTS_FILE))
            except (UsageError, OSError):  # not ours alone, or unreadable: nothing in it is reused
                self._blobs[run_dir] = {}
        return self._blobs[run_dir]
