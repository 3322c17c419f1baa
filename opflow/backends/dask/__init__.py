"""The Dask backend: the same workflow file on a Dask cluster.

    coordinator ─submit─▶ DaskBackend ── client.submit(run_task, pickled request, {id: held}) ────▶ worker
        ▲                   │  ▲                                                                   │ execute():
        │                   │  ├── "started" event (token, pid, worker) on a scheduler topic ◀─────┤ plugin.run
        │                   │  └── "ended" event (token, key, pickled Outcome), same topic ◀───────┤
        │                   │                                                                      ▼
        └── Outcome ◀───────┴── when the future is done, its Outcome from ──────── held result (Outcome, blob)
                                the "ended" event: nothing is gathered            stays on the worker

The store lives on the cluster, not in the coordinator: each task's attempt
returns a `_Held` (its Outcome and, when a downstream task reads it, its pickled
result), which stays in the memory of the worker that made it, as a Dask future
the backend keeps per task id. A downstream task gets those futures as
arguments, so Dask moves the pickled results worker to worker (and places the
task, where it can, on the worker that already holds them). The coordinator
reads only the Outcome, which the task sends as it ends, on the topic its start
went by: it reaches the client just ahead of the future's completion, so no
result is gathered (a round trip through the scheduler per task, which cost more
than the rest of the backend's per-task work). A DataFrame made by one task and
read by three is never shipped to the coordinator and out again. An Outcome too
large for a message (a long rendering of the result; the scheduler keeps a
topic's last 1,000 messages), or a message lost: the backend reads the Outcome
in place (`Client.run` on the worker's event loop, so it never waits behind a
task running there), or gathers a result no task reads (it carries no blob).
Finished tasks' futures are released in batches (RELEASE_BATCH): each release
sends the worker a message, and the scheduler sends a worker one batch per 5 ms.

Starts: a task tells the scheduler it started (`Worker.log_event` on a topic
private to this backend); the client's handler calls `on_start(token, pid)`, so
a timeout counts from the moment the task really starts on a worker.

Not starting (fail fast, interrupt, --timeout): `halt_queued` tells every worker
(`Client.run`) that this run is halted; its tasks that had not started answer
NotStarted instead of running. A task that fails under fail fast halts its own
worker at once, as the process pool's stop flag does.

Stopping (timeout, interrupt): Dask cannot stop a running Python thread; a
cancelled future only stops Dask from waiting for it. So we cancel the task's
futures (Dask will not run it again), then end the worker process that runs it:
- LocalCluster (we started it; its workers are our children): kill the worker's
  process tree (SIGTERM, grace, SIGKILL); its Nanny starts a fresh worker.
- A remote scheduler: ask the worker to kill its own children and exit
  (`Client.run`); if it does not answer (a task holding the GIL in native code),
  ask its Nanny to restart it (`Client.restart_workers`). A worker started
  without a Nanny (`dask worker --no-nanny`) is not replaced.
Either way, other tasks queued on that worker are rescheduled by Dask, and
results it held are recomputed by Dask from their inputs (the task runs again,
unrecorded) if a later task needs them.

Crashes: a worker process that dies (os._exit, a signal, out of memory) fails
the task that had started on it, as WorkerCrashed. Our LocalCluster runs with
`allowed-failures: 0`, so Dask does not rerun it behind our back (opflow's
`retries` decide); the tasks merely queued on that worker, which Dask fails
with it, are resubmitted as the same attempt. A remote scheduler keeps its own
setting (Dask's default reruns such a task on up to 3 more workers first).
`max_memory` is not enforced here: Dask's Nanny has its own memory limit.

Plugins from a `workers/` folder: with a LocalCluster the files are on the same
disk. With a remote scheduler the coordinator ships the plugin's folder (every
`*.py` in it, scattered once per content digest); a worker that does not have
the file at its path writes the shipped copy into its local directory and loads
that. A plugin file that cannot be found fails its task saying so.
"""
from __future__ import annotations

__all__ = ["check_available"]

# The backend itself (backend.py) imports `distributed`: make_backend imports it
# only when --executor dask is asked for. Layout: backend.py is the coordinator's
# side, on_worker.py what runs on Dask workers, cluster.py connecting and starting.
from opflow.backends.dask.cluster import check_available
