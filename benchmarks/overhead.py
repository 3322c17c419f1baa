"""Dispatch overhead: the same DAGs through opflow and through a raw pool, alternating.

    W1  N independent no-op python tasks, --workers 2     per task
    W2  a chain of M no-op python tasks                    per hop
    W5  K independent shell `true` tasks, 2 at a time     per task, vs a raw subprocess pool

The headline (BENCHMARKS.md) is the whole process: `opflow run FILE -q --workers 2` as a
subprocess, timed from spawn to exit, against `benchmarks/raw_pool.py` (a raw
ProcessPoolExecutor of the same size and start method in its own script) timed the same
way, alternating, at a small and a large size of each shape; the cost per task (per hop)
is the marginal one, (T(big) - T(small)) / (N(big) - N(small)), so that start-up cancels
out; start-up is judged on its own by the 1-task run. Beside it, each opflow run's span
(first task start to last task end, from its journal). W5's raw baseline runs
`subprocess.run("true", shell=True)` per task in the pool. `--baseline DIR` times another
checkout's `opflow` (DIR/.venv/bin/opflow, else this one's with PYTHONPATH=DIR) in the same
alternation: a before/after in one run. The load average is printed before and after.

Then, with `--span` (the earlier measure, in this interpreter through the API): W1/W2 a ProcessPoolExecutor (opflow's start method) driven by the
ready queue in _bench.py; W5 two threads each running `subprocess.run("true",
shell=True)` with output captured, as the shell plugin does. opflow's thread and
inline backends are shown for reference. "wall" is the whole call (opflow: parse,
plan, run dir, pool start and shutdown; raw: pool start and shutdown); "span"
is the first task's start to the last task's end, which leaves fixed costs out.

    python benchmarks/overhead.py [--reps 5] [--baseline DIR] [--span] [--only W1,W2,W5,ONE]
"""
from __future__ import annotations

import concurrent.futures
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402

GOALS = {"W1": 1.3, "W2": 1.5, "W5": 1.2}

#: The whole-process measures (issue 20): name, shape, small and large size, unit, goal (opflow/raw).
WHOLE = [
    ("W1", "independent", 500, 2500, "task", 1.0),
    ("W2", "chain", 100, 500, "hop", 1.2),
    ("W2L", "chain", 100, 1000, "hop", 1.2),
    ("W5", "shell", 100, 500, "task", 1.2),
]
QUICK = {"independent": (20, 100), "chain": (10, 50, 100), "shell": (5, 20)}
ONE_GOAL = 1.4  # a 1-task run, whole process, against the raw pool's own 1-task script
RAW_SCRIPT = Path(__file__).resolve().with_name("raw_pool.py")


def raw_process(deps: dict, workers: int) -> dict:
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=_bench.mp_context()) as pool:
        # Workers started first, as opflow's warm_up does before its first task:
        # the span then holds the dispatch of the tasks alone, on both sides.
        concurrent.futures.wait([pool.submit(time.sleep, 0.05) for _ in range(workers)])
        first = time.perf_counter()
        _bench.run_ready_queue(pool, deps, lambda task_id, upstream: (_bench.noop, upstream))
        span = time.perf_counter() - first
    return {"wall": time.perf_counter() - started, "span": span}


def _sh_true() -> int:
    return subprocess.run("true", shell=True, capture_output=True, stdin=subprocess.DEVNULL).returncode


def raw_subprocess(deps: dict, workers: int) -> dict:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        _bench.run_ready_queue(pool, deps, lambda task_id, upstream: (_sh_true, ()))
    wall = time.perf_counter() - started
    return {"wall": wall, "span": wall}


