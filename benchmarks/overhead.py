"""Dispatch overhead: the same DAGs through opflow and through a raw pool, alternating.

    W1  N independent no-op python tasks, --workers 2     per task
    W2  a chain of M no-op python tasks                    per hop
    W5  K independent shell `true` tasks, 2 at a time     per task, vs a raw subprocess pool

Baselines: W1/W2 a ProcessPoolExecutor (opflow's start method) driven by the
ready queue in _bench.py; W5 two threads each running `subprocess.run("true",
shell=True)` with output captured, as the shell plugin does. opflow's thread and
inline backends are shown for reference. "wall" is the whole call (opflow: parse,
plan, run dir, pool start and shutdown; raw: pool start and shutdown); "span"
is the first task's start to the last task's end, which leaves fixed costs out.

    python benchmarks/overhead.py [--reps 5] [--tasks 1000] [--chain 200] [--shell 200]
"""
from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402

GOALS = {"W1": 1.3, "W2": 1.5, "W5": 1.2}


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
    parser.add_argument("--only", default="W1,W2,W5", help="comma-separated workloads (default: %(default)s)")
    parser.add_argument("--no-reference", action="store_true", help="skip the thread and inline backends")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.chain, args.shell = 20, 10, 6
    work = _bench.prepare(args)
    _bench.mp_context()
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
    _bench.print_machine()
    print(f"Dispatch overhead, {args.workers} workers, medians of {args.reps} alternating reps\n")
    print(_bench.markdown_table(headers, rows))
    print()
    print("\n".join(verdicts))
    _bench.write_csv(args.out / "overhead.csv", headers, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
