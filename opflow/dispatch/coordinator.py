"""The run loop: dependency-driven dispatch on asyncio, over a backend (backends/base.py).

Data lane (a task's request out, its outcome back, its result on to its readers):

    ready task ─▶ _request: TaskRequest ─▶ backend.submit ─▶ worker: execute() ─▶ plugin.run(config, context)
                                             │  attaches the store and the       │ context: TaskContext, reads
                                             │  small upstream results (inline)  │ upstream results lazily
    _on_outcome ◀─── _Mailbox (one wake-up ◀─┴─ Outcome (rendering, timings, ◀───┘ result: small → in the Outcome,
        │            per burst)                 error; small result to the        large → the store / shared memory
        │                                       backend's relay, never here)
        └─ task_finished ─▶ reporters (audit trail: tasks/<id>.json, events.jsonl; console)

Control lane: a worker's start (slot table or Dask event) ─▶ _Mailbox ─▶ _on_started (arms
the timeout) · timeout ─▶ backend.stop · failure under fail fast, SIGINT/SIGTERM, a cancelled
run_async, --timeout, an unwritable record ─▶ _stop(Stop.…): stop dispatching, backend.halt_queued /
backend.interrupt ─▶ what never ran ends cancelled or skipped, with its reason.

One thread owns all run state: the event loop's. Backends report back through a
mailbox (`call_soon_threadsafe` once per burst), so no lock guards the state. A task
is submitted the moment its last upstream task succeeds: what may start is the ready
set's to say (ready.py: waiting counts, chains, upstream sets, trigger rules, settling
what can no longer run); a task's state and the record it becomes are record.py's;
cached results: cache.py. Failures are values (`Outcome.ok`), never exceptions; the
exit status is decided in one place (`RunSummary.exit_code`). The coordinator imports
no backend module and nothing that runs in a worker (tests/test_backends.py).

The state a Coordinator keeps (all of it on the loop's thread but the mailboxes'):

    states          task_id -> TaskState (record.py): status, attempts, last outcome, timer
    _ready          the ReadySet (ready.py): what may start; the stop reason tasks left give
    _running        token -> task_id of each attempt sent and not yet heard back from
    _abandoned      tokens given up on (a thread timed out, an interrupt's grace ran out):
                    their late outcome is dropped
    _retry_timers   task_id -> the timer that makes it ready again (retry_delay)
    _early_starts   task_id -> (token, pid): a chain link's start heard before its
                    predecessor's success (announced once that is in)
    _items, _item_of  work item in flight -> its tasks without an outcome; token -> item
    _max_inflight, _batches, _workers, _typical_task_s, _batch_seconds
                    how many work items may be in flight and how many tasks go in one
    _backlog_wait   a look at the reporters' backlog is scheduled (_has_room)
    _window_wait    a look at the backend's window is scheduled (_has_room)
    _next_token     the last attempt's token
    _stopped_by, _killed_why, _signal
                    the last stop (Stop), what a task killed while running gives as its
                    reason (interrupt, --timeout), and the signal that interrupted the run
    _backend, _loop, _finished, _outcomes, _starts
                    for one run(): the backend, the loop, the future run() waits on, and the
                    mailboxes backends post outcomes and starts to
"""
from __future__ import annotations

__all__ = ["RunOptions", "RunSummary", "Coordinator", "run_async", "run"]

import asyncio
import dataclasses
import enum
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Iterable

from typing import TYPE_CHECKING

from opflow import knobs
from opflow.attempt import ErrorKind, Outcome, TaskRequest, error_record
from opflow.backends import backend_class, make_backend
from opflow.dispatch.admission import Admission, task_memory
from opflow.dispatch.interrupts import await_despite_cancel, call_off_loop
from opflow.dispatch.ready import ReadySet
from opflow.dispatch.record import Attempt, TaskState, reused_record, task_record
from opflow.dispatch.upstream_values import UpstreamValues
from opflow.events import Reporter, RunStatus, TaskStatus, iso_time
from opflow.masking import Masker
from opflow.options import Options
from opflow.rundir.failure_text import add_log_tail
from opflow.rundir.results_log import append_result, close_results_logs
from opflow.rundir import machine_limits
from opflow.workflow.plan import build_plan, start_order

if TYPE_CHECKING:
    from opflow.plugins import PluginRef
    from opflow.workflow.spec import Workflow

RETRY_DELAY_CAP = 300.0  # seconds: backoff never waits longer than this
#: A work item holds about this much work (by the recent mean task duration):
#: its own cost (~0.3-1 ms on the process pool) is then paid once for many short
#: tasks, and a worker finishes its item soon enough to keep the load even.
BATCH_SECONDS = 0.02
BATCH_MAX = 32  # ready tasks in one work item, at most
#: Events a reporter may have waiting to be written before no more tasks start:
#: each waits as ~1.5 KB, so a writer left behind holds at most a few MB.
RECORD_BACKLOG_MAX = 3000
BACKLOG_RECHECK_SECONDS = 0.02
#: Seconds between looks at a full window (a cluster's grows as workers join).
WINDOW_RECHECK_SECONDS = 1.0
INTERRUPT_WAIT = 10.0  # seconds to wait for killed tasks to report back
#: How often a task waiting for a `scope: machine` limit held by another run looks again
#: (a flock has no wake-up for a process that does not block on it).
MACHINE_LIMIT_POLL = 0.05


