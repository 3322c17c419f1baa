"""The Python façade: load a workflow file and run it, for scripts and the CLI."""
from __future__ import annotations

__all__ = ["load", "run", "run_async", "resume", "RunResult"]

import asyncio
import functools
import importlib
import os
import shutil
import time
from contextlib import ExitStack
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING, Iterable

from opflow import knobs
from opflow.dispatch import interrupts
from opflow.rundir.audit import AuditTrail
from opflow.rundir.files import write_new_file
from opflow.backends import BACKENDS, backend_class
from opflow.backends.capabilities import concurrency, unenforced_settings
from opflow.backends.dask.cluster_spec import parse_adapt
from opflow.errors import Problem, RunSkipped, UsageError, WorkflowError
from opflow.events import Reporter, iso_time
from opflow.options import Options
from opflow.worker.guard import GUARD_MESSAGE, refuse_in_starting_worker, unguarded_call_site
from opflow.dispatch import admission
from opflow.rundir import machine_limits
from opflow.rundir.history import (find_upstream_results, last_durations, last_peak_rss, plan_resume, prune_runs,
                                   resume_source, workflow_copy)
from opflow.words import parse_size
from opflow.rundir.layout import (create_run_dir, load_task_record, needs_file_tag,
                                  read_task_records, read_trusted_run_json, RUN_JSON, slugify, TASKS,
                                  WORKFLOW_COPY)
from opflow.workflow.limits import MAX_WORKERS
from opflow.rundir.lock import IF_RUNNING, WorkflowLock
from opflow.rundir.metrics_file import MetricsFile, check_metrics_path
from opflow.rundir.results_log import RESULTS_FILE, create_results_log
from opflow.workflow.loading import load
from opflow.workflow.selection import resolve_all, select_tasks

if TYPE_CHECKING:
    from opflow.dispatch.coordinator import RunSummary


@dataclass
class RunResult:
    """What a run left: its summary, run directory, duration and every task's record.

    `records[task_id]` is the same dict as `run_dir/tasks/<task_id>.json` (status,
    result, error, attempts, resources, log, ...).
    """

    summary: RunSummary
    run_dir: Path
    duration_s: float | None = None

    @property
    def records(self) -> Mapping[str, dict]:
        """task_id -> its record, read from `run_dir/tasks/<task_id>.json` when asked for:
        a run of 100,000 tasks keeps none of them in the caller's memory."""
        return _TaskRecords(self.run_dir, tuple(self.summary.tasks))

    @property
    def exit_code(self) -> int:
        return self.summary.exit_code

    @property
    def status(self) -> str:
        return self.summary.status.value

    @property
    def tasks(self) -> dict[str, str]:
        """task_id -> status string."""
        return {task_id: status.value for task_id, status in self.summary.tasks.items()}


class _TaskRecords(Mapping):
    """The task records of a finished run, each read from its file on first use."""

    def __init__(self, run_dir: Path, task_ids: tuple[str, ...]):
        self._run_dir = run_dir
        self._ids = task_ids
        self._known = frozenset(task_ids)
        self._read: dict[str, dict] = {}

    def __getitem__(self, task_id: str) -> dict:
        if task_id not in self._known:
            raise KeyError(task_id)
        record = self._read.get(task_id)
        if record is None:
            record = self._read[task_id] = load_task_record(self._run_dir, task_id)
        return record

    def __iter__(self):
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


class _Collector(Reporter):
    """Keeps the run's duration, for the RunResult."""

    def __init__(self):
        self.duration_s: float | None = None

    def handle(self, event: dict) -> None:
        if event["event"] == "run_finished":
            self.duration_s = event["duration_s"]


