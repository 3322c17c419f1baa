"""`--only`, `--skip` and `--force`: selectors, and the tasks they resolve to.

A selector (`SEL`) is one of:

    ID          a task id, or a foreach/matrix task's id (all its instances)
    GLOB        fnmatch over task ids and group ids (`fit*`)
    tag:NAME    every task whose `tags:` holds NAME
    +S, S+, +S+ S and everything upstream of it, downstream of it, or both (dbt's graph operators)

`select_tasks` resolves `--only` and `--skip` against an expanded workflow; a selector
that matches nothing is a usage error (exit 2) with a did-you-mean. What the run then
reuses for the selected tasks' unselected upstream is rundir/history.py's
(`find_upstream_results`).
"""
from __future__ import annotations

__all__ = ["Selection", "select_tasks", "resolve", "resolve_all"]

import dataclasses
import difflib
import fnmatch
from dataclasses import dataclass
from typing import Iterable

from opflow.errors import UsageError
from opflow.workflow.spec import Workflow

_GLOB_CHARS = "*?["


@dataclass(frozen=True)
class Selection:
    """What `--only`/`--skip` asked and what it resolved to (run.json's `selection`)."""

    only: tuple[str, ...]
    skip: tuple[str, ...]
    selected: tuple[str, ...]  # task ids, in workflow order
    #: The unselected tasks upstream of a selected one, in workflow order: the run reuses their results.
    upstream: tuple[str, ...]

    def as_record(self, sources: dict) -> dict:
        """run.json's `selection`; `sources`: each reused upstream task -> the run directory it came from."""
        return {"asked": _asked_list(self.only, self.skip), "resolved": list(self.selected),
                "reused": {t: sources.get(t) for t in self.upstream}}

    def restrict(self, workflow: Workflow) -> Workflow:
        """The workflow this run runs: the selected tasks and the upstream they reuse, nothing else."""
        keep = set(self.selected) | set(self.upstream)
        groups = {}
        for group, instances in workflow.groups.items():
            kept = tuple(i for i in instances if i in keep)
            if kept:
                groups[group] = kept
        return dataclasses.replace(workflow, tasks=tuple(t for t in workflow.tasks if t.id in keep), groups=groups)


def select_tasks(workflow: Workflow, only: Iterable[str] = (), skip: Iterable[str] = ()) -> Selection:
    """The tasks `--only` (all, when none is given) keeps and `--skip` does not remove."""
    only, skip = tuple(only), tuple(skip)
    chosen = resolve_all(workflow, only, "--only") if only else {t.id for t in workflow.tasks}
    chosen -= resolve_all(workflow, skip, "--skip")
    if not chosen:
        raise UsageError(f"{_asked(only, skip)}: selects no task; nothing to run")
    graph = _Edges(workflow)
    upstream = graph.reach(chosen, graph.parents) - chosen
    order = [t.id for t in workflow.tasks]
    # An unselected task downstream of a selected one: its recorded result came from its upstream as
    # it was then, not from what the selected task makes now. Reusing it would mix the two (resume
    # reruns such a task).
    mixed = upstream & graph.reach(chosen, graph.children)
    if mixed:
        task_id = next(t for t in order if t in mixed)
        rerun = next(t for t in order if t in graph.reach({task_id}, graph.parents) & chosen)
        raise UsageError(f"{_asked(only, skip)}: '{task_id}' is not selected, but a selected task reads it and "
                         f"it reads '{rerun}', which runs: select '{task_id}' too (or leave '{rerun}' out)")
    return Selection(only, skip, tuple(t for t in order if t in chosen), tuple(t for t in order if t in upstream))


def resolve_all(workflow: Workflow, selectors: Iterable[str], option: str) -> set[str]:
    """The task ids any of `selectors` names (`resolve` of each)."""
    found: set[str] = set()
    for selector in selectors:
        found |= resolve(workflow, selector, option)
    return found


def resolve(workflow: Workflow, selector: str, option: str) -> set[str]:
    """The task ids one selector names (instances in place of their group); a usage error if none."""
    text = selector.strip()
    up, down = text.startswith("+"), text.endswith("+") and len(text) > 1
    core = text[1 if up else 0: len(text) - 1 if down else len(text)]
    found = _base(workflow, core)
    if not found:
        raise UsageError(f"{option} {selector}: matches no task{_hint(workflow, core)}")
    if up or down:
        graph = _Edges(workflow)
        start = set(found)
        if up:
            found |= graph.reach(start, graph.parents)
        if down:
            found |= graph.reach(start, graph.children)
    return found


def _base(workflow: Workflow, core: str) -> set[str]:
    groups = workflow.groups
    if core.startswith("tag:"):
        name = core[4:]
        return {t.id for t in workflow.tasks if name in t.tags}
    if core in groups:
        return set(groups[core])
    if any(t.id == core for t in workflow.tasks):
        return {core}
    if any(c in core for c in _GLOB_CHARS):
        found = {t.id for t in workflow.tasks if fnmatch.fnmatchcase(t.id, core)}
        for group, instances in groups.items():
            if fnmatch.fnmatchcase(group, core):
                found.update(instances)
        return found
    return set()


def _hint(workflow: Workflow, core: str) -> str:
    if core.startswith("tag:"):
        tags = sorted({tag for t in workflow.tasks for tag in t.tags})
        close = difflib.get_close_matches(core[4:], tags, n=1)
        if close:
            return f" (did you mean 'tag:{close[0]}'?)"
        return f" (tags: {', '.join(tags)})" if tags else " (no task has tags)"
    names = list(dict.fromkeys([*workflow.groups, *(t.group or t.id for t in workflow.tasks)]))
    close = difflib.get_close_matches(core, names, n=1)
    if close:
        return f" (did you mean '{close[0]}'?)"
    shown = names[:10]
    return f" (tasks: {', '.join(shown)}{', ...' if len(names) > len(shown) else ''})"


def _asked_list(only: tuple, skip: tuple) -> list[str]:
    return [*(f"--only {s}" for s in only), *(f"--skip {s}" for s in skip)]


def _asked(only: tuple, skip: tuple) -> str:
    return " ".join(_asked_list(only, skip))


class _Edges:
    """The expanded graph both ways, for the graph operators."""

    def __init__(self, workflow: Workflow):
        self.parents = {t.id: tuple(t.depends_on) for t in workflow.tasks}
        self.children: dict[str, list[str]] = {t.id: [] for t in workflow.tasks}
        for t in workflow.tasks:
            for dep in t.depends_on:
                self.children[dep].append(t.id)

    @staticmethod
    def reach(starts: set[str], edges) -> set[str]:
        """Every task reached from `starts` along `edges` (parents or children): a start only if another reaches it."""
        seen: set[str] = set()
        todo = [t for start in starts for t in edges[start]]
        while todo:
            task_id = todo.pop()
            if task_id not in seen:
                seen.add(task_id)
                todo.extend(edges[task_id])
        return seen