@dataclass
class RunOptions(Options):
    """The run's options (opflow/options.py), and what api.py prepared for this run."""

    #: task_id -> pickled result of an earlier run (resume; None where no task reads
    #: it): these tasks count as succeeded and are not run again.
    reuse: dict = field(default_factory=dict)
    reused_from: str = ""  # the earlier run's directory
    #: The run's results log (see results_log.py), or None to keep no results.
    results_path: str | None = None
    #: When the run started (epoch seconds), if the caller already read the clock
    #: for it (to name the run dir): run.json's started_at is that same instant.
    started_at: float | None = None
    cache_store: object = None  # a cache.CacheStore of earlier runs (None: --no-cache, or no task caches)
    #: --workers was given: `workers` is then the user's, else the CPU budget's (a cluster's
    #: window follows its own threads unless the user said otherwise).
    workers_given: bool = False
    #: The run's tasks/ folder: each task's output goes to <id>.log there (None: not kept).
    task_logs_dir: str | None = None
    #: The run directory, absolute (None: none kept): tasks learn it (TaskRequest.run_dir).
    run_dir: str | None = None
    #: Resume: task_id -> its record in the earlier run (reused tasks keep its result and times).
    reused_records: dict = field(default_factory=dict)
    #: task_id -> the run directory its reused result comes from, where not `reused_from` (--only's upstream).
    reused_sources: dict = field(default_factory=dict)
    #: Tasks --force runs though the cache would reuse them (resume's reuse already leaves them out).
    forced: set = field(default_factory=set)
    #: The run's budget (admission.py `Budget`): the default pool size and the memory tasks draw on.
    budget: object = None
    #: task_id -> seconds it ran in the latest run (history.py `task_weights`): the start order.
    durations: dict = field(default_factory=dict)
    #: task_id -> its peak RSS in the latest run that recorded one (`memory: auto`).
    peak_rss: dict = field(default_factory=dict)

    def pool_size(self) -> int:
        if self.workers > 0:
            return self.workers
        if self.budget is not None:
            return self.budget.cpus
        from opflow.machine import cpus_available

        return cpus_available()[0]


@dataclass
class RunSummary:
    status: RunStatus
    tasks: dict  # task_id -> TaskStatus
    signal: int | None = None

    @property
    def exit_code(self) -> int:
        if self.status is RunStatus.INTERRUPTED:
            return 128 + (self.signal or signal.SIGINT)
        return 0 if self.status is RunStatus.SUCCEEDED else 1


class Stop(enum.Enum):
    """Why the run stops dispatching (`Coordinator._stop`)."""

    FAIL_FAST = "fail fast"  # a task failed, no --keep-going: trigger tasks still run; nothing is killed
    SIGNAL = "signal"  # SIGINT/SIGTERM, or a cancelled run_async: kill what runs; the run ends interrupted
    TIMEOUT = "timeout"  # --timeout: kill what runs; the run ends failed
    ABORT = "abort"  # the record cannot be written: kill what runs; trigger tasks still run


