"""Where opflow's dispatch time goes, on W1 (independent no-ops) and W2 (a chain).

Three cProfile views:

    coordinator  api.run on the process backend, profiled in the coordinator process
                 (parse, plan, asyncio loop, events, audit trail, backend threads' callers)
    inline       api.run on the inline backend: coordinator and worker code in one thread
    worker       opflow.worker.execute() inside a real pool worker, on requests built as
                 the coordinator builds them (Manager store, publish, upstream snapshot)

For each: time per area (opflow module, or stdlib package), then the top functions
by own time. Writes OUT/profile_<view>_<workload>.pstats for further digging
(`python -m pstats FILE`).

    python benchmarks/profile_dispatch.py [--tasks 1000] [--chain 200] [--top 15]
"""
from __future__ import annotations

import cProfile
import io
import os
import pstats
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402
import overhead  # noqa: E402


def area(filename: str) -> str:
    """A short name for where a function lives: opflow module, or top-level stdlib/site package."""
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins"
    parts = Path(filename).parts
    if "opflow" in parts:
        return "opflow/" + Path(filename).stem
    for anchor in ("site-packages", "python3.11", "lib-dynload"):
        if anchor in parts:
            rest = parts[parts.index(anchor) + 1:]
            if rest and rest[0] != "site-packages":
                return rest[0].removesuffix(".py")
    return Path(filename).stem


def summarise(stats: pstats.Stats, top: int, total_s: float) -> str:
    by_area: dict[str, float] = {}
    rows = []
    for (filename, line, func), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():
        by_area[area(filename)] = by_area.get(area(filename), 0.0) + tottime
        rows.append((tottime, calls, cumtime, f"{area(filename)}:{func}:{line}"))
    out = io.StringIO()
    out.write(f"Own time by area (profiled wall {total_s:.3f} s; threads other than the profiled one not seen):\n\n")
    ranked = sorted(by_area.items(), key=lambda item: -item[1])[:top]
    out.write(_bench.markdown_table(["area", "own s", "share"],
                                    [[a, round(s, 4), f"{s / max(total_s, 1e-9):.0%}"] for a, s in ranked]))
    out.write("\n\nTop functions by own time:\n\n")
    rows.sort(reverse=True)
    out.write(_bench.markdown_table(["function", "calls", "own s", "cumulative s"],
                                    [[name, calls, round(tt, 4), round(ct, 4)] for tt, calls, ct, name in rows[:top]]))
    opflow_rows = sorted((r for r in rows if r[3].startswith("opflow/")), key=lambda r: -r[2])[:top]
    out.write("\n\nopflow functions by cumulative time:\n\n")
    out.write(_bench.markdown_table(["function", "calls", "own s", "cumulative s"],
                                    [[name, calls, round(tt, 4), round(ct, 4)] for tt, calls, ct, name in opflow_rows]))
    return out.getvalue()


def profile_call(fn, dump: Path) -> tuple[pstats.Stats, float]:
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    try:
        fn()
    finally:
        profiler.disable()
    wall = time.perf_counter() - started
    profiler.dump_stats(dump)
    return pstats.Stats(profiler), wall


def _execute_profiled(requests) -> tuple[bytes, float]:
    """In a pool worker: run opflow.worker.execute on each request under cProfile."""
    from opflow.worker.execute import execute

    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for request in requests:
        outcome = execute(request)
        if not outcome.ok:
            raise RuntimeError(f"{request.task_id}: {outcome.error}")
    profiler.disable()
    wall = time.perf_counter() - started
    path = f"/tmp/_opflow_worker_profile_{os.getpid()}.pstats"
    profiler.dump_stats(path)
    with open(path, "rb") as handle:
        data = handle.read()
    os.unlink(path)
    return data, wall


def worker_profile(yaml_path: Path, dump: Path, results_dir: Path) -> tuple[pstats.Stats, float]:
    """Requests built as Coordinator._submit builds them, executed in one real pool worker."""
    from opflow import api
    from opflow.worker.context import ManagedStore
    from opflow.workflow.plan import build_plan
    from opflow.attempt import TaskRequest

    workflow, plugins = api.load(yaml_path)
    plan = build_plan(workflow)
    order = {t.id: i for i, t in enumerate(workflow.tasks)}
    has_children = {dep for t in workflow.tasks for dep in t.depends_on}
    ctx = _bench.mp_context()
    results_dir.mkdir(parents=True, exist_ok=True)
    store = ManagedStore(ctx)
    try:
        requests = []
        for token, spec in enumerate(workflow.tasks, 1):
            upstream = tuple(sorted(plan.upstream(spec.id), key=order.__getitem__)) if spec.depends_on else ()
            publish = spec.id in has_children
            requests.append(TaskRequest(
                token=token, task_id=spec.id, attempt=1, plugin=plugins[spec.plugin], config=spec.config,
                depends_on=spec.depends_on, upstream=upstream, params=workflow.params,
                workflow_dir=str(workflow.directory), store=store.address() if (upstream or publish) else None,
                publish=publish, persist_path=str(results_dir / f"{spec.id}.pickle"), max_memory=spec.max_memory))
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            data, wall = pool.submit(_execute_profiled, requests).result()
    finally:
        store.close()
    dump.write_bytes(data)
    return pstats.Stats(str(dump)), wall


def main(argv=None) -> int:
    parser = _bench.base_parser(__doc__.splitlines()[0], reps=1)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--chain", type=int, default=200)
    parser.add_argument("--shell", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.chain = 20, 10
    work = _bench.prepare(args)
    _bench.mp_context()
    loads = {load["name"]: load for load in overhead.workloads(args, work) if load["name"] in ("W1", "W2")}
    _bench.print_machine()
    for name, load in loads.items():
        _bench.run_opflow(load["yaml"], args, workers=args.workers)  # warm: imports, forkserver
        for view, executor in (("coordinator", "process"), ("inline", "inline")):
            _bench.say(f"profiling {name} {view}")
            stats, wall = profile_call(lambda: _bench.run_opflow(load["yaml"], args, workers=args.workers,
                                                                 executor=executor),
                                       args.out / f"profile_{view}_{name}.pstats")
            print(f"\n## {name} ({load['what']}), {view} view ({executor} backend)\n")
            print(summarise(stats, args.top, wall))
        _bench.say(f"profiling {name} worker")
        stats, wall = worker_profile(load["yaml"], args.out / f"profile_worker_{name}.pstats",
                                     work / f"profile_results_{name}")
        print(f"\n## {name} ({load['what']}), worker view (execute() in one pool worker, all tasks in turn)\n")
        print(summarise(stats, args.top, wall))
    return 0


if __name__ == "__main__":
    sys.exit(main())
