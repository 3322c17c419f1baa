"""`opflow report`: one self-contained HTML file about one or more runs.

Everything is inline (CSS, SVG; no script, font or image fetched): the file
opens offline, from a mail attachment or a CI artefact. Per run: a Gantt
timeline of attempts per worker process (idle time shows as gaps; the critical
path is outlined), the task graph, a table of wall/CPU/peak memory per task, and
the failures with their error and the end of their log. Given several runs (the
same workflow at 1, 2, 4 workers, say) it first compares them, in groups of like
runs (the same workflow file, executor, params, host and versions: only the pool
size differs; unlike runs are flagged): median wall time per pool size, speedup
and efficiency against the median at the smallest size (rundir/scaling.py, the
rule benchmarks/pool_sizes.py prints by). Attempts shorter than a few pixels are
drawn MIN_BAR wide and listed, with every attempt of a retried task and its error.

Reads only the run directories (run.json, tasks/*.json, tasks/*.log), as rundir/layout.py
reads them: a bad run.json or task record is a UsageError naming it; a log that is a symlink
or not a regular file is left out. Every field read is escaped. The page is written as the
run directory is (rundir/files.py): a new file, 0600, under a random temporary name created
with O_EXCL|O_NOFOLLOW, renamed into place.
"""
from __future__ import annotations

__all__ = ["load_run", "write_report", "render_report"]

import html
import json
from datetime import datetime
from pathlib import Path

from opflow.errors import UsageError
from opflow.rundir.failure_text import detail_lines, headline
from opflow.rundir.history import task_weights
from opflow.rundir.files import UnsafePathError, write_text_atomic
from opflow.rundir.layout import load_task_records, read_log_tail
from opflow.rundir.runs import human_duration, read_run
from opflow.rundir.scaling import pool_scaling
from opflow.workflow.plan import plan_of
from opflow.words import plural

GRAPH_LIMIT = 300  # tasks: above this the graph is drawn as tasks per layer
GANTT_WIDTH = 1000  # px of the time axis
ROW = 18  # px per worker row
MIN_BAR = 4  # px: the narrowest an attempt is drawn, however short (a retry, a 2 ms task stay visible)
STATUS_COLOURS = {"succeeded": "#4c9a5f", "failed": "#c8453c", "skipped": "#c9a227", "cancelled": "#9a8f7a",
                  "running": "#4f7fbf", "pending": "#b0b0b0", "retried": "#d98c3f"}
