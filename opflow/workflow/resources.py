"""What a workflow says about the machine: the keys `resources:`, `limits:` and the task
keys `cpus`, `memory`, `limit`, `priority`, checked at their lines (spec.py's checker).

    resources: {cpus: 4, memory: 2GB}      the budget (each also `auto`: the machine's)
    limits: {api: 2, gpu: {max: 1, scope: machine}}
    tasks:
      - id: fit
        cpus: 2                            takes 2 of the pool's slots
        memory: 1GB                        starts when 1GB of the budget is free; killed past it
        limit: api                         (or a list) at most N such tasks at once
        priority: 10                       starts before ready tasks of lower priority

`memory: auto` reserves 1.25x the task's peak RSS in the latest run that recorded one and
kills nothing. What these mean at run time is dispatch/admission.py's.
"""
from __future__ import annotations

__all__ = ["RESOURCE_TOP_KEYS", "RESOURCE_TASK_KEYS", "LIMIT_SCOPES", "Limit", "workflow_resources",
           "task_resources", "MAX_CPUS"]

import difflib
from dataclasses import dataclass

from opflow.words import format_bytes, parse_size

RESOURCE_TOP_KEYS = ("resources", "limits")
RESOURCE_TASK_KEYS = ("cpus", "memory", "limit", "priority")
LIMIT_SCOPES = ("run", "machine")
MAX_CPUS = 4096  # past this a number of CPUs is a typo
_MAX_MEMORY = 2**60
_MAX_LIMIT = 100_000  # a machine-scope limit is that many lock files
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


@dataclass(frozen=True)
class Limit:
    name: str
    max: int
    scope: str = "run"  # | "machine": across every opflow run of this user on the machine


def _items(checker, node, what: str) -> dict | None:
    """key -> (key node, value node) of a mapping, from either read (a node, or plain data)."""
    if hasattr(node, "value") and hasattr(node, "start_mark"):
        import yaml

        return checker.mapping(node, what) if isinstance(node, yaml.MappingNode) else None
    return {k: (None, v) for k, v in node.items()} if isinstance(node, dict) else None


def _unknown(checker, items: dict, allowed: tuple, what: str) -> None:
    for key, (key_node, _) in items.items():
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "allowed: " + ", ".join(allowed)
            checker.problem(f"{what}: unknown key '{key}' ({hint})", key_node)


def _cpus(checker, node, what: str, task_id=None, auto: bool = False):
    value = checker.value(node)
    if auto and value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CPUS:
        form = "a whole number >= 1" + (" or auto" if auto else "")
        checker.problem(f"'{what}' must be {form}, got {value!r}"[:200], node, task_id)
        return None
    return value


def _memory(checker, node, what: str, task_id=None):
    value = checker.value(node)
    if value == "auto":
        return "auto"
    size = parse_size(value) if isinstance(value, str) else (
        value if isinstance(value, int) and not isinstance(value, bool) else None)
    if size is None or not 0 < size <= _MAX_MEMORY:
        checker.problem(f"'{what}' must be a size like 512MB or 2GiB, or auto, got {value!r}"[:200], node, task_id)
        return None
    return size


def workflow_resources(checker, top: dict) -> tuple[dict, dict]:
    """(`resources:` as {cpus, memory}, `limits:` as name -> Limit), problems to `checker`."""
    resources: dict = {}
    if "resources" in top:
        node = top["resources"][1]
        items = _items(checker, node, "resources")
        if items is None:
            if checker.value(node) is not None:
                checker.problem("'resources' must be a mapping like {cpus: 4, memory: 2GB}", node)
            items = {}
        _unknown(checker, items, ("cpus", "memory"), "resources")
        if "cpus" in items:
            resources["cpus"] = _cpus(checker, items["cpus"][1], "resources.cpus", auto=True)
        if "memory" in items:
            resources["memory"] = _memory(checker, items["memory"][1], "resources.memory")
        resources = {k: v for k, v in resources.items() if v is not None}
    limits: dict = {}
    if "limits" in top:
        node = top["limits"][1]
        items = _items(checker, node, "limits")
        if items is None:
            if checker.value(node) is not None:
                checker.problem("'limits' must be a mapping like {api: 2} or {gpu: {max: 1, scope: machine}}", node)
            items = {}
        for name, (key_node, value_node) in items.items():
            limit = _limit(checker, name, key_node, value_node)
            if limit is not None:
                limits[name] = limit
    return resources, limits