# -- the whole process ----------------------------------------------------------
def opflow_command(checkout: Path | None = None) -> tuple[list[str], dict]:
    """The console script a user types, and its environment (cached bytecode allowed)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if checkout is not None:
        own = checkout / ".venv" / "bin" / "opflow"
        if own.exists():
            return [str(own)], env
        return [sys.executable, "-m", "opflow"], {**env, "PYTHONPATH": str(checkout)}
    script = Path(sys.executable).with_name("opflow")
    return ([str(script)] if script.exists() else [sys.executable, "-m", "opflow"]), env


def journal_span(run_dir: Path) -> float | None:
    """First task start to last task end, from the journal's task_finished lines (ms clock)."""
    first = last = None
    try:
        with open(run_dir / "events.jsonl", encoding="utf-8") as handle:
            for line in handle:
                if '"task_finished"' not in line:
                    continue
                record = json.loads(line)
                if not record.get("started_at") or not record.get("finished_at"):
                    continue
                start = datetime.datetime.fromisoformat(record["started_at"]).timestamp()
                end = datetime.datetime.fromisoformat(record["finished_at"]).timestamp()
                first = start if first is None else min(first, start)
                last = end if last is None else max(last, end)
    except OSError:
        return None
    return None if first is None else last - first


def timed_process(command: list[str], env: dict, cwd: Path, log_dir: Path | None = None) -> dict:
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=600)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')}")
    sample = {"wall": wall, "span": None}
    if log_dir is not None:
        runs = [d for d in log_dir.iterdir() if (d / "events.jsonl").is_file()]
        sample["span"] = journal_span(runs[0]) if len(runs) == 1 else None
        shutil.rmtree(log_dir, ignore_errors=True)
    return sample