async def run_async(path: str | Path, *, workers: int = 0, cpus: int | None = None, memory: int | str | None = None,
                    executor: str = "process", log_dir: str | Path = "logs",
                    params: dict | None = None, keep_going: bool = False, scheduler: str | None = None,
                    scheduler_file: str | Path | None = None, cluster: str | None = None, adapt: str | None = None,
                    lock: bool = True, keep_runs: int | None = None, resume: bool | str | Path = False,
                    timeout: float | None = None, cache: bool = True, if_running: str = "fail",
                    ping: str | None = None, metrics_file: str | Path | None = None, only: tuple[str, ...] = (),
                    skip: tuple[str, ...] = (), force: tuple[str, ...] = (), from_run: str | Path | None = None,
                    reporters: Iterable[Reporter] = (), _source: Path | None = None,
                    _source_sha256: str | None = None) -> RunResult:
    """Run a workflow file from inside an event loop; see `run` for the options
    (opflow/options.py holds them: each keyword here is a field of `Options`).

    `resume=True` reuses what the latest run of this workflow under `log_dir`
    recorded as succeeded (a path names the run directory instead); `lock` keeps
    two runs of one workflow from overlapping; `keep_runs` prunes older runs.
    `timeout` (seconds) stops the whole run; `cache=False` ignores `cache: true`.
    """
    return await _run_options(path, Options.pick(locals()), reporters, _source, _source_sha256)


async def _run_options(path: str | Path, options: Options, reporters: Iterable[Reporter] = (),
                       _source: Path | None = None, _source_sha256: str | None = None) -> RunResult:
    knobs.check(knobs.RUN)  # a bad OPFLOW_* value: refused before anything starts
    _check_guard(options)
    options = _with_cluster_executor(options)
    backend = backend_class(options.executor)
    if options.workers < 0:
        raise UsageError(f"--workers {options.workers}: must be 0 (the CPUs this process may use) or more")
    if options.timeout is not None and not options.timeout > 0:
        raise UsageError(f"--timeout {options.timeout}: must be > 0")
    if options.workers > MAX_WORKERS:
        raise UsageError(f"--workers {options.workers}: at most {MAX_WORKERS}")
    if options.cpus is not None and not 1 <= options.cpus <= MAX_WORKERS:
        raise UsageError(f"--cpus {options.cpus}: must be from 1 to {MAX_WORKERS}")
    if options.memory is not None and _memory_bytes(options.memory) is None:
        raise UsageError(f"--memory {options.memory}: not a size like 300MB or 2GiB")
    if options.keep_runs is not None and options.keep_runs < 1:
        raise UsageError(f"--keep-runs {options.keep_runs}: must be at least 1")
    if options.if_running not in IF_RUNNING:
        raise UsageError(f"--if-running {options.if_running!r}: one of {', '.join(IF_RUNNING)}")
    if options.if_running != "fail" and not options.lock:
        raise UsageError(f"--if-running {options.if_running} needs the lock: it cannot go with --no-lock")
    if options.ping is not None:
        from opflow.dispatch.ping import check_ping_url

        check_ping_url(options.ping)
    if options.metrics_file is not None:
        check_metrics_path(options.metrics_file)
    if options.from_run is not None and not (options.only or options.skip):
        raise UsageError("--from-run goes with --only or --skip (it gives the unselected upstream tasks' results)")
    if options.scheduler_file:
        options.scheduler_file = Path(options.scheduler_file).absolute()  # the backend reads it (cluster.py)
    given = [flag for flag, value in (("--scheduler", options.scheduler), ("--scheduler-file", options.scheduler_file),
                                      ("--cluster", options.cluster)) if value]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)}: give one place for the tasks to run")
    if given and not backend.takes_scheduler:
        takers = " or ".join(name for name, cls in BACKENDS.items() if cls.takes_scheduler)
        raise UsageError(f"{given[0]} goes with --executor {takers}")
    if options.adapt is not None and not options.cluster:
        raise UsageError(f"--adapt {options.adapt}: only with --cluster (a cluster opflow starts can scale; "
                         f"a scheduler started by hand scales as its owner says)")
    if options.adapt is not None:
        parse_adapt(options.adapt)  # a bad MIN:MAX is refused before anything starts
    backend.check_available()  # raises UsageError naming the extra to install
    _start_early(backend)
    with interrupts.attach():  # under the CLI, a signal from here on cancels this coroutine
        return await _prepare_and_run(path, options, reporters, _source, _source_sha256)


