"""Backends behind one small interface: process pool (default), thread, inline.

    submit(request) -> Future[Outcome]   # the future always resolves to an Outcome
    stop(token, error)                   # stop one attempt's work (timeout)
    store()                              # where tasks' results go (lazily created)
    close(kill)                          # reap everything; kill=True stops running work

Nothing above this seam knows which backend runs. The process backend wraps a
`concurrent.futures.ProcessPoolExecutor` and adds what it lacks:

    worker ──(token, pid)──▶ start queue ──reader thread──▶ pids[token], on_start()
    pool future ──done──▶ _on_pool_done ──ok──────────────▶ backend future
                                        └─BrokenProcessPool─▶ blame the dead worker's task,
                                                              resubmit the innocent on a new pool

A dead worker breaks a ProcessPoolExecutor for every pending future (CPython's
`_terminate_broken`). We know which process ran which task, so the task whose
process died fails with how it died, and the others run again on a fresh pool
without counting an attempt.
"""
from __future__ import annotations

__all__ = ["Backend", "ProcessBackend", "ThreadBackend", "InlineBackend", "make_backend", "EXECUTORS", "start_method"]

import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

from .context import ContextStore, ManagedStore
from .procs import describe_exit, kill_tree
from .worker import MEMORY_EXIT_CODE, Outcome, TaskRequest, error_record, execute, init_pool_worker, run_in_pool, run_in_thread

EXECUTORS = ("process", "thread", "inline", "dask")
OnStart = Callable[[int, int], None]


def start_method() -> str:
    """The multiprocessing start method, overridable with OPFLOW_START_METHOD.

    Never fork: the coordinator runs threads (the pool's manager thread, the
    start-queue reader, the Manager's connections), and forking a process with
    threads can copy a held lock into the child and deadlock it. forkserver
    forks from a clean single-threaded server with opflow preloaded, so workers
    start fast; spawn is the portable fallback (macOS, Windows).
    """
    chosen = os.environ.get("OPFLOW_START_METHOD")
    if chosen:
        return chosen
    return "forkserver" if sys.platform.startswith("linux") else "spawn"


def _mp_context():
    method = start_method()
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["opflow.worker"])
    return ctx


class Backend:
    name = "?"
    #: Whether `stop` really stops the work (a thread cannot be killed).
    can_stop = False

    def submit(self, request: TaskRequest) -> Future:
        raise NotImplementedError

    def stop(self, token: int, error: dict) -> None:
        """Stop one attempt's work; its future then resolves with `error`."""

    def interrupt(self, grace: float = 2.0) -> None:
        """Stop all running work (Ctrl-C, SIGTERM); a no-op where work cannot be stopped."""

    def store(self):
        raise NotImplementedError

    def close(self, kill: bool = False) -> None:
        raise NotImplementedError


class InlineBackend(Backend):
    """Runs each task in the coordinator itself, one at a time: for debugging."""

    name = "inline"

    def __init__(self, workers: int = 1, on_start: OnStart | None = None):
        self._on_start = on_start
        self._store = ContextStore()

    def submit(self, request: TaskRequest) -> Future:
        future: Future = Future()
        future.set_result(run_in_thread(request, self._on_start))
        return future

    def store(self):
        return self._store

    def close(self, kill: bool = False) -> None:
        pass


class ThreadBackend(Backend):
    """A thread pool: for I/O-bound tasks; timeouts are advisory (threads cannot be killed)."""

    name = "thread"

    def __init__(self, workers: int, on_start: OnStart | None = None):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="opflow-task")
        self._on_start = on_start
        self._store = ContextStore()

    def submit(self, request: TaskRequest) -> Future:
        return self._pool.submit(run_in_thread, request, self._on_start)

    def store(self):
        return self._store

    def close(self, kill: bool = False) -> None:
        # A running thread cannot be stopped; with kill=True we only drop queued work.
        self._pool.shutdown(wait=not kill, cancel_futures=True)


