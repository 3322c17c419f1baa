"""`opflow bench` and `opflow plan --predict`: a workflow's wall time at several pool sizes,
measured and predicted.

    bench:   for each repetition, each size (the order alternating, so drift hits every
             size alike): `opflow run FILE --workers N --no-cache`, the same work every time
             (no cache; never a resume); then the medians, spread, speedup and efficiency
             (rundir/scaling.py's rule, as `opflow report` has it) beside the prediction
             made from the bench's first run (workflow/predict.py, as `plan --predict`).
    predict: the latest run's task times (rundir/history.py `run_times`) -> predict.py.
"""
from __future__ import annotations

__all__ = ["prediction_document", "prediction_lines", "run_bench", "bench_lines", "machine_line"]

import os
import platform
from pathlib import Path
from typing import Callable

from opflow._version import __version__
from opflow.machine import cpus_available
from opflow.rundir.history import RunTimes, run_times
from opflow.rundir.scaling import pool_scaling
from opflow.words import plural
from opflow.workflow.predict import demand_of, predict


def prediction_document(workflow, times: RunTimes, sizes: list[int]) -> dict:
    """What `plan --predict --json` prints: each size's predicted wall time and bounds, and what they rest on."""
    demand, limits = demand_of(workflow)
    depends_on = {t.id: t.depends_on for t in workflow.tasks}
    cpus, _ = cpus_available()  # more slots than CPUs: CPU-bound tasks share them (predict.py)
    figures = predict(depends_on, times.seconds, sizes, times.overhead_s, demand, limits, cpus, times.cpu_share)
    return {
        "workflow": workflow.name,
        "from_run": str(times.run_dir),
        "measured": {"workers": times.workers, "wall_s": times.wall_s},
        "overhead_s": round(times.overhead_s, 6),
        "work_s": round(sum(times.seconds.get(t, 0.0) for t in depends_on), 6),
        "unmeasured": times.unmeasured,
        "cpus": cpus,
        "sizes": [{"workers": f.workers, "predicted_s": round(f.wall_s, 6), "critical_path_s": round(f.critical_path_s, 6),
                   "work_bound_s": round(f.work_bound_s, 6)} for f in figures],
    }


def prediction_lines(document: dict) -> list[str]:
    measured = document["measured"]
    at = (f" at {plural(measured['workers'], 'worker')}" if measured["workers"] else "") + (
        f": {measured['wall_s']:.2f}s" if measured["wall_s"] is not None else "")
    lines = [f"workflow '{document['workflow']}': predicted from {document['from_run']}{at}; "
             f"{document['work_s']:.2f}s of task time in all",
             _table(["workers", "predicted", "critical-path bound", "work / N bound"],
                    [[s["workers"], f"{s['predicted_s']:.2f}s", f"{s['critical_path_s']:.2f}s", f"{s['work_bound_s']:.2f}s"]
                     for s in document["sizes"]]),
             f"each figure adds the {document['overhead_s']:.2f}s that run spent outside its tasks "
             "(starting the pool, writing the records)"]
    if measured["workers"] and measured["workers"] > document["cpus"]:
        lines.append(f"that run had more workers than the {plural(document['cpus'], 'CPU')} this process may use: "
                     "its CPU-bound tasks waited for a CPU, so their times are long; predict from a run at "
                     f"{document['cpus']} workers or fewer")
    if document["unmeasured"]:
        lines.append(f"{plural(len(document['unmeasured']), 'task')} took no time in that run (reused, or never "
                     f"started), counted as 0s: {', '.join(document['unmeasured'][:10])}"
                     + (", ..." if len(document["unmeasured"]) > 10 else ""))
    return lines