RETRIED_EDGE = "#6e1a14"  # a failed attempt that was retried: red, edged in dark red


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
    """Every attempt that ran in this run: task, pid, start/end seconds from the run's start,
    its own status (an attempt that failed is `failed`, retried or not) and its error."""
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
            error = attempt.get("error") if isinstance(attempt.get("error"), dict) else None
            status = record.get("status") if last else ("failed" if error else "retried")
            bars.append({"task": task_id, "pid": attempt.get("pid") or 0, "start": max(0.0, began - start),
                         "end": max(0.0, ended - start), "attempt": attempt.get("attempt", n + 1),
                         "status": status, "retried": not last, "error": error, "wait": attempt.get("wait_s")})
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
table.provenance th{background:none;font-weight:600;color:#555}table.provenance td{max-width:900px;overflow-wrap:anywhere}
.unlike{color:#a33}p.unlike{background:#fff4f2;border:1px solid #e8b4ad;padding:6px 10px}
"""


def _badge(status: str) -> str:
    return f'<span class="st" style="background:{STATUS_COLOURS.get(status, "#777")}">{_e(status)}</span>'


def _legend() -> str:
    return '<div class="legend muted">' + "".join(
        f'<span><i style="background:{c}"></i>{s}</span>' for s, c in STATUS_COLOURS.items()
        if s in ("succeeded", "failed", "cancelled")) + \
        f'<span><i style="background:{STATUS_COLOURS["failed"]};outline:2px solid {RETRIED_EDGE}"></i>' \
        'failed attempt, retried</span>' \
        '<span><i style="background:none;outline:2px solid #111"></i>critical path</span>' \
        f'<span>attempts shorter than {MIN_BAR}px are drawn {MIN_BAR}px wide</span></div>'


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
        w = max(float(MIN_BAR), (bar["end"] - bar["start"]) * scale)  # never sub-pixel: see _short
        busy += bar["end"] - bar["start"]
        colour = STATUS_COLOURS.get(bar["status"], "#777")
        if bar["retried"]:
            edge = f' stroke="{RETRIED_EDGE}" stroke-width="1"'
        else:
            edge = ' stroke="#111" stroke-width="2"' if bar["task"] in critical else ""
        state = f'{bar["status"]}, retried' if bar["retried"] else bar["status"]
        label = (f'{bar["task"]} (attempt {bar["attempt"]}, {state}): {bar["start"]:.3f}s → {bar["end"]:.3f}s'
                 + (f' · {headline(bar["error"])}' if bar["error"] else ""))
        out.append(f'<rect class="bar" data-task="{_e(bar["task"])}" data-attempt="{_e(bar["attempt"])}" '
                   f'x="{x:.1f}" y="{y + 2}" width="{w:.1f}" height="{ROW - 4}" fill="{colour}"{edge}>'
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
                    f'<td class="n">{_seconds(r.get("run_s"))}</td><td class="n">{_seconds(r.get("wait_s"))}</td>'
                    f'<td class="n">{_seconds(r.get("backoff_s"))}</td>'
                    f'<td class="n">{_seconds(r.get("duration_s"))}</td><td class="n">{_seconds(cpu)}</td>'
                    f'<td class="n">{_mb(res.get("peak_rss_bytes"))}</td><td class="n">{_e(res.get("pid") or "-")}</td>'
                    f'<td class="n">{_e(r.get("attempts", 0))}</td></tr>')
    return ('<details open><summary>Per task: run time (its attempts), waits for a worker, retry backoff, '
            'first start to last end, CPU, peak memory</summary><div class="scroll" style="max-height:480px">'
            '<table><tr><th>task</th><th>status</th><th>ran s</th><th>waited s</th><th>backoff s</th><th>span s</th>'
            '<th>CPU s</th><th>peak MB</th><th>pid</th>'
            f'<th>attempts</th></tr>{"".join(rows)}</table></div></details>')


def _short(bar: dict, span: float) -> bool:
    """Drawn wider than it ran (at MIN_BAR): under MIN_BAR pixels on the run's time axis."""
    return (bar["end"] - bar["start"]) * GANTT_WIDTH / max(span, 1e-6) < MIN_BAR


def _attempt_list(run: dict, span: float) -> str:
    """Every attempt the timeline cannot show at its true width, and every attempt of a
    retried task, with its error: what a retry healed is still news."""
    bars = _attempts(run)
    if not bars:
        return ""
    span = max(span, max(b["end"] for b in bars), 1e-6)
    retried = {b["task"] for b in bars if b["retried"]}
    shown = [b for b in bars if b["task"] in retried or b["error"] or _short(b, span)]
    if not shown:
        return ""
    rows = []
    for bar in shown[:500]:
        error = bar["error"]
        text = ""
        if error:
            detail = "\n".join(detail_lines(error))
            text = f'<span class="mono">{_e(headline(error))}</span>' + (f"<pre>{_e(detail)}</pre>" if detail else "")
        notes = [n for n, on in (("retried", bar["retried"]), (f"drawn {MIN_BAR}px wide", _short(bar, span))) if on]
        rows.append(f'<tr><td class="mono">{_e(bar["task"])}</td><td class="n">{_e(bar["attempt"])}</td>'
                    f'<td>{_badge(bar["status"])} {_e(", ".join(notes))}</td>'
                    f'<td class="n">{bar["start"]:.3f}</td><td class="n">{bar["end"] - bar["start"]:.3f}</td>'
                    f'<td class="n">{_seconds(bar["wait"])}</td><td>{text}</td></tr>')
    more = f'<p class="muted">... and {len(shown) - 500} more attempts</p>' if len(shown) > 500 else ""
    return ('<h3>Retries and short attempts</h3><p class="muted">Each attempt of a retried task, with its error, '
            f'and each attempt shorter than {MIN_BAR}px on the timeline.</p><div class="scroll" style="max-height:480px">'
            '<table class="attempts"><tr><th>task</th><th>attempt</th><th>status</th><th>started s</th><th>ran s</th>'
            f'<th>waited s</th><th>error</th></tr>{"".join(rows)}</table></div>{more}')


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
            f'{_provenance([run])}'
            f'<p>Critical path ({total:.2f}s of run time, the attempts\' time in a worker, waits and backoff left out): '
            f'<span class="mono">{_e(shown_path)}</span></p>'
            f'<h3>Timeline per worker process</h3>{_gantt(run, span, critical)}'
            f'{_attempt_list(run, span)}'
            f'<h3>Task graph</h3>{_graph(run, critical)}'
            f'{_failures(run)}<h3>Tasks</h3>{_task_table(run)}</section>')


#: What run.json says about a run's conditions, and how the page names it.
PROVENANCE = (("params", "params"), ("host", "host"), ("python", "python"), ("opflow_version", "opflow"),
              ("packages", "packages"))
#: What makes two runs unlike: compared, they would measure a difference of these, not of the
#: pool size (`workers`, which a comparison varies).
LIKE_KEYS = (("workflow", "workflow"), ("workflow_sha256", "workflow file (sha256)"), ("executor", "executor"),
             ("params", "params"), ("host", "host"), ("python", "python"), ("opflow_version", "opflow version"),
             ("packages", "package versions"), ("scheduler", "scheduler"))


def _shown(key: str, value) -> str:
    if value is None:
        return "not recorded"
    if key == "packages" and isinstance(value, dict):
        return ", ".join(f"{name} {version or '?'}" for name, version in sorted(value.items())) or "none"
    if key == "params" and isinstance(value, dict):
        return ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}"
                         for k, v in value.items()) or "none"
    if key == "workflow_sha256" and isinstance(value, str):
        return value[:12]
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _provenance(runs: list[dict]) -> str:
    """params, host, Python, opflow and package versions: one value where the runs agree."""
    cells = []
    for key, name in PROVENANCE:
        values = {json.dumps(r["doc"].get(key), sort_keys=True) for r in runs}
        text = (_e(_shown(key, runs[0]["doc"].get(key))) if len(values) == 1
                else '<b class="unlike">differs between runs</b> (see each run)')
        cells.append(f'<tr><th>{_e(name)}</th><td class="mono">{text}</td></tr>')
    return f'<table class="provenance">{"".join(cells)}</table>'


