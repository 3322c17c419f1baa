"""Per-task overhead of the Dask backend: against plain Dask futures and the process pool.

    variants: raw      plain `client.submit(started_at)` futures, N of them, on a LocalCluster
                       made by opflow's own start_local_cluster (same workers, processes,
                       one thread each, same scheduler settings), results read with
                       `as_completed(..., with_results=True)`
              dask     opflow --executor dask (that LocalCluster, started by the backend)
              process  opflow --executor process
    workload: N independent no-op tasks (default 200), --workers 2
    measure:  wall (the whole run: for opflow api.run with parse, pool/cluster start and
              stop, run dir; for raw the cluster's start and stop too)
              span (first task start to last task end: the per-task cost, fixed costs
              left out; raw's first start is stamped by the worker, its end is when the
              client holds the last result)
              CPU over the span, of this process (coordinator, and with Dask the
              scheduler, client and nannies) and of its child processes (workers):
              less moved by other load on the machine than the span

Each repetition runs every variant, rotating which goes first; the table shows
medians, and per-task overhead = span / N. The ratios dask/raw and dask/process are
over span medians measured in this one run. Needs the dask extra
(pip install 'opflow-runner[dask]').

    python benchmarks/dask_overhead.py [--tasks 200] [--reps 5] [--workers 2] [--out DIR] [--quick]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402


def write_workflow(folder: Path, tasks: int) -> Path:
    (folder / "benchnoop.py").write_text("def noop():\n    return None\n", encoding="utf-8")
    lines = ["name: dask overhead", "tasks:"]
    for i in range(tasks):
        lines.append("  - " + json.dumps({"id": f"t{i}", "plugin": "python", "config": {"function": "benchnoop:noop"}}))
    path = folder / "noop.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds so far of this process and of its living descendants (workers end after the span)."""
    import psutil

    me = psutil.Process()
    own = sum(me.cpu_times()[:2])
    children = 0.0
    for child in me.children(recursive=True):
        try:
            children += sum(child.cpu_times()[:2])
        except psutil.Error:  # ended meanwhile
            pass
    return own, children


def run_once(path: Path, executor: str, workers: int, log_dir: Path, tasks: int) -> dict:
    from opflow import api

    class Span(type(_bench.span_reporter())):
        """The span, and CPU taken at its two ends (after the first start, at the last end)."""

        ended = 0
        cpu_first = cpu_last = (0.0, 0.0)

        def handle(self, event):
            first = self.first
            super().handle(event)
            if first is None and self.first is not None:
                self.cpu_first = cpu_seconds()
            elif event["event"] == "task_finished":
                self.ended += 1
                if self.ended == tasks:
                    self.cpu_last = cpu_seconds()

    span = Span()
    started = time.perf_counter()
    result = api.run(path, workers=workers, executor=executor, log_dir=log_dir, reporters=[span])
    wall = time.perf_counter() - started
    if result.exit_code != 0:
        raise SystemExit(f"{executor}: exit code {result.exit_code}; see {result.run_dir}")
    shutil.rmtree(result.run_dir, ignore_errors=True)
    return {"wall": wall, "span": span.last - span.first,
            "cpu_own": span.cpu_last[0] - span.cpu_first[0], "cpu_children": span.cpu_last[1] - span.cpu_first[1]}


def raw_once(tasks: int, workers: int) -> dict:
    """N plain futures on the LocalCluster opflow would start: the floor opflow's dask backend stands on."""
    from distributed import Client, as_completed

    from opflow.backends.dask.cluster import start_local_cluster

    started = time.perf_counter()
    cluster = start_local_cluster(workers)
    try:
        with Client(cluster, set_as_default=False) as client:
            cpu_first = cpu_seconds()  # before the first submit: raw's CPU includes its submitting
            futures = [client.submit(_bench.started_at, i, pure=False) for i in range(tasks)]
            first = min(stamp for _, stamp in as_completed(futures, with_results=True, loop=client.loop))
            last = time.time()
            cpu_last = cpu_seconds()
    finally:
        cluster.close()
    return {"wall": time.perf_counter() - started, "span": last - first,
            "cpu_own": cpu_last[0] - cpu_first[0], "cpu_children": cpu_last[1] - cpu_first[1]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out",
                        help="folder for the CSV (default: %(default)s)")
    parser.add_argument("--log-dir", type=Path, default=None, help="opflow's log dir (default: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="10 tasks, 1 repetition: checks the script, measures nothing")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.reps = 10, 1
    from opflow.backends.dask import check_available

    check_available()
    variants = ("raw", "dask", "process")
    samples: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="opflow-dask-bench-") as scratch:
        folder = Path(scratch)
        log_dir = args.log_dir or folder / "logs"
        path = write_workflow(folder, args.tasks)
        run_once(path, "process", args.workers, log_dir, args.tasks)  # warm-up: imports, forkserver
        measure = {"raw": lambda: raw_once(args.tasks, args.workers),
                   "dask": lambda: run_once(path, "dask", args.workers, log_dir, args.tasks),
                   "process": lambda: run_once(path, "process", args.workers, log_dir, args.tasks)}
        for rep in range(args.reps):
            order = variants[rep % len(variants):] + variants[:rep % len(variants)]
            for variant in order:
                samples[variant].append(measure[variant]())
            print(f"rep {rep + 1}/{args.reps}: " + ", ".join(
                f"{v} wall {samples[v][-1]['wall']:.2f}s span {samples[v][-1]['span']:.3f}s" for v in variants),
                file=sys.stderr, flush=True)
    keys = ("wall", "span", "cpu_own", "cpu_children")
    med = {v: {k: statistics.median(s[k] for s in samples[v]) for k in keys} for v in variants}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}, "
          f"load average {load:.2f} at the end")
    print(f"{args.tasks} no-op tasks, --workers {args.workers}, medians of {args.reps} alternating reps\n")
    print("| variant | wall s | span s | per task (span) | CPU per task: this process | CPU per task: workers |")
    print("| --- | --- | --- | --- | --- | --- |")
    per_task = {v: {k: med[v][k] / args.tasks * 1e3 for k in keys} for v in variants}
    for v in variants:
        print(f"| {v} | {med[v]['wall']:.3f} | {med[v]['span']:.3f} | {per_task[v]['span']:.2f} ms "
              f"| {per_task[v]['cpu_own']:.2f} ms | {per_task[v]['cpu_children']:.2f} ms |")
    cpu = {v: med[v]["cpu_own"] + med[v]["cpu_children"] for v in variants}
    print(f"\nratio dask/raw: span {med['dask']['span'] / med['raw']['span']:.2f}x (goal <= 1.5x), "
          f"CPU {cpu['dask'] / cpu['raw']:.2f}x; "
          f"dask/process: span {med['dask']['span'] / med['process']['span']:.2f}x, "
          f"wall {med['dask']['wall'] / med['process']['wall']:.2f}x")
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "dask_overhead.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["variant", "tasks", "workers", "reps", "wall_s_median", "span_s_median", "per_task_ms",
                         "cpu_own_per_task_ms", "cpu_workers_per_task_ms"])
        for v in variants:
            writer.writerow([v, args.tasks, args.workers, args.reps, round(med[v]["wall"], 4),
                             round(med[v]["span"], 4), round(per_task[v]["span"], 3),
                             round(per_task[v]["cpu_own"], 3), round(per_task[v]["cpu_children"], 3)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