class Coordinator:
    def __init__(self, workflow: Workflow, plugins: dict[str, PluginRef], options: RunOptions,
                 reporters: Iterable[Reporter] = ()):
        self.workflow = workflow
        self.plugins = plugins
        self.options = options
        self.reporters = list(reporters)
        # Every event is masked before any reporter sees it: no record, journal line or console line holds a secret.
        self._masker = Masker(workflow.secrets)
        self.plan = build_plan(workflow)
        self.states = {t.id: TaskState(t) for t in workflow.tasks}
        for task_id in options.forced:
            if task_id in self.states:
                self.states[task_id].forced = True
        self._ready = ReadySet(workflow.tasks, self.plan.layers, self.states, self._record_final,
                               order=start_order(workflow.tasks, self.plan.layers, options.durations))
        self._admission: Admission | None = None  # only when a task declares cpus, memory or a limit
        self._waiting_said: set[str] = set()  # tasks whose wait for admission the journal has
        self._poll: asyncio.TimerHandle | None = None  # a look again at machine-scope limits
        self._running: dict[int, str] = {}  # token -> task_id
        self._abandoned: set[int] = set()  # tokens whose late outcome we ignore
        self._retry_timers: dict[str, asyncio.TimerHandle] = {}
        self._next_token = 0
        self._stopped_by: Stop | None = None  # the last stop (why: self._ready.stop_reason)
        self._killed_why: str | None = None  # interrupt, --timeout: the reason a task killed while running gives
        self._signal: int | None = None
        self._backend = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finished: asyncio.Future | None = None
        self._max_inflight = 1  # work items
        self._items: dict[object, int] = {}  # work item in flight -> its tasks without an outcome yet
        self._item_of: dict[int, object] = {}  # token -> its work item
        self._batches = False  # does the backend take several tasks per work item?
        self._workers = 1
        self._typical_task_s: float | None = None  # recent mean duration of a task (_next_batch)
        self._batch_seconds = _batch_seconds()
        self._early_starts: dict[str, tuple[int, int]] = {}  # task_id -> (token, pid): see _on_started
        self._backlog_wait = False  # a look at the reporters' backlog is scheduled (_has_room)
        self._window_wait = False  # a look at the backend's window is scheduled (_has_room)
        self._values = UpstreamValues(workflow)  # results some task's config or `when` reads

    # -- events -------------------------------------------------------------
    def _wait_recorded_start(self) -> None:
        for reporter in list(self.reporters):
            try:
                reporter.wait_recorded_start()
            except Exception:  # a reporter that cannot say: the run goes on (emit drops broken ones)
                pass

    def emit(self, kind: str, **fields) -> None:
        event = {"event": kind, "time": iso_time(time.time()), **fields}
        if self._masker:
            event = self._masker.mask(event)
        for reporter in list(self.reporters):
            try:
                reporter.handle(event)
            except Exception as exc:  # a broken reporter (a closed pipe) must not stall the run
                self.reporters.remove(reporter)
                try:
                    sys.stderr.write(f"opflow: reporter {type(reporter).__name__} dropped: {type(exc).__name__}: {exc}\n")
                except (OSError, ValueError):
                    pass  # stderr is gone too: nothing left to tell

    # -- the run ------------------------------------------------------------
    async def run(self) -> RunSummary:
        self._loop = asyncio.get_running_loop()
        self._finished = self._loop.create_future()
        workers = self.options.pool_size()
        self._outcomes = _Mailbox(self._loop, self._on_outcome)
        self._starts = _Mailbox(self._loop, self._on_started)
        # The backend first: one that cannot start (no such scheduler) fails the
        # run before anything is recorded as started.
        place = self.options.place() if backend_class(self.options.executor).takes_scheduler else {}
        self._backend = make_backend(self.options.executor, workers, self._on_worker_start, **place)
        # Keep the pool's queue full enough that a worker never waits for the loop
        # to hand it its next task. Queued tasks cost nothing when the run stops:
        # the backend's halt_queued() keeps them from starting.
        self._max_inflight = self._backend.max_inflight(workers)
        self._batches = self._backend.takes_batches
        self._workers = workers
        budget = self.options.budget
        self._admission = Admission.for_run(self.workflow, workers, budget.memory_bytes if budget else None,
                                            self.options.peak_rss, machine_limits.try_hold, machine_limits.release)
        if self._admission is not None:
            self._batches = False  # each task holds its own slots: one task per work item, no chains
        # Results will travel: let the backend start what carries them now, so
        # that one that cannot start fails the run here, not in the middle of dispatch.
        # Workers too, off the loop (a caller's loop must not wait seconds for a forkserver).
        needs_results = any(t.depends_on for t in self.workflow.tasks)
        try:
            await self._loop.run_in_executor(None, self._backend.start, needs_results)
            await self._loop.run_in_executor(None, self._backend.warm_up, min(workers, len(self.workflow.tasks)))
        except BaseException:  # also cancelled (a signal, the caller's wait_for): nothing was recorded yet
            await self._loop.run_in_executor(None, self._backend.close, True)
            raise
        started = self.options.started_at or time.time()
        for reporter in self.reporters:
            reporter.abort = self.abort
        where = self._backend.describe()  # a cluster's address, dashboard and size; {} for this machine
        # A cluster's size is its own threads', whatever this machine's CPU count.
        self.emit("run_started", workflow=self.workflow.name, workers=where.get("workers", workers),
                  executor=self.options.executor,
                  scheduler=where.get("scheduler"), cluster=where.get("cluster"),
                  params=self.workflow.params, tasks=[t.id for t in self.workflow.tasks],
                  layers=self.plan.layers, started_at=iso_time(started))
        handlers = self._install_signal_handlers()
        deadline = self._loop.call_later(self.options.timeout, self._on_run_timeout) if self.options.timeout else None
        cancelled = False
        try:
            # What run_started records (run.json) is on disk before any task starts;
            # waited for off the loop, so a caller's loop (run_async) never stalls on a disk.
            recorded = self._loop.run_in_executor(None, self._wait_recorded_start)
            cancelled = await await_despite_cancel(recorded, self._on_cancel)
            self._ready.prepare(reused=self._seed_reused_results())
            self._pump()
            self._check_finished()
            # Cancelled (the caller's wait_for, or a signal the CLI routes here)? Stop as
            # for SIGINT, record it all, then raise CancelledError (at the end).
            cancelled = await await_despite_cancel(self._finished, self._on_cancel) or cancelled
        finally:
            if deadline is not None:
                deadline.cancel()
            if self._poll is not None:
                self._poll.cancel()
            if self._admission is not None:
                self._admission.release_all()  # machine-scope holds: closed now, not at exit
            self._remove_signal_handlers(handlers)
            backend, self._backend = self._backend, None
            # Closing a process pool joins processes: off the loop's thread.
            closing = self._loop.run_in_executor(None, backend.close, self._signal is not None)
            cancelled = await await_despite_cancel(closing) or cancelled
            close_results_logs()
        self._ready.settle_unrun()
        summary = self._summary()
        finished = time.time()
        self.emit("run_finished", status=summary.status.value, exit_code=summary.exit_code,
                  finished_at=iso_time(finished), duration_s=round(finished - started, 6),
                  tasks={tid: s.status.value for tid, s in self.states.items()},
                  signal=signal.Signals(self._signal).name if self._signal else None)
        if cancelled:
            raise asyncio.CancelledError
        return summary

    def _on_cancel(self) -> None:
        """The run's task was cancelled: the first time an interrupt, then a hard one."""
        if self._finished.done():  # it had ended already; only the clean-up was cut short
            return
        self._on_signal(self._signal or signal.SIGINT)

    def _seed_reused_results(self, among: Iterable[str] | None = None) -> list[str]:
        """Resume: tasks that succeeded before count as succeeded, their results in the store
        (`among`: the instances a dynamic foreach just made)."""
        reused = []
        for task_id in self.options.reuse if among is None else among:
            state = self.states.get(task_id)
            if state is None or task_id not in self.options.reuse:
                continue
            blob = self.options.reuse[task_id]
            reused.append(task_id)
            self._values.keep_pickled(task_id, blob)
            if blob is not None:
                if self.options.results_path:
                    append_result(self.options.results_path, task_id, blob)
                self._backend.seed(task_id, blob)
            source = self.options.reused_sources.get(task_id, self.options.reused_from)
            state.status = TaskStatus.SUCCEEDED
            state.reused = True
            state.reused_from = source or None
            state.reason = f"reused from {source or 'an earlier run'}"
            self.emit("task_finished", record=reused_record(self._record(state), self.options.reused_records.get(task_id),
                                                            source))
        return reused

    # -- dispatch -----------------------------------------------------------
    def _pump(self) -> None:
        """Submit ready tasks while there is room in flight (several per work item: _next_batch),
        then ready trigger tasks (one per work item)."""
        if self._admission is not None:
            self._pump_admitted()
            return
        while self._ready.has_ready() and self._has_room():
            batch = self._next_batch()
            if batch:
                self._submit_batch(batch)
        while self._ready.has_ready_trigger() and self._has_room():
            task_id = self._ready.get_ready_trigger()
            if task_id is not None and self._dispatchable(task_id):
                self._submit_batch([task_id])

    def _pump_admitted(self) -> None:
        """Ready tasks wait for admission (admission.py); those it admits go, one per work item."""
        admission = self._admission
        while (task_id := self._ready.get_ready()) is not None:
            if not self._reuse_cached(task_id):
                admission.wait(task_id, self._ready.order_key[task_id])
        while self._ready.has_ready_trigger():
            task_id = self._ready.get_ready_trigger()
            if task_id is not None and not self._reuse_cached(task_id):
                admission.wait(task_id, self._ready.order_key[task_id])
        if not admission.has_waiting() or not self._has_room():
            return
        for task_id in admission.admit(self._max_inflight - len(self._items)):
            self._waiting_said.discard(task_id)
            self._submit_batch([task_id])
        for task_id in admission.passed_over:
            if task_id not in self._waiting_said:  # once per wait: the journal says what it waits for
                self._waiting_said.add(task_id)
                self.emit("task_waiting", task_id=task_id, waits_for=admission.why_waiting(task_id))
        if admission.blocked_elsewhere and self._poll is None:
            self._poll = self._loop.call_later(MACHINE_LIMIT_POLL, self._after_poll)

    def _after_poll(self) -> None:
        self._poll = None
        self._pump()
        self._check_finished()

    def _has_room(self) -> bool:
        if len(self._items) >= self._max_inflight:
            # Read again: a cluster's window follows its worker threads as workers join or leave
            # (looked at again shortly, as no outcome may come to wake the pump).
            self._max_inflight = self._backend.max_inflight(self._workers)
            if len(self._items) >= self._max_inflight:
                if not self._window_wait and self._ready.has_ready():
                    self._window_wait = True
                    self._loop.call_later(WINDOW_RECHECK_SECONDS, self._after_window_wait)
                return False
        if any(reporter.backlog() > RECORD_BACKLOG_MAX for reporter in self.reporters):
            # The record writer is far behind (a slow disk, a flood of tiny tasks):
            # wait for it, rather than hold ever more records in memory. Looked at
            # again shortly, as no outcome may come to wake the pump.
            if not self._backlog_wait:
                self._backlog_wait = True
                self._loop.call_later(BACKLOG_RECHECK_SECONDS, self._after_backlog_wait)
            return False
        return True

    def _after_window_wait(self) -> None:
        self._window_wait = False
        if self._backend is not None:
            self._pump()
            self._check_finished()

    def _after_backlog_wait(self) -> None:
        self._backlog_wait = False
        self._pump()
        self._check_finished()

    def _next_batch(self) -> list[str]:
        """Ready tasks for one work item: one, unless the backend takes batches and tasks are short.

        A pool work item costs the pool's threads and pipes about as much as a
        no-op task; sending several short tasks in one item pays that once. Only
        short tasks are grouped, about BATCH_SECONDS of them by the recent mean
        duration (none before a first task has ended), and no more than leaves
        two items per worker: a long task must not keep its batch-mates waiting
        while another worker idles. Each is followed by its chain (_chain_after),
        which could run nowhere sooner.
        """
        size = 1
        if self._batches and self._typical_task_s is not None:
            size = min(BATCH_MAX, self._ready.ready_count() // (2 * self._workers),
                       int(self._batch_seconds / max(self._typical_task_s, 1e-6)))
            size = max(1, size)
        batch: list[str] = []
        while len(batch) < size and (task_id := self._ready.get_ready()) is not None:
            if self._dispatchable(task_id):
                batch.append(task_id)
                if self._batches:
                    batch.extend(self._ready.chain_after(task_id))
        return batch

    def _dispatchable(self, task_id: str) -> bool:
        """Does the ready task go to a worker? Not if upstream values decide otherwise
        (its `when:` is false, its config cannot be rendered), nor if the cache has it."""
        state = self.states[task_id]
        if state.spec.decided_when_ready:
            # Its config as written (a retry renders it again, never a rendered one), its
            # depends_on as now (a foreach over an upstream result may have made instances).
            decision = self._values.prepare(dataclasses.replace(state.spec, config=self.workflow.task(task_id).config))
            if decision.skipped is not None:
                self._ready.skip(state, decision.skipped)
                return False
            if decision.instances is not None:
                self._fan_out(state, decision.instances)
                return False
            if decision.error is not None:
                state.outcome = Outcome.failed(0, error_record("ConfigError", decision.error))
                state.outcome.error["misconfigured"] = True
                self._fail(state)
                return False
            state.spec = decision.spec  # its config as rendered: what it runs with, what its record shows
        return not self._reuse_cached(task_id)

    def _fan_out(self, state: TaskState, instances: list) -> None:
        """A dynamic foreach: its instances take the task's place (a resumed run reuses
        those that succeeded in the run it resumes, as it does any task)."""
        group_id = state.spec.id
        ids = [spec.id for spec in instances]
        # In the task's place, as a static foreach lists them (run.json's order); the ready
        # set shares this dict, so it is rebuilt in place.
        before = list(self.states.items())
        self.states.clear()
        for task_id, task_state in before:
            if task_id != group_id:
                self.states[task_id] = task_state
                continue
            for spec in instances:
                self.states[spec.id] = TaskState(spec)
                self.states[spec.id].waiting = 0  # its upstream (the task's) is done
        self._values.add_group(group_id, ids)
        self.emit("tasks_expanded", task_id=group_id, tasks=ids)
        reused = self._seed_reused_results(ids)
        self._ready.fan_out(group_id, state.spec.depends_on, ids)
        for task_id in reused:
            self._ready.done(task_id)

    def _submit_batch(self, task_ids: list[str]) -> None:
        requests = [self._request(task_id) for task_id in task_ids]
        item = object()  # the work item: in flight until its last task's outcome is in
        self._items[item] = len(requests)
        for request in requests:
            self._item_of[request.token] = item
        futures = self._backend.submit_batch(requests) if len(requests) > 1 else [self._backend.submit(requests[0])]
        for request, future in zip(requests, futures):
            future.add_done_callback(lambda f, token=request.token: self._deliver(token, f))

    def _request(self, task_id: str) -> TaskRequest:
        """A new attempt of `task_id`, recorded as queued."""
        state = self.states[task_id]
        spec = state.spec
        self._next_token += 1
        token = self._next_token
        state.status = TaskStatus.RUNNING
        attempt = len(state.attempts) + 1
        upstream = self._ready.upstream(task_id)
        publish = bool(self._ready.children[task_id])
        request = TaskRequest(
            token=token, task_id=task_id, attempt=attempt, plugin=self.plugins[spec.plugin],
            config=spec.config, depends_on=spec.depends_on, upstream=upstream,
            params=self.workflow.params, workflow_dir=str(self.workflow.directory), publish=publish,
            # Only a result some task reads is needed to resume: keep only those.
            persist_path=self.options.results_path if (publish or spec.cache) else None,
            max_memory=_kill_past(spec), notify_start=True,  # every start: task_started means started in a worker
            halt_on_failure=not self.options.keep_going and attempt > spec.retries,
            groups=spec.groups, keep_value=self._values.wanted(task_id), **self._ready.trigger_fields(spec, upstream),
            log_path=os.path.join(self.options.task_logs_dir, f"{task_id}.log") if self.options.task_logs_dir else None,
            keep_children=spec.keep_children, run_dir=self.options.run_dir,
            outputs=spec.outputs, secrets=self.workflow.secrets, worker_resources=self._worker_resources(spec),
        )
        state.attempts.append(Attempt(attempt, time.time(), ready=state.due))
        state.due = None
        self._running[token] = task_id
        self.emit("task_queued", task_id=task_id, attempt=attempt, plugin=spec.plugin)
        return request

    def _worker_resources(self, spec) -> dict:
        """`cpus:` and `memory:` as a cluster's worker resources (TaskRequest.worker_resources)."""
        asks = {}
        if spec.cpus != 1:
            asks["cpus"] = spec.cpus
        if spec.memory is not None:
            memory = task_memory(spec, self.options.peak_rss, None)
            if memory:
                asks["memory"] = memory
        return asks

    def _deliver(self, token: int, future) -> None:
        """Hand a finished attempt to the loop (from whichever thread finished it)."""
        if future.cancelled():
            outcome = Outcome.not_started(token)
        elif future.exception() is not None:  # a backend that could not make an Outcome
            exc = future.exception()
            outcome = Outcome.failed(token, error_record(type(exc).__name__, f"the task's outcome was lost: {exc}"))
        else:
            outcome = future.result()
        self._outcomes.post(token, outcome)

    def _on_worker_start(self, token: int, pid: int) -> None:
        """Called from a backend thread when a worker picks up a task."""
        self._starts.post(token, pid)

    def _on_started(self, token: int, pid: int) -> None:
        task_id = self._running.get(token)
        if task_id is None:
            return
        state = self.states[task_id]
        if self._ready.is_waiting(task_id):
            # A chain's link, started in its work item before its predecessor's
            # outcome reached us: heard of once that one is recorded as finished.
            self._early_starts[task_id] = (token, pid)
            return
        state.attempts[-1].pid = pid
        state.attempts[-1].started = time.time()
        self._announce_start(state, pid)
        if state.spec.timeout:
            if state.timer is not None:
                state.timer.cancel()  # resubmitted after a pool rebuild: the clock restarts
            state.timer = self._loop.call_later(state.spec.timeout, self._on_timeout, token)

    def _announce_start(self, state: TaskState, pid: int) -> None:
        attempt = state.attempts[-1]
        if state.announced != attempt.number:
            state.announced = attempt.number
            self.emit("task_started", task_id=state.spec.id, attempt=attempt.number, plugin=state.spec.plugin, pid=pid)

    def _on_timeout(self, token: int) -> None:
        task_id = self._running.get(token)
        if task_id is None:
            return
        timeout = self.states[task_id].spec.timeout
        error = error_record(ErrorKind.TIMEOUT, f"timed out after {timeout:g}s; its process tree was killed")
        if self._backend.can_stop:
            self._backend.stop(token, error)
        else:
            # A thread cannot be stopped: give up on it, and say so.
            error["message"] = f"timed out after {timeout:g}s (the {self._backend.name} backend cannot stop it; its work may go on)"
            self._abandoned.add(token)
            self._on_outcome(token, Outcome.failed(token, error), forced=True)

    # -- outcomes -----------------------------------------------------------
    def _on_outcome(self, token: int, outcome: Outcome, forced: bool = False) -> None:
        if token in self._abandoned and not forced:
            self._abandoned.discard(token)
            return
        task_id = self._running.pop(token, None)
        if task_id is None:
            return
        if self._admission is not None:
            self._admission.release(task_id)
        self._item_ended(token, outcome)
        state = self.states[task_id]
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None
        if outcome.never_started:
            # It never started: the run is stopping (a worker saw the stop flag,
            # perhaps before we heard of the failure that raised it). Not an attempt.
            state.attempts.pop()
            state.status = TaskStatus.PENDING
            # Waiting: a task of a chain whose predecessor in its work item did not
            # succeed (or has not said so yet); it is queued again when that one succeeds.
            if self._ready.stop_reason is None and not self._ready.is_waiting(task_id):
                self._ready.again(task_id, first=True)
                self._pump()
            self._check_finished()
            return
        state.outcome = outcome
        if state.log is not True and outcome.log is not False:
            state.log = outcome.log
        if outcome.pid:  # it ran, even if it ended before its start was noticed
            self._announce_start(state, outcome.pid)
        attempt = state.attempts[-1]
        attempt.finished = outcome.finished_at or time.time()
        if outcome.started_at and outcome.pid:
            attempt.started = outcome.started_at  # the worker's own clock: when the plugin began
        attempt.error = outcome.error
        attempt.pid = outcome.pid or attempt.pid
        if outcome.ok:
            self._values.keep(task_id, outcome.value)
            self._succeed(state)
        elif self._killed_why is not None:
            state.status = TaskStatus.CANCELLED
            state.reason = self._killed_why
            self._record_final(state)
        elif len(state.attempts) <= state.spec.retries and _retryable(state.spec.retry_on, outcome):
            if self._ready.stop_reason is None:
                self._schedule_retry(state)
            else:
                # The run stopped before its retry could start: cancelled, whichever
                # of the two outcomes the loop heard first (the error is in attempt_log).
                state.status = TaskStatus.PENDING
        else:
            self._fail(state)
        self._pump()
        self._check_finished()

    def _item_ended(self, token: int, outcome: Outcome) -> None:
        """One task of a work item has its outcome: the item leaves the flight with its last."""
        item = self._item_of.pop(token, None)
        left = self._items.get(item, 0) - 1
        if left > 0:
            self._items[item] = left
        else:
            self._items.pop(item, None)
        if outcome.pid and outcome.finished_at:  # it ran: how long tasks take now (batch sizes)
            took = outcome.finished_at - outcome.started_at
            typical = self._typical_task_s
            self._typical_task_s = took if typical is None else 0.8 * typical + 0.2 * took

    def _succeed(self, state: TaskState) -> None:
        state.status = TaskStatus.SUCCEEDED
        self._record_final(state)
        self._release_read(state.spec.id, held=state.outcome.shared)
        _keep_only_what_readers_need(state.outcome)
        for child in self._ready.done(state.spec.id):
            if child in self._early_starts:
                self._on_started(*self._early_starts.pop(child))

    def _fail(self, state: TaskState) -> None:
        state.status = TaskStatus.FAILED
        if self.options.task_logs_dir and state.outcome is not None:  # (a timeout's tail: from its log)
            add_log_tail(state.outcome.error, os.path.join(self.options.task_logs_dir, f"{state.spec.id}.log"))
        self._record_final(state)
        self._ready.ended(state.spec.id)
        self._release_read(state.spec.id)
        if not self.options.keep_going and self._ready.stop_reason is None:
            self._stop(Stop.FAIL_FAST, f"the run stopped after '{state.spec.id}' failed (fail fast; --keep-going runs the rest)")

    def _record_final(self, state: TaskState) -> None:
        """A task reached its final status: its record goes to the reporters."""
        self.emit("task_finished", record=self._record(state))

    def _release_read(self, task_id: str, held: bool = False) -> None:
        """Free the shared memory of results no remaining task reads (ReadySet.release)."""
        done = self._ready.release(task_id, held)
        if self._backend is not None:  # None: closing, and the backend frees everything
            for producer in done:
                self._backend.release(producer)

    def _schedule_retry(self, state: TaskState) -> None:
        n = len(state.attempts)
        delay = min(RETRY_DELAY_CAP, state.spec.retry_delay * 2 ** (n - 1))
        delay *= random.uniform(0.8, 1.0)  # jitter: retries of many tasks do not land together
        state.status = TaskStatus.PENDING
        state.begin_backoff(time.time())
        self.emit("task_retrying", task_id=state.spec.id, attempt=n, delay_s=round(delay, 3),
                  error=state.outcome.error)
        self._retry_timers[state.spec.id] = self._loop.call_later(delay, self._retry, state.spec.id)

    def _retry(self, task_id: str) -> None:
        self._retry_timers.pop(task_id, None)
        self.states[task_id].end_backoff(time.time())
        if self._ready.stop_reason is None:
            self._ready.again(task_id)
            self._pump()
        self._check_finished()

    def _cancel_retries(self) -> None:
        now = time.time()
        for task_id, handle in self._retry_timers.items():
            handle.cancel()
            self.states[task_id].end_backoff(now)
        self._retry_timers.clear()

    def _check_finished(self) -> None:
        """Idle (nothing running, waiting to retry, or ready to start)? Settle what can no
        longer run, which may make trigger tasks ready; the run is over once nothing changes."""
        while (not self._finished.done() and not self._running and not self._retry_timers
               and not self._ready.is_active() and not (self._admission and self._admission.has_waiting())):
            if not self._ready.settle_blocked():
                self._finished.set_result(None)
                return
            self._pump()

    # -- interrupts ---------------------------------------------------------
    def _install_signal_handlers(self) -> dict:
        """Route SIGINT/SIGTERM to the loop for the run; returns what to restore after."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                before = signal.getsignal(signum)
                self._loop.add_signal_handler(signum, self._on_signal, signum)
                previous[signum] = before
            except (NotImplementedError, RuntimeError, ValueError):  # not on this platform/loop
                pass
        return previous

    def _remove_signal_handlers(self, previous: dict) -> None:
        # asyncio would reset to the defaults; put back what the caller had (the
        # CLI's: a Ctrl-C during the clean-up after an interrupt still exits 130).
        for signum, handler in previous.items():
            self._loop.remove_signal_handler(signum)
            if handler is not None:
                signal.signal(signum, handler)

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self._signal is not None:
            # The second interrupt: no more grace, kill everything now.
            self.emit("interrupt", signal=name, hard=True)
            backend = self._backend
            if backend is not None:
                threading.Thread(target=backend.interrupt, kwargs={"grace": 0.0}, daemon=True).start()
            self._give_up_on_running(f"killed by a second {name}")
            return
        self._signal = signum
        self.emit("interrupt", signal=name, hard=False)
        self._stop(Stop.SIGNAL, f"interrupted by {name}")

    def _on_run_timeout(self) -> None:
        """--timeout: stop the run as an interrupt would, but it ends `failed` (exit 1)."""
        if self._signal is not None or self._finished.done():
            return
        reason = f"the run timed out after {self.options.timeout:g}s (--timeout)"
        self.emit("run_timeout", reason=reason)
        self._stop(Stop.TIMEOUT, reason)

    def abort(self, reason: str) -> None:
        """Stop the run from any thread: dispatch nothing more, kill what runs (the run
        record can no longer be written, say). The run ends failed; tasks cancelled."""
        def stop():
            if self._stopped_by is not Stop.ABORT:
                self._stop(Stop.ABORT, f"aborted: {reason}")

        try:
            self._loop.call_soon_threadsafe(stop)
        except RuntimeError:  # the loop is closed: the run is over anyway
            pass

    def _stop(self, why: Stop, reason: str) -> None:
        """The one way the run stops dispatching: no retry and nothing queued starts
        (`reason` is what the tasks left give); but for fail fast, what runs is
        interrupted, and a signal or --timeout also stops trigger tasks and gives
        up on tasks that do not report back within INTERRUPT_WAIT."""
        killing = why in (Stop.SIGNAL, Stop.TIMEOUT)
        self._stopped_by = why
        if killing:
            self._killed_why = (f"{reason} while running" if why is Stop.SIGNAL else f"{reason}: killed while running")
        self._ready.stop(reason, triggers_too=killing)
        if self._admission is not None:  # what waits for admission never starts (trigger tasks under fail fast may)
            self._admission.drop_waiting(keep=None if killing else self._is_trigger)
        self._cancel_retries()
        backend = self._backend
        if backend is None:  # (not started, or closing: it ends what it holds)
            return
        backend.halt_queued()
        if why is Stop.FAIL_FAST:
            return  # what runs finishes; the caller checks for the end
        if backend.can_stop:
            self._loop.run_in_executor(None, backend.interrupt)
            if killing:
                self._loop.call_later(INTERRUPT_WAIT, self._give_up_on_running, "did not stop in time")
        elif killing:
            self._give_up_on_running(f"{reason}; the {backend.name} backend cannot stop it")
        self._check_finished()

    def _is_trigger(self, task_id: str) -> bool:
        return self.states[task_id].spec.trigger != "all_success"

    def _reuse_cached(self, task_id: str) -> bool:
        """`cache: true`: finish the task with an earlier run's result if its key matches (cache.py)."""
        state = self.states[task_id]
        if not state.spec.cache or self.options.cache_store is None:
            return False
        from opflow.dispatch.cache import cache_key, cache_parts, task_cache_document

        spec = state.spec
        upstream = [(d, self.states[d].outcome.digest if self.states[d].outcome else "") for d in spec.depends_on]
        document = task_cache_document(spec, self.plugins[spec.plugin], self.workflow, upstream)
        state.cache_key, state.cache_parts = cache_key(document), cache_parts(document)
        publish = bool(self._ready.children[task_id])
        if state.forced:
            state.cache_miss = "forced (--force)"
            return False  # --force: it runs; its new result still goes under this key
        verdict = self.options.cache_store.lookup(task_id, document, need_blob=publish, declared_outputs=spec.outputs,
                                                  workflow_dir=self.workflow.directory)
        hit = verdict.hit
        if hit is None:
            state.cache_miss = verdict.reason
            return False
        self._values.keep_pickled(task_id, hit.blob)
        if publish:
            if self.options.results_path:
                append_result(self.options.results_path, task_id, hit.blob)
            self._backend.seed(task_id, hit.blob)
        now = time.time()
        state.outcome = Outcome(token=0, ok=True, result=hit.result, digest=hit.digest, started_at=now, finished_at=now,
                                outputs=hit.outputs)
        state.reused, state.reused_from = True, hit.run_dir
        state.reason = verdict.reason
        self._succeed(state)
        return True

    def _give_up_on_running(self, why: str) -> None:
        for token in list(self._running):
            self._abandoned.add(token)
            self._on_outcome(token, Outcome.failed(token, error_record(ErrorKind.INTERRUPTED, why)), forced=True)
        self._check_finished()

    # -- the end ------------------------------------------------------------
    def _summary(self) -> RunSummary:
        statuses = {tid: s.status for tid, s in self.states.items()}
        if self._signal is not None:
            status = RunStatus.INTERRUPTED
        elif all(s is TaskStatus.SUCCEEDED or tid in self._ready.not_triggered for tid, s in statuses.items()):
            status = RunStatus.SUCCEEDED
        else:
            status = RunStatus.FAILED
        return RunSummary(status=status, tasks=statuses, signal=self._signal)

    def _record(self, state: TaskState) -> dict:
        """The task's record, as tasks/<id>.json shows it (record.py)."""
        return task_record(state, self.options.task_logs_dir)


