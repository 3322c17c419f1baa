"""Past runs in a log dir: prune old ones, plan a resume, weigh a run's tasks for its critical path.

Finding runs, reading them and judging whether their coordinator lives are
rundir/layout.py's; the names are imported here so that their old homes still answer.

A resume reruns only what did not succeed. A succeeded task's recorded result is
reused only while nothing it depends on changed: its own spec (plugin, config,
depends_on), the params, and (transitively) every upstream task's reuse.
"""
from __future__ import annotations

__all__ = ["find_runs", "needs_file_tag", "runs_of_file", "latest_run", "prune_runs", "ResumePlan", "plan_resume", "resume_source",
           "WORKFLOW_COPY", "run_state", "coordinator_alive", "journal_statuses", "read_run_record", "workflow_copy",
           "task_weights", "last_durations", "last_peak_rss", "RunTimes", "run_times", "last_run_times",
           "UpstreamResults", "find_upstream_results"]

import hashlib
import json
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

from opflow.errors import UsageError, WorkflowError
from opflow.rundir.files import read_private
# The run directory's names, finding runs and liveness are layout.py's; kept importable from here.
from opflow.rundir.layout import (JOURNAL, WORKFLOW_COPY, coordinator_alive, find_runs, iso_epoch, latest_run,
                                  needs_file_tag, read_run_json, read_task_records, run_state, runs_of_file,
                                  trusted_runs_of_file)
from opflow.rundir.layout import read_trusted_run_json as read_run_record
from opflow.rundir.outputs import stale_outputs
from opflow.rundir.results_log import RESULTS_FILE, read_results
from opflow.workflow.spec import Workflow, load_workflow, params_digest


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


def prune_runs(log_dir: Path, workflow: Workflow, keep: int, protect: Path | None = None) -> list[Path]:
    """Delete all but the newest `keep` runs of this workflow file; returns what was deleted."""
    runs = runs_of_file(log_dir, workflow)
    # Never a run whose coordinator is (or may be) alive: with --no-lock, a sibling run.
    doomed = [r for r in runs[: max(0, len(runs) - keep)] if r != protect and not _maybe_running(r)]
    for run_dir in doomed:
        shutil.rmtree(run_dir, ignore_errors=True)
    return doomed


def _maybe_running(run_dir: Path) -> bool:
    doc = read_run_json(run_dir)
    if doc is None:
        return True  # unreadable: cannot tell, so keep it
    return doc.get("status") == "running" and coordinator_alive(doc) is not False


@dataclass
class ResumePlan:
    source: Path
    reuse: dict = field(default_factory=dict)  # task_id -> pickled result (None: nothing reads it)
    changes: list[str] = field(default_factory=list)  # why some succeeded tasks rerun
    rerun: list[str] = field(default_factory=list)
    why: dict = field(default_factory=dict)  # task_id -> why it is reused or reruns (`opflow plan --explain`)


def resume_source(log_dir: Path, workflow: Workflow, resume: bool | str | Path) -> Path:
    """The run `--resume` reuses from: the latest of this workflow file under log_dir, or the one named."""
    if resume is not True:
        return Path(resume)
    source = latest_run(log_dir, workflow)
    if source is None:
        raise UsageError(f"--resume: no earlier run of '{workflow.name}' ({workflow.path}) under {log_dir}")
    return source


