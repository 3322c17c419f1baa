"""The backends: what runs tasks, behind the interface in base.py.

    base.py     Backend: the seam the coordinator speaks
    local.py    inline and thread: tasks inside the coordinator's process
    process.py  the process pool (default), both halves of its slot table
    dask/       a Dask cluster (optional extra, imported only when chosen)
"""
from __future__ import annotations

__all__ = ["EXECUTORS", "make_backend"]

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports EXECUTORS: keep this module light
    from opflow.backends.base import Backend, OnStart

EXECUTORS = ("process", "thread", "inline", "dask")


def make_backend(kind: str, workers: int, on_start: OnStart | None = None, *, scheduler: str | None = None) -> Backend:
    # Each backend's module is imported only when chosen: the process pool's
    # multiprocessing machinery, and Dask, cost start-up time.
    if kind == "dask":
        from opflow.backends.dask.backend import DaskBackend

        return DaskBackend(workers, on_start, scheduler=scheduler)
    if kind == "process":
        from opflow.backends.process import ProcessBackend

        return ProcessBackend(workers, on_start)
    from opflow.backends.local import InlineBackend, ThreadBackend

    return {"thread": ThreadBackend, "inline": InlineBackend}[kind](workers, on_start)
