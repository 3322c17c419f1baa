"""Trigger rules: when a task with `trigger: all_done` or `one_failed` runs.

    all_success  (the default) runs when every upstream task succeeded: the
                 coordinator's own rule, untouched here.
    all_done     runs once every upstream task ended, whatever its status (clean-up).
    one_failed   runs only if an upstream task failed (or was skipped because one
                 did): a notification. Otherwise it ends `skipped`, "not
                 triggered", which does not fail the run.

Both run under fail fast, which is the point of them (they ignore the stop
flag that keeps queued tasks from starting), but not after an interrupt or
--timeout. They see context["upstream_failed"]: upstream task id -> {"status",
"error" or "reason"} for each upstream task that did not succeed.

Upstream tasks that never ran (skipped, cancelled by the fail-fast stop) are
settled when the run is otherwise idle, so a trigger task waits for them to be
decided; a workflow without trigger tasks never pays for any of this.
"""
from __future__ import annotations

__all__ = ["TriggerRules"]

import collections

from opflow.events import TaskStatus

_NOT_OK = (TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CANCELLED)


class TriggerRules:
    def __init__(self, coordinator):
        self.c = coordinator
        self.active = any(t.trigger != "all_success" for t in coordinator.workflow.tasks)
        self.queue: collections.deque[str] = collections.deque()
        self.not_triggered: set[str] = set()  # skipped by their rule (or behind one that was): not failures
        self._order: list[str] | None = None

    # -- called by the coordinator -------------------------------------------
    def request_fields(self, spec, upstream) -> dict:
        if spec.trigger == "all_success":
            return {}
        states = self.c.states
        failed = {u: self._why(states[u]) for u in sorted(upstream, key=self.c._order.__getitem__)
                  if states[u].status in _NOT_OK and u not in self.not_triggered}
        return {"upstream_failed": failed, "ignore_halt": True}

    def ready(self, task_id: str) -> None:
        """Every upstream task of this trigger task has ended: run it, or skip it."""
        c = self.c
        state = c.states[task_id]
        if state.status is not TaskStatus.PENDING or c._signal is not None or c._timed_out:
            return  # interrupted or out of time: settled as cancelled at the end
        deps = [c.states[d] for d in state.spec.depends_on]
        if state.spec.trigger == "one_failed" and not any(
                d.status is TaskStatus.FAILED or (d.status is TaskStatus.SKIPPED and d.spec.id not in self.not_triggered)
                for d in deps):
            self._skip(state, "not triggered (one_failed): no upstream task failed", not_triggered=True)
            return
        self.queue.append(task_id)

    def ended(self, task_id: str) -> None:
        """A task ended without success: its trigger children count it as done."""
        if not self.active:
            return
        for child in self.c._children[task_id]:
            state = self.c.states[child]
            if state.spec.trigger != "all_success" and state.status is TaskStatus.PENDING:
                state.waiting -= 1
                if state.waiting == 0:
                    self.ready(child)

    def pump(self) -> None:
        c = self.c
        while self.queue and c._has_room() and c._signal is None and not c._timed_out:
            task_id = self.queue.popleft()
            if c.states[task_id].status is TaskStatus.PENDING and not c._reuse_cached(task_id):
                c._submit(task_id)

    def go_on(self) -> bool:
        """The run is idle: decide what never ran, so trigger tasks can. True: it goes on."""
        c = self.c
        if not self.active:
            return False
        while c._signal is None and not c._timed_out:
            self.pump()
            if c._running:
                return True
            if not self._settle_blocked() and not self.queue:
                return False
        return False

    # -- inside ----------------------------------------------------------------
    def _settle_blocked(self) -> bool:
        """Give each all_success task that can no longer run its final status, in
        dependency order (as the coordinator does at the end); True if any changed."""
        c = self.c
        if self._order is None:
            self._order = [t for layer in c.plan.layers for t in sorted(layer, key=c._order.__getitem__)]
        changed = False
        for task_id in self._order:
            state = c.states[task_id]
            if state.status is not TaskStatus.PENDING or state.spec.trigger != "all_success" or task_id in self.queue:
                continue
            deps = [c.states[d] for d in state.spec.depends_on]
            if not all(d.status.final for d in deps):
                continue
            blockers = [d for d in deps if d.status in (TaskStatus.FAILED, TaskStatus.SKIPPED)]
            if blockers and all(b.spec.id in self.not_triggered for b in blockers):
                self._skip(state, f"not triggered: upstream '{blockers[0].spec.id}' was not triggered", not_triggered=True)
            elif blockers:
                verb = "failed" if blockers[0].status is TaskStatus.FAILED else "was skipped"
                self._skip(state, f"upstream '{blockers[0].spec.id}' {verb}")
            elif c._stop_reason is not None:
                state.status = TaskStatus.CANCELLED
                state.reason = c._stop_reason
                c.emit("task_finished", record=c._record(state))
                self.ended(task_id)
            else:
                continue
            changed = True
        return changed

    def _skip(self, state, reason: str, not_triggered: bool = False) -> None:
        state.status = TaskStatus.SKIPPED
        state.reason = reason
        if not_triggered:
            self.not_triggered.add(state.spec.id)
        self.c.emit("task_finished", record=self.c._record(state))
        self.ended(state.spec.id)

    @staticmethod
    def _why(state) -> dict:
        if state.status is TaskStatus.FAILED and state.outcome is not None and state.outcome.error:
            error = state.outcome.error
            return {"status": "failed", "error": {"type": error.get("type"), "message": error.get("message")}}
        return {"status": state.status.value, "reason": state.reason}