async def _prepare_and_run(path: str | Path, options: Options, reporters: Iterable[Reporter],
                           _source: Path | None, _source_sha256: str | None) -> RunResult:
    # Parsing a large file takes seconds: off the caller's loop.
    workflow, plugins = await interrupts.call_off_loop(functools.partial(load, path, options.params, source=_source))
    if _source_sha256 and workflow.sha256 != _source_sha256:  # changed since resume checked it
        raise UsageError(f"{_source}: does not match the sha256 recorded in run.json; refusing to run it")
    # The run machinery (the backends) only once there is a run, and
    # imported off the caller's loop (a cold import takes a few hundred ms).
    coordinator = await interrupts.call_off_loop(importlib.import_module, "opflow.dispatch.coordinator")
    RunOptions, _run_async = coordinator.RunOptions, coordinator.run_async
    executor, backend = options.executor, backend_class(options.executor)
    # The whole file's workflow: what reuse is checked against; `workflow` becomes what this run runs.
    whole = workflow
    workflow, selection, forced = _choose(whole, options)

    # Absolute: every path a run hands its workers (logs, results, the run dir) must mean the
    # same on a Dask worker started from another folder as here.
    log_dir = Path(options.log_dir).absolute()
    budget, durations, peak_rss = await interrupts.call_off_loop(_machine_plan, workflow, options, log_dir)
    workers = options.workers or budget.cpus
    why_slots = f"--workers {options.workers}" if options.workers else f"the CPU budget, from {budget.cpus_from}"
    too_big = admission.too_big(workflow.tasks, concurrency(executor, workers), budget, why_slots)
    if too_big:
        raise WorkflowError([Problem(str(path), message, spec.line, spec.id) for spec, message in too_big])
    if any(limit.scope == "machine" for limit in workflow.limits.values()):
        machine_limits.limits_dir_checked()  # refused (exit 2) before anything runs, not mid-run
    with ExitStack() as cleanup:
        lock, lock_wait_s = None, None
        if options.lock:
            lock = WorkflowLock(log_dir, workflow.path, slugify(workflow.name))
            try:
                lock_wait_s = await _take_lock(lock, options.if_running, reporters)
            except OSError as exc:
                raise UsageError(f"--log-dir {log_dir}: cannot use it: {exc.strerror or exc}") from None
            cleanup.callback(lock.release)
        # The true concurrency (inline: 1), as the banner and run.json show it.
        run_options = RunOptions(**{**options.as_dict(), "log_dir": log_dir,
                                    "workers": concurrency(executor, workers)},
                                 budget=budget, durations=durations, peak_rss=peak_rss,
                                 workers_given=options.workers > 0)
        if options.cache and any(t.cache for t in workflow.tasks):
            from opflow.dispatch.cache import open_cache

            # Before this run's own directory exists; off the loop (it lists and checks every earlier run).
            run_options.cache_store = await interrupts.call_off_loop(open_cache, log_dir, workflow)
        extra = {"if_running": options.if_running} if options.lock else {}
        if lock_wait_s is not None:
            extra["lock_wait_s"] = lock_wait_s
        if options.resume:
            source = resume_source(log_dir, whole, options.resume)
            plan = await interrupts.call_off_loop(plan_resume, source, whole)
            runs = {t.id for t in workflow.tasks}  # with --only: what this run holds
            # (A dynamic foreach's instances are made during the run: kept by their task's id.)
            reuse = {t: blob for t, blob in plan.reuse.items()
                     if t not in forced and (t in runs or t.split("[", 1)[0] in runs)}
            run_options.reuse, run_options.reused_from = reuse, str(source)
            run_options.reused_records = read_task_records(source, reuse)  # a record lost in a crash: reused, less described
            extra.update({"resumed_from": str(source), "resume_changes": plan.changes, "reused": list(reuse)})
        if selection is not None:
            extra["selection"] = await _reuse_upstream(run_options, log_dir, whole, selection, options.from_run)
        run_options.forced = forced
        try:
            # One clock reading names the run dir and is run.json's started_at.
            run_options.started_at = time.time()
            run_dir = create_run_dir(log_dir, workflow.name, run_options.started_at,
                                     workflow.path if needs_file_tag(log_dir, workflow) else None)
            write_new_file(run_dir / WORKFLOW_COPY, Path(_source or workflow.path).read_bytes())
            create_results_log(str(run_dir / RESULTS_FILE))
        except OSError as exc:
            raise UsageError(f"--log-dir {log_dir}: cannot create a run directory there: {exc.strerror or exc}") from None
        if lock is not None:
            lock.note_run_dir(run_dir.absolute())
        run_options.results_path = str(run_dir / RESULTS_FILE)
        run_options.task_logs_dir = str(run_dir / TASKS)
        run_options.run_dir = os.path.abspath(run_dir)
        # What tasks/<id>.log catches (worker/output.py), as the backend says (base.py).
        extra["task_output"] = backend.task_output
        extra["budget"] = budget.as_record()
        warnings = unenforced_settings(workflow, executor, options.workers)
        audit = AuditTrail(run_dir, workflow, {**extra, "warnings": warnings})
        _warn(reporters, warnings)
        collector = _Collector()
        try:
            summary = await _run_async(workflow, plugins, run_options,
                                       [*_end_reporters(options, workflow.name), audit, collector, *reporters])
        except BaseException:  # an error, a signal, the caller's wait_for: if it never started,
            if not (run_dir / RUN_JSON).exists():
                shutil.rmtree(run_dir, ignore_errors=True)  # it never started: leave no half a record
            raise
        if options.keep_runs:
            prune_runs(log_dir, workflow, options.keep_runs, protect=run_dir)
    # Absolute, as after resume: the reader of a cron mail does not know the folder it ran in.
    return RunResult(summary, run_dir.absolute(), collector.duration_s)