def _table(headers: list[str], rows: list[list]) -> str:
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def machine_info() -> dict:
    """The CPUs (all, and those this process may use) and the load average, now."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {"cpus": os.cpu_count(), "usable_cpus": usable, "load_average": load, "python": platform.python_version(),
            "opflow": __version__, "platform": platform.platform()}


def machine_line(info: dict, after: dict | None = None) -> str:
    load = " ".join(f"{x:.2f}" for x in info["load_average"]) if info["load_average"] else "unknown"
    then = f" (after: {' '.join(f'{x:.2f}' for x in after['load_average'])})" if after and after["load_average"] else ""
    return (f"machine: {info['cpus']} CPUs, {info['usable_cpus']} usable by this process; load average {load}{then}; "
            f"python {info['python']}, opflow {info['opflow']}, {info['platform']}")


def run_bench(path: Path, sizes: list[int], reps: int, *, params: dict | None, log_dir: Path,
              say: Callable[[str], None]) -> dict:
    """Run the workflow `reps` times at each size; the document `bench --json` prints."""
    from opflow.api import run
    from opflow.workflow.loading import load

    workflow, _ = load(path, params)
    before = machine_info()
    walls: dict[int, list[float]] = {n: [] for n in sizes}
    runs: list[dict] = []
    for rep in range(reps):
        for n in (sizes if rep % 2 == 0 else list(reversed(sizes))):
            result = run(path, workers=n, log_dir=log_dir, params=params, cache=False)
            reused = sorted(t for t, record in result.records.items() if record.get("reused"))
            runs.append({"workers": n, "rep": rep + 1, "run_dir": str(result.run_dir), "status": result.status,
                         "wall_s": result.duration_s, "reused": reused})
            say(f"{plural(n, 'worker')}, rep {rep + 1}/{reps}: {result.status}, {result.duration_s or 0:.2f}s"
                f" ({result.run_dir})")
            if result.status == "interrupted":
                return {"interrupted": True, "exit_code": result.exit_code, "runs": runs}
            if result.duration_s is not None:
                walls[n].append(float(result.duration_s))
    figures = pool_scaling(walls)
    first = Path(runs[0]["run_dir"])
    prediction = prediction_document(workflow, run_times(first, [t.id for t in workflow.tasks]), sizes)
    predicted = {s["workers"]: s["predicted_s"] for s in prediction["sizes"]}
    rows = []
    for n in sizes:
        f = figures.get(n)
        if f is None:
            continue
        rows.append({"workers": n, "runs": f.runs, "median_s": round(f.median_s, 6), "min_s": round(f.min_s, 6),
                     "max_s": round(f.max_s, 6), "speedup": round(f.speedup, 4), "efficiency": round(f.efficiency, 4),
                     "predicted_s": predicted[n], "error": round((predicted[n] - f.median_s) / f.median_s, 4)
                     if f.median_s > 0 else None})
    return {"workflow": workflow.name, "file": str(path), "reps": reps, "machine": before, "machine_after": machine_info(),
            "sizes": rows, "prediction": prediction, "verdict": verdict(walls, sizes), "runs": runs,
            "failed_runs": [r["run_dir"] for r in runs if r["status"] != "succeeded"]}


def verdict(walls: dict[int, list[float]], sizes: list[int]) -> str:
    """A size is worth recommending only if it beats every smaller size beyond the noise:
    its slowest run faster than the other's fastest."""
    if any(len(walls[n]) < 2 for n in sizes):
        return "No recommendation: one run per size cannot tell a difference from noise (use --reps 3 or more)."
    best = sizes[0]
    for n in sizes[1:]:
        if max(walls[n]) < min(walls[best]):
            best = n
    if best == sizes[0] and len(sizes) > 1:
        return (f"No recommendation: no larger pool was faster than {plural(sizes[0], 'worker')} beyond the run-to-run "
                "spread; `opflow report` of the runs shows where the pool sat idle.")
    return (f"{plural(best, 'worker')} was faster than every smaller pool in every repetition (slowest run at {best} < "
            "fastest at the smaller sizes); check the report before relying on it.")


def bench_lines(document: dict) -> list[str]:
    rows = document["sizes"]
    lines = [machine_line(document["machine"], document["machine_after"]),
             f"workflow '{document['workflow']}' ({document['file']}): {plural(document['reps'], 'repetition')} "
             "at each size, alternating; every task ran each time (--no-cache)",
             _table(["workers", "runs", "median", "min–max", "speedup", "efficiency", "predicted", "error"],
                    [[r["workers"], r["runs"], f"{r['median_s']:.2f}s", f"{r['min_s']:.2f}–{r['max_s']:.2f}s",
                      f"{r['speedup']:.2f}", f"{r['efficiency']:.2f}", f"{r['predicted_s']:.2f}s",
                      f"{r['error']:+.1%}" if r["error"] is not None else "-"] for r in rows]),
             f"speedup = median at {rows[0]['workers'] if rows else 1} / median at N; predicted as `opflow plan "
             f"--predict` would from the first run ({document['prediction']['from_run']})",
             document["verdict"]]
    if document["failed_runs"]:
        lines.append(f"note: {plural(len(document['failed_runs']), 'run')} did not succeed: "
                     + ", ".join(document["failed_runs"]))
    return lines
