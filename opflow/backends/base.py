"""The backend interface: what the coordinator may ask of whatever runs tasks, and
what each backend can do.

    start(needs_results)                 # start what carries results (before any submit)
    submit(request) -> Future[Outcome]   # the future always resolves to an Outcome
    submit_batch(requests) -> [Future]   # several in one work item, run in order (takes_batches)
    seed(task_id, blob)                  # resume: an earlier run's result, for readers
    stop(token, error)                   # stop one attempt's work (timeout)
    release(task_id)                     # no remaining task reads its result (Outcome.shared)
    halt_queued()                        # start none of the submitted tasks not yet started
    warm_up(count)                       # start workers before the first task (off the loop)
    interrupt(grace)                     # stop all running work (Ctrl-C, SIGTERM)
    close(kill)                          # reap everything; kill=True stops running work
    max_inflight(workers), describe()    # how much to queue; facts for run.json

The coordinator speaks only this; it never sees a store, a pool or a cluster.

What a backend can do (CAPABILITIES: can it stop a task, run several at once, cap
memory, where does a task's output go ...) is said once, by class attributes and
class methods of its class here: `ProcessPool`, `ThreadPool`, `Inline`, `DaskCluster`.
These are cheap to import, so that the command line, `validate` and the checks
before a run ask them without loading multiprocessing or Dask; each names its
implementation ("module:Class", a subclass imported when a run uses it: process.py,
local.py, dask/backend.py), which inherits every answer. A fifth backend is one
such class, registered in backends/__init__.py (`register`); a backend cheap to
import is its own implementation.
"""
from __future__ import annotations

__all__ = ["Backend", "OnStart", "CAPABILITIES", "ProcessPool", "ThreadPool", "Inline", "DaskCluster"]

import importlib
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from concurrent.futures import Future

    from opflow.attempt import TaskRequest

OnStart = Callable[[int, int], None]

#: The questions every backend class answers (None on `Backend`: unanswered; `register` refuses that).
CAPABILITIES = ("parallel", "can_stop", "timeout", "max_memory", "takes_batches", "takes_scheduler",
                "task_output")


class Backend:
    #: The name `--executor` takes and run.json records.
    name = "?"
    #: "module:Class" of the implementation, a subclass imported when a run uses this
    #: backend; "" where this class is its own implementation.
    implementation = ""

    # What it can do: the one place each answer is written.
    #: Runs several tasks at once (inline runs one, inside the coordinator).
    parallel: bool | None = None
    #: Whether `stop` really stops the work (a thread cannot be killed).
    can_stop: bool | None = None
    #: "kills": past its timeout a task's work is stopped; "abandons": the task fails
    #: on time but its work goes on (a thread cannot be killed); "never": no timeout fires.
    timeout: str | None = None
    #: Past `max_memory` the task's process tree is killed.
    max_memory: bool | None = None
    #: Whether `submit_batch` runs its requests in order in one place, each only
    #: if those of its `depends_on` in the batch succeeded (a chain in one work item).
    takes_batches: bool | None = None
    #: Takes a `scheduler` address (--scheduler): a cluster's.
    takes_scheduler: bool | None = None
    #: What tasks/<id>.log catches (run.json's task_output): "fd", all of fds 1 and 2 of
    #: a worker process of the task's own; "python", sharing opflow's own process, only
    #: what goes through sys.stdout and sys.stderr.
    task_output: str | None = None
    #: Why not, in a few words, for the warnings (backends/capabilities.py).
    why_no_timeout = ""
    why_no_max_memory = ""

    @classmethod
    def workers_import_main(cls, scheduler: str | None) -> bool:
        """Whether its workers import the caller's `__main__` (a script run from its
        unguarded top level would then start the run again: worker/guard.py)."""
        return False

    @classmethod
    def check_available(cls) -> None:
        """Raise `UsageError` naming what to install, where this backend needs an extra."""

    @classmethod
    def start_early(cls) -> None:
        """Start helper processes now, while the run is prepared (may raise OSError)."""

    @classmethod
    def open(cls, workers: int, on_start: OnStart | None = None, **place) -> Backend:
        """An instance of the implementation, for one run; `place` (Options.place: scheduler,
        scheduler_file, cluster, adapt, workers_given) goes to a backend that takes a scheduler."""
        implementation = cls
        if cls.implementation:
            module, _, attribute = cls.implementation.partition(":")
            implementation = getattr(importlib.import_module(module), attribute)
            if not issubclass(implementation, cls):
                raise TypeError(f"{cls.implementation} is not a subclass of {cls.__qualname__}")
        if cls.takes_scheduler:
            return implementation(workers, on_start, **place)
        return implementation(workers, on_start)

    def start(self, needs_results: bool) -> None:
        """Start what results travel through, if any task reads another's; raise if it cannot start."""

    def submit(self, request: TaskRequest) -> Future:
        raise NotImplementedError

    def submit_batch(self, requests: list[TaskRequest]) -> list[Future]:
        """Run `requests` in order, in one work item; a request whose `depends_on` names an
        earlier one runs only if that one succeeded, else resolves NOT_STARTED. Each
        future resolves as its own task ends. Only called where `takes_batches`."""
        raise NotImplementedError

    def seed(self, task_id: str, blob: bytes) -> None:
        """Make an earlier run's pickled result readable by this run's tasks (resume)."""
        raise NotImplementedError

    def release(self, task_id: str) -> None:
        """No remaining task reads `task_id`'s result: free what holds it (shared memory)."""

    def stop(self, token: int, error: dict) -> None:
        """Stop one attempt's work; its future then resolves with `error`."""

    def interrupt(self, grace: float = 2.0) -> None:
        """Stop all running work (Ctrl-C, SIGTERM); a no-op where work cannot be stopped."""

    def halt_queued(self) -> None:
        """Start no more of the submitted tasks: those not yet started resolve as not started."""

    def warm_up(self, count: int) -> None:
        """Start up to `count` workers now, before the first task (called off the event loop)."""

    def max_inflight(self, workers: int) -> int:
        """How many tasks to keep submitted at once: enough that no worker waits for the loop."""
        return max(8, 4 * workers)

    def describe(self) -> dict:
        """Facts about where tasks run, for run.json (a Dask scheduler's address)."""
        return {}

    def close(self, kill: bool = False) -> None:
        raise NotImplementedError


