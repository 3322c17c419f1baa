"""The process backend (the default): a `ProcessPoolExecutor` and what it lacks.

Both sides of the slot-table protocol live here: the coordinator's
(`ProcessBackend`) and the pool worker's (`init_pool_worker`, `run_batch`).

    submit_batch([r1, r2, ...]) ──one pool work item──▶ worker: run_batch runs them in order
    worker ──each outcome as its task ends──▶ outcome_channel ──▶ _on_streamed ──▶ backend futures
    worker ──writes (pid, token)──▶ slot table (shared memory, read only when needed)
    pool future ──BrokenProcessPool──▶ _on_broken: blame the dead worker's task; the live
        workers retire (finish and report the task they run, start no other); once
        all are gone, what never started goes back to the coordinator

A work item holds one task or several (a batch: short ready tasks, or a chain,
each link run only if the one before it succeeded). A dead worker breaks a
ProcessPoolExecutor for every pending work item (CPython's `_terminate_broken`).
We know which process ran which task, so the task whose process died fails with
how it died; no task that ended runs again, and those that never started run on
a fresh pool without counting an attempt.
"""
from __future__ import annotations

__all__ = ["ProcessBackend", "start_method", "init_pool_worker", "run_batch", "MEMORY_EXIT_CODE"]

import concurrent.futures
from collections import ChainMap
import os
import pickle
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from opflow import reaper
from opflow.errors import OpflowError
from opflow.attempt import STOPPED_BEFORE_START, ErrorKind, Outcome, TaskRequest, error_record
from opflow.worker.context import ManagedStore, connect_store
from opflow.worker.guard import GUARD_MESSAGE, REFUSED_EXIT
from opflow.worker.monitor import set_limit_action
from opflow.worker import shared_results
from opflow.rundir.results_log import append_result_from_file
from opflow.procs import describe_exit, kill_own_children, kill_tree, kill_trees, start_parent_watch
from opflow.words import format_bytes
from opflow.worker.execute import execute
from opflow.backends import outcome_channel
from opflow.backends.mp_context import start_method
from opflow.backends.mp_context import pool_context
from opflow.backends.base import OnStart, ProcessPool
from opflow.backends.outcome_channel import OutcomeChannel


def _mp_context():
    # The context, resource tracker and forkserver: mp_context.py (the CLI starts them early).
    return pool_context()


