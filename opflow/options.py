"""A run's options: what `opflow run` / `opflow.run(...)` were asked, written once.

`opflow.run(path, workers=..., ...)` takes these by keyword (its signature lists them for
the reader; tests/test_options.py holds it to this class), the CLI hands its flags over
by the same names, and the coordinator's `RunOptions` (dispatch/coordinator.py) is this
class plus what api.py prepares for one run (the run directory's files, what resume
reuses). A new option is a field here, a keyword of `run` and `run_async`, and a flag.
"""
from __future__ import annotations

__all__ = ["Options"]

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Mapping


@dataclass
class Options:
    #: Pool size; 0 means the CPUs this process may use.
    workers: int = 0
    #: The CPU budget (the default pool size); None: the workflow's `resources:`, else the machine's.
    cpus: int | None = None
    #: The memory budget tasks' `memory:` draws on, bytes or a SIZE (2GB); None: `resources:`, else the machine's.
    memory: int | str | None = None
    #: Where tasks run: a backend's name (backends/base.py): process, thread, inline, dask.
    executor: str = "process"
    #: Each run makes a new directory under it.
    log_dir: str | Path = "logs"
    #: Overrides of the workflow's declared params (the CLI's --param, parsed).
    params: dict | None = None
    #: After a failure, still run every task whose upstream succeeded.
    keep_going: bool = False
    #: With executor "dask": a scheduler address (None starts a LocalCluster).
    scheduler: str | None = None
    #: With executor "dask": a scheduler file (`dask scheduler --scheduler-file`), beside `scheduler`.
    scheduler_file: str | Path | None = None
    #: A cluster started for the run and closed after: "ssh:HOST,HOST...", "jobqueue:KIND"
    #: or a FILE.yaml spec (backends/dask/cluster_spec.py); implies executor "dask".
    cluster: str | None = None
    #: "MIN:MAX": adaptive scaling of the `cluster` started for the run.
    adapt: str | None = None
    #: Refuse to start while another run of this workflow (same log_dir) runs.
    lock: bool = True
    #: While another run holds the lock: "fail" (LockedError, exit 3), "skip" (RunSkipped, exit 0), "wait".
    if_running: str = "fail"
    #: A dead-man's switch (healthchecks): GET URL/start, then URL on success or URL/fail.
    ping: str | None = None
    #: At the end, the run's metrics in the Prometheus text format, written here (atomically).
    metrics_file: str | Path | None = None
    #: Afterwards, delete all but the newest N run directories of this workflow.
    keep_runs: int | None = None
    #: True: reuse what the latest run under log_dir recorded as succeeded; a path: that run.
    resume: bool | str | Path = False
    #: Seconds for the whole run: then running tasks are killed, the rest cancelled.
    timeout: float | None = None
    #: False: ignore `cache: true` (run every task, as --no-cache does).
    cache: bool = True
    #: Selectors (workflow/selection.py) of the tasks to run (empty: all of them).
    only: tuple[str, ...] = ()
    #: Selectors of tasks not to run (`--skip` alone: run everything else).
    skip: tuple[str, ...] = ()
    #: Selectors of tasks that run even where the cache or resume would reuse them.
    force: tuple[str, ...] = ()
    #: Where the selected tasks' unselected upstream results come from (None: the latest run that has each).
    from_run: str | Path | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(Options))

    @classmethod
    def pick(cls, namespace: Mapping) -> Options:
        """The options among `namespace` (a function's `locals()`): one per field, by name."""
        return cls(**{name: namespace[name] for name in cls.names()})

    def place(self) -> dict:
        """Where a cluster backend runs the tasks: the options `Backend.open` takes by keyword."""
        return {"scheduler": self.scheduler, "scheduler_file": self.scheduler_file and str(self.scheduler_file),
                "cluster": self.cluster, "adapt": self.adapt,
                # (RunOptions knows whether --workers was given: its workers may be the CPU budget's.)
                "workers_given": getattr(self, "workers_given", self.workers > 0)}

    def as_dict(self) -> dict:
        """The options alone, by name (a subclass's own fields left out)."""
        return {name: getattr(self, name) for name in Options.names()}
