"""What a reused task's record says in a resumed run: the earlier run's result
rendering, times and resources, marked `reused` with where it came from."""
from __future__ import annotations

__all__ = ["load_reused_records", "reused_record"]

import json
from pathlib import Path

#: Kept from the earlier record: what the task produced and what it cost then.
KEPT = ("result", "started_at", "finished_at", "duration_s", "resources")  # attempts: this run made none


def load_reused_records(source: Path, task_ids) -> dict[str, dict]:
    """task_id -> its record in the earlier run (those that can be read)."""
    found = {}
    for task_id in task_ids:
        try:
            record = json.loads((source / "tasks" / f"{task_id}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # no record (a crash before it was written): the task is still reused, just less described
        if isinstance(record, dict):
            found[task_id] = record
    return found


def reused_record(record: dict, earlier: dict | None, source: str) -> dict:
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