class ProcessBackend(ProcessPool):
    """A ProcessPoolExecutor, rebuilt when a worker dies; see the module docstring."""

    #: How often the start watcher looks at the slot table while a submitted task
    #: has not been seen to start: the precision of task_started and of a timeout's start.
    START_POLL_SECONDS = 0.02
    #: A task caught in this many broken pools without being the one to blame
    #: fails anyway: something in it breaks the pool (say, an outcome the
    #: coordinator cannot unpickle) where no worker died.
    MAX_INNOCENT_RESUBMITS = 3

    def __init__(self, workers: int, on_start: OnStart | None = None):
        self._workers = workers
        self._on_start = on_start
        self._ctx = _mp_context()
        self._lock = threading.RLock()
        self._pool: ProcessPoolExecutor | None = None
        self._old_pools: list[ProcessPoolExecutor] = []
        self._processes: dict = {}
        self._inflight: dict[int, tuple[TaskRequest, Future]] = {}
        self._stopping: dict[int, dict] = {}
        self._blamed: dict[int, dict] = {}  # token -> crash error
        self._resubmits: dict[tuple, int] = {}  # (task_id, attempt) -> times sent again after a broken pool
        self._was_running: set[int] = set()  # tokens an innocent worker was running when its pool broke
        self._broken_processes: dict[int, dict] = {}  # id(pool) -> its pid -> Process, once broken
        self._retiring: dict = {}  # pid -> Process: a broken pool's worker finishing its task
        self._channel: OutcomeChannel | None = None  # batch members' outcomes (outcome_channel.py)
        self._pool_processes: dict[int, dict] = {}  # id(pool) -> its pid -> Process
        self._broken_pools: set[int] = set()
        self._refused = False  # a worker would not run the script's unguarded opflow.run() (guard.py)
        self._closing = False
        # (pid, token) per worker; rows are reused round-robin across pool rebuilds.
        # Row 0 is for control: slots[0] != 0 tells workers to start nothing more.
        self._slots = None
        self._slot_counter = None
        self._watch: set[int] = set()  # tokens whose start the coordinator waits to hear of
        self._watch_wakeup = threading.Condition(self._lock)
        self._watcher: threading.Thread | None = None
        self._store = ManagedStore(self._ctx)
        self._address = None  # the store's, once started
        self._relay: _ResultRelay | None = None  # small results, once started
        self._hurry = threading.Event()  # set by a second interrupt: no more grace for anyone
        self._shared_prefix: str | None = None  # the run's shared-memory files start with it
        self._shared: dict[str, str] = {}  # task_id -> its result's file in shared memory
        self._persister: ThreadPoolExecutor | None = None  # keeps shared results for resume
        self._persisting: set[str] = set()  # task_ids being copied to the results log
        self._release_after_copy: set[str] = set()

    # -- pool lifetime -------------------------------------------------------
    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            try:
                if self._slots is None:
                    rows = 1 + max(64, 8 * self._workers)
                    self._slots = self._ctx.Array("q", 2 * rows, lock=False)
                    self._slot_counter = self._ctx.Value("q", 0)
                    self._channel = OutcomeChannel(self._on_streamed)
                self._pool = ProcessPoolExecutor(
                    max_workers=self._workers, mp_context=self._ctx, initializer=init_pool_worker,
                    initargs=(os.getpid(), self._slots, self._slot_counter, self._channel.address, self._channel.key),
                )
            except OSError as exc:  # the pool's semaphores and the slot table are files in /dev/shm
                raise OpflowError(f"cannot start the process pool: /dev/shm, where its locks and shared table "
                                  f"live, said: {exc.strerror or exc} (free space there, or run with "
                                  f"--executor thread)") from None
            self._processes = self._pool._processes  # pid -> Process; read to tell how a worker died
            self._pool_processes[id(self._pool)] = self._processes
        return self._pool

    def _running_tokens(self) -> dict[int, int]:
        """token -> pid of every task a live worker is running now (from the slot table)."""
        if self._slots is None:
            return {}
        table = self._slots[:]
        return {table[i + 1]: abs(table[i]) for i in range(2, len(table), 2) if table[i + 1] and table[i]}

    def _watch_starts(self) -> None:
        """Tell the coordinator when submitted tasks start (task_started; a timeout's clock)."""
        while True:
            with self._lock:
                while not self._watch and not self._closing:
                    self._watch_wakeup.wait()
                if self._closing:
                    return
                running = self._running_tokens()
                started = [(t, running[t]) for t in self._watch if t in running]
                for token, _ in started:
                    self._watch.discard(token)
            for token, pid in started:
                self._on_start(token, pid)
            time.sleep(self.START_POLL_SECONDS)

    def _watch_for_start(self, request: TaskRequest) -> None:
        if not request.notify_start or self._on_start is None:
            return
        self._watch.add(request.token)
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch_starts, name="opflow-start-watch", daemon=True)
            self._watcher.start()
        self._watch_wakeup.notify_all()

    def start(self, needs_results: bool) -> None:
        if needs_results:
            # Large results go through shared memory (shared_results.py); first
            # remove what runs killed outright left there.
            self._shared_prefix = shared_results.new_prefix()
            if self._shared_prefix:
                shared_results.sweep_stale()
            self._store.shared_prefix = self._shared_prefix
            self._address = self._store.address()  # starts the Manager
            self._relay = _ResultRelay(self._address)

    def warm_up(self, count: int) -> None:
        """Start `count` workers (and the forkserver) before the first task, off the loop.

        Else the first submits start them, on the coordinator's loop thread: the
        forkserver's start alone blocks it for a second or more under load.
        """
        with self._lock:
            pool = self._ensure_pool()
        try:
            futures = [pool.submit(os.getpid) for _ in range(max(1, count))]
        except (BrokenProcessPool, RuntimeError):
            return  # the first real submit meets this again and handles it
        # A worker that cannot start is reported by the tasks' own submits, later.
        concurrent.futures.wait(futures, timeout=120)

    def seed(self, task_id: str, blob: bytes) -> None:
        self._store.address()
        self._store.proxy.put(task_id, blob)

    # -- submitting ----------------------------------------------------------
    def submit(self, request: TaskRequest) -> Future:
        return self.submit_batch([request])[0]

    def submit_batch(self, requests: list[TaskRequest]) -> list[Future]:
        """One pool work item for all of `requests` (run_batch): its cost is paid once."""
        futures = []
        for request in requests:
            if request.upstream or request.publish:
                request.store = self._address
                request.inline_limit = INLINE_LIMIT
                if request.publish:
                    request.shared_prefix = self._shared_prefix
                if request.upstream:
                    self._relay.attach(request)
            futures.append(Future())
        with self._lock:
            for request, future in zip(requests, futures):
                self._inflight[request.token] = (request, future)
            self._submit_to_pool(requests)
        return futures

    def _submit_to_pool(self, requests: list[TaskRequest]) -> None:
        tokens = tuple(r.token for r in requests)
        for _ in range(2):
            pool = self._ensure_pool()
            try:
                spawned = len(self._processes)
                pool_future = pool.submit(run_batch, requests)
                if len(self._processes) != spawned:
                    # CPython (3.11) wakes the pool's manager thread *before* it spawns
                    # a worker on demand, so that thread may wait without watching the
                    # new worker, and not see it die until something else wakes it.
                    _wake_manager_thread(pool)
            except BrokenProcessPool:
                self._retire(pool)  # broke before we heard of it: once more on a new pool
                continue
            except RuntimeError as exc:
                for token in tokens:
                    if self._closing:  # the pool is shut down because the run is stopping
                        self._resolve_not_started(token)
                    else:  # it cannot start a worker: a failure, never "not started" (which is retried)
                        self._resolve(token, error_record(ErrorKind.POOL_ERROR, f"the process pool could not start a worker: {exc}"))
                return
            for request in requests:
                self._watch_for_start(request)
            pool_future.add_done_callback(lambda f, t=tokens, p=pool: self._on_pool_done(t, p, f))
            return
        for token in tokens:
            self._resolve(token, error_record(ErrorKind.WORKER_CRASHED, "the process pool could not be started"))

    def _retire(self, pool: ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None
            self._old_pools.append(pool)

    # -- results -------------------------------------------------------------
    def _on_pool_done(self, tokens: tuple, pool: ProcessPoolExecutor, pool_future: Future) -> None:
        if pool_future.cancelled():  # queued work dropped by shutdown(cancel_futures=True)
            for token in tokens:
                self._resolve_not_started(token)
            return
        exc = pool_future.exception()
        if exc is None:
            for outcome in pool_future.result():  # those the worker's channel could not carry
                self._on_streamed(outcome)
            return
        if isinstance(exc, BrokenProcessPool):
            self._on_broken(tokens, pool)
            return
        # The request or the outcome failed to pickle, or the pool shut down.
        for token in tokens:
            self._resolve(token, error_record(type(exc).__name__, f"the process pool could not run the task: {exc}"))

    def _on_streamed(self, outcome: Outcome) -> None:
        """An attempt's outcome, from the work item or the worker's channel."""
        with self._lock:
            stopped = self._stopping.pop(outcome.token, None)
        if stopped is not None:
            # It finished in the instant between the timeout and the kill: the
            # verdict already given (timed out) stands.
            self._resolve(outcome.token, stopped)
        else:
            self._finish(outcome.token, outcome)

    def _on_broken(self, tokens: tuple, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if id(pool) not in self._broken_pools:
                self._broken_pools.add(id(pool))
                self._blame_dead_workers(pool)
                self._retire(pool)
            processes = self._broken_processes.get(id(pool), {})
        # What the pool's workers sent must be in before we can tell the tasks that
        # ended from those that never started. The live workers finish their tasks
        # first (they are retiring: init_pool_worker's SIGTERM handler), and the
        # pool waits for them only after this callback: wait on another thread.
        threading.Thread(target=self._settle_broken, args=(tokens, processes),
                         name="opflow-broken-pool", daemon=True).start()

    def _settle_broken(self, tokens: tuple, processes: dict) -> None:
        """Decide the fate of the tasks of a work item lost with its pool, once its workers are gone."""
        if self._channel is not None:
            self._channel.wait_drained(processes, stop=self._hurry)
        with self._lock:
            for token in tokens:
                self._settle_one(token)

    def _settle_one(self, token: int) -> None:
        stopped = self._stopping.pop(token, None)
        crashed = self._blamed.pop(token, None)
        entry = self._inflight.get(token)
        if entry is None:
            return  # it ended (its outcome came down the channel) or was resolved
        request = entry[0]
        key = (request.task_id, request.attempt)
        count = self._resubmits[key] = self._resubmits.get(key, 0) + 1
        if stopped is not None:
            self._resolve(token, stopped)
        elif crashed is not None:
            self._resolve(token, crashed)
        elif self._refused:  # no worker will ever start: say why, once per task
            self._resolve(token, error_record(ErrorKind.UNGUARDED_SCRIPT, GUARD_MESSAGE))
        elif self._closing:
            if token in self._was_running:
                self._resolve(token, error_record(ErrorKind.CANCELLED, "the run stopped while this task ran"))
            else:  # the coordinator says why it never ran (the interrupt)
                self._resolve_not_started(token)
        elif count > self.MAX_INNOCENT_RESUBMITS:
            self._resolve(token, error_record(
                "BrokenPool", f"the process pool broke {count} times while this task was in it, with no worker "
                "to blame: did worker processes fail to start (their error is on stderr), or is the "
                "task's result or error unpicklable in the coordinator?"))
        elif token in self._was_running:
            # Its worker died while running it, without the blame (killed from
            # outside while retiring): it runs again, as the same attempt.
            self._submit_to_pool([request])
        else:
            # It never started: back to the coordinator, which queues it again
            # once what it waits for has succeeded (no attempt counted).
            self._resolve_not_started(token, "its worker's pool broke before it started")

    def _blame_dead_workers(self, pool: ProcessPoolExecutor) -> None:
        """Map each dead worker of `pool` to the task it was running, and record how it died.

        Runs when the pool reports itself broken: the worker that died is dead,
        the others are still alive (the pool terminates them right after). Each
        live worker is marked retiring (its pid negated in the slot table): it
        starts no other task, and the pool's SIGTERM lets it finish and report the
        one it runs (a sibling's crash must not kill it, nor make it run twice).
        The dead workers' rows are cleared.
        """
        table = self._slots[:] if self._slots is not None else []
        token_of = {table[i]: table[i + 1] for i in range(2, len(table), 2) if table[i + 1]}
        processes = dict(self._pool_processes.pop(id(pool), {}))
        self._broken_processes[id(pool)] = processes
        for i in range(2, len(table), 2):
            if table[i] in processes:
                if processes[table[i]].exitcode is None:
                    self._slots[i] = -table[i]  # retiring: finishes its task, if any, starts none
                    self._retiring[table[i]] = processes[table[i]]
                    if table[i + 1]:
                        self._was_running.add(table[i + 1])
                else:
                    self._slots[i + 1] = 0
        for pid, process in processes.items():
            exitcode = process.exitcode
            self._refused = self._refused or exitcode == REFUSED_EXIT
            if exitcode is not None and self._shared_prefix:  # what it was writing when it died
                shared_results.sweep(f"{self._shared_prefix}{pid}-", keep=set(self._shared.values()))
            token = token_of.get(pid)
            if exitcode is None or token is None or token not in self._inflight or token in self._stopping:
                continue
            if exitcode == MEMORY_EXIT_CODE:
                limit = self._inflight[token][0].max_memory
                message = f"the task exceeded max_memory ({format_bytes(limit)}) and its process tree was killed"
                self._blamed[token] = error_record(ErrorKind.MEMORY_LIMIT_EXCEEDED, message)
            else:
                self._blamed[token] = error_record(
                    ErrorKind.WORKER_CRASHED, f"{describe_exit(exitcode)} (pid {pid})"
                )

    def _finish(self, token: int, outcome: Outcome) -> None:
        with self._lock:
            entry = self._inflight.pop(token, None)
            self._watch.discard(token)
        if outcome.shared:
            ref = pickle.loads(outcome.extra.pop("shared_ref"))  # a SharedRef: opflow's own class
            if entry is not None:
                self._shared[entry[0].task_id] = ref.path
                if entry[0].persist_path:
                    self._keep_for_resume(entry[0], ref)
            else:  # nobody will read it (its verdict was given already)
                shared_results.remove(ref.path)
        if outcome.blob is not None:
            if entry is not None and self._relay is not None:
                self._relay.keep(entry[0].task_id, outcome.blob)
            outcome.blob = None  # the coordinator has no use for it
        if entry is not None and not entry[1].done():
            entry[1].set_result(outcome)

    def _resolve(self, token: int, error: dict) -> None:
        """End a task in flight that has no outcome of its own: failed with `error`."""
        with self._lock:
            if token not in self._inflight:
                return
        self._finish(token, Outcome.failed(token, error))

    def _resolve_not_started(self, token: int, why: str = STOPPED_BEFORE_START) -> None:
        """End a task in flight that never started: the coordinator decides what next."""
        with self._lock:
            if token not in self._inflight:
                return
        self._finish(token, Outcome.not_started(token, why))

    def _keep_for_resume(self, request: TaskRequest, ref) -> None:
        """Append a shared result to the results log from its file, on a thread of ours
        (off the producer's path: its readers need not wait for the disk)."""
        with self._lock:
            self._persisting.add(request.task_id)
            if self._persister is None:
                self._persister = ThreadPoolExecutor(max_workers=1, thread_name_prefix="opflow-keep-result")
            self._persister.submit(self._copy_to_log, request.persist_path, request.task_id, ref)

    def _copy_to_log(self, log: str, task_id: str, ref) -> None:
        try:
            append_result_from_file(log, task_id, ref.stream, ref.path, ref.spans)
        except OSError:
            pass  # swept already (the run was interrupted): it will not be resumable
        finally:
            with self._lock:
                self._persisting.discard(task_id)
                release = task_id in self._release_after_copy
                self._release_after_copy.discard(task_id)
            if release:
                self.release(task_id)

    def release(self, task_id: str) -> None:
        """No remaining task reads `task_id`'s result: free its shared memory."""
        with self._lock:
            if task_id in self._persisting:  # still being copied to the results log
                self._release_after_copy.add(task_id)
                return
            path = self._shared.pop(task_id, None)
        if path:
            shared_results.remove(path)

    # -- stopping ------------------------------------------------------------
    def stop(self, token: int, error: dict) -> None:
        with self._lock:
            if token not in self._inflight:
                return
            self._stopping[token] = error
            pid = self._running_tokens().get(token)
        if pid is None:
            # Not running (still queued, or just finished): resolve it now.
            with self._lock:
                self._stopping.pop(token, None)
            self._resolve(token, error)
            return
        # Killing waits out a grace period; do not block the caller's loop.
        threading.Thread(target=self._kill_if_still_running, args=(token, pid), name="opflow-kill", daemon=True).start()

    def _kill_if_still_running(self, token: int, pid: int) -> None:
        # The task may have ended since stop() looked; then that worker runs another
        # task (or none) and must be left alone.
        with self._lock:
            if self._running_tokens().get(token) != pid:
                return
            self._unretire(pid)  # a retiring worker would finish the task first: it must die now
        kill_tree(pid, hurry=self._hurry)

    def _unretire(self, pid: int) -> None:
        for i in range(2, len(self._slots), 2):
            if self._slots[i] == -pid:
                self._slots[i] = pid

    def halt_queued(self) -> None:
        if self._slots is not None:
            self._slots[0] = 1  # workers check it before each task

    def interrupt(self, grace: float = 2.0) -> None:
        """Stop all running work now: kill every worker's process tree, submit nothing more.

        With no grace (a second Ctrl-C), kills still waiting out a grace from an
        earlier call SIGKILL now too, so the run ends at once.
        """
        self.halt_queued()
        if grace <= 0:
            self._hurry.set()
        with self._lock:
            self._closing = True
            self._watch_wakeup.notify_all()
            pids = [*self._processes, *self._retiring]  # halted: retiring workers die at once too
        kill_trees(pids, grace, self._hurry)

    def close(self, kill: bool = False) -> None:
        if kill:
            self.interrupt(grace=0.5)
        with self._lock:
            self._closing = True
            self._watch_wakeup.notify_all()
            pools = [p for p in [self._pool, *self._old_pools] if p is not None]
            self._pool = None
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)
        if self._channel is not None:  # every worker is gone: hand on what they sent last
            everyone = everyone_of(self._pool_processes, self._broken_processes)
            self._channel.wait_drained(everyone, timeout=5)
        with self._lock:
            leftover = list(self._inflight)
        for token in leftover:  # queued work the shutdown cancelled
            self._resolve_not_started(token)
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        if self._relay is not None:
            self._relay.close()
        if self._channel is not None:
            self._channel.close()
        self._store.close()
        if self._persister is not None:  # the results log is complete before the run ends
            self._persister.shutdown(wait=True)
        if self._shared_prefix:  # every worker is gone: nothing of the run's stays in shared memory
            self._shared.clear()
            shared_results.sweep(self._shared_prefix)
        _release(everyone_of(self._pool_processes, self._broken_processes))
        with self._lock:  # their shared memory goes back to multiprocessing's heap now, not at a collection
            self._slots = self._slot_counter = None


def everyone_of(*tables: dict) -> dict:
    """pid -> Process over tables of `id(pool) -> its pid -> Process`."""
    return {pid: p for table in tables for procs in table.values() for pid, p in procs.items()}


def _release(processes: dict) -> None:
    # A worker's Process holds its forkserver pipe until the object is collected,
    # and the pool's internals keep it in reference cycles: a service that calls
    # opflow.run in a loop ran out of descriptors. Every worker is joined by now.
    for process in processes.values():
        try:
            process.close()
        except ValueError:  # still running: cannot be (the pool was shut down and waited for)
            pass


def _wake_manager_thread(pool: ProcessPoolExecutor) -> None:
    wakeup = getattr(pool, "_executor_manager_thread_wakeup", None)
    try:
        if wakeup is not None:
            wakeup.wakeup()
    except (OSError, ValueError):  # the pool is shutting down: nothing to watch
        pass


#: A result whose pickle is at most this many bytes travels in the outcome and in
#: its readers' requests; a larger one goes once into the Manager-held store.
#: Measured (benchmarks/RESULTS.md): below ~64 KiB, the pipe costs less than a
#: Manager round trip at each end.
INLINE_LIMIT = 64 * 1024


class _ResultRelay:
    """Small results, kept here and handed on inside their readers' requests.

    A task's direct upstream results always travel with its request. Each small
    result is also copied into the Manager-held store, by a thread, in batches,
    so that a task reading a distant ancestor can fetch it there; until its copy
    is made, a result travels with every request whose task may read it.
    """

    def __init__(self, address):
        self._address = address
        self._blobs: dict[str, bytes] = {}
        self._unstored: dict[str, bytes] = {}
        self._lock = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._copy_to_store, name="opflow-result-relay", daemon=True)
        self._thread.start()

    def keep(self, task_id: str, blob: bytes) -> None:
        with self._lock:
            self._blobs[task_id] = blob
            self._unstored[task_id] = blob
            self._lock.notify()

    def attach(self, request: TaskRequest) -> None:
        blobs = self._blobs
        inline = {t: blobs[t] for t in request.depends_on if t in blobs}
        if len(request.upstream) > len(request.depends_on):
            with self._lock:
                pending = [t for t in self._unstored if t in request.upstream]
            for task_id in pending:
                inline[task_id] = blobs[task_id]
        request.inline = inline or None

    def _copy_to_store(self) -> None:
        store = connect_store(self._address)
        while True:
            with self._lock:
                while not self._unstored and not self._closing:
                    self._lock.wait()
                if self._closing:
                    return
                batch = dict(self._unstored)
            try:
                store.put_many(batch)
            except Exception:  # the Manager is gone (the run is ending): those results travel inline
                return
            with self._lock:
                for task_id in batch:
                    self._unstored.pop(task_id, None)

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._lock.notify()
        self._thread.join(timeout=5)