def _limit(checker, name, key_node, node) -> Limit | None:
    if not name or not set(str(name)) <= _NAME_CHARS:
        checker.problem(f"limits: {name!r} is not a limit name ([A-Za-z0-9_.-]+)", key_node)
        return None
    scope = "run"
    sub = _items(checker, node, f"limits.{name}")
    if sub is not None:
        _unknown(checker, sub, ("max", "scope"), f"limits.{name}")
        if "max" not in sub:
            checker.problem(f"limits.{name}: missing 'max' (how many tasks may hold it at once)", node)
            return None
        if "scope" in sub:
            scope = checker.value(sub["scope"][1])
            if scope not in LIMIT_SCOPES:
                close = difflib.get_close_matches(str(scope), LIMIT_SCOPES, n=1)
                hint = f"did you mean '{close[0]}'?" if close else "one of: " + ", ".join(LIMIT_SCOPES)
                checker.problem(f"limits.{name}.scope {scope!r} is not a scope ({hint})", sub["scope"][1])
                return None
        node = sub["max"][1]
    value = checker.value(node)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_LIMIT:
        checker.problem(f"limits.{name}: must be a whole number >= 1 (at most {_MAX_LIMIT}), got {value!r}"[:200],
                        node)
        return None
    return Limit(name, value, scope)


def task_resources(checker, items: dict, task_id, resources: dict, limits: dict) -> dict:
    """A task's cpus, memory, limit, priority (TaskSpec fields), checked against the
    workflow's `resources:` and `limits:`."""
    found: dict = {"cpus": 1, "memory": None, "limit": (), "priority": None}
    if "cpus" in items:
        node = items["cpus"][1]
        cpus = _cpus(checker, node, "cpus", task_id)
        budget = resources.get("cpus")
        if cpus is not None and isinstance(budget, int) and cpus > budget:
            checker.problem(f"cpus: {cpus} is more than the workflow's budget (resources.cpus: {budget})", node, task_id)
        elif cpus is not None:
            found["cpus"] = cpus
    if "memory" in items:
        node = items["memory"][1]
        memory = _memory(checker, node, "memory", task_id)
        budget = resources.get("memory")
        if isinstance(memory, int) and isinstance(budget, int) and memory > budget:
            checker.problem(f"memory: {format_bytes(memory)} is more than the workflow's budget "
                            f"(resources.memory: {format_bytes(budget)})", node, task_id)
        else:
            found["memory"] = memory
    if "limit" in items:
        node = items["limit"][1]
        value = checker.value(node)
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not names:
            checker.problem(f"'limit' must be a limit's name or a list of them, got {value!r}"[:200], node, task_id)
        else:
            for name in names:
                if name not in limits:
                    close = difflib.get_close_matches(name, list(limits), n=1)
                    hint = (f"did you mean '{close[0]}'?" if close else
                            "known: " + ", ".join(limits) if limits else "the workflow has no 'limits:'")
                    checker.problem(f"limit '{name}' is not in limits ({hint})", node, task_id)
            found["limit"] = tuple(dict.fromkeys(n for n in names if n in limits))
    if "priority" in items:
        node = items["priority"][1]
        value = checker.value(node)
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 10**9:
            checker.problem(f"'priority' must be a whole number (higher starts first), got {value!r}"[:200],
                            node, task_id)
        else:
            found["priority"] = value
    return found