class _Mailbox:
    """Hands calls from backend threads to the loop in batches: one wake-up of the
    loop (a self-pipe write) for a burst of outcomes or starts, not one each."""

    PER_TURN = 16  # calls handled per turn of the loop, at most

    def __init__(self, loop: asyncio.AbstractEventLoop, handler):
        self._loop = loop
        self._handler = handler
        self._loop_thread = threading.get_ident()
        self._items: list[tuple] = []
        self._lock = threading.Lock()
        self._pending = False

    def post(self, *args) -> None:
        with self._lock:
            self._items.append(args)
            if self._pending:
                return  # a drain is already on its way: it takes this one too
            self._pending = True
        try:
            if threading.get_ident() == self._loop_thread:
                self._loop.call_soon(self._drain)  # inline: no self-pipe wake-up needed
            else:
                self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: the run ended (interrupted) without these
            pass

    def _drain(self) -> None:
        # A bounded share per turn of the loop: a burst of outcomes (a batch's)
        # must not keep the caller's other coroutines waiting.
        with self._lock:
            items, self._items = self._items[:self.PER_TURN], self._items[self.PER_TURN:]
            more = bool(self._items)
            self._pending = more
        if more:
            self._loop.call_soon(self._drain)
        for args in items:
            self._handler(*args)