def _with_cluster_executor(options: Options) -> Options:
    """`--cluster` implies `--executor dask` (the default executor gives way; another is refused)."""
    if options.cluster and options.executor == Options.executor:
        cluster_backend = next(name for name, cls in BACKENDS.items() if cls.takes_scheduler)
        return dataclasses.replace(options, executor=cluster_backend)
    return options


def _end_reporters(options: Options, workflow_name: str) -> list[Reporter]:
    """--metrics-file and --ping: reporters that add to the run_finished event what the
    audit trail then records (so they come before it)."""
    reporters: list[Reporter] = []
    if options.metrics_file is not None:
        reporters.append(MetricsFile(options.metrics_file, workflow_name))
    if options.ping is not None:
        from opflow.dispatch.ping import Pinger

        reporters.append(Pinger(options.ping))
    return reporters


async def _take_lock(lock: WorkflowLock, if_running: str, reporters: Iterable[Reporter]) -> float | None:
    """Hold the workflow's lock, or do what `if_running` says while another run holds it.
    Returns the seconds waited for it (None: it was free)."""
    holder = lock.try_acquire()
    if holder is None:
        return None
    if if_running == "skip":
        raise RunSkipped(f"skipped: another run of this workflow is in progress ({holder})")
    if if_running != "wait":
        lock.acquire()  # raises LockedError, naming the holder (or takes it, freed meanwhile)
        return None
    for reporter in reporters:
        reporter.handle({"event": "lock_wait", "time": iso_time(time.time()),
                         "message": f"waiting for another run of this workflow to end ({holder})"})
    began = time.monotonic()
    try:
        await interrupts.call_off_loop(lock.wait)  # a signal cancels this await (interrupts.attach)
    except BaseException:
        lock.abandon()
        raise
    return round(time.monotonic() - began, 6)


def _choose(whole, options: Options):
    """--only/--skip/--force: the workflow this run runs (all of it without a selection), the
    Selection (or None), and the task ids --force names (each must be one this run runs)."""
    workflow, selection = whole, None
    if options.only or options.skip:
        selection = select_tasks(whole, options.only, options.skip)
        workflow = selection.restrict(whole)
    forced = resolve_all(whole, options.force, "--force")
    reused = set(selection.upstream) if selection is not None else set()
    not_run = sorted((forced - {t.id for t in workflow.tasks}) | (forced & reused))
    if not_run:
        raise UsageError(f"--force {' '.join(options.force)}: '{not_run[0]}' is not selected, so it does not run")
    return workflow, selection, forced


