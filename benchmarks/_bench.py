"""What the benchmark scripts share: options, the raw-pool baseline, timing, tables.

    script ─▶ base_parser() ─▶ out dir (benchmarks/out/ by default, git-ignored)
           ─▶ alternate({name: fn}) ─ rep 1: a b c, rep 2: b c a, ... ─▶ {name: [seconds]}
           ─▶ markdown_table() on stdout, write_csv() under the out dir

The raw baseline (BENCHMARKS.md): a ProcessPoolExecutor of the same size and start
method, driven by `run_ready_queue`: each future's done-callback feeds a queue, and
the loop submits a task the moment its last dependency finishes (never `wait()`
over all pending futures, which is quadratic).

This module is imported by the pool's workers too (the scripts' folder is on
sys.path when the forkserver starts), so the task functions live here, at module
level, and it imports nothing heavy at the top.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import multiprocessing
import os
import platform
import queue
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_OUT = HERE / "out"


# -- options and output --------------------------------------------------------
def base_parser(description: str, reps: int = 5) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="folder for CSV/PNG output, generated inputs and run logs (default: %(default)s)")
    parser.add_argument("--log-dir", type=Path, default=None, help="opflow's log dir (default: OUT/logs)")
    parser.add_argument("--reps", type=int, default=reps, help="repetitions per variant, alternating (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 repetition: checks the script, measures nothing")
    parser.add_argument("--keep-logs", action="store_true", help="keep each opflow run directory (default: removed after timing)")
    return parser


def prepare(args) -> Path:
    """Create the out dir and log dir; return a scratch folder for generated inputs."""
    args.out = args.out.resolve()
    args.log_dir = (args.log_dir or args.out / "logs").resolve()
    args.log_dir.mkdir(parents=True, exist_ok=True)
    work = args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.reps = 1
    return work


def say(message: str) -> None:
    """Progress to stderr (stdout holds the tables); fine without a TTY (cron)."""
    print(message, file=sys.stderr, flush=True)


def markdown_table(headers: list[str], rows: list[list]) -> str:
    def cell(value):
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(path: Path, headers: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(headers)
        writer.writerows(rows)


def machine_info() -> dict:
    model = "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:  # not Linux: the model stays unknown
        pass
    from opflow.backends.mp_context import start_method

    return {
        "date": datetime.date.today().isoformat(),
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "start_method": start_method(),
        "platform": platform.platform(),
    }


def print_machine() -> None:
    info = machine_info()
    print(f"Machine: {info['cores']} cores, {info['cpu']}, Python {info['python']}, "
          f"start method {info['start_method']}, {info['platform']}, {info['date']}")


# -- statistics ----------------------------------------------------------------
def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    return f"{min(values):.3f}–{max(values):.3f}"


def alternate(reps: int, variants: dict[str, Callable[[], dict]]) -> dict[str, list[dict]]:
    """Run every variant `reps` times, interleaved, rotating which goes first.

    Each variant returns a dict of measurements (at least "wall"); the result maps
    the variant name to its list of dicts.
    """
    names = list(variants)
    results: dict[str, list[dict]] = {name: [] for name in names}
    for rep in range(reps):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for name in order:
            results[name].append(variants[name]())
        say(f"  rep {rep + 1}/{reps}: " + ", ".join(f"{n} {results[n][-1]['wall']:.3f}s" for n in names))
    return results


def med(samples: list[dict], key: str = "wall") -> float:
    return median([s[key] for s in samples])


# -- the raw baseline ----------------------------------------------------------
_context = None


def mp_context():
    """opflow's start method; with forkserver, the server started now with the same preload.

    One forkserver serves the whole interpreter, so starting it here, before any
    timing, means neither opflow nor the raw pool pays for it inside a measurement.
    """
    global _context
    if _context is None:
        from opflow.backends.mp_context import start_method

        method = start_method()
        ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(["opflow.backends.process", "_bench"])
            from multiprocessing import forkserver

            forkserver.ensure_running()
        _context = ctx
    return _context


def run_ready_queue(pool, deps: dict[str, list[str]], make_call: Callable) -> dict:
    """Run a DAG on `pool`: submit each task when its last dependency is done.

    `make_call(task_id, upstream_results)` returns `(fn, args)`. Returns
    task_id -> result. A failing task raises here: the baseline has no failures.
    """
    children: dict[str, list[str]] = {t: [] for t in deps}
    waiting = {t: len(d) for t, d in deps.items()}
    for task_id, upstream in deps.items():
        for dep in upstream:
            children[dep].append(task_id)
    done: queue.SimpleQueue = queue.SimpleQueue()
    results: dict = {}

    def submit(task_id: str) -> None:
        fn, args = make_call(task_id, [results[d] for d in deps[task_id]])
        pool.submit(fn, *args).add_done_callback(lambda f, t=task_id: done.put((t, f)))

    for task_id, count in waiting.items():
        if count == 0:
            submit(task_id)
    for _ in range(len(deps)):
        task_id, future = done.get()
        results[task_id] = future.result()
        for child in children[task_id]:
            waiting[child] -= 1
            if waiting[child] == 0:
                submit(child)
    return results


# -- opflow, measured the same way ----------------------------------------------
def span_reporter():
    """A reporter that notes the first task's start and the last task's end."""
    from opflow.events import Reporter

    class Span(Reporter):
        first = last = None

        def handle(self, event):
            if event["event"] == "task_started" and self.first is None:
                self.first = time.perf_counter()
            elif event["event"] == "task_finished":
                self.last = time.perf_counter()

    return Span()


def run_opflow(path: Path, args, *, workers: int, executor: str = "process") -> dict:
    """One opflow run through the Python API: wall, and span (first task start to last task end)."""
    from opflow import api

    span = span_reporter()
    started = time.perf_counter()
    result = api.run(path, workers=workers, executor=executor, log_dir=args.log_dir, reporters=[span])
    wall = time.perf_counter() - started
    if result.exit_code != 0:
        raise SystemExit(f"opflow run of {path} ended with exit code {result.exit_code}; see {result.run_dir}")
    if not args.keep_logs:
        shutil.rmtree(result.run_dir, ignore_errors=True)
    return {"wall": wall, "span": (span.last - span.first) if span.first else wall, "run_dir": result.run_dir}


def write_tasks_yaml(path: Path, name: str, tasks: list[dict]) -> Path:
    """A workflow file, one flow-style task a line (fast to write, readable)."""
    import json

    lines = [f"name: {name}", "tasks:"]
    for task in tasks:
        lines.append("  - " + json.dumps(task, separators=(", ", ": ")))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- task functions, run by the raw pools (and by opflow's python plugin) -------
def noop(*_upstream):
    return None


def started_at(*_args) -> float:
    """A no-op that says when it ran (the Dask baseline's span starts at the first)."""
    return time.time()


_cpu_heavy = None


def cpu_heavy():
    """workers/cpu_heavy.py, loaded by path: the same functions opflow's plugins call."""
    global _cpu_heavy
    if _cpu_heavy is None:
        import importlib.util

        spec = importlib.util.spec_from_file_location("_bench_cpu_heavy", REPO / "workers" / "cpu_heavy.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _cpu_heavy = module
    return _cpu_heavy


def spin(iterations: int) -> dict:
    return {"iterations": iterations, "checksum": cpu_heavy().spin(iterations)}


def read_csv(path: str):
    import pandas as pd

    return pd.read_csv(path)


STATS = ("count", "mean", "std", "min", "25%", "50%", "75%", "max")


def describe(frame, column: str) -> dict:
    described = frame[column].describe()
    return {column: {stat: float(described[stat]) for stat in STATS}}


def join(*parts: dict) -> dict:
    joined: dict = {}
    for part in parts:
        joined.update(part)
    return joined


def write_numeric_csv(path: Path, rows: int, columns: list[str], seed: int = 7) -> Path:
    """A CSV of random floats (6 decimals); reused when it already has the size asked for."""
    marker = path.with_suffix(".size")
    wanted = f"{rows}x{','.join(columns)}"
    if path.exists() and marker.exists() and marker.read_text() == wanted:
        return path
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({c: rng.normal(100.0, 15.0, rows).round(6) for c in columns})
    frame.to_csv(path, index=False)
    marker.write_text(wanted)
    return path
