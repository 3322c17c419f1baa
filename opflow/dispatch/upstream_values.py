"""Upstream results the coordinator reads itself: `${tasks...}` in a config, `when:`.

A task's result travels from worker to worker through the backend's store; the
coordinator holds none. Only the results some task names (`TaskSpec.reads`) come
back to it as plain data (`Outcome.value`, asked by `TaskRequest.keep_value`), or
from the pickle an earlier run kept (resume, the cache), and are held here for the
run. When such a task is ready, `prepare` decides it with them: its `when:` is
false (skip it), its config cannot be rendered (fail it), or the spec to dispatch
(its config as rendered, which is what its record shows).
"""
from __future__ import annotations

__all__ = ["UpstreamValues", "Decision"]

import dataclasses
import io
import pickle
from typing import TYPE_CHECKING, NamedTuple

from opflow.dispatch.fan_out import make_instances
from opflow.workflow.expand import SHELL_KEYS
from opflow.workflow.templating import NotPlain, Scope, TemplateError, plain_value, render_deferred

if TYPE_CHECKING:
    from opflow.workflow.spec import TaskSpec, Workflow


class Decision(NamedTuple):
    """What to do with a ready task: run `spec`, or skip it (`skipped`: the reason), or fail it
    (`error`), or put the instances of its foreach in its place (`instances`)."""

    spec: TaskSpec | None = None
    skipped: str | None = None
    error: str | None = None
    instances: list | None = None


class UpstreamValues:
    def __init__(self, workflow: Workflow):
        self._params = workflow.params
        self._groups = dict(workflow.groups)  # (dynamic foreach groups join: add_group)
        self._read = {task_id for task in workflow.tasks for task_id in task.reads}  # as written
        self.needed: set[str] = set()
        for task_id in self._read:
            self.needed.update(self._groups.get(task_id, (task_id,)))
        self._values: dict = {}

    def wanted(self, task_id: str) -> bool:
        return task_id in self.needed

    def keep(self, task_id: str, value) -> None:
        """A needed task succeeded: its result as plain data (Outcome.value)."""
        if task_id in self.needed:
            self._values[task_id] = value

    def keep_pickled(self, task_id: str, blob: bytes | None) -> None:
        """A needed task's result from an earlier run (resume, the cache)."""
        if task_id in self.needed and blob is not None:
            self._values[task_id] = _plain_from_pickle(blob)

    def prepare(self, spec: TaskSpec) -> Decision:
        """Decide a ready task that reads upstream results."""
        tasks = {task_id: self._value_of(task_id) for task_id in spec.reads}
        tasks = {task_id: value for task_id, value in tasks.items() if value is not _NONE}
        scope = Scope(params=self._params, env={}, tasks=tasks)
        try:
            if spec.when is not None and not spec.when.evaluate(scope):
                return Decision(skipped=f"when: {spec.when.text} was false")
            if spec.dynamic:
                return Decision(instances=make_instances(spec, self._params, tasks))
            if spec.deferred:
                config = render_deferred(spec.config, spec.deferred, tasks, SHELL_KEYS.get(spec.plugin, ()))
                spec = dataclasses.replace(spec, config=config)
        except TemplateError as exc:
            return Decision(error=str(exc))
        return Decision(spec=spec)

    def add_group(self, group_id: str, instance_ids: list) -> None:
        """A dynamic foreach made its instances: a task that reads the group reads theirs."""
        self._groups[group_id] = tuple(instance_ids)
        if group_id in self._read:
            self.needed.discard(group_id)
            self.needed.update(instance_ids)

    def _value_of(self, task_id: str):
        """A task's value; for a foreach task, the list of its instances' (as context[id] reads)."""
        instances = self._groups.get(task_id)
        if instances is None:
            return self._values.get(task_id, _NONE)
        values = [self._values.get(i, _NONE) for i in instances]
        if any(v is _NONE for v in values):
            return _NONE
        return next((v for v in values if type(v) is NotPlain), values)


_NONE = object()  # no value: the task did not succeed


class _PlainOnly(pickle.Unpickler):
    """Plain data needs no class: a pickle that names one is not plain (and no user code runs here)."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"{module}.{name}")


def _plain_from_pickle(blob: bytes):
    try:
        return plain_value(_PlainOnly(io.BytesIO(blob)).load())
    except pickle.UnpicklingError as exc:
        return NotPlain(str(exc) or "an object")
    except Exception:  # a pickle this process cannot read at all
        return NotPlain("an unreadable pickle")
