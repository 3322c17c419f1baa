"""What a task leaves behind dies with the task, on Linux, however it escaped.

A double-forked or `setsid` daemon leaves its task's process group and is
re-parented away from its worker, so killing the worker's tree or the shell
command's group misses it. Here each pool worker becomes a *child subreaper*
(prctl PR_SET_CHILD_SUBREAPER, Linux 3.4+): orphans of its tasks are re-parented
to the worker instead of to init, so they stay in its tree, where

- `end_task` kills them when the task ends (unless the task says
  `keep_children: true`), and reaps them;
- a timeout or an interrupt, which kills the worker's whole tree, finds them.

A pool worker runs one task at a time, so every descendant is its task's. The
thread and inline backends share one process among tasks: there only the task's
own shell process group is killed (see plugins/shell.py).
"""
from __future__ import annotations

__all__ = ["become_subreaper", "is_subreaper", "begin_task", "keeping_children", "end_task", "kill_leftovers"]

import ctypes
import os
import sys
import threading

from opflow.procs import kill_tree

PR_SET_CHILD_SUBREAPER = 36
GRACE_SECONDS = 0.5  # between SIGTERM and SIGKILL for what a task left behind

_state = {"subreaper": False}
_task = threading.local()  # keep_children of the task this thread runs


def become_subreaper() -> bool:
    """Make this process adopt its descendants' orphans; False where the OS cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ok = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        ok = False
    _state["subreaper"] = ok
    return ok


def is_subreaper() -> bool:
    return _state["subreaper"]


def begin_task(keep_children: bool) -> None:
    _task.keep = bool(keep_children)


def keeping_children() -> bool:
    """Whether the task running on this thread asked to keep its children."""
    return getattr(_task, "keep", False)


def end_task() -> None:
    """After a task in a pool worker: kill and reap whatever it left running."""
    keep = keeping_children()
    _task.keep = False
    if _state["subreaper"] and not keep:
        kill_leftovers()


def _has_children() -> bool:
    """Whether this process has a child left, in one syscall per task: waitpid(-1,
    WNOHANG) fails with ECHILD when there is none. Zombies it finds are reaped (a
    task's leftovers, dead already); (0, 0) means one is still running."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        except OSError:  # cannot tell: look the slow way
            return True
        if pid == 0:
            return True


def kill_leftovers(grace: float = GRACE_SECONDS) -> list[int]:
    """Kill every descendant of this process (SIGTERM, then SIGKILL); reap them."""
    if not _has_children():
        return []
    pids = kill_tree(os.getpid(), include_self=False, grace=grace)
    _reap_zombies()
    return pids


def _reap_zombies() -> None:
    """Adopted orphans become our zombies when they die: collect them."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
