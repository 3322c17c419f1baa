"""Memory of a running task: samples the RSS of this process and its children.

A task's peak RSS goes into its record; past `max_memory`, the monitor calls the
action its backend installed (`set_limit_action`): the process backend's worker
kills the task's children and exits with a code the coordinator reads. Where no
action is installed (thread, inline), the limit is not enforced.
"""
from __future__ import annotations

__all__ = ["monitor", "set_limit_action", "add_tick_action", "own_rss"]

import os
import threading
import time
from typing import Callable

import psutil

from opflow.procs import has_child_groups

MONITOR_INTERVAL = 0.1  # seconds between RSS samples of a running task's process tree
CHILD_SCAN_EVERY = 10  # samples between looks for child processes (unless a shell command runs)
IDLE_TICKS = 10  # intervals without a task before the thread sleeps until the next one

_limit_action: list = []  # [callable(rss, limit)], set once per process by its backend
_tick_actions: list = []  # callables run at each sample while a task runs (task_output's spool)


def add_tick_action(action: Callable[[], None]) -> None:
    """Something to do every MONITOR_INTERVAL while a task runs in this process."""
    _tick_actions.append(action)


def set_limit_action(action: Callable[[int, int], None]) -> None:
    """What to do when a task passes its max_memory (in this process)."""
    _limit_action[:] = [action]


class _Monitor:
    """Samples the RSS of this process and its children while a task runs.

    One daemon thread per process, idle between tasks; a task shorter than one
    interval is measured once, at its end.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._running = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_pid = 0  # the process the thread runs in (a fork has none)
        self._peak = 0
        self._limit: int | None = None
        self._process: psutil.Process | None = None

    def begin(self, limit: int | None) -> None:
        with self._lock:
            self._peak = 0
            self._limit = limit
            if self._process is None or self._process.pid != os.getpid():
                self._process = psutil.Process()
        self._running.set()
        if self._thread_pid != os.getpid():
            self._thread_pid = os.getpid()
            self._thread = threading.Thread(target=self._loop, name="opflow-task-monitor", daemon=True)
            self._thread.start()

    def end(self) -> int:
        self._running.clear()
        rss = own_rss()
        with self._lock:
            self._peak = max(self._peak, rss) if rss else self._peak
        if not self._peak:
            self._sample(children=False)
        return self._peak

    def _loop(self):
        ticks = idle = 0
        while True:
            if idle >= IDLE_TICKS:
                # Sleep until a task begins. Not between every two tasks: waking this
                # thread at each begin() costs a short task a thread switch.
                self._running.wait()
                idle = 0
            time.sleep(MONITOR_INTERVAL)  # a task shorter than this is measured at its end
            if not self._running.is_set():
                idle += 1
            else:
                idle = 0
                ticks += 1
                # Looking for children scans all of /proc: do it every tick only
                # while a shell command runs, else once a second (a python task
                # may start processes too), so CPU-bound tasks keep their CPU.
                self._sample(children=has_child_groups() or ticks % CHILD_SCAN_EVERY == 0)
                for action in list(_tick_actions):
                    try:
                        action()
                    except Exception:  # a hook's failure must not stop the memory watch
                        pass

    def _sample(self, children: bool) -> None:
        rss = own_rss()
        try:
            if not rss:
                rss = self._process.memory_info().rss
            if children:
                for child in self._process.children(recursive=True):
                    try:
                        rss += child.memory_info().rss
                    except psutil.Error:
                        pass
        except psutil.Error:
            return
        with self._lock:
            self._peak = max(self._peak, rss)
            limit = self._limit
        if limit and rss > limit and self._running.is_set():
            on_limit = _limit_action[0] if _limit_action else None
            if on_limit is not None:
                on_limit(rss, limit)


_statm_fd: list = []  # [pid, fd] of /proc/self/statm, kept open: a read costs a few µs
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def own_rss() -> int:
    """This process's resident set size; 0 where /proc is not there (psutil then)."""
    try:
        if not _statm_fd or _statm_fd[0] != os.getpid():
            _statm_fd[:] = [os.getpid(), os.open("/proc/self/statm", os.O_RDONLY)]
        return int(os.pread(_statm_fd[1], 128, 0).split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


monitor = _Monitor()
