"""The process pool's multiprocessing context and its helper processes, started early.

A run's pool needs two helper processes before its first worker: the resource
tracker and (on Linux) the forkserver, a fresh interpreter that imports opflow's
worker side once so that every worker forks from it ready. The forkserver's
start-up is a few hundred milliseconds of CPU; started when the pool is built,
it comes after the parsing and imports that precede a run, all on one core.
`pool_context` starts both at once (each is a fork and exec, a few ms) as soon
as a run knows it will use the process pool (base.ProcessPool.start_early), so they get ready on another core
while the coordinator parses the workflow and imports its machinery.

Only multiprocessing, os and the knobs here: the CLI imports this before the run's modules.
"""
from __future__ import annotations

__all__ = ["pool_context", "start_method"]

import contextlib
import multiprocessing
import os
import sys

from opflow import knobs

#: What the forkserver imports once, for every worker it forks; forkserver_exit
#: makes it exit without tearing all that down again.
FORKSERVER_PRELOAD = ["opflow.backends.process", "opflow.backends.forkserver_exit"]


def start_method() -> str:
    """The multiprocessing start method, overridable with OPFLOW_START_METHOD.

    Never fork: the coordinator runs threads (the pool's manager thread, the
    start-queue reader, the Manager's connections), and forking a process with
    threads can copy a held lock into the child and deadlock it. forkserver
    forks from a clean single-threaded server with opflow preloaded, so workers
    start fast; spawn is the portable fallback (macOS, Windows).
    """
    chosen = knobs.read("OPFLOW_START_METHOD")
    if chosen:
        return chosen
    return "forkserver" if sys.platform.startswith("linux") else "spawn"


def pool_context():
    """The pool's multiprocessing context, its helper processes started (a no-op once they run)."""
    method = start_method()
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(FORKSERVER_PRELOAD)
    with _current_folder_off_path():
        _start_resource_tracker_detached()  # first: the forkserver would start it attached
        if method == "forkserver":
            from multiprocessing import forkserver

            forkserver.ensure_running()
    return ctx


#: PYTHONSAFEPATH as we set it (any non-empty value enables it): the forkserver takes back
#: this value only, never the user's own (forkserver_exit.py).
SAFE_PATH_VALUE = "opflow-helpers"


@contextlib.contextmanager
def _current_folder_off_path():
    """Start helper processes without the current folder at the head of their sys.path.

    They start as `python -c ...`, so the folder opflow was started from came first
    on their path: a `random.py` or `socket.py` there, or a clone named `opflow/`,
    was imported instead of the real one, and the forkserver or the workers failed
    (Python 3.11 preloads before it applies the coordinator's path). PYTHONSAFEPATH
    (3.11+; Python 3.10 ignores it) leaves that folder off; it must not reach
    the tasks, whose own `python script.py` expects the script's folder on its path.
    """
    if "PYTHONSAFEPATH" in os.environ:  # the user's own choice: theirs to keep
        yield
        return
    os.environ["PYTHONSAFEPATH"] = SAFE_PATH_VALUE
    try:
        yield
    finally:
        os.environ.pop("PYTHONSAFEPATH", None)


def _start_resource_tracker_detached() -> None:
    """Start multiprocessing's resource tracker with its stdin/stdout/stderr on /dev/null.

    The pool's queues are named semaphores, which the tracker unlinks if the
    coordinator dies without doing so (SIGKILL, the OOM killer). It then also
    printed "There appear to be N leaked semaphore objects" into the user's
    terminal or cron mail, though nothing leaked (it had just cleaned them up),
    and, started lazily, it kept the caller's stdout and stderr open after the
    run (`opflow run | cat` waited for it). Started here, first, it inherits
    neither. A no-op when it is already running.
    """
    from multiprocessing import resource_tracker

    if getattr(resource_tracker._resource_tracker, "_fd", None) is not None:  # noqa: SLF001 - stdlib has no public probe
        return
    saved = [os.dup(fd) for fd in (0, 1, 2)]
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        resource_tracker.ensure_running()
    finally:
        for fd, copy in zip((0, 1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(null)
