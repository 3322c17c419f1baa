"""The ready set: which tasks may start, shaped like graphlib.TopologicalSorter.

    ready = ReadySet(tasks, layers, states, finish)
    ready.prepare()                    # tasks waiting for nothing become ready
    while ...:
        task_id = ready.get_ready()    # an all_success task to start (None: none now)
        ...                            # or ready.get_ready_trigger() (all_done / one_failed)
        ready.done(task_id)            # it succeeded: its children wait for one less
        ready.ended(task_id)           # it ended without success: trigger children count it done

It owns the graph knowledge of a run: each task's children, how many upstream
tasks it still waits for (`TaskState.waiting`, written here only), its upstream
set, the chain that may ride with it in one work item (`chain_after`), which
held results no remaining task reads (`release`), the trigger rules and the
settling of tasks that can no longer run (`settle_blocked` mid-run,
`settle_unrun` at the end). It never dispatches: the coordinator asks it what
may start and tells it what ended; a task it settles is handed to `finish`
(the coordinator records it).

Trigger rules:

    all_success  (the default) runs when every upstream task succeeded.
    all_done     runs once every upstream task ended, whatever its status (clean-up).
    one_failed   runs only if an upstream task failed (or was skipped because one
                 did): a notification. Otherwise it ends `skipped`, "not
                 triggered", which does not fail the run.

Trigger tasks run under fail fast, which is the point of them (they ignore the
stop that keeps queued tasks from starting), but not after an interrupt or
--timeout (`stop(..., triggers_too=True)`). They see context["upstream_failed"]:
upstream task id -> {"status", "error" or "reason"} for each upstream task that
did not succeed. Upstream tasks that never ran (skipped, cancelled by the
fail-fast stop) are settled when the run is otherwise idle, so a trigger task
waits for them to be decided; a workflow without trigger tasks never pays for
any of this.

Held results (`Outcome.shared`): a task may read any of its transitive upstream
results, so a result held in shared memory is needed until every task downstream
of its producer has finished for good. Only held results are tracked, so a run
without any costs nothing: a finished task is checked against each held result
(a set lookup each), never walked up. Tasks that never run are settled at the
end of the run, when the backend frees everything anyway.
"""
from __future__ import annotations

__all__ = ["ReadySet", "CHAIN_MAX"]

import collections
import dataclasses
import heapq
import time
from typing import TYPE_CHECKING, Callable, Iterable

from opflow.events import TaskStatus

if TYPE_CHECKING:
    from opflow.dispatch.record import TaskState

CHAIN_MAX = 256  # tasks of a chain sent after its head in the same work item, at most

_NOT_OK = (TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CANCELLED)
_BLOCKING = (TaskStatus.FAILED, TaskStatus.SKIPPED)


class _Children(dict):
    """task_id -> the tasks that depend on it. A task none depends on has no entry
    (and reads as ()): most of a 100,000-task run would hold an empty list each."""

    def __missing__(self, task_id: str) -> tuple:
        return ()


class _UpstreamSets(dict):
    """task_id -> every task it transitively depends on. All the empty sets stored
    are one: `frozenset()` makes a new 216-byte object each time (21 MB for a
    100,000-task run of independent tasks)."""

    _EMPTY = frozenset()

    def __setitem__(self, task_id: str, upstream: frozenset) -> None:
        super().__setitem__(task_id, upstream or self._EMPTY)


