"""What runs in a worker: run one task attempt, measure it, return an `Outcome`.

Stateless between tasks (beyond caches of imported plugin modules and the store
connection). Never raises for a task's failure: every error becomes a recorded
value (type, message, traceback text formatted here, where the frames are).
"""
from __future__ import annotations

__all__ = ["execute"]

import hashlib
import os
import pickle
import time
import traceback
from pathlib import Path

from opflow.attempt import ErrorKind, Outcome, TaskRequest, error_record
from opflow.worker.context import PICKLE_PROTOCOL, StoreAddress, TaskContext, connect_store
from opflow.errors import ConfigError, PluginError
from opflow.plugins import add_search_root, load_plugin_class, written_module_name
from opflow.worker.monitor import monitor
from opflow.worker.render import render
from opflow.rundir.results_log import append_result, append_result_parts
from opflow.worker.shared_results import SHARED_MIN_BYTES, dumps_out_of_band, publish as shared_publish
from opflow.worker.output import capture, current_sink, repair_std_fds
from opflow.worker.outputs import output_digests, output_path
from opflow.masking import Masker
from opflow.workflow.templating import plain_value


def execute(request: TaskRequest, *, own_process: bool = False) -> Outcome:
    """Run one attempt of one task in this process, its output sent to its log. Never raises for task errors.

    `own_process`: the backend says this process runs this one task alone (a pool
    worker; a Dask worker of one thread), so the attempt may take over fds 1/2."""
    with capture(request.log_path, request.attempt, fd_level=own_process, secrets=request.secrets) as log:
        outcome = _execute(request)
    if log is not None and outcome.error is not None:
        outcome.error["log_tail"] = log.tail()
    outcome.log = log is not None and log.kept
    return outcome


def _execute(request: TaskRequest) -> Outcome:
    started = time.time()
    cpu_before = os.times()
    monitor.begin(request.max_memory)
    outcome = Outcome(token=request.token, ok=False, started_at=started, pid=os.getpid())
    try:
        value = _call_plugin(request)
        repair_std_fds()  # before anything of ours opens a file: fds 0-2 the task closed must not be reused
        if request.outputs:
            outcome.outputs = _outputs(request)
        # With secrets, a result is pickled whole, so it can be searched for them before it is kept.
        shared = request.shared_prefix and request.publish and not request.secrets
        blob = _publish_shared(request, value, outcome) if shared else None
        if blob is None:
            blob = _pickle_result(value)
            if request.persist_path and not Masker(request.secrets).found_in(blob):
                # (a result holding a secret is not kept on disk: resume and the cache run it again)
                append_result(request.persist_path, request.task_id, blob)
        outcome.digest = hashlib.sha256(blob).hexdigest()  # cache keys of downstream tasks
        if request.publish:
            if len(blob) <= request.inline_limit:
                outcome.blob = blob  # small: travels back with the outcome
            else:
                _store(request.store).put(request.task_id, blob)
        outcome.result = render(value)
        if request.keep_value:
            outcome.value = plain_value(value)
        outcome.ok = True
    except PluginError as exc:
        outcome.error = error_record(ErrorKind.PLUGIN_ERROR, str(exc), traceback.format_exc())
        outcome.retry_names = _retry_names(exc)
        if isinstance(exc, ConfigError):
            outcome.error["misconfigured"] = True  # the coordinator retries it never
    except _UnpicklableResult as exc:
        outcome.error = error_record(ErrorKind.UNPICKLABLE_RESULT, str(exc), exc.tb)
    except _MissingOutput as exc:
        outcome.error = error_record(ErrorKind.MISSING_OUTPUT, str(exc))
    except SystemExit as exc:
        outcome.error = error_record(ErrorKind.SYSTEM_EXIT, f"the task called sys.exit({exc.code!r})", traceback.format_exc())
    except (KeyboardInterrupt, GeneratorExit):
        raise
    except BaseException as exc:  # any other, even a BaseException of the user's: a recorded value,
        # as text only, so the outcome never needs the user's module to be unpickled
        outcome.error = error_record(type(exc).__name__, str(exc) or repr(exc), traceback.format_exc())
        outcome.retry_names = _retry_names(exc)
    finally:
        peak = monitor.end()
    cpu_after = os.times()
    outcome.finished_at = time.time()
    outcome.cpu_user_s = round((cpu_after.user - cpu_before.user) + (cpu_after.children_user - cpu_before.children_user), 6)
    outcome.cpu_system_s = round((cpu_after.system - cpu_before.system) + (cpu_after.children_system - cpu_before.children_system), 6)
    outcome.peak_rss = peak
    return outcome


