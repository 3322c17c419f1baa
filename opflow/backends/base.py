"""The backend interface: what the coordinator may ask of whatever runs tasks.

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
"""
from __future__ import annotations

__all__ = ["Backend", "OnStart"]

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from concurrent.futures import Future

    from opflow.attempt import TaskRequest

OnStart = Callable[[int, int], None]


class Backend:
    name = "?"
    #: Whether `stop` really stops the work (a thread cannot be killed).
    can_stop = False
    #: Whether `submit_batch` runs its requests in order in one place, each only
    #: if those of its `depends_on` in the batch succeeded (a chain in one work item).
    takes_batches = False

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