# -- the pool worker's side ---------------------------------------------------
#: Exit status of a pool worker that killed itself for exceeding `max_memory`.
MEMORY_EXIT_CODE = 86
#: How long a SIGTERMed worker gives its task's processes between SIGTERM and SIGKILL:
#: under the coordinator's own grace (procs.GRACE_SECONDS), so it ends them before it is killed.
WORKER_KILL_GRACE = 1.5

_pool_state: dict = {}


def _exit_for_memory(rss: int, limit: int) -> None:
    """Past `max_memory` in a pool worker: kill the task's children, die with a code we read."""
    shared_results.forget_own_files()
    kill_own_children()
    os._exit(MEMORY_EXIT_CODE)


def init_pool_worker(coordinator_pid: int, slots, slot_counter, channel_address: str, channel_key: bytes) -> None:
    """Pool initializer: watch the coordinator; claim a row in the shared slot table.

    The slot table (shared memory: pid, token per row) tells the coordinator which
    process runs which task without a message per task: it reads the table only
    when it must (a worker died, a timeout fired, a start to watch for).
    """
    start_parent_watch(coordinator_pid, shared_results.forget_own_files)
    reaper.become_subreaper()  # orphans of tasks (daemons) re-parent to this worker, to be killed
    set_limit_action(_exit_for_memory)
    with slot_counter.get_lock():
        row = 1 + slot_counter.value % (len(slots) // 2 - 1)  # row 0 is the stop flag
        slot_counter.value += 1
    slots[2 * row] = os.getpid()
    slots[2 * row + 1] = 0
    _pool_state.update(in_pool=True, slots=slots, token_index=2 * row + 1, busy=False, retire=False)
    outcome_channel.connect(channel_address, channel_key)
    signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum, frame) -> None:
    """The pool terminates every worker when one dies. A worker the coordinator
    marked retiring (slot table: its pid negated) finishes and reports its task
    first; any other SIGTERM (a timeout, an interrupt: they set the stop flag
    or un-retire it first, or anyone else's) kills it at once, as by default."""
    slots = _pool_state["slots"]
    if _pool_state["busy"] and slots[_pool_state["token_index"] - 1] < 0 and not slots[0]:
        _pool_state["retire"] = True
        return
    # Our task's processes die before we do: once we are gone they re-parent to
    # init, where no kill can find them (a command ignoring SIGTERM outlived its
    # timeout so). A second SIGTERM must not cut this short; the coordinator's
    # SIGKILL, after its own longer grace, still ends us if we hang.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    kill_tree(os.getpid(), include_self=False, grace=WORKER_KILL_GRACE)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _run_one(request: TaskRequest) -> tuple[Outcome, bool]:
    """Mark the slot busy with this token, run the task, send its outcome down the channel
    (returned with whether it went).

    Busy until the outcome is sent: a retiring worker's SIGTERM in that time
    waits for the send, so a task that ended is always reported (never rerun).
    """
    slots = _pool_state["slots"]
    if slots[0] and not request.ignore_halt:  # the run stopped (fail fast, interrupt) while this task waited
        return _not_started(request, STOPPED_BEFORE_START), False
    index = _pool_state["token_index"]
    _pool_state["busy"] = True  # before the check: a SIGTERM from now on waits for us
    if slots[index - 1] < 0:  # retiring (the pool broke): start nothing more; the coordinator
        os._exit(0)  # learns from our exit that this task and the rest never started
    slots[index] = request.token
    reaper.begin_task(request.keep_children)
    try:
        outcome = execute(request, own_process=True)  # a pool worker runs one task at a time: fds 1/2 are its
    finally:
        reaper.end_task()  # what the task left running dies with it
    if request.halt_on_failure and not outcome.ok:
        slots[0] = 1  # fail fast: this worker must not take the next queued task
    sent = outcome_channel.send(outcome)
    slots[index] = 0
    _pool_state["busy"] = False
    if _pool_state["retire"]:  # its pool broke: the task is reported, the worker's work is done
        os._exit(0)
    return outcome, sent


def _not_started(request: TaskRequest, why: str) -> Outcome:
    return Outcome.not_started(request.token, why, pid=os.getpid())


def run_batch(requests: list[TaskRequest]) -> list[Outcome]:
    """Run a batch's tasks in order; send each outcome as its task ends.

    A task that reads an earlier member (a chain) runs only if that member
    succeeded, and gets its result from here when small. Returns the outcomes
    the channel could not carry (they travel back with the work item).
    """
    members = {r.task_id for r in requests}
    succeeded: dict[str, bytes | None] = {}  # member -> its small pickled result (None: in the store)
    unsent = []
    for request in requests:
        blocked = [d for d in request.depends_on if d in members and d not in succeeded]
        sent = False
        if blocked:
            outcome = _not_started(request, f"'{blocked[0]}' did not succeed")
        else:
            if succeeded:  # earlier members' results: read from here (the context reads only its upstream)
                request.inline = ChainMap(request.inline or {}, succeeded)
            outcome, sent = _run_one(request)
            if outcome.ok:
                succeeded[request.task_id] = outcome.blob
        if not sent and not outcome_channel.send(outcome):
            unsent.append(outcome)
    return unsent
