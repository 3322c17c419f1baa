"""What runs in a worker: run one task attempt, measure it, return an `Outcome`.

Stateless between tasks (beyond caches of imported plugin modules and the store
connection). Never raises for a task's failure: every error becomes a recorded
value (type, message, traceback text formatted here, where the frames are).
"""
from __future__ import annotations

__all__ = ["TaskRequest", "Outcome", "execute", "init_pool_worker", "run_in_pool"]

import os
import pickle
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psutil

from . import reaper
from .context import PICKLE_PROTOCOL, StoreAddress, build_context, connect_store
from .errors import PluginError
from .plugins import PluginRef, load_plugin_class
from .procs import has_child_groups
from .render import render
from .results_log import append_result

MONITOR_INTERVAL = 0.1  # seconds between RSS samples of a running task's process tree
CHILD_SCAN_EVERY = 10  # samples between looks for child processes (unless a shell command runs)


@dataclass
class TaskRequest:
    """Everything one attempt needs, and nothing else: small and picklable."""

    token: int
    task_id: str
    attempt: int
    plugin: PluginRef
    config: dict
    depends_on: tuple[str, ...]
    upstream: tuple[str, ...]  # transitive upstream ids whose results the task sees
    params: dict
    workflow_dir: str
    store: Any = None  # StoreAddress (process backend) or a ContextStore (in-process)
    publish: bool = False  # does any downstream task read this result?
    persist_path: str | None = None  # the run's results log, where the pickled result is kept for resume
    max_memory: int | None = None
    notify_start: bool = False  # does the coordinator need to know when it starts (timeouts)?
    halt_on_failure: bool = False  # fail fast and no retry left: a failure stops the pool's queue
    keep_children: bool = False  # the task's processes may outlive it (see reaper.py)


@dataclass
class Outcome:
    token: int
    ok: bool
    result: Any = None  # JSON rendering
    error: dict | None = None  # {"type", "message", "traceback"}
    started_at: float = 0.0
    finished_at: float = 0.0
    cpu_user_s: float = 0.0
    cpu_system_s: float = 0.0
    peak_rss: int = 0
    pid: int = 0
    extra: dict = field(default_factory=dict)


def error_record(kind: str, message: str, tb: str = "") -> dict:
    return {"type": kind, "message": message, "traceback": tb}


def execute(request: TaskRequest) -> Outcome:
    """Run one attempt of one task in this process. Never raises for task errors."""
    started = time.time()
    cpu_before = os.times()
    _monitor.begin(request.max_memory)
    outcome = Outcome(token=request.token, ok=False, started_at=started, pid=os.getpid())
    try:
        value = _call_plugin(request)
        blob = _pickle_result(value)
        publish_result(request.store if request.publish else None, request.task_id, blob, request.persist_path)
        outcome.result = render(value)
        outcome.ok = True
    except PluginError as exc:
        outcome.error = error_record("PluginError", str(exc), traceback.format_exc())
    except _UnpicklableResult as exc:
        outcome.error = error_record("UnpicklableResult", str(exc), exc.tb)
    except SystemExit as exc:
        outcome.error = error_record("SystemExit", f"the task called sys.exit({exc.code!r})", traceback.format_exc())
    except (KeyboardInterrupt, GeneratorExit):
        raise
    except BaseException as exc:  # any other, even a BaseException of the user's: a recorded value,
        # as text only, so the outcome never needs the user's module to be unpickled
        outcome.error = error_record(type(exc).__name__, str(exc) or repr(exc), traceback.format_exc())
    finally:
        peak = _monitor.end()
    cpu_after = os.times()
    outcome.finished_at = time.time()
    outcome.cpu_user_s = round((cpu_after.user - cpu_before.user) + (cpu_after.children_user - cpu_before.children_user), 6)
    outcome.cpu_system_s = round((cpu_after.system - cpu_before.system) + (cpu_after.children_system - cpu_before.children_system), 6)
    outcome.peak_rss = peak
    return outcome


def _call_plugin(request: TaskRequest):
    try:
        plugin_class = load_plugin_class(request.plugin)
    except Exception as exc:
        raise PluginError(
            f"cannot load plugin {request.plugin.name!r} from {request.plugin.target}: {type(exc).__name__}: {exc}"
        ) from exc
    plugin = plugin_class()
    plugin.task_id = request.task_id
    plugin.depends_on = request.depends_on
    plugin.workflow_dir = Path(request.workflow_dir)
    blobs = _store(request.store).snapshot(request.upstream) if request.upstream else {}
    context = build_context(blobs, request.params)
    # Each attempt gets its own copy of config, so a plugin that edits it
    # cannot change what a retry sees.
    config = pickle.loads(pickle.dumps(request.config, PICKLE_PROTOCOL))
    return plugin.run(config, context)


class _UnpicklableResult(Exception):
    def __init__(self, message: str, tb: str):
        super().__init__(message)
        self.tb = tb


