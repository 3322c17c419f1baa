"""The backends: what runs tasks, behind the interface in base.py.

    base.py     Backend: the seam the coordinator speaks
    local.py    inline and thread: tasks inside the coordinator's process
    process.py  the process pool (default), both halves of its slot table
    dask/       a Dask cluster (optional extra, imported only when chosen)
"""
from __future__ import annotations

__all__ = ["EXECUTORS", "make_backend", "start_method"]

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports EXECUTORS: keep this module light
    from .base import Backend, OnStart

EXECUTORS = ("process", "thread", "inline", "dask")


def make_backend(kind: str, workers: int, on_start: OnStart | None = None, *, scheduler: str | None = None) -> Backend:
    # Each backend's module is imported only when chosen: the process pool's
    # multiprocessing machinery, and Dask, cost start-up time.
    if kind == "dask":
        from .dask.backend import DaskBackend

        return DaskBackend(workers, on_start, scheduler=scheduler)
    if kind == "process":
        from .process import ProcessBackend

        return ProcessBackend(workers, on_start)
    from .local import InlineBackend, ThreadBackend

    return {"thread": ThreadBackend, "inline": InlineBackend}[kind](workers, on_start)


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
