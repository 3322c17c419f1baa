"""Backends behind one small interface: process pool (default), thread, inline.

    submit(request) -> Future[Outcome]   # the future always resolves to an Outcome
    stop(token, error)                   # stop one attempt's work (timeout)
    store()                              # where tasks' results go (lazily created)
    close(kill)                          # reap everything; kill=True stops running work

Nothing above this seam knows which backend runs. The process backend wraps a
`concurrent.futures.ProcessPoolExecutor` and adds what it lacks:

    worker ──writes (pid, token)──▶ slot table (shared memory, read only when needed)
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

import concurrent.futures
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
from .worker import MEMORY_EXIT_CODE, NOT_STARTED, Outcome, TaskRequest, error_record, init_pool_worker, run_in_pool, run_in_thread

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

    def halt_queued(self) -> None:
        """Start no more of the submitted tasks: those not yet started resolve as Cancelled."""

    def warm_up(self, count: int) -> None:
        """Start up to `count` workers now; called off the event loop (see ProcessBackend)."""

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
        self._futures: set[Future] = set()
        self._on_start = on_start
        self._store = ContextStore()

    def submit(self, request: TaskRequest) -> Future:
        future = self._pool.submit(run_in_thread, request, self._on_start)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        return future

    def halt_queued(self) -> None:
        for future in list(self._futures):
            future.cancel()  # only succeeds for work no thread has picked up

    def interrupt(self, grace: float = 2.0) -> None:
        """A thread cannot be stopped, but the shell commands it waits on can."""
        from .procs import kill_own_children

        self.halt_queued()
        kill_own_children(grace=min(grace, 0.5))

    def store(self):
        return self._store

    def close(self, kill: bool = False) -> None:
        # A running thread cannot be stopped; with kill=True we only drop queued work.
        self._pool.shutdown(wait=not kill, cancel_futures=True)


class ProcessBackend(Backend):
    """A ProcessPoolExecutor, rebuilt when a worker dies; see the module docstring."""

    name = "process"
    can_stop = True
    #: How often the start watcher looks at the slot table (only while a task with
    #: a timeout is waiting to start): the precision of a timeout's start.
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
        self._resubmits: dict[int, int] = {}  # token -> times resubmitted after a broken pool
        self._pool_processes: dict[int, dict] = {}  # id(pool) -> its pid -> Process
        self._broken_pools: set[int] = set()
        self._closing = False
        # (pid, token) per worker; rows are reused round-robin across pool rebuilds.
        # Row 0 is for control: slots[0] != 0 tells workers to start nothing more.
        self._slots = None
        self._slot_counter = None
        self._watch: set[int] = set()  # tokens whose start the coordinator waits to hear of
        self._watch_wakeup = threading.Condition(self._lock)
        self._watcher: threading.Thread | None = None
        self._store = ManagedStore(self._ctx)
        self._hurry = threading.Event()  # set by a second interrupt: no more grace for anyone

    # -- pool lifetime -------------------------------------------------------
    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            if self._slots is None:
                rows = 1 + max(64, 8 * self._workers)
                self._slots = self._ctx.Array("q", 2 * rows, lock=False)
                self._slot_counter = self._ctx.Value("q", 0)
            self._pool = ProcessPoolExecutor(
                max_workers=self._workers, mp_context=self._ctx,
                initializer=init_pool_worker, initargs=(os.getpid(), self._slots, self._slot_counter),
            )
            self._processes = self._pool._processes  # pid -> Process; read to tell how a worker died
            self._pool_processes[id(self._pool)] = self._processes
        return self._pool

    def _running_tokens(self) -> dict[int, int]:
        """token -> pid of every task a live worker is running now (from the slot table)."""
        if self._slots is None:
            return {}
        table = self._slots[:]
        return {table[i + 1]: table[i] for i in range(2, len(table), 2) if table[i + 1] and table[i]}

    def _watch_starts(self) -> None:
        """Tell the coordinator when watched tasks start (they have timeouts)."""
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

    def store(self):
        return self._store.address()

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

    # -- submitting ----------------------------------------------------------
    def submit(self, request: TaskRequest) -> Future:
        future: Future = Future()
        with self._lock:
            self._inflight[request.token] = (request, future)
            self._submit_to_pool(request)
        return future

    def _submit_to_pool(self, request: TaskRequest) -> None:
        for _ in range(2):
            pool = self._ensure_pool()
            try:
                pool_future = pool.submit(run_in_pool, request)
            except BrokenProcessPool:
                self._retire(pool)  # broke before we heard of it: once more on a new pool
                continue
            except RuntimeError as exc:
                if self._closing:  # the pool is shut down because the run is stopping
                    self._resolve(request.token, error_record(NOT_STARTED, "the run stopped before this task ran"))
                else:  # it cannot start a worker: a failure, never "not started" (which is retried)
                    self._resolve(request.token, error_record("PoolError", f"the process pool could not start a worker: {exc}"))
                return
            self._watch_for_start(request)
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
            self._resolve(token, error_record(NOT_STARTED, "the run stopped before this task ran"))
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
                # on a new pool, as the same attempt (a bounded number of times).
                count = self._resubmits.get(token, 0) + 1
                self._resubmits[token] = count
                if count > self.MAX_INNOCENT_RESUBMITS:
                    self._resolve(token, error_record(
                        "BrokenPool", f"the process pool broke {count} times while this task was in it, with no worker "
                        "to blame: did worker processes fail to start (their error is on stderr), or is the "
                        "task's result or error unpicklable in the coordinator?"))
                else:
                    self._submit_to_pool(self._inflight[token][0])

    def _blame_dead_workers(self, pool: ProcessPoolExecutor) -> None:
        """Map each dead worker of `pool` to the task it was running, and record how it died.

        Runs when the pool reports itself broken: the worker that died is dead,
        the others are still alive (the pool terminates them right after). Their
        rows in the slot table are cleared: those processes run nothing more.
        """
        table = self._slots[:] if self._slots is not None else []
        token_of = {table[i]: table[i + 1] for i in range(2, len(table), 2) if table[i + 1]}
        processes = dict(self._pool_processes.pop(id(pool), {}))
        for i in range(2, len(table), 2):
            if table[i] in processes:
                self._slots[i + 1] = 0
        for pid, process in processes.items():
            exitcode = process.exitcode
            token = token_of.get(pid)
            if exitcode is None or token is None or token not in self._inflight or token in self._stopping:
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
            self._watch.discard(token)
        if entry is not None and not entry[1].done():
            entry[1].set_result(outcome)

    def _resolve(self, token: int, error: dict) -> None:
        with self._lock:
            if token not in self._inflight:
                return
        now = time.time()
        self._finish(token, Outcome(token=token, ok=False, error=error, started_at=now, finished_at=now))

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
        kill_tree(pid, hurry=self._hurry)

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
            pids = list(self._processes)
        _kill_trees(pids, grace, self._hurry)

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
        with self._lock:
            leftover = list(self._inflight)
        for token in leftover:  # queued work the shutdown cancelled
            self._resolve(token, error_record(NOT_STARTED, "the run stopped before this task ran"))
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        self._store.close()


def _kill_trees(pids: list[int], grace: float, hurry: threading.Event | None = None) -> None:
    """Kill several process trees at once, so their grace periods overlap."""
    threads = [threading.Thread(target=kill_tree, args=(pid,), kwargs={"grace": grace, "hurry": hurry})
               for pid in pids]
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