def _pickle_result(value) -> bytes:
    try:
        return pickle.dumps(value, PICKLE_PROTOCOL)
    except Exception as exc:
        raise _UnpicklableResult(
            f"the task's result (a {type(value).__module__}.{type(value).__qualname__}) cannot be pickled, "
            f"so no other task could receive it: {type(exc).__name__}: {exc}",
            traceback.format_exc(),
        ) from exc


def publish_result(store, task_id: str, blob: bytes, persist_path: str | None) -> None:
    """Keep a pickled result: in the results log for resume, in the store for downstream tasks."""
    if persist_path:
        append_result(persist_path, task_id, blob)
    if store is not None:
        _store(store).put(task_id, blob)


def _store(store):
    return connect_store(store) if isinstance(store, StoreAddress) else store


class _Monitor:
    """Samples the RSS of this process and its children while a task runs.

    One daemon thread per process, idle between tasks; a task shorter than one
    interval is measured once, at its end.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._running = threading.Event()
        self._thread: threading.Thread | None = None
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
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="opflow-task-monitor", daemon=True)
            self._thread.start()

    def end(self) -> int:
        self._running.clear()
        rss = _own_rss()
        with self._lock:
            self._peak = max(self._peak, rss) if rss else self._peak
        if not self._peak:
            self._sample(children=False)
        return self._peak

    def _loop(self):
        ticks = 0
        while True:
            self._running.wait()  # idle between tasks
            time.sleep(MONITOR_INTERVAL)  # a task shorter than this is measured at its end
            if self._running.is_set():
                ticks += 1
                # Looking for children scans all of /proc: do it every tick only
                # while a shell command runs, else once a second (a python task
                # may start processes too), so CPU-bound tasks keep their CPU.
                self._sample(children=has_child_groups() or ticks % CHILD_SCAN_EVERY == 0)

    def _sample(self, children: bool) -> None:
        rss = _own_rss()
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
            _on_memory_exceeded(rss, limit)


_statm_fd: list = []  # [pid, fd] of /proc/self/statm, kept open: a read costs a few µs
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _own_rss() -> int:
    """This process's resident set size; 0 where /proc is not there (psutil then)."""
    try:
        if not _statm_fd or _statm_fd[0] != os.getpid():
            _statm_fd[:] = [os.getpid(), os.open("/proc/self/statm", os.O_RDONLY)]
        return int(os.pread(_statm_fd[1], 128, 0).split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def _on_memory_exceeded(rss: int, limit: int) -> None:
    """Past `max_memory`: in a pool worker, die with a code the executor reads."""
    if _pool_state.get("in_pool"):
        from .procs import kill_own_children

        kill_own_children()
        os._exit(MEMORY_EXIT_CODE)


#: Error type of an attempt that never started (the run was stopping): not an attempt.
NOT_STARTED = "NotStarted"

#: Exit status of a pool worker that killed itself for exceeding `max_memory`.
MEMORY_EXIT_CODE = 86

_monitor = _Monitor()
_pool_state: dict = {}


def init_pool_worker(coordinator_pid: int, slots, slot_counter) -> None:
    """Pool initializer: watch the coordinator; claim a row in the shared slot table.

    The slot table (shared memory: pid, token per row) tells the coordinator which
    process runs which task without a message per task: it reads the table only
    when it must (a worker died, a timeout fired, a start to watch for).
    """
    from .procs import start_parent_watch

    start_parent_watch(coordinator_pid)
    reaper.become_subreaper()  # orphans of tasks (daemons) re-parent to this worker, to be killed
    with slot_counter.get_lock():
        row = 1 + slot_counter.value % (len(slots) // 2 - 1)  # row 0 is the stop flag
        slot_counter.value += 1
    slots[2 * row] = os.getpid()
    slots[2 * row + 1] = 0
    _pool_state.update(in_pool=True, slots=slots, token_index=2 * row + 1)


def run_in_pool(request: TaskRequest) -> Outcome:
    """The function the process pool runs: mark the slot busy with this token, run it."""
    slots = _pool_state["slots"]
    if slots[0]:  # the run stopped (fail fast, interrupt) while this task waited in the queue
        now = time.time()
        return Outcome(token=request.token, ok=False, started_at=now, finished_at=now, pid=os.getpid(),
                       error=error_record(NOT_STARTED, "the run stopped before this task started"))
    index = _pool_state["token_index"]
    slots[index] = request.token
    reaper.begin_task(request.keep_children)
    try:
        outcome = execute(request)
    finally:
        reaper.end_task()  # what the task left running dies with it
        slots[index] = 0
    if request.halt_on_failure and not outcome.ok:
        slots[0] = 1  # fail fast: this worker must not take the next queued task
    return outcome


def run_in_thread(request: TaskRequest, on_start: Callable[[int, int], None] | None) -> Outcome:
    if on_start is not None and request.notify_start:
        on_start(request.token, os.getpid())
    reaper.begin_task(request.keep_children)
    return execute(request)