class ReadySet:
    """What may start, given what ended. `states`: task_id -> TaskState (record.py),
    shared with the coordinator, which owns statuses; this class writes `waiting`,
    and the status and reason of the tasks it settles (then calls `finish(state)`)."""

    def __init__(self, tasks: Iterable, layers: list[list[str]], states: dict[str, TaskState],
                 finish: Callable[[TaskState], None], order: dict[str, tuple] | None = None):
        tasks = list(tasks)
        self._states = states
        self._finish = finish
        self._layers = layers
        self._position = {t.id: i for i, t in enumerate(tasks)}
        self._next_position = len(tasks)  # for instances made during the run (fan_out)
        self._in_order: list[str] | None = None  # every task, layer by layer (order())
        self.children = _Children()
        for t in tasks:
            for dep in t.depends_on:
                self.children.setdefault(dep, []).append(t.id)
        # all_success tasks, a heap by start order (plan.py `start_order`: priority, the
        # critical path; file order without one)
        self._ready: list[tuple] = []
        self.order_key = order or {t: (i,) for t, i in self._position.items()}
        self._triggers: collections.deque[str] = collections.deque()  # all_done / one_failed tasks
        # (A `when:` that is false skips its task as a rule does: settled the same way.)
        self._has_triggers = any(t.trigger != "all_success" or t.when is not None for t in tasks)
        self.not_triggered: set[str] = set()  # skipped by their rule (or behind one that was): not failures
        self._causes: dict[str, str] = {}  # task skipped by a false `when:` (or behind one) -> that reason
        self._upstream_sets: dict[str, frozenset] = _UpstreamSets()
        self._upstream_readers: dict[str, int] = {}  # task_id -> dependents yet to compute their upstream
        self._upstream_of_group_readers: dict[int, frozenset] = {}  # id(a shared depends_on) -> its set
        self._held: dict[str, set[str]] = {}  # held result -> its readers not yet finished
        self.stop_reason: str | None = None  # set: no all_success task starts, and those left are cancelled
        self._triggers_stopped = False  # interrupt, --timeout: no trigger task starts either

    # -- graphlib's three ---------------------------------------------------
    def prepare(self, reused: Iterable[str] = ()) -> None:
        """Make ready every pending task that waits for nothing; `reused` (resume): tasks
        that count as succeeded already (their status set), so their children wait for one less."""
        for task_id in reused:
            for child in self.children[task_id]:
                self._states[child].waiting -= 1
        for task_id in self._position:
            state = self._states[task_id]
            if state.status is TaskStatus.PENDING and state.waiting == 0:
                self._make_ready(task_id)

    def get_ready(self) -> str | None:
        """The next all_success task to start; None while none is ready, or after a stop."""
        if self._ready and self.stop_reason is None:
            return heapq.heappop(self._ready)[1]
        return None

    def get_ready_trigger(self) -> str | None:
        """The next trigger task to start; None while none is ready, or after an interrupt."""
        while self._triggers and not self._triggers_stopped:
            task_id = self._triggers.popleft()
            if self._states[task_id].status is TaskStatus.PENDING:
                return task_id
        return None

    def done(self, task_id: str) -> list[str]:
        """`task_id` succeeded: the children that now wait for nothing (made ready if pending)."""
        unblocked = []
        for child in self.children[task_id]:
            state = self._states[child]
            state.waiting -= 1
            if state.waiting == 0:
                unblocked.append(child)
                if state.status is TaskStatus.PENDING:
                    self._make_ready(child)
        return unblocked

    def ended(self, task_id: str) -> None:
        """`task_id` ended without success: its trigger children count it as done."""
        if not self._has_triggers:
            return
        for child in self.children[task_id]:
            state = self._states[child]
            if state.spec.trigger != "all_success" and state.status is TaskStatus.PENDING:
                state.waiting -= 1
                if state.waiting == 0:
                    self._trigger_ready(child)

    # -- asked by the coordinator -------------------------------------------
    def is_active(self) -> bool:
        """Is something ready that may start (so the run is not idle)?"""
        return self.has_ready() or self.has_ready_trigger()

    def has_ready(self) -> bool:
        """Would get_ready give a task?"""
        return bool(self._ready) and self.stop_reason is None

    def has_ready_trigger(self) -> bool:
        """Might get_ready_trigger give a task? (It skips those settled meanwhile.)"""
        return bool(self._triggers) and not self._triggers_stopped

    def ready_count(self) -> int:
        """all_success tasks ready (before a stop): how many may share work items."""
        return len(self._ready)

    def is_waiting(self, task_id: str) -> bool:
        return self._states[task_id].waiting > 0

    def again(self, task_id: str, first: bool = False) -> None:
        """A task that did not run (never started, or to retry) is ready again, in its place
        in the start order (`first`: kept for callers; the order puts it where it belongs)."""
        heapq.heappush(self._ready, (self.order_key[task_id], task_id))

    def skip(self, state: TaskState, reason: str) -> None:
        """A ready task whose `when:` is false: skipped, not a failure; its all_success
        dependents are skipped for the same reason."""
        self._causes[state.spec.id] = reason
        self._skip(state, reason, not_triggered=True)

    def fan_out(self, group_id: str, deps: tuple, instances: list[str]) -> None:
        """A dynamic foreach task made its instances (their states in `states`, the task's
        gone; `deps` its depends_on): they take its place in the graph, its dependents wait for all of them (and
        read the group, spec.groups), and those pending are ready (its upstream is done)."""
        layer = next(layer for layer in self._layers if group_id in layer)
        at = layer.index(group_id)
        layer[at:at + 1] = instances
        self._in_order = None
        del self._position[group_id]
        group_key = self.order_key.pop(group_id, (self._next_position,))
        for i, task_id in enumerate(instances):
            self._position[task_id] = self._next_position
            self._next_position += 1
            self.order_key[task_id] = group_key + (i,)  # the task's place in the start order, instances in turn
        for dep in deps:
            self.children[dep] = [c for c in self.children[dep] if c != group_id] + instances
            if dep in self._upstream_readers:
                self._upstream_readers[dep] += len(instances) - 1
        readers = self.children.pop(group_id, [])
        for child in readers:
            state = self._states[child]
            spec = state.spec
            depends_on = tuple(d for dep in spec.depends_on for d in (instances if dep == group_id else (dep,)))
            state.spec = dataclasses.replace(spec, depends_on=depends_on,
                                             groups=spec.groups + ((group_id, tuple(instances)),))
            state.waiting += len(instances) - 1
        for task_id in instances:
            if readers:
                self.children[task_id] = list(readers)
        for waiting in self._held.values():  # results held for the task's readers: now for its instances'
            if group_id in waiting:
                waiting.discard(group_id)
                waiting.update(instances)
        for task_id in instances:
            if self._states[task_id].status is TaskStatus.PENDING:
                self._make_ready(task_id)
        if not instances:
            for child in readers:
                state = self._states[child]
                if state.waiting == 0 and state.status is TaskStatus.PENDING:
                    self._make_ready(child)

    def stop(self, reason: str, triggers_too: bool) -> None:
        """No all_success task starts from now; `triggers_too`: no trigger task either."""
        self.stop_reason = reason
        self._triggers_stopped = self._triggers_stopped or triggers_too

    def order(self) -> list[str]:
        """Every task, layer by layer, in workflow order within a layer."""
        if self._in_order is None:
            self._in_order = [t for layer in self._layers for t in sorted(layer, key=self._position.__getitem__)]
        return self._in_order

    def upstream(self, task_id: str) -> frozenset:
        """Every task `task_id` transitively depends on; memoised (its upstream is
        always computed first, since a task is submitted after all of it).

        A task's set is dropped once each task that depends on it has its own: on a
        chain each set holds all the tasks before it, and keeping them all would
        cost memory quadratic in the chain's length (600 MB at 5,000 tasks).
        """
        cached = self._upstream_sets.get(task_id)
        if cached is None:
            spec = self._states[task_id].spec
            deps = spec.depends_on
            # The instances of a foreach task that reads a group share one depends_on tuple
            # (expand.py), and so one set: N instances reading N hold N ids, not N².
            cached = self._upstream_of_group_readers.get(id(deps)) if spec.groups else None
            if cached is None:
                cached = frozenset(deps).union(*(self.upstream(d) for d in deps)) if deps else frozenset()
                if spec.groups:
                    self._upstream_of_group_readers[id(deps)] = cached
            self._upstream_sets[task_id] = cached
            cached = self._upstream_sets[task_id]  # (empty: the one shared empty set)
            for dep in set(deps):
                left = self._upstream_readers.get(dep, len(self.children[dep])) - 1
                if left > 0:
                    self._upstream_readers[dep] = left
                else:
                    self._upstream_readers.pop(dep, None)
                    self._upstream_sets.pop(dep, None)
        return cached

    def chain_after(self, task_id: str) -> list[str]:
        """The chain that hangs off `task_id`: each next task its predecessor's only reader,
        reading only it (an all_success, uncached task, waiting for nothing else).

        They go in the same work item, after it: the worker runs each as soon as
        its predecessor succeeds (and never if it does not), so a chain pays no
        round trip to the coordinator per hop. Each still reports its own outcome.
        """
        chain = []
        while len(chain) < CHAIN_MAX:
            children = self.children[task_id]
            if len(children) != 1:
                break
            child = self._states[children[0]]
            spec = child.spec
            if (len(spec.depends_on) != 1 or spec.trigger != "all_success" or spec.cache or spec.decided_when_ready
                    or child.status is not TaskStatus.PENDING or child.waiting != 1):
                break
            task_id = spec.id
            chain.append(task_id)
        return chain

    def trigger_fields(self, spec, upstream: frozenset) -> dict:
        """A trigger task's request: which upstream tasks did not succeed, and why."""
        if spec.trigger == "all_success":
            return {}
        states = self._states
        failed = {u: _why(states[u]) for u in sorted(upstream, key=self._position.__getitem__)
                  if states[u].status in _NOT_OK and u not in self.not_triggered}
        return {"upstream_failed": failed, "ignore_halt": True}

    def release(self, task_id: str, held: bool = False) -> list[str]:
        """`task_id` is final (`held`: it succeeded, its result held in shared memory):
        the held results no remaining task reads, to free."""
        done = self._last_reader_of(task_id)
        if held:
            done += self._hold(task_id)
        return done

    # -- settling what can no longer run --------------------------------------
    def settle_blocked(self) -> bool:
        """The run is idle: give each all_success task that can no longer run its final
        status, in dependency order, so trigger tasks behind it can be decided.
        True if any changed. (A workflow without trigger tasks waits for settle_unrun.)"""
        if not self._has_triggers or self._triggers_stopped:
            return False
        changed = False
        for task_id in self.order():
            state = self._states[task_id]
            if state.status is not TaskStatus.PENDING or state.spec.trigger != "all_success" or task_id in self._triggers:
                continue
            if not all(self._states[d].status.final for d in state.spec.depends_on):
                continue
            changed = self._settle(state, at_end=False) or changed
        return changed

    def settle_unrun(self) -> None:
        """The run is over: every task that never ran gets its final status and a reason."""
        for task_id in self.order():
            state = self._states[task_id]
            if not state.status.final:
                self._settle(state, at_end=True)

    def _settle(self, state: TaskState, at_end: bool) -> bool:
        """Skipped behind a failure, or cancelled by the stop: True if settled. At the
        end every task is (cancelled without a stop: the run stopped regardless); mid-run
        a task behind rules that did not trigger is not triggered either, and its trigger
        children hear of it."""
        blockers = [d for d in state.spec.depends_on if self._states[d].status in _BLOCKING]
        if blockers and not at_end and all(b in self.not_triggered for b in blockers):
            cause = self._causes.get(blockers[0])
            if cause is not None:
                self._causes[state.spec.id] = cause
                self._skip(state, f"upstream '{blockers[0]}' was skipped ({cause})", not_triggered=True)
            else:
                self._skip(state, f"not triggered: upstream '{blockers[0]}' was not triggered", not_triggered=True)
            return True
        if blockers:
            verb = "failed" if self._states[blockers[0]].status is TaskStatus.FAILED else "was skipped"
            state.status, state.reason = TaskStatus.SKIPPED, f"upstream '{blockers[0]}' {verb}"
        elif self.stop_reason is not None or at_end:
            state.status = TaskStatus.CANCELLED
            state.reason = self.stop_reason or "the run stopped before it could run"
        else:
            return False
        self._finish(state)
        if not at_end:
            self.ended(state.spec.id)
        return True

    # -- inside -----------------------------------------------------------------
    def _make_ready(self, task_id: str) -> None:
        # From now on it waits for a worker (its record's wait_s), however long it stays queued here.
        self._states[task_id].due = time.time()
        if self._states[task_id].spec.trigger == "all_success":
            heapq.heappush(self._ready, (self.order_key[task_id], task_id))
        else:
            self._trigger_ready(task_id)

    def _trigger_ready(self, task_id: str) -> None:
        """Every upstream task of this trigger task has ended: run it, or skip it."""
        state = self._states[task_id]
        if state.status is not TaskStatus.PENDING or self._triggers_stopped:
            return  # interrupted or out of time: settled as cancelled at the end
        deps = [self._states[d] for d in state.spec.depends_on]
        if state.spec.trigger == "one_failed" and not any(
                d.status is TaskStatus.FAILED or (d.status is TaskStatus.SKIPPED and d.spec.id not in self.not_triggered)
                for d in deps):
            self._skip(state, "not triggered (one_failed): no upstream task failed", not_triggered=True)
            return
        self._triggers.append(task_id)

    def _skip(self, state: TaskState, reason: str, not_triggered: bool = False) -> None:
        state.status = TaskStatus.SKIPPED
        state.reason = reason
        if not_triggered:
            self.not_triggered.add(state.spec.id)
        self._finish(state)
        self.ended(state.spec.id)

    def _hold(self, task_id: str) -> list[str]:
        """`task_id`'s result is held: returns [task_id] if no reader is left already."""
        readers, stack = set(), list(self.children[task_id])
        while stack:
            child = stack.pop()
            if child not in readers:
                readers.add(child)
                stack.extend(self.children[child])
        waiting = {t for t in readers if not self._states[t].status.final}
        if not waiting:
            return [task_id]
        self._held[task_id] = waiting
        return []

    def _last_reader_of(self, task_id: str) -> list[str]:
        """`task_id` is final: the held results it was the last reader of."""
        if not self._held:
            return []
        done = []
        for producer, waiting in self._held.items():
            waiting.discard(task_id)
            if not waiting:
                done.append(producer)
        for producer in done:
            del self._held[producer]
        return done


def _why(state: TaskState) -> dict:
    if state.status is TaskStatus.FAILED and state.outcome is not None and state.outcome.error:
        error = state.outcome.error
        return {"status": "failed", "error": {"type": error.get("type"), "message": error.get("message")}}
    return {"status": state.status.value, "reason": state.reason}
