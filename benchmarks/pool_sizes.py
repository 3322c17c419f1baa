"""Pool size sweep: CPU-bound workflows at --workers 1, 2, 4, ... up to twice the CPU count.

    cpu      N independent `spin` tasks (workers/cpu_heavy.py, pure Python)
    metrics  one `csv_ingest` of a generated CSV, then one `metrics` task per column

Each workload runs through opflow and through a raw ProcessPoolExecutor doing the
same work (same start method, the ready queue of _bench.py), alternating, at every
pool size. Speedup is wall(1 worker) / wall(N workers) of the same system;
efficiency is speedup / N. The goal (BENCHMARKS.md): opflow's speedup at each size
>= the raw pool's minus 3% (and ideally >= 1.9 from 1 to 2 workers).

Prints a markdown table, writes OUT/pool_sizes.csv, and OUT/pool_sizes.png when
matplotlib is installed (`pip install -e .[bench]`). Needs no TTY (cron-safe).

    python benchmarks/pool_sizes.py [--reps 5] [--tasks 8] [--iterations 8000000] [--rows 400000]

With `--workflow FILE` it runs `opflow bench FILE` (installed with the package: see
docs/performance.md), which times YOUR workflow at each pool size, every task really
running each time, beside `opflow plan --predict`'s figures, and writes `opflow report`
of those runs to OUT/pool_sizes_report.html.

    python benchmarks/pool_sizes.py --workflow my_workflow.yaml --sizes 1,2,4 --reps 3
"""
from __future__ import annotations

import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402
from opflow.words import plural  # noqa: E402

from opflow.rundir.scaling import pool_scaling  # noqa: E402  (the rule `opflow report` uses)


def pool_sizes(cpus: int) -> list[int]:
    sizes, n = [], 1
    while n <= 2 * cpus:
        sizes.append(n)
        n *= 2
    if sizes[-1] != 2 * cpus:
        sizes.append(2 * cpus)
    return sizes


def cpu_workload(args, work: Path) -> dict:
    folder = work / "pool_cpu"
    (folder / "workers").mkdir(parents=True, exist_ok=True)
    shutil.copy(_bench.REPO / "workers" / "cpu_heavy.py", folder / "workers" / "cpu_heavy.py")
    ids = [f"spin_{i}" for i in range(args.tasks)]
    path = _bench.write_tasks_yaml(folder / "cpu.yaml", "bench pool cpu", [
        {"id": t, "plugin": "spin", "config": {"iterations": args.iterations}} for t in ids])
    return {"name": "cpu", "yaml": path, "deps": {t: [] for t in ids},
            "call": lambda task_id, upstream: (_bench.spin, (args.iterations,))}


def metrics_workload(args, work: Path) -> dict:
    folder = work / "pool_metrics"
    folder.mkdir(parents=True, exist_ok=True)
    columns = [f"c{i}" for i in range(args.columns)]
    csv_path = _bench.write_numeric_csv(folder / "data.csv", args.rows, columns)
    tasks = [{"id": "ingest", "plugin": "csv_ingest", "config": {"path": "data.csv"}}]
    tasks += [{"id": f"m_{c}", "plugin": "metrics", "config": {"numeric_columns": [c], "source": "ingest"},
               "depends_on": ["ingest"]} for c in columns]
    deps = {"ingest": [], **{f"m_{c}": ["ingest"] for c in columns}}

    def call(task_id, upstream):
        if task_id == "ingest":
            return _bench.read_csv, (str(csv_path),)
        return _bench.describe, (upstream[0], task_id[2:])

    return {"name": "metrics", "yaml": _bench.write_tasks_yaml(folder / "metrics.yaml", "bench pool metrics", tasks),
            "deps": deps, "call": call}


def raw_run(load: dict, workers: int) -> dict:
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=_bench.mp_context()) as pool:
        _bench.run_ready_queue(pool, load["deps"], load["call"])
    return {"wall": time.perf_counter() - started}


def recommend(rows_by: dict, sizes: list[int]) -> str:
    """The smallest pool within 3% of opflow's best median wall on the CPU workload."""
    walls = {n: rows_by[("cpu", "opflow", n)]["wall"] for n in sizes if ("cpu", "opflow", n) in rows_by}
    if not walls:
        return "no recommendation: the cpu workload was not run"
    best = min(walls.values())
    pick = min(n for n, w in walls.items() if w <= best * 1.03)
    speedup = walls[sizes[0]] / walls[pick]
    beyond = [n for n in sizes if n > pick]
    why = (f"larger pools ({', '.join(map(str, beyond))}) are no faster (within 3% or slower), "
           "and each extra worker costs memory and start-up time" if beyond else "it was the fastest measured")
    return (f"Recommended pool size for this machine: --workers {pick} (speedup {speedup:.2f}x over 1 worker); "
            f"{why}.")


