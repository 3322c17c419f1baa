"""`opflow export RUN_DIR --format chrome-trace`: a run as a Chrome / Perfetto trace.

The Trace Event Format (JSON object form, `{"traceEvents": [...]}`), read by
ui.perfetto.dev and chrome://tracing:

    pid   the run (its coordinator's pid), one process named after the workflow
    tid   one track per worker process, named `worker <pid>` (threads in one process:
          as many tracks as ran at once): each attempt that ran there is a complete
          slice (`ph: "X"`), named by its task id; a failed attempt (retried or not) is
          marked `cname: "terrible"` and `args.status`
    waits a second process, `waits`: each attempt's queue wait (ready, but no worker
          yet) and each retry's backoff, as slices named `<task> (queue wait)` and
          `<task> (backoff)`, packed onto as few tracks as never overlap

Times are microseconds since the run started. A complete slice never overlaps another
on its track (a worker runs one task at a time; waits are packed so).
"""
from __future__ import annotations

__all__ = ["chrome_trace", "write_trace", "FORMATS"]

import heapq
import json
from pathlib import Path

from opflow.errors import UsageError
from opflow.rundir.files import UnsafePathError, write_text_atomic
from opflow.rundir.layout import iso_epoch, load_task_records
from opflow.rundir.runs import read_run

FORMATS = ("chrome-trace",)
WAITS_PID_OFFSET = 1  # the waits process: the run's pid + this (a pid no worker has in this trace)
FAILED_COLOUR = "terrible"  # one of the trace viewer's reserved colour names: red


def _us(seconds: float) -> int:
    return max(0, round(seconds * 1_000_000))


def _slices(doc: dict, records: dict) -> tuple[list[dict], list[dict]]:
    """(attempts, waits): each as {name, start, end, args} in Unix seconds; an attempt has its `worker` pid."""
    attempts, waits = [], []
    for task_id in list(doc.get("tasks") or records):
        record = records.get(task_id)
        if not record or record.get("reused"):
            continue  # never finished here, or ran in an earlier run
        log = record.get("attempt_log") or []
        previous_end = None
        for n, attempt in enumerate(log):
            began, ended = iso_epoch(attempt.get("started_at")), iso_epoch(attempt.get("finished_at"))
            if began is None:
                continue
            last = n == len(log) - 1
            error = attempt.get("error") if isinstance(attempt.get("error"), dict) else None
            status = record.get("status") if last else "failed"
            number = attempt.get("attempt", n + 1)
            ready = began - (attempt.get("wait_s") or 0.0)
            if previous_end is not None and ready > previous_end:
                waits.append({"name": f"{task_id} (backoff)", "start": previous_end, "end": ready,
                              "args": {"task": task_id, "wait": "backoff", "before_attempt": number}})
            if began > ready:
                waits.append({"name": f"{task_id} (queue wait)", "start": ready, "end": began,
                              "args": {"task": task_id, "wait": "queue", "attempt": number}})
            if ended is None:
                continue
            previous_end = ended
            args = {"task": task_id, "attempt": number, "attempts": len(log), "status": status,
                    "pid": attempt.get("pid")}
            if error:
                args["error"] = f"{error.get('type')}: {error.get('message')}"
            attempts.append({"name": task_id, "start": began, "end": max(began, ended),
                             "worker": attempt.get("pid") or 0, "args": args, "failed": status == "failed"})
    return attempts, waits


def _pack(slices: list[dict]) -> list[list[dict]]:
    """Lanes of slices in which none overlaps another (interval packing in time order, the lane
    that came free first reused): one lane for a worker process, which runs one task at a time;
    more for threads in one process, and for waits."""
    lanes: list[list[dict]] = []
    free_at: list[tuple[float, int]] = []  # (when a lane's last slice ends, the lane): a heap
    for item in sorted(slices, key=lambda x: (x["start"], x["end"])):
        if free_at and free_at[0][0] <= item["start"]:
            _, lane = heapq.heappop(free_at)
        else:
            lane = len(lanes)
            lanes.append([])
        lanes[lane].append(item)
        heapq.heappush(free_at, (item["end"], lane))
    return lanes


def _track_events(lanes: list[list[dict]], pid: int, first_tid: int, names: list[str], cat: str,
                  origin: float) -> list[dict]:
    """Each lane as a named thread (`M`) of `pid` and its slices (`X`), in microseconds from `origin`."""
    events = []
    for tid, (lane, name) in enumerate(zip(lanes, names), first_tid):
        events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "ts": 0, "args": {"name": name}})
        events.append({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid, "ts": 0,
                       "args": {"sort_index": tid}})
        for item in lane:
            # Both ends rounded, not the length: slices that touch in seconds touch in microseconds.
            ts, end = _us(item["start"] - origin), _us(item["end"] - origin)
            event = {"ph": "X", "name": item["name"], "cat": cat, "pid": pid, "tid": tid, "ts": ts,
                     "dur": max(0, end - ts), "args": item["args"]}
            if item.get("failed"):
                event["cname"] = FAILED_COLOUR
            events.append(event)
    return events


def chrome_trace(run_dir: Path) -> dict:
    """The run in `run_dir` as a trace document; a UsageError (one line) for a bad run directory."""
    doc = read_run(run_dir)
    records = load_task_records(run_dir)
    origin = iso_epoch(doc.get("started_at"))
    if origin is None:
        raise UsageError(f"{run_dir}/run.json: no started_at; cannot place the run in time")
    pid = doc["pid"] if isinstance(doc.get("pid"), int) else 1
    attempts, waits = _slices(doc, records)
    events: list[dict] = [
        {"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "ts": 0,
         "args": {"name": f"opflow run {doc.get('workflow')} ({doc.get('status')})"}},
        {"ph": "M", "name": "process_name", "pid": pid + WAITS_PID_OFFSET, "tid": 0, "ts": 0,
         "args": {"name": "waits"}},
    ]
    lanes, names = [], []
    for worker in sorted({a["worker"] for a in attempts}):
        packed = _pack([a for a in attempts if a["worker"] == worker])
        lanes += packed
        label = f"worker {worker}" if worker else "worker (pid unknown)"
        names += [label if n == 0 else f"{label} #{n + 1}" for n in range(len(packed))]
    events += _track_events(lanes, pid, 1, names, "attempt", origin)
    packed = _pack(waits)
    events += _track_events(packed, pid + WAITS_PID_OFFSET, 1, [f"waits {n + 1}" for n in range(len(packed))], "wait",
                            origin)
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"workflow": doc.get("workflow"), "run_dir": str(Path(run_dir).absolute()),
                          "started_at": doc.get("started_at"), "status": doc.get("status")}}


def write_trace(run_dir: Path, output: Path | None, fmt: str = "chrome-trace") -> Path:
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: one of {', '.join(FORMATS)}")
    document = chrome_trace(Path(run_dir))
    output = Path(output) if output else Path(run_dir) / "trace.json"
    try:
        write_text_atomic(output, json.dumps(document) + "\n", unguessable=True)
    except UnsafePathError as exc:
        raise UsageError(f"-o {output}: cannot write it: {exc}") from None
    except OSError as exc:
        raise UsageError(f"-o {output}: cannot write it: {exc.strerror or exc}") from None
    return output
