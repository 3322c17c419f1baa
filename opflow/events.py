"""Statuses and the reporter interface: how the coordinator tells the world.

The coordinator never calls the audit trail or the console directly: it emits
events (plain dicts, JSON-ready) to every reporter, and each reporter does its
one job. Event names: run_started, task_queued (submitted to the backend),
task_started (began in a worker), task_retrying, task_finished, interrupt (a
SIGINT or SIGTERM; `hard` on the second), run_timeout (--timeout ran out),
run_finished. One more comes from api.py, not the coordinator, before the run
starts: warning (a setting the backend will not enforce), and lock_wait (--if-running wait:
another run holds the workflow's lock). A reporter placed before the audit trail may add to
run_finished an `extra` mapping, which run.json then records (--ping, --metrics-file).
"""
from __future__ import annotations

__all__ = ["TaskStatus", "RunStatus", "Reporter", "iso_time"]

import enum
import math
from datetime import datetime, timezone


class TaskStatus(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # an upstream task failed or was skipped: it could not run
    CANCELLED = "cancelled"  # it could have run, but the run stopped first

    @property
    def final(self) -> bool:
        return self not in (TaskStatus.PENDING, TaskStatus.RUNNING)


class RunStatus(str, enum.Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class Reporter:
    """Receives every event of a run, in order, on the coordinator's thread."""

    #: Set by the coordinator when the run starts: `abort(reason)`, callable from
    #: any thread, stops the run (a reporter that can no longer record it: disk full).
    abort = None

    def handle(self, event: dict) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def backlog(self) -> int:
        """Events handed over and not yet recorded (a writer thread's queue): the
        coordinator starts no more tasks while one reporter is far behind."""
        return 0

    def wait_recorded_start(self) -> None:
        """Return once what `run_started` asked to record is written (a blocking
        call, made off the event loop, before the first task is submitted)."""

    def close(self) -> None:
        """The run is over (called even when it ends by an error)."""


def iso_time(epoch: float | None) -> str | None:
    """ISO 8601 in UTC, milliseconds: 2026-11-24T13:27:12.123+00:00."""
    if epoch is None:
        return None
    fraction, second = math.modf(epoch)  # as datetime rounds: the fraction alone, to microseconds
    fraction, second = round(fraction * 1_000_000), int(second)
    if fraction >= 1_000_000:
        second, fraction = second + 1, fraction - 1_000_000
    # Several records a second, several times each: format each second once.
    prefix = _second_prefix.get(second)
    if prefix is None:
        if len(_second_prefix) > 64:
            _second_prefix.clear()
        prefix = _second_prefix[second] = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{prefix}.{fraction // 1000:03d}+00:00"


_second_prefix: dict[int, str] = {}
