"""`opflow report`: one self-contained HTML file about one or more runs.

Everything is inline (CSS, SVG; no script, font or image fetched): the file
opens offline, from a mail attachment or a CI artefact. Per run: a Gantt
timeline of attempts per worker process (idle time shows as gaps; the critical
path is outlined), the task graph, a table of wall/CPU/peak memory per task, and
the failures with their error and the end of their log. Given several runs (the
same workflow at 1, 2, 4 workers, say) it first compares them: wall time,
speedup and efficiency against the run with the fewest workers.

Reads only the run directories (run.json, tasks/*.json, tasks/*.log), as rundir/layout.py
reads them: a bad run.json or task record is a UsageError naming it; a log that is a symlink
or not a regular file is left out. Every field read is escaped. The page is written as the
run directory is (rundir/files.py): a new file, 0600, under a random temporary name created
with O_EXCL|O_NOFOLLOW, renamed into place.
"""
from __future__ import annotations

__all__ = ["load_run", "write_report", "render_report"]

import html
from datetime import datetime
from pathlib import Path

from opflow.errors import UsageError
from opflow.rundir.failure_text import detail_lines, headline
from opflow.rundir.history import task_weights
from opflow.rundir.files import UnsafePathError, write_text_atomic
from opflow.rundir.layout import load_task_records, read_log_tail
from opflow.rundir.runs import human_duration, read_run
from opflow.workflow.plan import plan_of
from opflow.words import plural

GRAPH_LIMIT = 300  # tasks: above this the graph is drawn as tasks per layer
GANTT_WIDTH = 1000  # px of the time axis
ROW = 18  # px per worker row
STATUS_COLOURS = {"succeeded": "#4c9a5f", "failed": "#c8453c", "skipped": "#c9a227", "cancelled": "#9a8f7a",
                  "running": "#4f7fbf", "pending": "#b0b0b0", "retried": "#d98c3f"}


def _epoch(iso):
    try:
        return datetime.fromisoformat(iso).timestamp() if iso else None
    except (TypeError, ValueError):
        return None


def load_run(run_dir: Path) -> dict:
    run_dir = Path(run_dir)
    doc = read_run(run_dir)  # a UsageError (exit 2) naming run.json where it is bad
    records = load_task_records(run_dir)
    order = list(doc.get("tasks") or records)
    for task_id in order:  # tasks without a record (never finished): what run.json says
        records.setdefault(task_id, {"id": task_id, "status": (doc.get("tasks") or {}).get(task_id, "pending"),
                                     "depends_on": []})
    return {"dir": run_dir, "doc": doc, "records": records, "order": order}


# -- analysis ----------------------------------------------------------------------
def _attempts(run: dict) -> list[dict]:
    """Every attempt that ran in this run: task, pid, start/end seconds from the run's start."""
    start = _epoch(run["doc"].get("started_at")) or 0.0
    bars = []
    for task_id in run["order"]:
        record = run["records"][task_id]
        if record.get("reused"):
            continue  # ran in an earlier run
        log = record.get("attempt_log") or []
        for n, attempt in enumerate(log):
            began, ended = _epoch(attempt.get("started_at")), _epoch(attempt.get("finished_at"))
            if began is None or ended is None:
                continue
            last = n == len(log) - 1
            bars.append({"task": task_id, "pid": attempt.get("pid") or 0, "start": max(0.0, began - start),
                         "end": max(0.0, ended - start), "attempt": attempt.get("attempt", n + 1),
                         "status": record.get("status") if last else "retried"})
    return bars


def _plan(run: dict):
    """The run's task graph (from its records' depends_on), in run.json's task order."""
    records, known = run["records"], set(run["order"])
    return plan_of({task_id: [d for d in records[task_id].get("depends_on") or [] if d in known]
                    for task_id in run["order"]})


def critical_path(run: dict) -> tuple[list[str], float]:
    """The chain of dependencies that weighs the most: workflow/plan.py's critical path,
    by history.task_weights (the rule `opflow plan` weighs by too)."""
    return _plan(run).critical_path(task_weights(run["records"]))


def _layers(run: dict) -> list[list[str]]:
    """workflow/plan.py's layers, each in run.json's task order."""
    position = {task_id: n for n, task_id in enumerate(run["order"])}
    return [sorted(layer, key=position.__getitem__) for layer in _plan(run).layers]


def _wall(run: dict) -> float | None:
    return run["doc"].get("duration_s")


# -- rendering -----------------------------------------------------------------
def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _mb(n) -> str:
    return f"{n / 1e6:.1f}" if n else "-"


