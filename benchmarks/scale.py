"""Scale: plan and run 10,000 and 100,000 no-op tasks (inline and process backends).

Each (size, backend) runs in a fresh child interpreter, so its peak RSS is its own:

    parse   api.load: YAML -> checked Workflow (plugin discovery included)
    plan    build_plan: the networkx graph and its layers, as run_started computes them
    run     api.run: parse again, run dir, coordinator, audit trail, pool start/stop
    coord   run - parse: what the coordinator and its audit trail cost
    span    first task start to last task end

Goal: per-task cost at 100k within 1.2x of that at 10k (the coordinator stays linear).

    python benchmarks/scale.py [--sizes 10000,100000] [--executors process] [--reps 1]

The defaults (process backend only) take about 3 minutes on a 2-core machine;
RESULTS.md also shows --executors inline,process.
"""
from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402

GOAL = 1.2


def write_workflow(work: Path, size: int, shape: str) -> Path:
    path = work / f"scale_{shape}_{size}.yaml"
    if path.exists():
        return path
    (work / "benchnoop.py").write_text("def noop():\n    return None\n", encoding="utf-8")
    base = {"plugin": "python", "config": {"function": "benchnoop:noop"}}
    tasks = []
    for i in range(size):
        task = {"id": f"t{i}", **base}
        if shape == "chains" and i >= 100:  # 100 chains, interleaved
            task["depends_on"] = [f"t{i - 100}"]
        tasks.append(task)
    return _bench.write_tasks_yaml(path, f"bench scale {size}", tasks)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(path: Path, executor: str, workers: int, log_dir: Path, keep_logs: bool) -> dict:
    """Runs in the child interpreter: measure one (size, backend) and return the figures."""
    from opflow import api
    from opflow.workflow.plan import build_plan

    rss_start = peak_rss_mb()
    started = time.perf_counter()
    workflow, _ = api.load(path)
    parse = time.perf_counter() - started
    started = time.perf_counter()
    plan = build_plan(workflow)
    plan.layers  # noqa: B018 - computed at run start too: part of planning
    plan_s = time.perf_counter() - started
    rss_planned = peak_rss_mb()
    del plan, workflow

    class Args:
        pass

    args = Args()
    args.log_dir, args.keep_logs = log_dir, keep_logs
    measured = _bench.run_opflow(path, args, workers=workers, executor=executor)
    return {"parse": parse, "plan": plan_s, "run": measured["wall"], "span": measured["span"],
            "rss_start_mb": rss_start, "rss_planned_mb": rss_planned, "rss_peak_mb": peak_rss_mb()}


def measure(path: Path, executor: str, args) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(path), "--child-executor", executor,
               "--workers", str(args.workers), "--log-dir", str(args.log_dir), "--out", str(args.out)]
    if args.keep_logs:
        command.append("--keep-logs")
    proc = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        raise SystemExit(f"scale child failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = _bench.base_parser(__doc__.splitlines()[0], reps=1)
    parser.add_argument("--sizes", default=None, help="comma-separated task counts (default: 10000,100000; --quick: 50,500)")
    parser.add_argument("--executors", default="process",
                        help="backends, e.g. inline,process (default: %(default)s; both take about 8 minutes here)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shape", choices=("independent", "chains"), default="independent",
                        help="independent tasks, or 100 interleaved chains (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per child run")
    parser.add_argument("--child", type=Path, help=argparse_hidden())
    parser.add_argument("--child-executor", help=argparse_hidden())
    args = parser.parse_args(argv)
    if args.child:
        figures = child(args.child, args.child_executor, args.workers, args.log_dir, args.keep_logs)
        print(json.dumps(figures))
        return 0
    if args.sizes is None:
        args.sizes = "50,500" if args.quick else "10000,100000"
    work = _bench.prepare(args)
    sizes = [int(s) for s in args.sizes.split(",")]
    executors = args.executors.split(",")
    paths = {n: write_workflow(work, n, args.shape) for n in sizes}
    samples: dict = {}
    for rep in range(args.reps):
        for executor in executors:
            for n in sizes:
                _bench.say(f"scale: {n} tasks, {executor}, rep {rep + 1}/{args.reps}")
                samples.setdefault((executor, n), []).append(measure(paths[n], executor, args))
    headers = ["executor", "tasks", "parse s", "plan s", "run s", "coord s", "coord µs/task", "span µs/task",
               "peak RSS MB (planned)", "peak RSS MB (run)", "KB/task over start"]
    rows, per_task = [], {}
    for (executor, n), runs in samples.items():
        fig = {k: _bench.median([r[k] for r in runs]) for k in runs[0]}
        coord = fig["run"] - fig["parse"]
        per_task[(executor, n)] = coord / n
        rows.append([executor, n, fig["parse"], fig["plan"], fig["run"], coord, int(coord / n * 1e6),
                     int(fig["span"] / n * 1e6), round(fig["rss_planned_mb"], 1), round(fig["rss_peak_mb"], 1),
                     round((fig["rss_peak_mb"] - fig["rss_start_mb"]) * 1024 / n, 2)])
    _bench.print_machine()
    print(f"Scale: {args.shape} no-op python tasks, {args.workers} workers, medians of {args.reps} rep(s), "
          "one fresh interpreter per cell\n")
    print(_bench.markdown_table(headers, rows))
    print()
    small, large = min(sizes), max(sizes)
    for executor in executors:
        if small == large:
            break
        ratio = per_task[(executor, large)] / per_task[(executor, small)]
        print(f"- {executor}: coordinator time per task {large}/{small} = {ratio:.2f}x; goal within {GOAL}x: "
              f"{'met' if ratio <= GOAL else 'NOT met'}")
    _bench.write_csv(args.out / "scale.csv", headers, rows)
    if not args.keep_logs:
        for run_dir in args.log_dir.glob("*-bench-scale-*"):
            shutil.rmtree(run_dir, ignore_errors=True)
    return 0


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