async def _reuse_upstream(run_options, log_dir: Path, whole, selection, from_run) -> dict:
    """The selected tasks' unselected upstream, reused from earlier runs (run_options.reuse);
    run.json's `selection`. None to be found: exit 2 naming who needs what, before anything runs."""
    found = await interrupts.call_off_loop(find_upstream_results, log_dir, whole, selection.upstream,
                                           Path(from_run) if from_run is not None else None)
    if found.missing:
        where = f"in {from_run}" if from_run is not None else f"in any earlier run of '{whole.name}' under {log_dir}"
        lines = []
        for task_id in found.missing:
            reader = next(t for t in selection.selected + selection.upstream
                          if task_id in whole.task(t).depends_on)
            lines.append(f"task '{reader}' needs the result of '{task_id}', which is not selected and did not succeed "
                         f"{where} with the same config, params and upstream (select it too: --only +{reader})")
        raise UsageError("\n".join(lines))
    run_options.reuse = {**run_options.reuse, **found.reuse}
    run_options.reused_sources = found.sources
    run_options.reused_records = {**run_options.reused_records, **found.records}
    return selection.as_record(found.sources)


#: Past this many tasks the start order goes by task count, not the latest run's durations.
HISTORY_TASKS_MAX = 5000


def _memory_bytes(memory) -> int | None:
    if isinstance(memory, int) and not isinstance(memory, bool):
        return memory if memory > 0 else None
    return parse_size(memory) if isinstance(memory, str) else None


def _machine_plan(workflow, options: Options, log_dir: Path):
    """The run's budget (admission.py), the latest run's durations (the start order) and,
    for `memory: auto` tasks, their last peak RSS."""
    memory = _memory_bytes(options.memory) if options.memory is not None else None
    budget = admission.resolve_budget(workflow.resources, options.cpus, memory)
    # The start order weighs tasks by the latest run's records: one file each, so past
    # HISTORY_TASKS_MAX tasks reading them costs more than the order gains (task count instead).
    durations = last_durations(log_dir, workflow) if len(workflow.tasks) <= HISTORY_TASKS_MAX else {}
    auto = [t.id for t in workflow.tasks if t.memory == "auto"]
    return budget, durations, last_peak_rss(log_dir, workflow, auto) if auto else {}


def _start_early(backend) -> None:
    """The pool's forkserver imports opflow for a few hundred ms: started now, it does so
    on another core while this process parses the workflow and imports the coordinator."""
    try:
        backend.start_early()
    except OSError:
        pass  # cannot start a process now: the pool's own start meets it again and reports it


def _warn(reporters: Iterable[Reporter], warnings: list[str]) -> None:
    """Each setting the backend will not enforce, once, before the run starts (run.json has them too)."""
    for text in warnings:
        for reporter in reporters:
            reporter.handle({"event": "warning", "time": iso_time(time.time()), "message": text})


def _check_guard(options: Options) -> None:
    """Refuse a run a script starts from its unguarded top level (see guard.py),
    before it starts a process, when its workers would import the script."""
    refuse_in_starting_worker()
    options = _with_cluster_executor(options)
    backend = BACKENDS.get(options.executor)  # an unknown name: refused next, by name
    if backend is not None and backend.workers_import_main(options.scheduler or options.scheduler_file or options.cluster):
        site = unguarded_call_site()
        if site is not None:
            raise UsageError(f"{site}: {GUARD_MESSAGE}")