def _like(doc: dict) -> str:
    return json.dumps([doc.get(key) for key, _ in LIKE_KEYS], sort_keys=True, default=str)


def _groups(runs: list[dict]) -> list[list[int]]:
    """Indexes of like runs (all of LIKE_KEYS equal), groups in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for n, run in enumerate(runs):
        groups.setdefault(_like(run["doc"]), []).append(n)
    return list(groups.values())


def _comparison(runs: list[dict], span: float) -> str:
    if len(runs) < 2:
        return ""
    groups = _groups(runs)
    differ = [name for key, name in LIKE_KEYS
              if len({json.dumps(r["doc"].get(key), sort_keys=True, default=str) for r in runs}) > 1]
    parts = ['<h2>Runs compared</h2>']
    if len(groups) > 1:
        parts.append(f'<p class="unlike"><b>Unlike runs:</b> these runs differ in {_e(", ".join(differ))}, not only in '
                     f'their pool size. They are compared in {len(groups)} groups of like runs; no speedup is worked '
                     'out across groups.</p>')
    parts.append('<p class="muted">Speedup at a pool size is the median wall time of the group\'s runs at its '
                 'smallest size (1 worker, in a sweep) divided by the median at that size (each run\'s own: '
                 'that median divided by its wall time); efficiency is speedup per worker added. '
                 'The same figures as the console table of benchmarks/pool_sizes.py. One run per size is one '
                 'sample: rerun before concluding from small differences.</p>')
    longest = max([w for r in runs if isinstance(w := _wall(r), (int, float))] + [1e-9])
    for g, members in enumerate(groups):
        if len(groups) > 1:
            doc = runs[members[0]]["doc"]
            what = "; ".join(f"{name} {_shown(key, _only_differing(key, doc.get(key), runs))}"
                             for key, name in LIKE_KEYS if name in differ)
            parts.append(f'<h3 class="group">Group {g + 1} of {len(groups)}: {_e(what)}</h3>')
        parts.append(_group_tables([runs[n] for n in members], members, longest))
    parts.append('<h3>Timelines stacked (one time axis)</h3>' + _legend() + "".join(
        f'<p class="mono" style="margin:8px 0 2px">{_e(run["dir"].name)}: {_e(_workers(run["doc"].get("workers")))}</p>'
        + _gantt(run, span, set(critical_path(run)[0]), compact=True) for run in runs))
    return "".join(parts)


def _only_differing(key: str, value, runs: list[dict]):
    """Of a mapping (params, packages), the entries not every run has alike: what tells groups apart."""
    if not isinstance(value, dict):
        return value
    docs = [r["doc"].get(key) if isinstance(r["doc"].get(key), dict) else {} for r in runs]
    missing = object()
    return {k: v for k, v in value.items()
            if len({json.dumps(d.get(k, missing), sort_keys=True, default=str) for d in docs}) > 1} or value


def _group_tables(group: list[dict], indexes: list[int], longest: float) -> str:
    """Per pool size (pool_scaling's medians), then per run, for one group of like runs."""
    walls: dict[int, list[float]] = {}
    for run in group:
        wall = _wall(run)
        if isinstance(wall, (int, float)) and wall > 0:
            walls.setdefault(run["doc"].get("workers") or 1, []).append(float(wall))
    figures = pool_scaling(walls)
    sizes = "".join(f'<tr><td class="n">{f.workers}</td><td class="n">{f.runs}</td><td class="n">{f.median_s:.2f}</td>'
                    f'<td class="n">{f.min_s:.2f}–{f.max_s:.2f}</td><td class="n">{f.speedup:.2f}×</td>'
                    f'<td class="n">{f.efficiency:.0%}</td></tr>' for f in figures.values())
    out = ('<table class="sizes"><tr><th>workers</th><th>runs</th><th>wall s (median)</th><th>wall min–max</th>'
           f'<th>speedup</th><th>efficiency</th></tr>{sizes}</table>' if figures else "")
    base = next(iter(figures.values()), None)
    rows = []
    for n, run in zip(indexes, group):
        wall, workers = _wall(run), run["doc"].get("workers") or 1
        if base is not None and isinstance(wall, (int, float)) and wall > 0:
            speedup = base.median_s / wall
            efficiency = speedup / (workers / base.workers)
            bar = f'<svg width="{max(1, int(300 * wall / longest))}" height="10"><rect width="100%" height="10" fill="#4f7fbf"/></svg>'
            cells = f'<td class="n">{wall:.2f}</td><td class="n">{speedup:.2f}×</td><td class="n">{efficiency:.0%}</td><td>{bar}</td>'
        else:
            cells = '<td class="n">-</td><td class="n">-</td><td class="n">-</td><td></td>'
        rows.append(f'<tr><td><a href="#run{n}">{_e(run["dir"].name)}</a></td><td class="n">{_e(workers)}</td>'
                    f'<td>{_e(run["doc"].get("executor"))}</td><td>{_badge(run["doc"].get("status", "?"))}</td>{cells}</tr>')
    return (out + '<table class="runs"><tr><th>run</th><th>workers</th><th>executor</th><th>status</th><th>wall s</th>'
            f'<th>speedup</th><th>efficiency</th><th></th></tr>{"".join(rows)}</table>')


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
            f"{_provenance(runs)}{_comparison(runs, span)}{body}</body></html>\n")


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
