"""The backends: what runs tasks, behind the interface in base.py.

    base.py     Backend: the seam the coordinator speaks, and what each backend can do
    local.py    inline and thread: tasks inside the coordinator's process
    process.py  the process pool (default), both halves of its slot table
    dask/       a Dask cluster (optional extra, imported only when chosen)

`BACKENDS` maps each name to its class (base.py: cheap to import; the
implementation is imported only when a run uses it).
"""
from __future__ import annotations

__all__ = ["BACKENDS", "EXECUTORS", "backend_class", "make_backend", "register"]

from opflow.backends.base import CAPABILITIES, Backend, DaskCluster, Inline, OnStart, ProcessPool, ThreadPool
from opflow.errors import UsageError

#: name -> its backend class, in the order --executor lists them.
BACKENDS: dict[str, type[Backend]] = {}


def register(cls: type[Backend]) -> type[Backend]:
    """Make `cls` a backend `--executor` / `opflow.run(executor=...)` may name; it must
    answer every question of base.CAPABILITIES."""
    unanswered = [q for q in CAPABILITIES if getattr(cls, q) is None]
    if unanswered or cls.name == Backend.name:
        raise TypeError(f"backend {cls.__qualname__} does not say its name or {', '.join(unanswered)}")
    BACKENDS[cls.name] = cls
    return cls


for _cls in (ProcessPool, ThreadPool, Inline, DaskCluster):
    register(_cls)

#: The built-in backends' names (the CLI's --executor choices).
EXECUTORS = tuple(BACKENDS)


def backend_class(name: str) -> type[Backend]:
    """The backend called `name`; `UsageError` for no such backend."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise UsageError(f"--executor {name!r}: choose one of {', '.join(BACKENDS)}") from None


def make_backend(kind: str, workers: int, on_start: OnStart | None = None, **place) -> Backend:
    # Each backend's implementation is imported only when chosen: the process pool's
    # multiprocessing machinery, and Dask, cost start-up time.
    return backend_class(kind).open(workers, on_start, **place)