def _retry_names(exc: BaseException) -> tuple[str, ...]:
    """Names along the exception's class and its bases (ConnectionError, builtins' short name only;
    a user's class also as module.Name), and `exit:N` for a failed command: what retry_on matches."""
    names = []
    for cls in type(exc).__mro__:
        if cls is object:
            continue
        names.append(cls.__qualname__)
        if cls.__module__ != "builtins":
            names.append(f"{written_module_name(cls.__module__)}.{cls.__qualname__}")
    status = getattr(exc, "exit_status", None)
    if isinstance(status, int):
        names.append(f"exit:{status}")
    return tuple(names)


def _call_plugin(request: TaskRequest):
    try:
        plugin_class = load_plugin_class(request.plugin)
    except Exception as exc:
        raise ConfigError(
            f"cannot load plugin {request.plugin.name!r} from {request.plugin.target}: {type(exc).__name__}: {exc}"
        ) from exc
    plugin = plugin_class()
    plugin.task_id = request.task_id
    plugin.depends_on = request.depends_on
    plugin.workflow_dir = Path(request.workflow_dir)
    plugin.log_sink = current_sink()
    add_search_root(request.workflow_dir)  # upstream results may be of classes defined there
    context = TaskContext(request.upstream, request.inline, lambda task_id: _fetch(request.store, task_id),
                          request.params, groups=request.groups, upstream_failed=request.upstream_failed,
                          task_id=request.task_id, attempt=request.attempt, run_dir=request.run_dir)
    # Each attempt gets its own copy of config, so a plugin that edits it
    # cannot change what a retry sees.
    config = pickle.loads(pickle.dumps(request.config, PICKLE_PROTOCOL))
    return plugin.run(config, context)


class _MissingOutput(Exception):
    """A declared output the task did not leave: the task's own failure (retries apply)."""


def _outputs(request: TaskRequest) -> dict[str, str]:
    digests, missing = output_digests(request.outputs, request.workflow_dir)
    if missing:
        where = output_path(missing[0], request.workflow_dir)
        more = f" (and {len(missing) - 1} more: {', '.join(missing[1:])})" if len(missing) > 1 else ""
        raise _MissingOutput(f"declared output {missing[0]} was not written (looked for {where}){more}")
    return digests


class _UnpicklableResult(Exception):
    def __init__(self, message: str, tb: str):
        super().__init__(message)
        self.tb = tb


def _pickle_result(value) -> bytes:
    try:
        return pickle.dumps(value, PICKLE_PROTOCOL)
    except Exception as exc:
        raise _UnpicklableResult(
            f"the task's result (a {type(value).__module__}.{type(value).__qualname__}) cannot be pickled, "
            f"so no other task could receive it: {type(exc).__name__}: {exc}",
            traceback.format_exc(),
        ) from exc


def _publish_shared(request: TaskRequest, value, outcome: Outcome) -> bytes | None:
    """A result with large buffers: into shared memory, once (None: the ordinary way).

    Returns the blob to publish (a pickled SharedRef), or the whole pickle when
    the buffers do not fit in shared memory (with a note in the record).
    """
    try:
        stream, buffers = dumps_out_of_band(value)
    except Exception:
        return None  # the ordinary pickle says what is wrong with it
    if not buffers:
        blob = stream  # no large buffer: this is the ordinary pickle already
    elif sum(b.nbytes for b in buffers) < SHARED_MIN_BYTES:
        blob = _pickle_result(value)
    else:
        ref, why_not = shared_publish(request.shared_prefix, stream, buffers)
        if ref is not None:
            # Kept for resume by the backend, from the file, off this task's path.
            blob = pickle.dumps(ref, PICKLE_PROTOCOL)
            outcome.shared = True
            outcome.extra["shared_ref"] = blob  # for the backend: release, and keep for resume
            outcome.where["result_shared_bytes"] = ref.size
            return blob
        outcome.where["result_note"] = f"sent through the context store, not shared memory: {why_not}"
        if request.persist_path:
            append_result_parts(request.persist_path, request.task_id, stream, buffers)
        return _pickle_result(value)
    if request.persist_path:
        append_result(request.persist_path, request.task_id, blob)
    return blob


def _store(store):
    return connect_store(store) if isinstance(store, StoreAddress) else store


def _fetch(store, task_id: str) -> bytes | None:
    """One upstream result from the store (one round trip), when a task reads it."""
    if store is None:
        return None
    return _store(store).snapshot((task_id,)).get(task_id)
