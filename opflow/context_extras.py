"""What a task's context holds beyond its upstream results and params.

- `context["<id>"]` for a foreach task `<id>` this task depends on: the list of
  its instances' results, in order (`request.groups`).
- `context["upstream_failed"]` for a task with `trigger: all_done` or
  `one_failed`: upstream task id -> {"status", "error" or "reason"} for each
  upstream task that did not succeed (`request.upstream_failed`).
"""
from __future__ import annotations

__all__ = ["add_context_extras"]


def add_context_extras(context: dict, groups: tuple, upstream_failed: dict | None) -> dict:
    for group_id, members in groups:
        context[group_id] = [context.get(member) for member in members]
    if upstream_failed is not None:
        context["upstream_failed"] = upstream_failed
    return context