def draw_chart(path: Path, sizes: list[int], rows_by: dict) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")  # no display under cron
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(sizes, sizes, ":", color="grey", label="ideal")
    for workload in ("cpu", "metrics"):
        for system, style in (("opflow", "-o"), ("raw", "--s")):
            points = [(n, rows_by[(workload, system, n)]["speedup"]) for n in sizes if (workload, system, n) in rows_by]
            if points:
                ax.plot(*zip(*points), style, label=f"{workload} {system}")
    ax.set_xlabel("workers")
    ax.set_ylabel("speedup over 1 worker")
    ax.set_xticks(sizes)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def sweep_user_workflow(args) -> int:
    """`--workflow FILE`: `opflow bench` (opflow/cli/bench.py, installed with the package) does the job."""
    import subprocess

    log_dir = args.log_dir or (args.out / "logs")
    command = [sys.executable, "-m", "opflow", "bench", args.workflow, "--reps", str(args.reps),
               "--log-dir", str(log_dir), "-o", str(args.out / "pool_sizes_report.html")]
    if args.sizes:
        command += ["--sizes", args.sizes]
    return subprocess.run(command).returncode


def main(argv=None) -> int:
    parser = _bench.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--workflow", default=None, metavar="FILE", help="time this workflow file instead of the built-in workloads")
    parser.add_argument("--sizes", default=None, help="with --workflow: comma-separated pool sizes (default: 1, 2, 4, ... up to the CPU count)")
    parser.add_argument("--tasks", type=int, default=8, help="spin tasks in the cpu workload (default: %(default)s)")
    parser.add_argument("--iterations", type=int, default=8_000_000, help="spin steps per task (default: %(default)s)")
    parser.add_argument("--rows", type=int, default=400_000, help="CSV rows of the metrics workload (default: %(default)s)")
    parser.add_argument("--columns", type=int, default=4, help="CSV columns = metrics tasks (default: %(default)s)")
    parser.add_argument("--max-workers", type=int, default=0, help="largest pool (default: twice the CPU count)")
    parser.add_argument("--only", default="cpu,metrics", help="comma-separated workloads (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.workflow:
        _bench.prepare(args)
        if args.quick:
            args.reps = max(1, min(args.reps, 1))
        return sweep_user_workflow(args)
    if args.quick:
        args.tasks, args.iterations, args.rows, args.columns = 4, 20_000, 2_000, 2
    work = _bench.prepare(args)
    _bench.mp_context()
    cpus = _bench.machine_info()["cores"] or 1
    sizes = pool_sizes(args.max_workers // 2 if args.max_workers else cpus)
    if args.quick:
        sizes = sizes[:2]
    builders = {"cpu": cpu_workload, "metrics": metrics_workload}
    loads = [builders[name](args, work) for name in args.only.split(",")]

    rows_by: dict = {}
    for load in loads:
        for n in sizes:
            _bench.say(f"{load['name']}, {plural(n, 'worker')}")
            results = _bench.alternate(args.reps, {
                "opflow": lambda load=load, n=n: _bench.run_opflow(load["yaml"], args, workers=n),
                "raw": lambda load=load, n=n: raw_run(load, n),
            })
            for system, samples in results.items():
                walls = [s["wall"] for s in samples]
                rows_by[(load["name"], system, n)] = {"wall": _bench.median(walls), "best": min(walls),
                                                      "spread": _bench.spread(walls), "walls": walls}
        for system in ("opflow", "raw"):
            base = rows_by[(load["name"], system, sizes[0])]
            figures = pool_scaling({n: rows_by[(load["name"], system, n)]["walls"] for n in sizes})
            for n in sizes:
                row = rows_by[(load["name"], system, n)]
                row["speedup"] = figures[n].speedup
                row["best_speedup"] = base["best"] / row["best"]  # least disturbed by neighbours' load
                row["efficiency"] = figures[n].efficiency

    headers = ["workload", "system", "workers", "wall s (median)", "wall min–max", "speedup", "efficiency",
               "speedup of mins"]
    rows = [[w, s, n, r["wall"], r["spread"], round(r["speedup"], 3), round(r["efficiency"], 3),
             round(r["best_speedup"], 3)]
            for (w, s, n), r in rows_by.items()]
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    _bench.print_machine()
    print(f"Pool sizes {sizes}, medians of {args.reps} alternating reps; speedup = wall(1) / wall(N)\n")
    print(_bench.markdown_table(headers, rows))
    print()
    for load in loads:
        for n in sizes[1:]:
            mine = rows_by[(load["name"], "opflow", n)]["speedup"]
            raw = rows_by[(load["name"], "raw", n)]["speedup"]
            verdict = "met" if mine >= raw * 0.97 else "NOT met"
            extra = f"; ideal >= 1.9: {'yes' if mine >= 1.9 else 'no'}" if n == 2 else ""
            best = rows_by[(load["name"], "opflow", n)]["best_speedup"] / rows_by[(load["name"], "raw", n)]["best_speedup"]
            print(f"- {load['name']} 1->{n}: opflow speedup {mine:.2f} vs raw {raw:.2f} "
                  f"(ratio {mine / raw:.3f}; of mins {best:.3f}); goal >= raw - 3%: {verdict}{extra}")
    print()
    print(recommend(rows_by, sizes))
    _bench.write_csv(args.out / "pool_sizes.csv", headers, rows)
    chart = args.out / "pool_sizes.png"
    if draw_chart(chart, sizes, rows_by):
        print(f"Chart: {chart}")
    else:
        print("Chart: skipped (matplotlib not installed; `pip install -e .[bench]`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
