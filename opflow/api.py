"""The Python façade: load a workflow file and run it, for scripts and the CLI."""
from __future__ import annotations

__all__ = ["load", "run", "run_async", "resume", "RunResult"]

import asyncio
import json
import multiprocessing
import os
import shutil
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from . import interrupts
from .audit import AuditTrail, create_run_dir, slugify
from .coordinator import RunOptions, RunSummary, run_async as _run_async
from .errors import OpflowError, UsageError
from .events import Reporter
from .executors import EXECUTORS
from .input_limits import MAX_WORKERS
from .history import WORKFLOW_COPY, latest_run, plan_resume, prune_runs
from .lock import WorkflowLock
from .results_log import RESULTS_FILE
from .plugins import PluginRef, discover_plugins, worker_dirs
from .spec import Workflow, load_workflow


@dataclass
class RunResult:
    summary: RunSummary
    run_dir: Path

    @property
    def exit_code(self) -> int:
        return self.summary.exit_code

    @property
    def status(self) -> str:
        return self.summary.status.value


def load(path: str | Path, params: dict | None = None) -> tuple[Workflow, dict[str, PluginRef]]:
    """Parse and check a workflow file; raise `WorkflowError` listing every problem."""
    path = Path(path)
    plugins, warnings = discover_plugins(worker_dirs(path.resolve().parent))
    hint = "".join(f"\n    note: {w}" for w in warnings)
    workflow = load_workflow(path, plugins, param_overrides=params, plugin_hint=hint)
    return workflow, plugins


async def run_async(path: str | Path, *, workers: int = 0, executor: str = "process", log_dir: str | Path = "logs",
                    params: dict | None = None, keep_going: bool = False, scheduler: str | None = None,
                    lock: bool = True, keep_runs: int | None = None, resume: bool | str | Path = False,
                    reporters: Iterable[Reporter] = ()) -> RunResult:
    """Run a workflow file from inside an event loop; returns its summary and run directory.

    `resume=True` reuses what the latest run of this workflow under `log_dir`
    recorded as succeeded (a path names the run directory instead); `lock` keeps
    two runs of one workflow from overlapping; `keep_runs` prunes older runs.
    """
    _check_not_starting_a_worker()
    if executor not in EXECUTORS:
        raise UsageError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if workers < 0:
        raise UsageError(f"--workers {workers}: must be at least 1")
    if workers > MAX_WORKERS:
        raise UsageError(f"--workers {workers}: at most {MAX_WORKERS}")
    if keep_runs is not None and keep_runs < 1:
        raise UsageError(f"--keep-runs {keep_runs}: must be at least 1")
    if scheduler and executor != "dask":
        raise UsageError("--scheduler goes with --executor dask")
    if executor == "dask":
        from .dask_backend import check_available

        check_available()  # raises UsageError naming the extra to install
    with interrupts.attach():  # under the CLI, a signal from here on cancels this coroutine
        return await _prepare_and_run(path, workers, executor, log_dir, params, keep_going, scheduler,
                                      lock, keep_runs, resume, reporters)


async def _prepare_and_run(path, workers, executor, log_dir, params, keep_going, scheduler, lock, keep_runs,
                           resume, reporters) -> RunResult:
    # Parsing a large file takes seconds: off the caller's loop.
    workflow, plugins = await interrupts.call_off_loop(load, path, params)
    log_dir = Path(log_dir)
    with ExitStack() as cleanup:
        if lock:
            try:
                cleanup.enter_context(WorkflowLock(log_dir, workflow.path, slugify(workflow.name)))
            except OSError as exc:
                raise UsageError(f"--log-dir {log_dir}: cannot use it: {exc.strerror or exc}") from None
        options = RunOptions(workers=workers, executor=executor, keep_going=keep_going, scheduler=scheduler)
        extra = {}
        if resume:
            source = latest_run(log_dir, workflow) if resume is True else Path(resume)
            if source is None:
                raise UsageError(f"--resume: no earlier run of '{workflow.name}' ({workflow.path}) under {log_dir}")
            plan = await interrupts.call_off_loop(plan_resume, source, workflow)
            options.reuse, options.reused_from = plan.reuse, str(source)
            extra = {"resumed_from": str(source), "resume_changes": plan.changes, "reused": sorted(plan.reuse)}
        try:
            run_dir = create_run_dir(log_dir, workflow.name)
            shutil.copyfile(workflow.path, run_dir / WORKFLOW_COPY)
        except OSError as exc:
            raise UsageError(f"--log-dir {log_dir}: cannot create a run directory there: {exc.strerror or exc}") from None
        options.results_path = str(run_dir / RESULTS_FILE)
        audit = AuditTrail(run_dir, workflow, extra)
        try:
            summary = await _run_async(workflow, plugins, options, [audit, *reporters])
        except BaseException:  # an error, a signal, the caller's wait_for: if it never started,
            if not (run_dir / "run.json").exists():
                shutil.rmtree(run_dir, ignore_errors=True)  # it never started: leave no half a record
            raise
        if keep_runs:
            prune_runs(log_dir, workflow, keep_runs, protect=run_dir)
    return RunResult(summary, run_dir)


def _check_not_starting_a_worker() -> None:
    """A worker process re-imports the script that started the run: a call to run()
    at its top level, unguarded, would start a run inside every worker, without end."""
    if getattr(multiprocessing.current_process(), "_inheriting", False):  # what the stdlib checks too
        raise UsageError(
            "opflow.run() was called while a worker process was starting: worker processes import "
            "the script that started the run, so call opflow.run() under `if __name__ == \"__main__\":`"
        )


def run(path: str | Path, **kwargs) -> RunResult:
    """Run a workflow file to the end (see `run_async` for the options)."""
    return asyncio.run(run_async(path, **kwargs))


def resume(run_dir: str | Path, **kwargs) -> RunResult:
    """Rerun what did not succeed in `run_dir`, with that run's file, params and settings."""
    run_dir = Path(run_dir)
    try:
        doc = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{run_dir}: not a run directory (no run.json)") from None
    except ValueError as exc:
        raise UsageError(f"{run_dir / 'run.json'}: unreadable: {exc}") from None
    kwargs.setdefault("params", doc.get("params") or None)
    kwargs.setdefault("workers", doc.get("workers") or 0)
    kwargs.setdefault("executor", doc.get("executor") or "process")
    kwargs.setdefault("log_dir", run_dir.parent)
    path = doc.get("workflow_file")
    if not path or not os.path.exists(path):
        raise UsageError(f"{run_dir}: its workflow file {path} no longer exists")
    return run(path, resume=run_dir, **kwargs)
