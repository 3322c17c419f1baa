"""The instances of a `foreach: ${tasks.ID.result...}`, made when ID has run.

A static foreach is expanded when the workflow is read (workflow/expand.py); this one
only once its list exists. The instances are made as static ones are (ids
`<id>[0]`, `<id>[1]`, ...; `${item}`, `${index}`, params and upstream results
rendered into each config; the task's own upstream), and the ready set puts them in
the task's place (ReadySet.fan_out): its dependents wait for all of them and see
`context["<id>"]` as the list of their results.
"""
from __future__ import annotations

__all__ = ["make_instances"]

import dataclasses
from typing import TYPE_CHECKING, Any, Mapping

from opflow.workflow.expand import SHELL_KEYS
from opflow.workflow.templating import NotPlain, Scope, TemplateError, render_value, resolve_reference

if TYPE_CHECKING:
    from opflow.workflow.spec import TaskSpec


def make_instances(spec: TaskSpec, params: dict, tasks: Mapping[str, Any]) -> list[TaskSpec]:
    """The instances of a dynamic foreach task; raises TemplateError (not a list, too many,
    a config that cannot be rendered), which fails the task."""
    items = resolve_reference(spec.foreach[2:-1], Scope(params, env={}, tasks=tasks))
    if not isinstance(items, list):
        kind = items.type_name if type(items) is NotPlain else type(items).__name__
        raise TemplateError(f"foreach: {spec.foreach} must give a list, got a {kind}")
    if len(items) > spec.max_items:
        raise TemplateError(f"foreach: {spec.foreach} gave {len(items)} items, more than max_items ({spec.max_items})")
    instances = []
    for index, item in enumerate(items):
        scope = Scope(params, item=item, index=index, tasks=tasks)
        config, problems = render_value(spec.config, scope, quote_paths=SHELL_KEYS.get(spec.plugin, ()))
        inputs, input_problems = render_value(list(spec.inputs), scope)
        for path, message in problems + input_problems:
            where = ".".join(str(p) for p in path)
            raise TemplateError(f"{spec.id}[{index}]: config{'.' + where if where else ''}: {message}")
        instances.append(dataclasses.replace(
            spec, id=f"{spec.id}[{index}]", config=config, inputs=tuple(str(i) for i in inputs), group=spec.id,
            dynamic=False, when=None, reads=(), deferred=()))
    return instances