def plan_resume(run_dir: Path, workflow: Workflow) -> ResumePlan:
    """What an earlier run's record lets us reuse for `workflow` (already loaded and valid),
    and why each task is reused or reruns."""
    doc = read_run_record(run_dir)  # refuses a run dir that is not this user's alone
    if doc.get("status") == "running":
        alive = coordinator_alive(doc)
        if alive:
            raise UsageError(f"{run_dir}: that run is still in progress (pid {doc.get('pid')}); resume it once it ends")
        if alive is None and doc.get("pid") is not None:
            if doc.get("host") and doc.get("host") != socket.gethostname():
                raise UsageError(f"{run_dir}: that run says running, on host {doc.get('host')}: only there can opflow "
                                 "tell whether it crashed; resume it there")
            raise UsageError(f"{run_dir}: that run says running, and opflow cannot tell whether its coordinator "
                             f"(pid {doc.get('pid')}, host {doc.get('host') or 'not recorded'}) still runs; "
                             "resume it once it ends")
    plan = ResumePlan(source=run_dir)
    recorded_params = doc.get("params")
    if doc.get("secret_params") or workflow.secret_params:
        # Secrets are *** in run.json: the params compare by their digest (secrets by theirs).
        if doc.get("params_sha256") != params_digest(workflow):
            return _rerun_all(plan, workflow,
                              "params changed (a secret param may be among them); every task sees params, so all rerun")
        recorded_params = workflow.params  # the same values
    old = _old_workflow(run_dir, recorded_params, workflow.directory)
    if old is None:
        return _rerun_all(plan, workflow, f"{run_dir / WORKFLOW_COPY} is missing, so no result can be trusted")
    old_params = recorded_params if recorded_params is not None else old.params  # --param overrides included
    if old_params != workflow.params:
        return _rerun_all(plan, workflow,
                          f"params changed: {old_params} -> {workflow.params}; every task sees params, so all rerun")
    # run.json has statuses only at the start and the end; the journal has each task's
    # end as it happened, so a crashed run's successes are known too.
    statuses = {**doc.get("tasks", {}), **journal_statuses(run_dir)}
    recorded = read_results(str(run_dir / RESULTS_FILE))
    reusable: set[str] = set()
    old_tasks = {t.id: t for t in old.tasks}

    def change(task_id: str, why: str) -> None:  # why: "is new", ": its result is missing ..."
        plan.changes.append(f"task '{task_id}'{why if why.startswith(':') else ' ' + why}")
        plan.why[task_id] = f"resume: {why[2:]}" if why.startswith(":") else f"resume: it {why}"

    for task in _in_dependency_order(workflow):
        before = old_tasks.get(task.id)
        if task.dynamic:
            found = _reused_instances(task, before, statuses, recorded, reusable)
            plan.reuse.update(found)
            plan.why[task.id] = (f"resume: a foreach over an upstream result; {len(found)} of its instances "
                                 f"reused from {run_dir} if its list is made again unchanged")
            continue  # (what depends on it reruns: its instances are known only once they are made)
        status = statuses.get(task.id)
        if status != "succeeded":
            plan.why[task.id] = f"resume: it {status or 'did not finish'} in {run_dir}"
            continue
        if before is None:
            change(task.id, "is new")
            continue
        what = [name for name in ("plugin", "config", "depends_on") if getattr(before, name) != getattr(task, name)]
        if what:
            change(task.id, f"changed ({', '.join(what)})")
            continue
        stale = [d for d in task.depends_on if d not in reusable]
        if stale:
            change(task.id, f"depends on '{stale[0]}', which reruns")
            continue
        if task.outputs:
            stale = stale_outputs(task.outputs, (read_task_records(run_dir, [task.id]).get(task.id) or {}).get("outputs"),
                                  workflow.directory)
            if stale is not None:
                change(task.id, f": {stale}")
                continue
        read_by_others = any(task.id in t.depends_on for t in workflow.tasks)
        if read_by_others and task.id not in recorded:
            change(task.id, f": its result is missing from {run_dir / RESULTS_FILE}")
            continue
        # A task nothing reads needs no recorded result to count as done (None).
        plan.reuse[task.id] = recorded.get(task.id) if read_by_others else None
        plan.why[task.id] = f"resume: reused from {run_dir}"
        reusable.add(task.id)
    plan.rerun = [t.id for t in workflow.tasks if t.id not in reusable]
    # In workflow order (fit[0], fit[1], ..., fit[10]), as the run lists them, not the layers' order.
    instances = {t: blob for t, blob in plan.reuse.items() if t not in reusable}
    plan.reuse = {t.id: plan.reuse[t.id] for t in workflow.tasks if t.id in reusable}
    plan.reuse.update(instances)
    return plan


