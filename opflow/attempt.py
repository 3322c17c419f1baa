"""The seam's vocabulary: what the coordinator asks of a backend, and what comes back.

A `TaskRequest` describes one attempt of one task; the backend that runs it
answers with an `Outcome`. Both are plain dataclasses, picklable, and carry no
behaviour, so the coordinator can speak to any backend without importing what
runs in a worker.
"""
from __future__ import annotations

__all__ = ["TaskRequest", "Outcome", "ErrorKind", "error_record", "NOT_STARTED", "STOPPED_BEFORE_START"]

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class ErrorKind(str, Enum):
    """The error types opflow itself gives an attempt (`error["type"]`); the values
    are the contract strings records on disk show. A plugin's own exception is
    recorded under its class name, which is none of these."""

    NOT_STARTED = "NotStarted"  # it never started (the run was stopping): not an attempt
    PLUGIN_ERROR = "PluginError"
    UNPICKLABLE_RESULT = "UnpicklableResult"
    SYSTEM_EXIT = "SystemExit"
    TIMEOUT = "Timeout"
    INTERRUPTED = "Interrupted"
    CANCELLED = "Cancelled"
    WORKER_CRASHED = "WorkerCrashed"
    MEMORY_LIMIT_EXCEEDED = "MemoryLimitExceeded"
    POOL_ERROR = "PoolError"
    BROKEN_POOL = "BrokenPool"
    UNGUARDED_SCRIPT = "UnguardedScript"
    MISSING_OUTPUT = "MissingOutput"  # a declared output the task did not leave: its own failure, retried


#: Error type of an attempt that never started (the contract string of ErrorKind.NOT_STARTED).
NOT_STARTED = ErrorKind.NOT_STARTED.value
#: Why a task that was sent never started, whichever side saw the stop first.
STOPPED_BEFORE_START = "the run stopped before this task started"


@dataclass
class TaskRequest:
    """Everything one attempt needs, and nothing else."""

    token: int
    task_id: str
    attempt: int
    plugin: Any  # a plugins.PluginRef
    config: dict
    depends_on: tuple[str, ...]
    upstream: frozenset  # transitive upstream ids whose results the task may read
    params: dict
    workflow_dir: str
    publish: bool = False  # does any downstream task read this result?
    persist_path: str | None = None  # the run's results log, where the pickled result is kept for resume
    max_memory: int | None = None
    notify_start: bool = False  # does the coordinator need to know when it starts (timeouts)?
    halt_on_failure: bool = False  # fail fast and no retry left: a failure stops the pool's queue
    groups: tuple = ()  # (foreach task id, instance ids): context[id] is the list of their results
    upstream_failed: dict | None = None  # trigger all_done/one_failed: which upstream tasks failed, and why
    ignore_halt: bool = False  # a trigger task runs after a fail-fast stop: the stop flag is not for it
    log_path: str | None = None  # tasks/<id>.log: where the attempt's stdout/stderr go (worker/output.py)
    keep_children: bool = False  # the task's processes may outlive it (see reaper.py)
    #: The run directory (absolute; the coordinator's path): what a task may know of
    #: itself, with task_id and attempt (contract v3: context.run_dir, $OPFLOW_RUN_DIR).
    run_dir: str | None = None
    outputs: tuple = ()  # declared outputs (paths, globs): hashed after a success, a missing one fails it
    #: The run's secret values: written `***` in the task's log, its result kept out of the results log
    #: (opflow/masking.py). The task itself gets the real values, in its config and params.
    secrets: tuple = field(default=(), repr=False)
    #: The coordinator reads this result's value (`${tasks...}`, `when`, a dynamic
    #: foreach): it comes back in `Outcome.value`, as plain data.
    keep_value: bool = False
    #: What the task asks of a worker beyond one thread: {"cpus": N, "memory": bytes}, from
    #: its `cpus:` and `memory:` keys (empty: nothing). A cluster backend maps these to its
    #: workers' declared resources; the process pool admits by them in the coordinator.
    worker_resources: dict = field(default_factory=dict)
    #: Set by the backend, never by the coordinator: where upstream results are
    #: read and this one is published (a StoreAddress, a ContextStore, a snapshot).
    store: Any = None
    #: Set by the backend: pickled upstream results small enough to travel with
    #: the request (task_id -> blob); the rest are read from `store` when used.
    inline: dict | None = None
    #: Set by the backend: a result whose pickle is at most this many bytes
    #: travels back in the Outcome (`blob`) instead of into `store`.
    inline_limit: int = 0
    #: Set by the backend: where a result with large buffers may be published in
    #: shared memory (a path prefix owned by the run; see shared_results.py).
    shared_prefix: str | None = None


@dataclass(slots=True)  # one is kept per finished task: ~675 bytes each as a dict-backed object
class Outcome:
    token: int
    ok: bool
    result: Any = None  # JSON rendering
    error: dict | None = None  # {"type", "message", "traceback"}
    started_at: float = 0.0
    finished_at: float = 0.0
    cpu_user_s: float = 0.0
    cpu_system_s: float = 0.0
    peak_rss: int = 0
    pid: int = 0
    #: Where it ran, beyond the pid (a Dask worker's address and host), and notes on
    #: how its result travelled (worker/execute.py: `result_shared_bytes`,
    #: `result_note`): copied into the record's `resources`.
    where: dict = field(default_factory=dict)
    #: The pickled result, when it is small and some task reads it: it travels
    #: back here instead of through the shared store (see backends/process.py).
    blob: bytes | None = None
    #: The result's buffers lie in shared memory that the backend holds for its
    #: readers: the coordinator calls `backend.release(task_id)` once none is left.
    shared: bool = False
    #: Backend-private facts about the attempt; never read by the coordinator.
    extra: dict = field(default_factory=dict)
    digest: str = ""  # sha256 of the pickled result (cache keys of downstream tasks)
    #: Did the attempt leave tasks/<id>.log? None: not known (the attempt never reported).
    log: bool | None = None
    #: It never started (the run was stopping, or what it waited for in its work
    #: item did not succeed): not an attempt. Made by `Outcome.not_started` only.
    never_started: bool = False
    #: What a task's `retry_on` may match of this failure (worker/execute.py): the exception's
    #: class and its bases by name (short and module-qualified), and `exit:N` for a command's
    #: status. Empty for a failure opflow made (a timeout, a crash): its error type is matched.
    retry_names: tuple = ()
    outputs: dict | None = None  # declared output file -> its sha256, after a success
    #: The result as plain data (or a templating.NotPlain) when the request asked `keep_value`.
    value: Any = None

    @classmethod
    def failed(cls, token: int, error: dict, *, started_at: float | None = None, pid: int = 0,
               where: dict | None = None) -> "Outcome":
        """A failed attempt that produced no outcome of its own (a crash, a stop, a
        backend's refusal): it ends now, started at `started_at` (default: now)."""
        now = time.time()
        return cls(token=token, ok=False, error=error, started_at=started_at or now, finished_at=now,
                   pid=pid, where=where if where is not None else {})

    @classmethod
    def not_started(cls, token: int, why: str = STOPPED_BEFORE_START, **facts) -> "Outcome":
        """An attempt that never started: the coordinator queues it again, or not at all."""
        outcome = cls.failed(token, error_record(ErrorKind.NOT_STARTED, why), **facts)
        outcome.never_started = True
        return outcome


def error_record(kind: ErrorKind | str, message: str, tb: str = "") -> dict:
    """An attempt's error as records show it; `kind` an ErrorKind or an exception's class name."""
    return {"type": kind.value if isinstance(kind, ErrorKind) else kind, "message": message, "traceback": tb}