def whole_process(args, work: Path) -> list[str]:
    """The headline: whole `opflow run` processes against the raw pool's script, marginal costs."""
    from opflow.backends.mp_context import start_method

    wanted = set(args.only.split(","))
    measures = [m for m in WHOLE if m[0] in wanted]
    sizes: dict[str, list[int]] = {}
    for _name, shape, small, big, _unit, _goal in measures:
        sizes.setdefault(shape, [])
        sizes[shape] += [n for n in (small, big) if n not in sizes[shape]]
    if "ONE" in wanted:
        sizes.setdefault("independent", []).insert(0, 1)
    if args.quick:
        sizes = {shape: [n for n in ((1,) if 1 in ns else ()) + QUICK[shape]] for shape, ns in sizes.items()}
    (work / "benchnoop.py").write_text("def noop(*_upstream):\n    return None\n", encoding="utf-8")
    noop = {"plugin": "python", "config": {"function": "benchnoop:noop"}}
    shell = {"plugin": "shell", "config": {"command": "true"}}
    opflows = {"opflow": opflow_command()}
    for checkout in args.baseline:
        opflows[checkout.resolve().name] = opflow_command(checkout.resolve())
    raw_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    method = start_method()
    counter = iter(range(10**9))

    def flow(shape: str, n: int) -> Path:
        if shape == "chain":
            tasks = [{"id": f"c{i}", **noop, **({"depends_on": [f"c{i - 1}"]} if i else {})} for i in range(n)]
        else:
            tasks = [{"id": f"t{i}", **(shell if shape == "shell" else noop)} for i in range(n)]
        return _bench.write_tasks_yaml(work / f"whole-{shape}-{n}.yaml", f"bench {shape} {n}", tasks)

    def run_opflow(name: str, path: Path):
        command, env = opflows[name]

        def run() -> dict:
            log_dir = args.log_dir / f"whole-{next(counter)}"
            return timed_process([*command, "run", str(path), "-q", "--workers", str(args.workers),
                                  "--log-dir", str(log_dir)], env, work, log_dir)
        return run

    def run_raw(shape: str, n: int):
        command = [sys.executable, str(RAW_SCRIPT), shape, str(n), "--workers", str(args.workers),
                   "--start-method", method]
        return lambda: timed_process(command, raw_env, work)

    load_before = os.getloadavg()
    results: dict[tuple, list[dict]] = {}
    for shape, ns in sizes.items():
        variants = {}
        for n in ns:
            path = flow(shape, n)
            for name in opflows:
                variants[(name, shape, n)] = run_opflow(name, path)
            variants[("raw", shape, n)] = run_raw(shape, n)
        _bench.say(f"whole process, {shape}: sizes {ns}, {len(variants)} variants x {args.reps} reps")
        for run in variants.values():  # untimed: bytecode caches, the page cache
            run()
        names = {key: " ".join(map(str, key)) for key in variants}
        timed = _bench.alternate(args.reps, {names[key]: fn for key, fn in variants.items()})
        results.update({key: timed[names[key]] for key in variants})
    load_after = os.getloadavg()

    def marginal(variant: str, shape: str, small: int, big: int, key: str = "wall") -> float | None:
        values = []
        for n in (small, big):
            samples = [s[key] for s in results[(variant, shape, n)] if s[key] is not None]
            if not samples:
                return None
            values.append(_bench.median(samples))
        return (values[1] - values[0]) / (big - small)

    def us(seconds: float | None) -> str:
        return "-" if seconds is None else f"{seconds * 1e6:,.0f}"

    headers = ["measure", "raw pool µs (1 task: s)"]
    for variant in opflows:
        headers += [f"{variant} µs (span µs; 1 task: s)", f"{variant}/raw"]
    headers += ["goal", "verdict (opflow)"]
    rows = []
    for name, shape, small, big, unit, goal in measures:
        if args.quick:
            small, big = QUICK[shape][0], QUICK[shape][-1 if name == "W2L" else 1]
        raw = marginal("raw", shape, small, big)
        row = [f"{name} per {unit} ({small} vs {big}), whole process", us(raw)]
        ratios = {}
        for variant in opflows:
            mine = marginal(variant, shape, small, big)
            ratios[variant] = mine / raw if raw else float("nan")
            row += [f"{us(mine)} ({us(marginal(variant, shape, small, big, 'span'))})", f"{ratios[variant]:.2f}x"]
        row += [f"<= {goal}x", "met" if 0 < ratios["opflow"] <= goal else "NOT met"]
        rows.append(row)
    if ("raw", "independent", 1) in results:
        raw_one = _bench.med(results[("raw", "independent", 1)])
        row = ["1-task run, whole process (s)", f"{raw_one:.3f}"]
        ratios = {}
        for variant in opflows:
            mine = _bench.med(results[(variant, "independent", 1)])
            ratios[variant] = mine / raw_one
            row += [f"{mine:.3f}", f"{ratios[variant]:.2f}x"]
        row += [f"<= {ONE_GOAL}x", "met" if ratios["opflow"] <= ONE_GOAL else "NOT met"]
        rows.append(row)
    load = f"load average before {load_before[0]:.2f} {load_before[1]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f}"
    lines = [f"Whole process, {args.workers} workers, medians of {args.reps} alternating reps; {load}; "
             + ", ".join(f"{name} = {' '.join(command)}" for name, (command, _env) in opflows.items()), "",
             _bench.markdown_table(headers, rows)]
    _bench.write_csv(args.out / "overhead_whole.csv", headers, rows)
    return lines


def workloads(args, work: Path) -> list[dict]:
    (work / "benchnoop.py").write_text("def noop():\n    return None\n", encoding="utf-8")
    noop = {"plugin": "python", "config": {"function": "benchnoop:noop"}}
    w1 = {f"t{i}": [] for i in range(args.tasks)}
    w2 = {f"c{i}": ([f"c{i - 1}"] if i else []) for i in range(args.chain)}
    w5 = {f"s{i}": [] for i in range(args.shell)}

    def tasks(deps, base):
        return [{"id": t, **base, **({"depends_on": d} if d else {})} for t, d in deps.items()]

    return [
        {"name": "W1", "what": f"{args.tasks} independent no-op tasks", "unit": "µs/task", "count": args.tasks,
         "deps": w1, "raw": raw_process, "others": ("thread", "inline"),
         "yaml": _bench.write_tasks_yaml(work / "w1.yaml", "bench w1", tasks(w1, noop))},
        {"name": "W2", "what": f"chain of {args.chain} no-op tasks", "unit": "µs/hop", "count": args.chain,
         "deps": w2, "raw": raw_process, "others": ("thread", "inline"),
         "yaml": _bench.write_tasks_yaml(work / "w2.yaml", "bench w2", tasks(w2, noop))},
        {"name": "W5", "what": f"{args.shell} shell `true` tasks, 2 at a time", "unit": "µs/task", "count": args.shell,
         "deps": w5, "raw": raw_subprocess, "others": (),
         "yaml": _bench.write_tasks_yaml(work / "w5.yaml", "bench w5",
                                         tasks(w5, {"plugin": "shell", "config": {"command": "true"}}))},
    ]