def _reused_instances(task, before, statuses: dict, recorded: dict, reusable: set) -> dict:
    """A foreach over an upstream result: the instances the run made that succeeded, for the
    coordinator to reuse once it makes them again (dispatch/fan_out.py). Only while the task
    is unchanged and its upstream is reused, so that its list is the same."""
    if before is None or not before.dynamic or any(
            getattr(before, name) != getattr(task, name) for name in ("plugin", "config", "depends_on", "foreach")):
        return {}
    if any(d not in reusable for d in task.depends_on):
        return {}
    prefix = f"{task.id}["
    return {t: recorded[t] for t, status in statuses.items()
            if t.startswith(prefix) and t.endswith("]") and t[len(prefix):-1].isdigit() and status == "succeeded"
            and t in recorded}


def _rerun_all(plan: ResumePlan, workflow: Workflow, why: str) -> ResumePlan:
    plan.changes.append(why)
    plan.rerun = [t.id for t in workflow.tasks]
    plan.why = dict.fromkeys(plan.rerun, why)
    return plan


@dataclass
class UpstreamResults:
    """What a selected run (`--only`/`--skip`) reuses for its unselected upstream tasks."""

    reuse: dict = field(default_factory=dict)  # task_id -> pickled result
    sources: dict = field(default_factory=dict)  # task_id -> the run directory it comes from
    records: dict = field(default_factory=dict)  # task_id -> its record there
    missing: list = field(default_factory=list)  # the task ids no run could give


def find_upstream_results(log_dir: Path, workflow: Workflow, task_ids, from_run: Path | None = None) -> UpstreamResults:
    """Each of `task_ids` from the newest trusted run of this workflow file that resume would
    reuse it from (plan_resume: it succeeded there, and its spec, the params and its upstream
    are unchanged), or from `from_run` alone."""
    found = UpstreamResults()
    wanted = list(task_ids)
    runs = [Path(from_run).resolve()] if from_run is not None else trusted_runs_of_file(log_dir, workflow)[::-1]
    for run_dir in runs:
        missing = [t for t in wanted if t not in found.reuse]
        if not missing:
            break
        try:
            plan = plan_resume(run_dir, workflow)
        except UsageError:
            if from_run is not None:
                raise  # the run named: why it cannot serve
            continue  # still running, or unreadable: not a source
        here = [t for t in missing if t in plan.reuse]
        records = read_task_records(run_dir, here)
        for task_id in here:
            found.reuse[task_id] = plan.reuse[task_id]
            found.sources[task_id] = str(run_dir)
            if task_id in records:
                found.records[task_id] = records[task_id]
    found.missing = [t for t in wanted if t not in found.reuse]
    return found


def _old_workflow(run_dir: Path, params: dict | None = None, env_dir: Path | None = None) -> Workflow | None:
    copy = run_dir / WORKFLOW_COPY
    try:
        read_private(copy)
    except FileNotFoundError:
        return None
    try:
        # With the params that run had, so that templated configs compare as they ran.
        return load_workflow(copy, known_plugins=None, param_overrides=params, env_dir=env_dir)
    except WorkflowError:
        return None


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


def task_weights(records: dict[str, dict]) -> dict[str, float]:
    """task_id -> what it weighs on a critical path: the seconds it ran in this run.

    The one rule `opflow plan` (the latest run's) and `opflow report` (each run's) weigh by:
    a task that ran in this run weighs its record's `run_s` (its attempts' time in a
    worker; not its waits for a worker nor its retry backoff, which depend on the pool
    and the moment, not on the task), whether it succeeded or failed (the time was spent
    either way, and a failure holds up its chain as long as a success would); a record
    written before `run_s` existed weighs its `duration_s`. A reused task weighs nothing
    (it ran in an earlier run, and its record's times are that run's), nor does a task
    whose record holds no time (skipped, or never started) or that has no record (not
    finished). Those are left out: they count as 0.
    """
    weights = {}
    for task_id, record in records.items():
        if record.get("reused"):
            continue
        seconds = record.get("run_s") if "run_s" in record else record.get("duration_s")
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
            weights[task_id] = float(seconds)
    return weights