def run(path: str | Path, *, workers: int = 0, cpus: int | None = None, memory: int | str | None = None,
        executor: str = "process", log_dir: str | Path = "logs",
        params: dict | None = None, keep_going: bool = False, scheduler: str | None = None,
        scheduler_file: str | Path | None = None, cluster: str | None = None, adapt: str | None = None,
        lock: bool = True, keep_runs: int | None = None, resume: bool | str | Path = False,
        timeout: float | None = None, cache: bool = True, if_running: str = "fail", ping: str | None = None,
        metrics_file: str | Path | None = None, only: tuple[str, ...] = (),
        skip: tuple[str, ...] = (), force: tuple[str, ...] = (), from_run: str | Path | None = None,
        reporters: Iterable[Reporter] = ()) -> RunResult:
    """Run the workflow file at `path` to the end; returns a `RunResult`.

    Options (the `opflow run` options of the same names):
      workers     pool size; 0 (the default) means the CPUs this process may use, or `cpus`
      cpus        the CPU budget (default: the workflow's resources.cpus, else the CPUs this process may use)
      memory      the memory budget, bytes or "2GB" (default: resources.memory, else the machine's, less 10%)
      executor    "process" (default), "thread", "inline" or "dask"
      log_dir     each run makes a new directory under it (default "logs")
      params      overrides of the workflow's declared params
      keep_going  after a failure, still run every task whose upstream succeeded
      scheduler   with executor="dask": a scheduler address (default: a LocalCluster)
      scheduler_file  with executor="dask": a scheduler file, in place of the address
      cluster     a Dask cluster started for the run and closed after: "ssh:HOST,HOST...",
                  "jobqueue:slurm" (pbs, sge, lsf, htcondor) or a FILE.yaml spec; implies "dask"
      adapt       with cluster: "MIN:MAX" workers, adaptive scaling
      lock        refuse to start while another run of this workflow (same log_dir) runs
      keep_runs   afterwards, delete all but the newest N run directories of this workflow
      resume      True: reuse what the latest run under log_dir recorded as succeeded;
                  a path: that run directory instead
      timeout     seconds for the whole run: then running tasks are killed, the rest cancelled
      cache       False: ignore `cache: true` (run every task, as --no-cache does)
      if_running  while another run of this workflow holds the lock: "fail" (raise
                  LockedError), "skip" (raise RunSkipped, whose exit_code is 0) or "wait"
      ping        a healthchecks URL: GET URL/start, then URL on success or URL/fail
      metrics_file  at the end, the run's metrics in the Prometheus text format, there
      only        selectors of the tasks to run (ids, globs, tag:NAME, +ID, ID+, +ID+; see docs/cli.md)
      skip        selectors of tasks not to run (alone: run everything else)
      force       selectors of tasks that run even where the cache or resume would reuse them
      from_run    a run directory the selected tasks' unselected upstream results come from
                  (default: the latest run of this workflow in which each succeeded)
      reporters   extra `opflow.events.Reporter`s that receive every event

    The result: `.status` ("succeeded", "failed", "interrupted"), `.exit_code`,
    `.run_dir`, `.duration_s`, `.tasks` (id -> status) and `.records` (id -> the
    task's record, as in `run_dir/tasks/<id>.json`). Bad input raises
    `opflow.errors.WorkflowError`; a failing task does not raise.
    """
    options = Options.pick(locals())
    knobs.check(knobs.RUN)
    _check_guard(options)  # here too: a short traceback
    return asyncio.run(_run_options(path, options, reporters))


def resume(run_dir: str | Path, **kwargs) -> RunResult:
    """Rerun what did not succeed in `run_dir`, with that run's workflow, params and settings.

    Takes the options of `run` (workers, executor, ...) to override the earlier
    run's; returns a `RunResult` whose records mark the reused tasks (`reused`).

    Trusts the run directory only if it is this user's and no one else may write to
    it (layout.read_trusted_run_json), and runs the copy of the workflow kept in it,
    checked against the sha256 in run.json: never a file merely named by run.json.
    """
    # Resolved once: a symlink to a run dir is fine (the target's owner and mode are
    # checked), and every later read goes to that same directory.
    run_dir = Path(run_dir).resolve()
    doc = read_trusted_run_json(run_dir)
    workflow_copy(run_dir, doc)  # refuses a copy that is not what the run ran
    # A secret param is recorded as ***: never passed back as its value (give it again: --param, env_file).
    secret = set(doc.get("secret_params") or ())
    kwargs.setdefault("params", {k: v for k, v in (doc.get("params") or {}).items() if k not in secret} or None)
    kwargs.setdefault("workers", doc.get("workers") or 0)
    kwargs.setdefault("executor", doc.get("executor") or "process")
    kwargs.setdefault("log_dir", run_dir.parent)
    # The copy runs from the original's folder (relative paths, workers/*.py), and the
    # new run is recorded as a run of the original file, where that folder still exists.
    original = Path(doc.get("workflow_file") or run_dir / WORKFLOW_COPY)
    if not original.parent.is_dir():
        original = run_dir / WORKFLOW_COPY
    reporters = kwargs.pop("reporters", ())
    options = Options(**kwargs, resume=run_dir)
    knobs.check(knobs.RUN)
    _check_guard(options)
    return asyncio.run(_run_options(original, options, reporters, _source=run_dir / WORKFLOW_COPY,
                                    _source_sha256=doc["workflow_sha256"]))