class ProcessPool(Backend):
    """The process pool (the default): a worker process per slot, tasks batched."""

    name = "process"
    implementation = "opflow.backends.process:ProcessBackend"
    parallel = True
    can_stop = True
    timeout = "kills"
    max_memory = True
    takes_batches = True
    takes_scheduler = False
    task_output = "fd"

    @classmethod
    def workers_import_main(cls, scheduler: str | None) -> bool:
        from opflow.backends.mp_context import start_method

        return start_method() != "fork"  # forkserver and spawn workers import the caller's __main__

    @classmethod
    def start_early(cls) -> None:
        from opflow.backends.mp_context import pool_context

        pool_context()


class ThreadPool(Backend):
    """A thread pool in opflow's own process: for I/O-bound tasks."""

    name = "thread"
    implementation = "opflow.backends.local:ThreadBackend"
    parallel = True
    can_stop = False
    timeout = "abandons"
    max_memory = False
    takes_batches = False
    takes_scheduler = False
    task_output = "python"
    why_no_timeout = "a thread cannot be stopped: the task fails on time, but its work goes on"
    why_no_max_memory = "tasks share opflow's own process, so no task's memory can be told apart"


class Inline(Backend):
    """Each task in the coordinator itself, one at a time: for debugging."""

    name = "inline"
    implementation = "opflow.backends.local:InlineBackend"
    parallel = False
    can_stop = False
    timeout = "never"
    max_memory = False
    takes_batches = False
    takes_scheduler = False
    task_output = "python"
    why_no_timeout = "each task runs inside opflow itself, to its end"
    why_no_max_memory = "each task runs inside opflow's own process"


class DaskCluster(Backend):
    """A Dask cluster: a running scheduler, or a LocalCluster started for the run."""

    name = "dask"
    implementation = "opflow.backends.dask.backend:DaskBackend"
    parallel = True
    can_stop = True
    timeout = "kills"
    max_memory = False
    takes_batches = False
    takes_scheduler = True
    task_output = "fd"
    why_no_max_memory = "a Dask worker's own --memory-limit applies instead"

    @classmethod
    def workers_import_main(cls, scheduler: str | None) -> bool:
        return not scheduler  # a LocalCluster's workers are spawned: they import __main__

    @classmethod
    def check_available(cls) -> None:
        from opflow.backends.dask.cluster import check_available

        check_available()