def last_durations(log_dir: Path, workflow: Workflow) -> dict[str, float]:
    """`task_weights` of the latest run of this workflow file under log_dir ({} if none)."""
    run_dir = latest_run(log_dir, workflow)
    return {} if run_dir is None else task_weights(read_task_records(run_dir))


def last_peak_rss(log_dir: Path, workflow: Workflow, task_ids: list[str], runs: int = 20) -> dict[str, int]:
    """task_id -> its peak RSS in the latest run (of the newest `runs`) whose record has one
    (`memory: auto`); a task none recorded is left out."""
    found: dict[str, int] = {}
    wanted = set(task_ids)
    for run_dir in reversed(runs_of_file(log_dir, workflow)[-runs:]):
        for task_id, record in read_task_records(run_dir, wanted - set(found)).items():
            peak = (record.get("resources") or {}).get("peak_rss_bytes") if isinstance(record, dict) else None
            if isinstance(peak, int) and not isinstance(peak, bool) and peak > 0 and not record.get("reused"):
                found[task_id] = peak
        if wanted <= set(found):
            break
    return found


@dataclass
class RunTimes:
    """What a run's records say about its time, for predicting other pool sizes."""
    run_dir: Path
    seconds: dict  # task_id -> `task_weights`' seconds
    wall_s: float | None  # run.json's duration_s
    overhead_s: float  # wall_s less the span of its tasks (first start to last end): starting, recording
    workers: int | None
    unmeasured: list = field(default_factory=list)  # tasks with no seconds: reused, or never started
    cpu_share: dict = field(default_factory=dict)  # task_id -> its CPU seconds / wall seconds, where recorded


def run_times(run_dir: Path, task_ids) -> RunTimes:
    """The times of `run_dir`'s tasks among `task_ids` (a workflow's, in its order)."""
    records = read_task_records(run_dir)
    doc = read_run_json(run_dir) or {}
    seconds = task_weights(records)
    ran = [r for t, r in records.items() if t in seconds]
    starts = [e for e in (iso_epoch(r.get("started_at")) for r in ran) if e is not None]
    ends = [e for e in (iso_epoch(r.get("finished_at")) for r in ran) if e is not None]
    wall = doc.get("duration_s") if isinstance(doc.get("duration_s"), (int, float)) else None
    span = max(ends) - min(starts) if starts and ends else 0.0
    overhead = max(0.0, wall - span) if wall is not None else 0.0
    workers = doc.get("workers") if isinstance(doc.get("workers"), int) else None
    return RunTimes(run_dir, seconds, wall, overhead, workers, [t for t in task_ids if t not in seconds],
                    {t: share for t, r in records.items() if t in seconds and (share := _cpu_share(r)) is not None})


def _cpu_share(record: dict) -> float | None:
    """The part of its wall time a task spent on a CPU (its process tree's user + system)."""
    used = record.get("resources")
    if not isinstance(used, dict):
        return None
    wall, cpu = used.get("wall_s"), [used.get("cpu_user_s"), used.get("cpu_system_s")]
    if not isinstance(wall, (int, float)) or wall <= 0 or not all(isinstance(c, (int, float)) for c in cpu):
        return None
    return min(1.0, sum(cpu) / wall)


def last_run_times(log_dir: Path, workflow: Workflow) -> RunTimes | None:
    """`run_times` of the latest run of this workflow file under log_dir (None if there is none)."""
    run_dir = latest_run(log_dir, workflow)
    return None if run_dir is None else run_times(run_dir, [t.id for t in workflow.tasks])