class ProcessBackend(Backend):
    """A ProcessPoolExecutor, rebuilt when a worker dies; see the module docstring."""

    name = "process"
    can_stop = True
    #: How long to wait for the start message of a task whose worker died at once.
    START_MESSAGE_WAIT = 1.0

    def __init__(self, workers: int, on_start: OnStart | None = None):
        self._workers = workers
        self._on_start = on_start
        self._ctx = _mp_context()
        self._lock = threading.RLock()
        self._pool: ProcessPoolExecutor | None = None
        self._old_pools: list[ProcessPoolExecutor] = []
        self._processes: dict = {}
        self._inflight: dict[int, tuple[TaskRequest, Future, ProcessPoolExecutor]] = {}
        self._pids: dict[int, int] = {}
        self._pid_event = threading.Condition(self._lock)
        self._stopping: dict[int, dict] = {}
        self._blamed: dict[int, dict] = {}  # token -> crash error, per broken pool
        self._broken_pools: set[int] = set()
        self._closing = False
        self._start_queue = None
        self._reader: threading.Thread | None = None
        self._store = ManagedStore(self._ctx)

    # -- pool lifetime -------------------------------------------------------
    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            if self._start_queue is None:
                self._start_queue = self._ctx.SimpleQueue()
                self._reader = threading.Thread(target=self._read_starts, name="opflow-start-reader", daemon=True)
                self._reader.start()
            self._pool = ProcessPoolExecutor(
                max_workers=self._workers, mp_context=self._ctx,
                initializer=init_pool_worker, initargs=(os.getpid(), self._start_queue),
            )
            self._processes = self._pool._processes  # pid -> Process; read to tell how a worker died
        return self._pool

    def _read_starts(self) -> None:
        queue = self._start_queue
        while True:
            message = queue.get()
            if message is None:
                return
            token, pid = message
            with self._lock:
                self._pids[token] = pid
                self._pid_event.notify_all()
                known = token in self._inflight
            if known and self._on_start is not None:
                self._on_start(token, pid)

    def store(self):
        return self._store.address()

    # -- submitting ----------------------------------------------------------
    def submit(self, request: TaskRequest) -> Future:
        future: Future = Future()
        with self._lock:
            self._inflight[request.token] = (request, future, None)
            self._submit_to_pool(request)
        return future

    def _submit_to_pool(self, request: TaskRequest) -> None:
        future = self._inflight[request.token][1]
        for _ in range(2):
            pool = self._ensure_pool()
            try:
                pool_future = pool.submit(run_in_pool, request)
            except BrokenProcessPool:
                self._retire(pool)  # broke before we heard of it: once more on a new pool
                continue
            except RuntimeError:  # shut down: we are closing
                self._resolve(request.token, error_record("Cancelled", "the run stopped before this task ran"))
                return
            self._inflight[request.token] = (request, future, pool)
            pool_future.add_done_callback(lambda f, t=request.token, p=pool: self._on_pool_done(t, p, f))
            return
        self._resolve(request.token, error_record("WorkerCrashed", "the process pool could not be started"))

    def _retire(self, pool: ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None
            self._old_pools.append(pool)

    # -- results -------------------------------------------------------------
    def _on_pool_done(self, token: int, pool: ProcessPoolExecutor, pool_future: Future) -> None:
        if pool_future.cancelled():  # queued work dropped by shutdown(cancel_futures=True)
            self._resolve(token, error_record("Cancelled", "the run stopped before this task ran"))
            return
        exc = pool_future.exception()
        if exc is None:
            with self._lock:
                stopped = self._stopping.pop(token, None)
            if stopped is not None:
                # It finished in the instant between the timeout and the kill: the
                # verdict already given (timed out) stands.
                self._resolve(token, stopped)
            else:
                self._finish(token, pool_future.result())
            return
        if isinstance(exc, BrokenProcessPool):
            self._on_broken(token, pool)
            return
        # The request or the outcome failed to pickle, or the pool shut down.
        self._resolve(token, error_record(type(exc).__name__, f"the process pool could not run the task: {exc}"))

    def _on_broken(self, token: int, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if id(pool) not in self._broken_pools:
                self._broken_pools.add(id(pool))
                self._blame_dead_workers(pool)
                self._retire(pool)
            stopped = self._stopping.pop(token, None)
            crashed = self._blamed.pop(token, None)
            if stopped is not None:
                self._resolve(token, stopped)
            elif crashed is not None:
                self._resolve(token, crashed)
            elif self._closing:
                self._resolve(token, error_record("Cancelled", "the run stopped while this task ran"))
            elif token in self._inflight:
                # Innocent: its worker was taken down with the pool. Run it again,
                # on a new pool, as the same attempt.
                self._pids.pop(token, None)
                self._submit_to_pool(self._inflight[token][0])

    def _blame_dead_workers(self, pool: ProcessPoolExecutor) -> None:
        """Map each dead worker to the task it was running, and record how it died."""
        processes = dict(self._processes)
        dead = {pid: proc.exitcode for pid, proc in processes.items() if proc.exitcode is not None}
        if not dead:
            return
        deadline = time.monotonic() + self.START_MESSAGE_WAIT
        while True:
            by_pid = {pid: token for token, pid in self._pids.items() if token in self._inflight}
            missing = [pid for pid in dead if pid not in by_pid]
            if not missing or time.monotonic() >= deadline:
                break
            self._pid_event.wait(0.05)
        for pid, exitcode in dead.items():
            token = by_pid.get(pid)
            if token is None or token in self._stopping:
                continue
            if exitcode == MEMORY_EXIT_CODE:
                limit = self._inflight[token][0].max_memory
                message = f"the task exceeded max_memory ({limit} bytes) and its process tree was killed"
                self._blamed[token] = error_record("MemoryLimitExceeded", message)
            else:
                self._blamed[token] = error_record(
                    "WorkerCrashed", f"{describe_exit(exitcode)} (pid {pid}, exit code {exitcode})"
                )

    def _finish(self, token: int, outcome: Outcome) -> None:
        with self._lock:
            entry = self._inflight.pop(token, None)
            self._pids.pop(token, None)
        if entry is not None and not entry[1].done():
            entry[1].set_result(outcome)

    def _resolve(self, token: int, error: dict) -> None:
        with self._lock:
            entry = self._inflight.get(token)
            pid = self._pids.get(token, 0)
        if entry is None:
            return
        now = time.time()
        self._finish(token, Outcome(token=token, ok=False, error=error, started_at=now, finished_at=now, pid=pid))

    # -- stopping ------------------------------------------------------------
    def stop(self, token: int, error: dict) -> None:
        with self._lock:
            if token not in self._inflight:
                return
            self._stopping[token] = error
            pid = self._pids.get(token)
        if pid is None:
            # Not started yet (still queued in the pool): it will not start, as
            # killing nothing leaves it queued; resolve it now and drop its result.
            self._resolve(token, error)
            return
        # Killing waits out a grace period; do not block the caller's loop.
        threading.Thread(target=kill_tree, args=(pid,), name="opflow-kill", daemon=True).start()

    def interrupt(self, grace: float = 2.0) -> None:
        """Stop all running work now: kill every worker's process tree, submit nothing more."""
        with self._lock:
            self._closing = True
            pids = list(self._processes)
        _kill_trees(pids, grace)

    def close(self, kill: bool = False) -> None:
        if kill:
            self.interrupt(grace=0.5)
        with self._lock:
            self._closing = True
            pools = [p for p in [self._pool, *self._old_pools] if p is not None]
            self._pool = None
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            leftover = list(self._inflight)
        for token in leftover:  # queued work the shutdown cancelled
            self._resolve(token, error_record("Cancelled", "the run stopped before this task ran"))
        if self._start_queue is not None:
            self._start_queue.put(None)
            self._reader.join(timeout=5)
            self._start_queue.close()
        self._store.close()


def _kill_trees(pids: list[int], grace: float) -> None:
    """Kill several process trees at once, so their grace periods overlap."""
    threads = [threading.Thread(target=kill_tree, args=(pid,), kwargs={"grace": grace}) for pid in pids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def make_backend(kind: str, workers: int, on_start: OnStart | None = None, *, scheduler: str | None = None) -> Backend:
    if kind == "dask":
        from .dask_backend import DaskBackend  # optional extra: imported only when asked for

        return DaskBackend(workers, on_start, scheduler=scheduler)
    backends = {"process": ProcessBackend, "thread": ThreadBackend, "inline": InlineBackend}
    return backends[kind](workers, on_start)