def main(argv=None) -> int:
    parser = _bench.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=1000, help="W1 size (default: %(default)s)")
    parser.add_argument("--chain", type=int, default=200, help="W2 length (default: %(default)s)")
    parser.add_argument("--shell", type=int, default=200, help="W5 size (default: %(default)s)")
    parser.add_argument("--only", default="W1,W2,W2L,W5,ONE",
                        help="comma-separated workloads; ONE is the 1-task run (default: %(default)s)")
    parser.add_argument("--baseline", type=Path, action="append", default=[], metavar="DIR",
                        help="another opflow checkout, timed in the same alternation (whole process); repeatable")
    parser.add_argument("--span", action="store_true",
                        help="also the in-process span measure of W1, W2, W5 (--tasks, --chain, --shell)")
    parser.add_argument("--no-reference", action="store_true", help="skip the thread and inline backends")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.chain, args.shell = 20, 10, 6
    work = _bench.prepare(args)
    _bench.mp_context()
    headline = whole_process(args, work)
    _bench.print_machine()
    print("\n".join(headline))
    if not args.span:
        return 0
    wanted = set(args.only.split(","))
    headers = ["workload", "variant", "wall s (median)", "wall min–max", "span s (median)", "unit", "per unit (span)",
               "wall ratio vs raw", "span ratio vs raw"]
    rows, verdicts = [], []
    for load in workloads(args, work):
        if load["name"] not in wanted:
            continue
        _bench.say(f"{load['name']}: {load['what']}")
        variants = {
            "opflow process": lambda load=load: _bench.run_opflow(load["yaml"], args, workers=args.workers),
            "raw": lambda load=load: load["raw"](load["deps"], args.workers),
        }
        results = _bench.alternate(args.reps, variants)
        if not args.no_reference:
            for executor in load["others"]:
                results[f"opflow {executor}"] = [
                    _bench.run_opflow(load["yaml"], args, workers=args.workers, executor=executor)
                    for _ in range(args.reps)
                ]
        raw_wall, raw_span = _bench.med(results["raw"]), _bench.med(results["raw"], "span")
        for variant, samples in results.items():
            wall, span = _bench.med(samples), _bench.med(samples, "span")
            rows.append([load["name"], variant, wall, _bench.spread([s["wall"] for s in samples]), span,
                         load["unit"], int(round(span / load["count"] * 1e6)),
                         round(wall / raw_wall, 3), round(span / raw_span, 3)])
        # The goals are per task (per hop): judged on the span, which leaves out the
        # fixed costs of a run (parse, run dir, pool start; benchmarks/startup.py).
        ratio = _bench.med(results["opflow process"], "span") / raw_span
        goal = GOALS[load["name"]]
        verdicts.append(f"- {load['name']} ({load['what']}): opflow/raw span {ratio:.2f}x "
                        f"(raw {raw_span / load['count'] * 1e6:.0f} µs per {load['unit'].split('/')[1]}), wall "
                        f"{_bench.med(results['opflow process']) / raw_wall:.2f}x; goal <= {goal}x per "
                        f"{load['unit'].split('/')[1]}: {'met' if ratio <= goal else 'NOT met'}")
    print(f"\nSpan (in this interpreter, the API), {args.workers} workers, medians of {args.reps} alternating reps\n")
    print(_bench.markdown_table(headers, rows))
    print()
    print("\n".join(verdicts))
    _bench.write_csv(args.out / "overhead.csv", headers, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
