"""Reading past runs back: `opflow runs` (a list) and `opflow show` (one run, one task).

Only reads run directories; never writes. A run.json that says "running" while
its coordinator is gone (killed, power cut) reads as "crashed", by the one rule of
rundir/layout.py (`coordinator_alive`); where it cannot tell (no pid or host
recorded, another host), the status stays as written.
"""
from __future__ import annotations

__all__ = ["list_runs", "read_run", "read_task", "effective_status", "coordinator_alive", "RunsError"]

import json
import time
from datetime import datetime
from pathlib import Path

from opflow.errors import UsageError
# One rule for whether a run's coordinator lives (layout.py); kept importable from here.
from opflow.rundir.layout import (RecordError, coordinator_alive, effective_status, is_run_dir_name, load_run_json,
                                  load_task_record, read_log_tail, read_summary)


class RunsError(UsageError):
    pass


def _epoch(iso: str | None) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp() if iso else None
    except (TypeError, ValueError):
        return None


def _counts(doc: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in (doc.get("tasks") or {}).values():
        counts[status] = counts.get(status, 0) + 1
    return counts


def _row(run_dir: Path, doc: dict) -> dict:
    status = effective_status(doc)
    duration = doc.get("duration_s")
    if duration is None and status == "running":
        started = _epoch(doc.get("started_at"))
        duration = round(time.time() - started, 3) if started else None
    return {
        "run_dir": str(run_dir),
        "workflow": doc.get("workflow"),
        "workflow_file": doc.get("workflow_file"),
        "status": status,
        "started_at": doc.get("started_at"),
        "duration_s": duration,
        "counts": _counts(doc),
        "resumed_from": doc.get("resumed_from"),
    }


def list_runs(log_dir: Path, workflow_file: Path | None = None, skipped: list[str] | None = None) -> list[dict]:
    """One row per run directory under log_dir (of workflow_file, if given), newest first.

    A run whose run.json is bad (layout.py's checks) is left out, and `<run dir>: why` added
    to `skipped`; one without a run.json (being made, or not a run) is left out silently."""
    if not log_dir.is_dir():
        return []
    wanted = str(workflow_file.resolve()) if workflow_file is not None else None
    rows = []
    for run_dir in log_dir.iterdir():
        if not is_run_dir_name(run_dir.name) or not run_dir.is_dir():
            continue
        try:
            doc = load_run_json(run_dir)
        except FileNotFoundError:
            continue
        except (OSError, RecordError) as exc:
            if skipped is not None:
                skipped.append(f"{run_dir}: {exc}")
            continue
        if wanted is not None and doc.get("workflow_file") != wanted:
            continue
        rows.append(_row(run_dir, doc))
    rows.sort(key=lambda r: (r["started_at"] or "", r["run_dir"]), reverse=True)
    return rows


def read_run(run_dir: Path) -> dict:
    """run.json, its status as `effective_status` says; a UsageError (one line) where there is
    none or it is bad."""
    try:
        doc = load_run_json(run_dir)
    except FileNotFoundError:
        raise RunsError(f"{run_dir}: not a run directory (no run.json)") from None
    except OSError as exc:
        raise RunsError(f"{run_dir}: cannot read it: {exc.strerror or exc}") from None
    doc["status"] = effective_status(doc)
    return doc


def read_task(run_dir: Path, task_id: str, tail_lines: int = 20) -> dict:
    """A task's record, with `log_tail` (the end of tasks/<id>.log) added."""
    doc = read_run(run_dir)
    known = list(doc.get("tasks") or {})
    try:
        record = load_task_record(run_dir, task_id)
    except FileNotFoundError:
        record = None
    except OSError as exc:
        raise RunsError(f"{run_dir}: task '{task_id}': cannot read its record: {exc.strerror or exc}") from None
    if record is None:
        if task_id in known:  # not finished (or never ran): what run.json says
            record = {"id": task_id, "status": doc["tasks"][task_id]}
        else:
            import difflib

            close = difflib.get_close_matches(task_id, known, n=1)
            shown = ", ".join(known[:10]) + (f", ... ({len(known)} in all)" if len(known) > 10 else "")
            hint = f"did you mean '{close[0]}'?" if close else f"tasks: {shown}"
            raise RunsError(f"{run_dir}: no task '{task_id}' in this run ({hint})")
    record["log_tail"] = read_log_tail(run_dir, task_id, tail_lines)
    return record


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no tasks"


def _local_time(iso: str | None) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S") if iso else "-"
    except (TypeError, ValueError):
        return iso or "-"


def format_row(row: dict) -> str:
    return (f"{row['run_dir']}  {row['workflow']}  {row['status']}  {_local_time(row['started_at'])}  "
            f"{human_duration(row['duration_s'])}  {format_counts(row['counts'])}")


def format_run(run_dir: Path, doc: dict) -> str:
    """A run's summary: summary.txt when the run finished, else built from run.json."""
    summary = read_summary(run_dir) if doc["status"] not in ("running", "crashed") else None
    if summary is not None:
        return summary
    lines = [
        f"Workflow: {doc.get('workflow')}",
        f"Status:   {doc['status']}" + ("  (its coordinator is gone; `opflow resume` reruns what did not finish)"
                                         if doc["status"] == "crashed" else ""),
        f"Started:  {doc.get('started_at')}",
        f"File:     {doc.get('workflow_file')}",
        "",
        "Tasks: " + format_counts(_counts(doc)),
    ]
    for task_id, status in (doc.get("tasks") or {}).items():
        lines.append(f"  {status:<9} {task_id}")
    return "\n".join(lines) + "\n"


def format_task(record: dict) -> str:
    from opflow.rundir.failure_text import detail_lines, headline

    lines = [f"Task:     {record.get('id')}", f"Status:   {record.get('status')}"
             + ("  (reused)" if record.get("reused") else "")]
    for key, label in (("plugin", "Plugin"), ("attempts", "Attempts"), ("started_at", "Started"),
                       ("finished_at", "Finished"), ("duration_s", "Duration"), ("reason", "Reason"), ("log", "Log")):
        if record.get(key) not in (None, ""):
            value = f"{record[key]:.2f}s" if key == "duration_s" else record[key]
            lines.append(f"{label + ':':<9} {value}")
            if key == "duration_s" and record.get("run_s") is not None:
                lines.append(f"{'':<9} ran {record['run_s']:.2f}s, waited for a worker {record.get('wait_s') or 0:.2f}s, "
                             f"backed off {record.get('backoff_s') or 0:.2f}s")
    resources = record.get("resources")
    if resources:
        cpu = (resources.get("cpu_user_s") or 0) + (resources.get("cpu_system_s") or 0)
        lines.append(f"Resources: pid {resources.get('pid')}, cpu {cpu:.2f}s, "
                     f"peak {(resources.get('peak_rss_bytes') or 0) / 1e6:.1f} MB")
    if record.get("error"):
        lines.append(f"Error:    {headline(record['error'])}")
        lines.extend(f"    | {line}" for line in detail_lines(record["error"]))
    if record.get("result") is not None:
        text = json.dumps(record["result"], indent=2, default=str)
        shown = text.splitlines()
        lines.append("Result:")
        lines.extend("  " + line for line in shown[:40])
        if len(shown) > 40:
            lines.append(f"  ... ({len(shown) - 40} more lines in tasks/{record.get('id')}.json)")
    if record.get("log_tail"):
        lines.append("Log (last lines):")
        lines.extend("  " + line for line in record["log_tail"].splitlines())
    return "\n".join(lines) + "\n"
