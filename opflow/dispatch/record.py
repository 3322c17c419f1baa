"""What a task is in the coordinator, and the record it becomes (tasks/<id>.json).

`TaskState` is the coordinator's per-task state (status, attempts, the last
outcome); `task_record` renders it as the record reporters write; a reused
task's record (resume) keeps the earlier run's result, times and resources
(`reused_record`). Slotted objects: a 100,000-task run keeps one state per task.
"""
from __future__ import annotations

__all__ = ["TaskState", "Attempt", "task_record", "reused_record"]

import os
from pathlib import Path
from typing import TYPE_CHECKING

from opflow.events import TaskStatus, iso_time

if TYPE_CHECKING:
    import asyncio

    from opflow.attempt import Outcome

#: Kept from the earlier record: what the task produced and what it cost then.
KEPT = ("result", "started_at", "finished_at", "duration_s", "run_s", "wait_s", "backoff_s",
        "resources")  # attempts: this run made none


class Attempt:
    """One attempt of a task, as its record's attempt_log shows it (a slotted object:
    a 100,000-task run keeps one per task).

    `ready`: when it could have started (its upstream tasks done, or for a retry the end
    of its backoff); `queued`: when it was handed to the backend; `started`: when a
    worker began it (the worker's own clock once its outcome is in)."""

    __slots__ = ("number", "ready", "queued", "started", "finished", "error", "pid")

    def __init__(self, number: int, started: float, ready: float | None = None):
        self.number = number
        self.queued = started
        self.ready = started if ready is None else min(ready, started)
        self.started = started
        self.finished: float | None = None
        self.error: dict | None = None
        self.pid: int | None = None


class TaskState:
    """One task in the coordinator. `waiting` (upstream tasks not yet done) is
    written by the ready set only (ready.py)."""

    __slots__ = ("spec", "status", "waiting", "attempts", "reason", "outcome", "timer", "reused", "reused_from",
                 "cache_key", "cache_parts", "cache_miss", "log", "announced", "backoff_s", "backoff_since", "due")

    def __init__(self, spec):
        self.spec = spec
        self.status = TaskStatus.PENDING
        self.waiting = len(spec.depends_on)
        self.attempts: list[Attempt] = []
        self.reason: str | None = None
        self.outcome: Outcome | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.reused = False
        self.reused_from: str | None = None
        self.cache_key: str | None = None
        self.cache_parts: dict | None = None  # what the key covers, as digests (cache.py): to say what changed
        self.cache_miss: str | None = None  # why the cache did not serve it (cache.py's words)
        self.log: bool | None = False  # has an attempt left tasks/<id>.log? (None: one could not say)
        self.announced = 0  # the attempt whose task_started was emitted (0: none)
        self.backoff_s = 0.0  # seconds spent in retry delays (retry_delay's backoff)
        self.backoff_since: float | None = None  # a retry delay began (None: not backing off)
        self.due: float | None = None  # it became ready, or its retry delay ended: the next attempt may go

    def begin_backoff(self, now: float) -> None:
        self.backoff_since = now

    def end_backoff(self, now: float) -> None:
        """The retry delay is over (or cancelled): its seconds count as backoff."""
        if self.backoff_since is not None:
            self.backoff_s += max(0.0, now - self.backoff_since)
            self.backoff_since = None
            self.due = now


def task_record(state: TaskState, task_logs_dir: str | None) -> dict:
    """The task's record, as tasks/<id>.json shows it."""
    outcome = state.outcome
    attempts = [
        {"attempt": a.number, "queued_at": iso_time(a.queued), "started_at": iso_time(a.started),
         "finished_at": iso_time(a.finished), "duration_s": _seconds(a.started, a.finished),
         "wait_s": _seconds(a.ready, a.started), "pid": a.pid, "error": a.error}
        for a in state.attempts
    ]
    started = state.attempts[0].started if state.attempts else None
    finished = state.attempts[-1].finished if state.attempts else None
    ran = [a["duration_s"] for a in attempts if a["duration_s"] is not None]
    record = {
        "id": state.spec.id,
        "plugin": state.spec.plugin,
        "status": state.status.value,
        "attempts": len(state.attempts),
        "started_at": iso_time(started),
        "finished_at": iso_time(finished),
        # From the first attempt's start in a worker to the last one's end: the attempts'
        # run time, and between them the backoff and the retries' waits for a worker.
        "duration_s": _seconds(started, finished),
        "run_s": round(sum(ran), 6) if ran else None,  # the attempts' time in a worker
        "wait_s": round(sum(a["wait_s"] or 0.0 for a in attempts), 6) if attempts else None,  # for a worker
        "backoff_s": round(state.backoff_s, 6) if attempts else None,  # in retry delays
        "result": outcome.result if outcome is not None and outcome.ok else None,
        # The error of a failure; a cancelled or skipped task says why in `reason`
        # (an earlier attempt's error, say before a retry delay, is in attempt_log).
        "error": outcome.error if outcome is not None and state.status is TaskStatus.FAILED else None,
        "reason": state.reason,
        "reused": state.reused,
        "reused_from": state.reused_from,
        "cache_key": state.cache_key,
        "cache_parts": state.cache_parts,
        "cache_miss": state.cache_miss,
        "result_sha256": outcome.digest or None if outcome is not None and outcome.ok else None,
        "trigger": state.spec.trigger,
        "config": state.spec.config,  # after templating: what the plugin was given
        "depends_on": list(state.spec.depends_on),
        "attempt_log": attempts,
        "resources": None,
        # A task that wrote nothing has no log (worker/output.py's spool).
        "log": f"tasks/{state.spec.id}.log" if _has_log(state, task_logs_dir) else None,
    }
    if outcome is not None and outcome.pid:
        record["resources"] = {
            "pid": outcome.pid,
            "wall_s": _seconds(outcome.started_at, outcome.finished_at),
            "cpu_user_s": outcome.cpu_user_s,
            "cpu_system_s": outcome.cpu_system_s,
            "peak_rss_bytes": outcome.peak_rss,
        }
        record["resources"].update(outcome.where)
    return record


def _has_log(state: TaskState, task_logs_dir: str | None) -> bool:
    # An attempt that reported says whether it left a log; else (a crash, a
    # timeout, a stop) look on disk.
    if not task_logs_dir or not state.attempts or state.log is False:
        return False
    return state.log or os.path.exists(os.path.join(task_logs_dir, f"{state.spec.id}.log"))


def _seconds(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max(0.0, end - start), 6)


# -- resume: a reused task's record ---------------------------------------------
def reused_record(record: dict, earlier: dict | None, source: str) -> dict:
    """What a reused task's record says in a resumed run: the earlier run's result
    rendering, times and resources, marked `reused` with where it came from."""
    record = dict(record)
    if earlier:
        for key in KEPT:
            if key in earlier:
                record[key] = earlier[key]
        # Its log is the earlier run's; this run wrote none for it.
        record["log"] = str(Path(source) / earlier["log"]) if earlier.get("log") else None
    record["reused"] = True
    record["reused_from"] = source
    return record