def _seconds(x) -> str:
    return f"{x:.2f}" if isinstance(x, (int, float)) else "-"


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}.muted{color:#666}.mono,pre,code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
table{border-collapse:collapse;margin:6px 0}th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}
th{background:#f6f6f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
.st{display:inline-block;padding:0 6px;border-radius:3px;color:#fff;font-size:12px}
pre{background:#f7f7f7;border:1px solid #e4e4e4;padding:8px;overflow:auto;max-height:260px}
.scroll{overflow:auto;max-width:100%;border:1px solid #eee}details{margin:6px 0}
.legend span{margin-right:12px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
svg text{font-family:system-ui,sans-serif}
"""


def _badge(status: str) -> str:
    return f'<span class="st" style="background:{STATUS_COLOURS.get(status, "#777")}">{_e(status)}</span>'


def _legend() -> str:
    return '<div class="legend muted">' + "".join(
        f'<span><i style="background:{c}"></i>{s}</span>' for s, c in STATUS_COLOURS.items()
        if s in ("succeeded", "failed", "retried", "cancelled")) + \
        '<span><i style="background:none;outline:2px solid #111"></i>critical path</span></div>'


def _gantt(run: dict, span: float, critical: set, compact: bool = False) -> str:
    bars = _attempts(run)
    if not bars:
        return '<p class="muted">No task ran in this run (all reused or none started).</p>'
    pids: list = []
    for bar in sorted(bars, key=lambda b: b["start"]):
        if bar["pid"] not in pids:
            pids.append(bar["pid"])
    span = max(span, max(b["end"] for b in bars), 1e-6)
    scale = GANTT_WIDTH / span
    left, top = 90, 22
    height = top + ROW * len(pids) + 8
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + GANTT_WIDTH + 20}" height="{height}" '
           f'role="img" aria-label="timeline of tasks per worker process">']
    step = _tick_step(span)
    t = 0.0
    while t <= span + 1e-9:
        x = left + t * scale
        out.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 6}" stroke="#eee"/>'
                   f'<text x="{x:.1f}" y="{top - 8}" font-size="10" text-anchor="middle" fill="#777">{t:g}s</text>')
        t += step
    busy = 0.0
    for row, pid in enumerate(pids):
        y = top + row * ROW
        out.append(f'<text x="{left - 6}" y="{y + 12}" font-size="11" text-anchor="end" fill="#444">pid {_e(pid)}</text>'
                   f'<rect x="{left}" y="{y + 1}" width="{GANTT_WIDTH}" height="{ROW - 2}" fill="#fafafa"/>')
    for bar in bars:
        row = pids.index(bar["pid"])
        y = top + row * ROW
        x = left + bar["start"] * scale
        w = max(1.0, (bar["end"] - bar["start"]) * scale)
        busy += bar["end"] - bar["start"]
        colour = STATUS_COLOURS.get(bar["status"], "#777")
        edge = ' stroke="#111" stroke-width="2"' if bar["task"] in critical and bar["status"] != "retried" else ""
        label = f'{bar["task"]} (attempt {bar["attempt"]}, {bar["status"]}): {bar["start"]:.2f}s → {bar["end"]:.2f}s'
        out.append(f'<rect class="bar" x="{x:.1f}" y="{y + 2}" width="{w:.1f}" height="{ROW - 4}" fill="{colour}"{edge}>'
                   f'<title>{_e(label)}</title></rect>')
        if w > 40:
            out.append(f'<text x="{x + 3:.1f}" y="{y + 12}" font-size="10" fill="#fff" pointer-events="none">'
                       f'{_e(_fit(bar["task"], int(w / 6)))}</text>')
    out.append("</svg>")
    workers = run["doc"].get("workers") or len(pids)
    wall = _wall(run) or max(b["end"] for b in bars)
    use = busy / (wall * max(1, workers)) if wall else 0
    if compact:
        return f'<div class="scroll">{"".join(out)}</div>'
    return (f'<p class="muted">{plural(len(pids), "worker process", "worker processes")} ran tasks; the pool of {_e(workers)} was busy '
            f'{use:.0%} of the run\'s {wall:.2f}s (gaps are idle workers).</p>'
            f'{_legend()}<div class="scroll">{"".join(out)}</div>')


def _tick_step(span: float) -> float:
    for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600):
        if span / step <= 12:
            return step
    return span / 10


def _fit(text: str, n: int) -> str:
    return text if len(text) <= n else text[: max(1, n - 1)] + "…"


def _graph(run: dict, critical: set) -> str:
    layers = _layers(run)
    records = run["records"]
    if len(records) > GRAPH_LIMIT:
        widest = max((len(layer) for layer in layers), default=0)
        rows = "".join(f'<tr><td class="n">{n + 1}</td><td class="n">{len(layer)}</td>'
                       f'<td><svg width="{max(1, 400 * len(layer) // max(1, widest))}" height="10">'
                       f'<rect width="100%" height="10" fill="#4f7fbf"/></svg></td></tr>' for n, layer in enumerate(layers))
        return (f'<p class="muted">{len(records)} tasks: too many to draw one by one; tasks per layer '
                f'(a layer can run at once):</p><table><tr><th>layer</th><th>tasks</th><th></th></tr>{rows}</table>')
    box_w, box_h, gap_x, gap_y = 150, 22, 50, 8
    pos = {}
    for col, layer in enumerate(layers):
        for row, task_id in enumerate(layer):
            pos[task_id] = (10 + col * (box_w + gap_x), 10 + row * (box_h + gap_y))
    width = 20 + len(layers) * (box_w + gap_x)
    height = 20 + max((len(layer) for layer in layers), default=1) * (box_h + gap_y)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="task graph">']
    for task_id, (x, y) in pos.items():
        for dep in records[task_id].get("depends_on") or []:
            if dep in pos:
                dx, dy = pos[dep]
                hot = dep in critical and task_id in critical
                out.append(f'<line x1="{dx + box_w}" y1="{dy + box_h / 2}" x2="{x}" y2="{y + box_h / 2}" '
                           f'stroke="{"#111" if hot else "#bbb"}" stroke-width="{2 if hot else 1}"/>')
    for task_id, (x, y) in pos.items():
        status = records[task_id].get("status", "pending")
        edge = ' stroke="#111" stroke-width="2"' if task_id in critical else ""
        out.append(f'<g><title>{_e(task_id)}: {_e(status)}</title><rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="4" '
                   f'fill="{STATUS_COLOURS.get(status, "#777")}"{edge}/><text x="{x + 6}" y="{y + 15}" font-size="11" '
                   f'fill="#fff">{_e(_fit(task_id, 22))}</text></g>')
    out.append("</svg>")
    return f'<div class="scroll">{"".join(out)}</div>'


def _task_table(run: dict) -> str:
    rows = []
    for task_id in run["order"]:
        r = run["records"][task_id]
        res = r.get("resources") or {}
        cpu = (res.get("cpu_user_s") or 0) + (res.get("cpu_system_s") or 0) if res else None
        note = " (reused)" if r.get("reused") else ""
        rows.append(f'<tr><td class="mono">{_e(task_id)}</td><td>{_badge(r.get("status", "?"))}{note}</td>'
                    f'<td class="n">{_seconds(r.get("duration_s"))}</td><td class="n">{_seconds(cpu)}</td>'
                    f'<td class="n">{_mb(res.get("peak_rss_bytes"))}</td><td class="n">{_e(res.get("pid") or "-")}</td>'
                    f'<td class="n">{_e(r.get("attempts", 0))}</td></tr>')
    return ('<details open><summary>Per task: wall, CPU, peak memory</summary><div class="scroll" style="max-height:480px">'
            '<table><tr><th>task</th><th>status</th><th>wall s</th><th>CPU s</th><th>peak MB</th><th>pid</th>'
            f'<th>attempts</th></tr>{"".join(rows)}</table></div></details>')


def _failures(run: dict) -> str:
    failed = [run["records"][t] for t in run["order"] if run["records"][t].get("status") == "failed"]
    if not failed:
        return ""
    parts = [f"<h3>Failures ({len(failed)})</h3>"]
    for record in failed[:50]:
        error = record.get("error") or {}
        detail = "\n".join(detail_lines(error))
        tail = read_log_tail(run["dir"], record["id"], 20) or ""  # never through a symlink
        parts.append(f'<div class="failure"><p><b class="mono">{_e(record["id"])}</b>: {_e(headline(error))}</p>'
                     + (f"<pre>{_e(detail)}</pre>" if detail else "")
                     + (f"<details><summary>end of tasks/{_e(record['id'])}.log</summary><pre>{_e(tail)}</pre></details>"
                        if tail else "") + "</div>")
    if len(failed) > 50:
        parts.append(f'<p class="muted">... and {len(failed) - 50} more (see summary.txt)</p>')
    return "".join(parts)


def _run_section(run: dict, n: int, span: float) -> str:
    doc = run["doc"]
    path, total = critical_path(run)
    critical = set(path)
    counts: dict[str, int] = {}
    for record in run["records"].values():
        counts[record.get("status", "?")] = counts.get(record.get("status", "?"), 0) + 1
    count_text = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    shown_path = " → ".join(path) if len(path) <= 12 else " → ".join(path[:5] + ["…"] + path[-5:])
    return (f'<section id="run{n}"><h2>{_e(run["dir"].name)} {_badge(doc.get("status", "?"))}</h2>'
            f'<p>{_e(doc.get("executor"))}, {_e(_workers(doc.get("workers")))} · started {_e(doc.get("started_at"))} · '
            f'wall {human_duration(_wall(run))} · {_e(count_text)}</p>'
            f'<p>Critical path ({total:.2f}s of task time): <span class="mono">{_e(shown_path)}</span></p>'
            f'<h3>Timeline per worker process</h3>{_gantt(run, span, critical)}'
            f'<h3>Task graph</h3>{_graph(run, critical)}'
            f'{_failures(run)}<h3>Tasks</h3>{_task_table(run)}</section>')


def _comparison(runs: list[dict], span: float) -> str:
    timed = [r for r in runs if isinstance(_wall(r), (int, float)) and _wall(r) > 0]
    if len(runs) < 2 or not timed:
        return ""
    base = min(timed, key=lambda r: (r["doc"].get("workers") or 1, _wall(r)))
    base_workers, base_wall = base["doc"].get("workers") or 1, _wall(base)
    longest = max(_wall(r) for r in timed)
    rows = []
    for n, run in enumerate(runs):
        wall, workers = _wall(run), run["doc"].get("workers") or 1
        if run in timed:
            speedup = base_wall / wall
            efficiency = speedup / (workers / base_workers)
            bar = f'<svg width="{int(300 * wall / longest)}" height="10"><rect width="100%" height="10" fill="#4f7fbf"/></svg>'
            cells = f'<td class="n">{wall:.2f}</td><td class="n">{speedup:.2f}×</td><td class="n">{efficiency:.0%}</td><td>{bar}</td>'
        else:
            cells = '<td class="n">-</td><td class="n">-</td><td class="n">-</td><td></td>'
        rows.append(f'<tr><td><a href="#run{n}">{_e(run["dir"].name)}</a></td><td class="n">{_e(workers)}</td>'
                    f'<td>{_e(run["doc"].get("executor"))}</td><td>{_badge(run["doc"].get("status", "?"))}</td>{cells}</tr>')
    return ('<h2>Runs compared</h2><p class="muted">Speedup is the wall time of the run with the fewest workers '
            f'({_e(base_workers)}) divided by each run\'s; efficiency is speedup per added worker. One run per size '
            'is one sample: rerun before concluding from small differences.</p>'
            '<table><tr><th>run</th><th>workers</th><th>executor</th><th>status</th><th>wall s</th><th>speedup</th>'
            f'<th>efficiency</th><th></th></tr>{"".join(rows)}</table>'
            '<h3>Timelines stacked (one time axis)</h3>' + _legend() + "".join(
                f'<p class="mono" style="margin:8px 0 2px">{_e(run["dir"].name)}: {_e(_workers(run["doc"].get("workers")))}</p>'
                + _gantt(run, span, set(critical_path(run)[0]), compact=True) for run in runs))


def render_report(run_dirs: list[Path]) -> str:
    runs = [load_run(Path(d)) for d in run_dirs]
    # One time axis for all timelines, so stacked runs compare by eye.
    span = max([_wall(r) or 0.0 for r in runs] + [max((b["end"] for b in _attempts(r)), default=0.0) for r in runs])
    names = sorted({str(r["doc"].get("workflow")) for r in runs})
    title = f"opflow report: {', '.join(names)}"
    generated = datetime.now().astimezone().isoformat(timespec="seconds")
    body = "".join(_run_section(run, n, span) for n, run in enumerate(runs))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width\"><title>{_e(title)}</title><style>{CSS}</style></head>"
            f"<body><h1>{_e(title)}</h1><p class=\"muted\">{len(runs)} run{'s' if len(runs) != 1 else ''} · "
            f"generated {_e(generated)} · file {_e(runs[0]['doc'].get('workflow_file'))}</p>"
            f"{_comparison(runs, span)}{body}</body></html>\n")


def write_report(run_dirs: list[Path], output: Path | None = None) -> Path:
    if not run_dirs:
        raise UsageError("report: name at least one run directory")
    output = Path(output) if output else Path(run_dirs[0]) / "report.html"
    text = render_report(run_dirs)
    try:
        # A random temporary name: one that can be guessed can be planted first (in /tmp, say).
        write_text_atomic(output, text, unguessable=True)
    except UnsafePathError as exc:
        raise UsageError(f"-o {output}: cannot write it: {exc}") from None
    except OSError as exc:
        raise UsageError(f"-o {output}: cannot write it: {exc.strerror or exc}") from None
    return output


def _workers(count) -> str:
    return plural(count, "worker") if isinstance(count, int) else f"{count} workers"
