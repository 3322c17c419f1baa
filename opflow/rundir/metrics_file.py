"""`--metrics-file PATH`: the run's metrics in the Prometheus text exposition format, for
node_exporter's textfile collector (https://prometheus.io/docs/instrumenting/exposition_formats/).

A reporter: it keeps each task's duration as records come, and at run_finished (success,
failure or interrupt alike) writes the whole file at once: a temporary file beside it, renamed
over it (rundir/files.py), so the collector never reads half a file. Every sample is labelled
`workflow="<name>"`. `opflow_run_last_success_timestamp_seconds` survives a failed run: it is
read back from the file this one replaces (none yet: the sample is left out).
"""
from __future__ import annotations

__all__ = ["MetricsFile", "check_metrics_path"]

import os
from datetime import datetime
from pathlib import Path

from opflow.errors import UsageError
from opflow.events import Reporter, TaskStatus
from opflow.rundir.files import write_text_atomic

LAST_SUCCESS = "opflow_run_last_success_timestamp_seconds"
#: The collector runs as another user: it must read the file (metrics hold no secrets; the umask still applies).
METRICS_MODE = 0o644


def check_metrics_path(path: str | os.PathLike) -> Path:
    """Refuse, before the run, a path whose folder is missing (the run would end unmeasured)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UsageError(f"--metrics-file {path}: no folder {path.parent}")
    if path.is_dir():
        raise UsageError(f"--metrics-file {path}: is a folder")
    return path


def escape_label(value: str) -> str:
    """A label value as the text format writes it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class MetricsFile(Reporter):
    def __init__(self, path: str | os.PathLike, workflow_name: str):
        self.path = Path(path)
        self._workflow = f'workflow="{escape_label(workflow_name)}"'
        self._durations: dict[str, float] = {}  # task_id -> seconds, for each task that ran in this run

    def handle(self, event: dict) -> None:
        kind = event["event"]
        if kind == "task_finished":
            record = event["record"]
            if not record.get("reused") and record.get("duration_s") is not None:
                self._durations[record["id"]] = record["duration_s"]
        elif kind == "run_finished":
            written: dict = {"path": str(self.path.absolute())}
            try:
                write_text_atomic(self.path, self.render(event), unguessable=True, mode=METRICS_MODE)
            except (OSError, UsageError) as exc:  # the run is over and recorded; run.json says why there is no file
                written["error"] = getattr(exc, "strerror", None) or str(exc)
            event.setdefault("extra", {})["metrics_file"] = written

    def render(self, event: dict) -> str:
        succeeded = event["status"] == "succeeded"
        finished = datetime.fromisoformat(event["finished_at"]).timestamp()
        last_success = finished if succeeded else self._previous_last_success()
        counts = dict.fromkeys((s.value for s in TaskStatus if s.final), 0)
        for status in event["tasks"].values():
            counts[status] = counts.get(status, 0) + 1
        out: list[str] = []
        self._metric(out, LAST_SUCCESS, "When the workflow's latest successful run ended (Unix time).",
                     [("", last_success)] if last_success is not None else [])
        self._metric(out, "opflow_run_finished_timestamp_seconds", "When the workflow's latest run ended (Unix time).",
                     [("", finished)])
        self._metric(out, "opflow_run_duration_seconds", "How long the latest run took.", [("", event["duration_s"])])
        self._metric(out, "opflow_run_success", "1 if the latest run succeeded, else 0.", [("", int(succeeded))])
        self._metric(out, "opflow_run_exit_code", "The latest run's exit status (0, 1, 130, 143).",
                     [("", event["exit_code"])])
        self._metric(out, "opflow_tasks", "Tasks of the latest run by status.",
                     [(f'status="{escape_label(status)}"', n) for status, n in counts.items()])
        self._metric(out, "opflow_task_duration_seconds", "Each task's duration in the latest run (tasks that ran).",
                     [(f'task="{escape_label(task_id)}"', seconds) for task_id, seconds in self._durations.items()])
        return "".join(out)

    def _metric(self, out: list[str], name: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        out.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n")
        for labels, value in samples:
            out.append(f"{name}{{{self._workflow}{',' + labels if labels else ''}}} {_number(value)}\n")

    def _previous_last_success(self) -> float | None:
        """The last success the file this run replaces recorded for this workflow, if any."""
        prefix = f"{LAST_SUCCESS}{{{self._workflow}}} "
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except OSError:  # no file yet (or unreadable): no success known
            return None
        for line in text.splitlines():
            if line.startswith(prefix):
                try:
                    return float(line[len(prefix):].split()[0])
                except (ValueError, IndexError):
                    return None
        return None


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))
