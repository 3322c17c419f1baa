"""Past runs in a log dir: find the latest, prune old ones, plan a resume.

A resume reruns only what did not succeed. A succeeded task's recorded result is
reused only while nothing it depends on changed: its own spec (plugin, config,
depends_on), the params, and (transitively) every upstream task's reuse.
"""
from __future__ import annotations

__all__ = ["find_runs", "runs_of_file", "latest_run", "prune_runs", "ResumePlan", "plan_resume", "WORKFLOW_COPY"]

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .audit import slugify
from .errors import UsageError, WorkflowError
from .results_log import RESULTS_FILE, read_results
from .spec import Workflow, load_workflow

WORKFLOW_COPY = "workflow.yaml"  # the workflow file as it was when the run started
def find_runs(log_dir: Path, workflow_name: str) -> list[Path]:
    """Run directories named for this workflow, oldest first."""
    if not log_dir.is_dir():
        return []
    # <time>-<slug>, or <time>-<slug>-<n> for the n-th run in one second. The slug
    # itself may end in -<digits> ("job 2"), so match it exactly, not loosely.
    name = re.compile(r"(?P<stamp>\d{8}T\d{6}Z)-" + re.escape(slugify(workflow_name)) + r"(?:-(?P<n>\d+))?")
    runs = []
    for path in log_dir.iterdir():
        match = name.fullmatch(path.name)
        if match and (path / "run.json").is_file():
            runs.append((match.group("stamp"), int(match.group("n") or 1), path))
    return [path for _, _, path in sorted(runs)]


def runs_of_file(log_dir: Path, workflow: Workflow) -> list[Path]:
    """Run directories of this very workflow file (its run.json says so), oldest first."""
    found = []
    for run_dir in find_runs(log_dir, workflow.name):
        try:
            doc = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if doc.get("workflow_file") == str(workflow.path):
            found.append(run_dir)
    return found


def latest_run(log_dir: Path, workflow: Workflow) -> Path | None:
    """The newest run directory of this same workflow file under log_dir."""
    runs = runs_of_file(log_dir, workflow)
    return runs[-1] if runs else None


def prune_runs(log_dir: Path, workflow: Workflow, keep: int, protect: Path | None = None) -> list[Path]:
    """Delete all but the newest `keep` runs of this workflow file; returns what was deleted."""
    runs = runs_of_file(log_dir, workflow)
    doomed = [r for r in runs[: max(0, len(runs) - keep)] if r != protect]
    for run_dir in doomed:
        shutil.rmtree(run_dir, ignore_errors=True)
    return doomed


@dataclass
class ResumePlan:
    source: Path
    reuse: dict = field(default_factory=dict)  # task_id -> pickled result (None: nothing reads it)
    changes: list[str] = field(default_factory=list)  # why some succeeded tasks rerun
    rerun: list[str] = field(default_factory=list)


def plan_resume(run_dir: Path, workflow: Workflow) -> ResumePlan:
    """What an earlier run's record lets us reuse for `workflow` (already loaded and valid)."""
    run_json = run_dir / "run.json"
    try:
        doc = json.loads(run_json.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{run_dir}: not a run directory (no run.json)") from None
    except ValueError as exc:
        raise UsageError(f"{run_json}: unreadable: {exc}") from None
    plan = ResumePlan(source=run_dir)
    old = _old_workflow(run_dir, doc.get("params"))
    if old is None:
        plan.changes.append(f"{run_dir / WORKFLOW_COPY} is missing, so no result can be trusted")
        plan.rerun = [t.id for t in workflow.tasks]
        return plan
    old_params = doc.get("params", old.params)  # what the run really had, --param overrides included
    if old_params != workflow.params:
        plan.changes.append(f"params changed: {old_params} -> {workflow.params}; every task sees params, so all rerun")
        plan.rerun = [t.id for t in workflow.tasks]
        return plan
    statuses = doc.get("tasks", {})
    recorded = read_results(str(run_dir / RESULTS_FILE))
    reusable: set[str] = set()
    old_tasks = {t.id: t for t in old.tasks}
    for task in _in_dependency_order(workflow):
        before = old_tasks.get(task.id)
        if statuses.get(task.id) != "succeeded":
            continue
        if before is None:
            plan.changes.append(f"task '{task.id}' is new")
            continue
        what = [name for name in ("plugin", "config", "depends_on") if getattr(before, name) != getattr(task, name)]
        if what:
            plan.changes.append(f"task '{task.id}' changed ({', '.join(what)})")
            continue
        stale = [d for d in task.depends_on if d not in reusable]
        if stale:
            plan.changes.append(f"task '{task.id}' depends on '{stale[0]}', which reruns")
            continue
        read_by_others = any(task.id in t.depends_on for t in workflow.tasks)
        if read_by_others and task.id not in recorded:
            plan.changes.append(f"task '{task.id}': its result is missing from {run_dir / RESULTS_FILE}")
            continue
        # A task nothing reads needs no recorded result to count as done (None).
        plan.reuse[task.id] = recorded.get(task.id) if read_by_others else None
        reusable.add(task.id)
    plan.rerun = [t.id for t in workflow.tasks if t.id not in reusable]
    return plan


def _old_workflow(run_dir: Path, params: dict | None = None) -> Workflow | None:
    copy = run_dir / WORKFLOW_COPY
    if not copy.is_file():
        return None
    try:
        # With the params that run had, so that templated configs compare as they ran.
        return load_workflow(copy, known_plugins=None, param_overrides=params)
    except WorkflowError:
        return None


def _in_dependency_order(workflow: Workflow):
    from .plan import build_plan

    order = build_plan(workflow).layers
    by_id = {t.id: t for t in workflow.tasks}
    return [by_id[t] for layer in order for t in layer]
