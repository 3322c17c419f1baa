"""Backends that run tasks inside the coordinator's process: inline (one at a time) and thread.

Both keep results in an in-process `ContextStore`, so a task still reads private
unpickled copies of its upstream results, as on the process pool.
"""
from __future__ import annotations

__all__ = ["InlineBackend", "ThreadBackend", "run_in_thread"]

import os
from concurrent.futures import Future, ThreadPoolExecutor

from opflow import reaper
from opflow.attempt import Outcome, TaskRequest
from opflow.worker.context import ContextStore
from opflow.procs import kill_own_children
from opflow.worker.execute import execute
from opflow.backends.base import Inline, OnStart, ThreadPool


def run_in_thread(request: TaskRequest, on_start: OnStart | None) -> Outcome:
    if on_start is not None and request.notify_start:
        on_start(request.token, os.getpid())
    reaper.begin_task(request.keep_children)
    return execute(request)


class InlineBackend(Inline):
    """Runs each task in the coordinator itself, one at a time: for debugging."""

    def __init__(self, workers: int = 1, on_start: OnStart | None = None):
        self._on_start = on_start
        self._store = ContextStore()

    def submit(self, request: TaskRequest) -> Future:
        request.store = self._store
        future: Future = Future()
        future.set_result(run_in_thread(request, self._on_start))
        return future

    def seed(self, task_id: str, blob: bytes) -> None:
        self._store.put(task_id, blob)

    def max_inflight(self, workers: int) -> int:
        return 1  # one at a time, in the coordinator's own thread

    def close(self, kill: bool = False) -> None:
        pass


class ThreadBackend(ThreadPool):
    """A thread pool: for I/O-bound tasks; timeouts are advisory (threads cannot be killed)."""

    def __init__(self, workers: int, on_start: OnStart | None = None):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="opflow-task")
        self._futures: set[Future] = set()
        self._on_start = on_start
        self._store = ContextStore()

    def submit(self, request: TaskRequest) -> Future:
        request.store = self._store
        future = self._pool.submit(run_in_thread, request, self._on_start)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        return future

    def halt_queued(self) -> None:
        for future in list(self._futures):
            future.cancel()  # only succeeds for work no thread has picked up

    def interrupt(self, grace: float = 2.0) -> None:
        """A thread cannot be stopped, but the shell commands it waits on can."""
        self.halt_queued()
        kill_own_children(grace=min(grace, 0.5))

    def seed(self, task_id: str, blob: bytes) -> None:
        self._store.put(task_id, blob)

    def close(self, kill: bool = False) -> None:
        # A running thread cannot be stopped; with kill=True we only drop queued work.
        self._pool.shutdown(wait=not kill, cancel_futures=True)
