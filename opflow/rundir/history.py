"""Past runs in a log dir: find the latest, prune old ones, plan a resume.

A resume reruns only what did not succeed. A succeeded task's recorded result is
reused only while nothing it depends on changed: its own spec (plugin, config,
depends_on), the params, and (transitively) every upstream task's reuse.
"""
from __future__ import annotations

__all__ = ["find_runs", "needs_file_tag", "runs_of_file", "latest_run", "prune_runs", "ResumePlan", "plan_resume",
           "WORKFLOW_COPY", "run_state", "coordinator_alive", "journal_statuses", "read_run_record", "workflow_copy"]

import hashlib
import json
import re
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

from opflow.rundir.audit import slugify
from opflow.errors import UsageError, WorkflowError
from opflow.rundir.results_log import RESULTS_FILE, read_results
from opflow.workflow.spec import Workflow, load_workflow
from opflow.rundir.files import check_private_dir, read_private

WORKFLOW_COPY = "workflow.yaml"  # the workflow file as it was when the run started
JOURNAL = "events.jsonl"


def run_state(run_dir: Path) -> str:
    """run.json's status, or 'crashed' for a 'running' run whose coordinator is gone
    (its pid dead, or reused by another process, on this host)."""
    try:
        doc = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unknown"
    status = doc.get("status") or "unknown"
    if status == "running" and coordinator_alive(doc) is False:
        return "crashed"
    return status


def coordinator_alive(doc: dict) -> bool | None:
    """Is the coordinator that wrote this run.json still running? None: cannot tell
    (another host, or a record from before opflow kept the pid)."""
    pid = doc.get("pid")
    if not isinstance(pid, int) or doc.get("host") != socket.gethostname():
        return None
    import psutil

    try:
        created = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # exists but unreadable (another user's): alive as far as we know
        return True
    recorded = doc.get("pid_create_time")
    if isinstance(recorded, (int, float)) and abs(created - recorded) > 1.0:
        return False  # the pid was reused by a later process
    return True


def journal_statuses(run_dir: Path) -> dict[str, str]:
    """task_id -> status from the journal's task_finished events (appended and flushed as
    each task ends, so it survives a crash of the coordinator). A line torn by the crash
    is ignored."""
    try:
        lines = read_private(Path(run_dir) / JOURNAL).splitlines()
    except FileNotFoundError:
        return {}
    statuses = {}
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue  # the last line, cut short by the crash
        if isinstance(event, dict) and event.get("event") == "task_finished" and "task_id" in event:
            statuses[event["task_id"]] = event.get("status")
    return statuses


def find_runs(log_dir: Path, workflow_name: str) -> list[Path]:
    """Run directories named for this workflow, oldest first."""
    if not log_dir.is_dir():
        return []
    # <time>-<slug>, or <time>-<slug>-<n> for the n-th run in one second, with the
    # file tag after the slug where two files share a name. The slug itself may end
    # in -<digits> ("job 2"), so match it exactly, not loosely.
    name = _run_dir_name(workflow_name)
    runs = []
    for path in log_dir.iterdir():
        match = name.fullmatch(path.name)
        if match and (path / "run.json").is_file():
            runs.append((match.group("stamp"), int(match.group("n") or 1), path))
    return [path for _, _, path in sorted(runs)]


def _run_dir_name(workflow_name: str) -> re.Pattern:
    return re.compile(r"(?P<stamp>\d{8}T\d{6}Z)-" + re.escape(slugify(workflow_name))
                      + r"(?:-f(?P<tag>[0-9a-f]{6}))?(?:-(?P<n>\d+))?")


def needs_file_tag(log_dir: Path, workflow: Workflow) -> bool:
    """Whether this file's run dirs need the file tag to tell them apart.

    The first file to run under a workflow name in a log dir keeps the plain
    `<time>-<slug>` names; another file with the same name gets `-f<tag>` after
    the slug. One run.json is read: the oldest plain-named run's.
    """
    pattern = _run_dir_name(workflow.name)
    for run_dir in find_runs(log_dir, workflow.name):
        if pattern.fullmatch(run_dir.name).group("tag"):
            continue
        try:
            doc = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return doc.get("workflow_file") != str(workflow.path)
    return False


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
    # Never a run whose coordinator is (or may be) alive: with --no-lock, a sibling run.
    doomed = [r for r in runs[: max(0, len(runs) - keep)] if r != protect and not _maybe_running(r)]
    for run_dir in doomed:
        shutil.rmtree(run_dir, ignore_errors=True)
    return doomed


def _maybe_running(run_dir: Path) -> bool:
    try:
        doc = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True  # unreadable: cannot tell, so keep it
    return doc.get("status") == "running" and coordinator_alive(doc) is not False


@dataclass
class ResumePlan:
    source: Path
    reuse: dict = field(default_factory=dict)  # task_id -> pickled result (None: nothing reads it)
    changes: list[str] = field(default_factory=list)  # why some succeeded tasks rerun
    rerun: list[str] = field(default_factory=list)


def plan_resume(run_dir: Path, workflow: Workflow) -> ResumePlan:
    """What an earlier run's record lets us reuse for `workflow` (already loaded and valid)."""
    doc = read_run_record(run_dir)  # refuses a run dir that is not this user's alone
    if doc.get("status") == "running":
        alive = coordinator_alive(doc)
        if alive:
            raise UsageError(f"{run_dir}: that run is still in progress (pid {doc.get('pid')}); resume it once it ends")
        if alive is None and doc.get("pid") is not None:
            raise UsageError(f"{run_dir}: that run says running, on host {doc.get('host')}: only there can opflow "
                             "tell whether it crashed; resume it there")
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
    # run.json has statuses only at the start and the end; the journal has each task's
    # end as it happened, so a crashed run's successes are known too.
    statuses = {**doc.get("tasks", {}), **journal_statuses(run_dir)}
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
    try:
        read_private(copy)
    except FileNotFoundError:
        return None
    try:
        # With the params that run had, so that templated configs compare as they ran.
        return load_workflow(copy, known_plugins=None, param_overrides=params)
    except WorkflowError:
        return None


def read_run_record(run_dir: Path) -> dict:
    """run.json of a run directory resume may trust: this user's, writable by no one else."""
    run_dir = Path(run_dir)
    check_private_dir(run_dir)
    run_json = run_dir / "run.json"
    try:
        doc = json.loads(read_private(run_json).decode("utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{run_dir}: not a run directory (no run.json)") from None
    except ValueError as exc:
        raise UsageError(f"{run_json}: unreadable: {exc}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{run_json}: unreadable: not a JSON object")
    return doc


def workflow_copy(run_dir: Path, doc: dict) -> bytes:
    """The workflow file as the run ran it: the copy in the run dir, checked against the
    sha256 run.json recorded."""
    copy = Path(run_dir) / WORKFLOW_COPY
    try:
        data = read_private(copy)
    except FileNotFoundError:
        raise UsageError(f"{copy}: missing; resume runs the workflow as it ran, and its copy is gone") from None
    recorded = doc.get("workflow_sha256")
    if not recorded or hashlib.sha256(data).hexdigest() != recorded:
        raise UsageError(f"{copy}: does not match the sha256 recorded in run.json ({recorded}); refusing to run it")
    return data


def _in_dependency_order(workflow: Workflow):
    from opflow.workflow.plan import build_plan

    order = build_plan(workflow).layers
    by_id = {t.id: t for t in workflow.tasks}
    return [by_id[t] for layer in order for t in layer]
