"""The Python façade: load a workflow file and run it, for scripts and the CLI."""
from __future__ import annotations

__all__ = ["load", "run", "run_async", "RunResult"]

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .audit import AuditTrail, create_run_dir
from .coordinator import RunOptions, RunSummary, run_async as _run_async
from .errors import UsageError
from .events import Reporter
from .executors import EXECUTORS
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


def _prepare(path, *, workers: int, executor: str, log_dir, params, keep_going, reporters, scheduler=None):
    if executor not in EXECUTORS:
        raise UsageError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if workers < 0:
        raise UsageError(f"--workers {workers}: must be at least 1")
    workflow, plugins = load(path, params)
    run_dir = create_run_dir(Path(log_dir), workflow.name)
    audit = AuditTrail(run_dir, workflow)
    if scheduler and executor != "dask":
        raise UsageError("--scheduler goes with --executor dask")
    if executor == "dask":
        from .dask_backend import check_available

        check_available()  # raises UsageError naming the extra to install
    options = RunOptions(workers=workers, executor=executor, keep_going=keep_going, scheduler=scheduler)
    return workflow, plugins, options, [audit, *reporters], run_dir


async def run_async(path: str | Path, *, workers: int = 0, executor: str = "process", log_dir: str | Path = "logs",
                    params: dict | None = None, keep_going: bool = False, scheduler: str | None = None,
                    reporters: Iterable[Reporter] = ()) -> RunResult:
    """Run a workflow file from inside an event loop; returns its summary and run directory."""
    workflow, plugins, options, reporters, run_dir = _prepare(
        path, workers=workers, executor=executor, log_dir=log_dir, params=params,
        keep_going=keep_going, reporters=list(reporters), scheduler=scheduler)
    summary = await _run_async(workflow, plugins, options, reporters)
    return RunResult(summary, run_dir)


def run(path: str | Path, **kwargs) -> RunResult:
    """Run a workflow file to the end (see `run_async` for the options)."""
    return asyncio.run(run_async(path, **kwargs))