def _kill_past(spec) -> int | None:
    """The memory past which the task's process tree is killed: `max_memory`, or a `memory:`
    SIZE (the smaller of the two); `memory: auto` kills nothing."""
    sizes = [m for m in (spec.max_memory, spec.memory) if isinstance(m, int)]
    return min(sizes) if sizes else None


def _keep_only_what_readers_need(outcome: Outcome) -> None:
    """Its record is out: of a succeeded task's outcome the run needs only `ok` and the
    digest (downstream cache keys); its rendered result may be large, and a run keeps
    one outcome per task."""
    outcome.result = None
    outcome.value = None
    outcome.where = None
    outcome.extra = None


def _retryable(retry_on: tuple | None, outcome: Outcome) -> bool:
    """May this failure be retried? Never a misconfiguration; with `retry_on`, only what it names
    (the failure's retry_names, or for a failure opflow made, its error type: Timeout, WorkerCrashed)."""
    error = outcome.error or {}
    if error.get("misconfigured"):
        return False
    if retry_on is None:
        return True
    names = outcome.retry_names or (error.get("type"),)
    return any(name in retry_on for name in names)


def _batch_seconds() -> float:
    """BATCH_SECONDS, or OPFLOW_BATCH_SECONDS (0: one task per work item; a bad value is
    refused before the run starts, knobs.check)."""
    chosen = knobs.read("OPFLOW_BATCH_SECONDS")
    return BATCH_SECONDS if chosen is None else chosen


async def run_async(workflow: Workflow, plugins: dict[str, PluginRef], options: RunOptions | None = None,
                    reporters: Iterable[Reporter] = ()) -> RunSummary:
    """Run a workflow from inside an event loop."""
    reporters = list(reporters)
    try:
        # Building the plan of a large workflow takes a while: off the caller's loop.
        coordinator = await call_off_loop(Coordinator, workflow, plugins, options or RunOptions(), reporters)
        return await coordinator.run()
    finally:
        # Closing the audit trail waits for its writer thread to catch up (thousands
        # of records at the end of a large run): off the caller's loop, and to its end.
        closing = asyncio.get_running_loop().run_in_executor(None, _close_reporters, reporters)
        await await_despite_cancel(closing)


def _close_reporters(reporters: list) -> None:
    for reporter in reporters:
        reporter.close()


def run(workflow: Workflow, plugins: dict[str, PluginRef], options: RunOptions | None = None,
        reporters: Iterable[Reporter] = ()) -> RunSummary:
    """Run a workflow to the end, for callers without an event loop."""
    return asyncio.run(run_async(workflow, plugins, options, reporters))
