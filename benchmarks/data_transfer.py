"""W4, data transfer: one big DataFrame read once, described by four parallel tasks, joined.

    ingest (csv_ingest, ROWS x 4 CSV) ─┬─ m_a (metrics a) ─┐
                                       ├─ m_b            ─┤
                                       ├─ m_c            ─┼─ join (python)
                                       └─ m_d            ─┘

Three ways, alternating: opflow (the DataFrame goes through the Manager store:
published once, snapshotted by each reader), a raw ProcessPoolExecutor passing the
DataFrame as a `submit` argument (ready queue of _bench.py), and the same work
sequential in one process. Then the Manager path in pieces: pickling the frame,
one `put`, four parallel `snapshot`s from pool workers, against four parallel
`submit(frame)`s of the raw pool.

    python benchmarks/data_transfer.py [--reps 5] [--rows 1000000] [--workers 4]
"""
from __future__ import annotations

import pickle
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402

COLUMNS = ["a", "b", "c", "d"]
GOAL = 1.2

JOIN_PY = '''\
def join(context):
    """Merge the four metrics results (the ingest frame is in the context too: it is upstream)."""
    joined = {}
    for task_id, result in context.items():
        if task_id.startswith("m_"):
            joined.update(result)
    return joined
'''


def write_workflow(work: Path, csv_path: Path) -> Path:
    (work / "w4join.py").write_text(JOIN_PY, encoding="utf-8")
    tasks = [{"id": "ingest", "plugin": "csv_ingest", "config": {"path": csv_path.name}}]
    tasks += [{"id": f"m_{c}", "plugin": "metrics", "config": {"numeric_columns": [c], "source": "ingest"},
               "depends_on": ["ingest"]} for c in COLUMNS]
    tasks.append({"id": "join", "plugin": "python", "config": {"function": "w4join:join"},
                  "depends_on": [f"m_{c}" for c in COLUMNS]})
    return _bench.write_tasks_yaml(work / "w4.yaml", "bench w4", tasks)


def raw_run(csv_path: Path, workers: int) -> dict:
    deps = {"ingest": [], **{f"m_{c}": ["ingest"] for c in COLUMNS}, "join": [f"m_{c}" for c in COLUMNS]}

    def call(task_id, upstream):
        if task_id == "ingest":
            return _bench.read_csv, (str(csv_path),)
        if task_id == "join":
            return _bench.join, tuple(upstream)
        return _bench.describe, (upstream[0], task_id[2:])

    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=_bench.mp_context()) as pool:
        _bench.run_ready_queue(pool, deps, call)
    return {"wall": time.perf_counter() - started}


def sequential_run(csv_path: Path) -> dict:
    started = time.perf_counter()
    frame = _bench.read_csv(str(csv_path))
    _bench.join(*[_bench.describe(frame, c) for c in COLUMNS])
    return {"wall": time.perf_counter() - started}


def _timed_snapshot(address, task_ids) -> float:
    from opflow.context import connect_store

    started = time.perf_counter()
    blobs = connect_store(address).snapshot(task_ids)
    pickle.loads(blobs["ingest"])
    return time.perf_counter() - started


def _import_pandas(_):
    import pandas  # noqa: F401


def _timed_arg(frame) -> float:
    return 0.0  # the transfer happened before the call: the caller times the round trip


def manager_pieces(csv_path: Path, workers: int) -> list[list]:
    """The Manager path against submit arguments, piece by piece (one sample each)."""
    from opflow.context import ManagedStore

    frame = _bench.read_csv(str(csv_path))
    started = time.perf_counter()
    blob = pickle.dumps(frame, pickle.HIGHEST_PROTOCOL)
    pickling = time.perf_counter() - started
    rows = [["pickle.dumps(frame)", round(pickling, 3), f"{len(blob) / 1e6:.1f} MB"]]
    ctx = _bench.mp_context()
    store = ManagedStore(ctx)
    try:
        address = store.address()
        started = time.perf_counter()
        store.proxy.put("ingest", blob)
        rows.append(["Manager put (one blob)", round(time.perf_counter() - started, 3), ""])
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            list(pool.map(_import_pandas, range(workers)))  # workers up, pandas imported, before timing
            started = time.perf_counter()
            inside = list(pool.map(_timed_snapshot, [address] * 4, [("ingest",)] * 4))
            rows.append(["4 parallel snapshot+unpickle (wall)", round(time.perf_counter() - started, 3),
                         "each: " + ", ".join(f"{t:.3f}" for t in inside)])
            started = time.perf_counter()
            list(pool.map(_timed_arg, [frame] * 4))
            rows.append(["4 parallel submit(frame) (wall)", round(time.perf_counter() - started, 3), ""])
    finally:
        store.close()
    return rows


def main(argv=None) -> int:
    parser = _bench.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="CSV rows (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=4, help="pool size: the four readers run at once (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows = 2_000
    work = _bench.prepare(args)
    _bench.mp_context()
    csv_path = _bench.write_numeric_csv(work / "w4.csv", args.rows, COLUMNS)
    path = write_workflow(work, csv_path)
    _bench.say(f"W4: {args.rows} x {len(COLUMNS)} CSV, {args.workers} workers")
    results = _bench.alternate(args.reps, {
        "opflow process": lambda: _bench.run_opflow(path, args, workers=args.workers),
        "raw pool": lambda: raw_run(csv_path, args.workers),
        "sequential": lambda: sequential_run(csv_path),
    })
    raw = _bench.med(results["raw pool"])
    headers = ["variant", "wall s (median)", "wall min–max", "ratio vs raw pool"]
    rows = [[name, _bench.med(s), _bench.spread([x["wall"] for x in s]), round(_bench.med(s) / raw, 3)]
            for name, s in results.items()]
    pieces = manager_pieces(csv_path, args.workers)
    _bench.print_machine()
    print(f"W4: {args.rows:,} x {len(COLUMNS)} CSV, ingest -> 4 x describe -> join, {args.workers} workers, "
          f"medians of {args.reps} alternating reps\n")
    print(_bench.markdown_table(headers, rows))
    print("\nThe Manager path in pieces (one sample each):\n")
    print(_bench.markdown_table(["step", "seconds", "note"], pieces))
    ratio = _bench.med(results["opflow process"]) / raw
    print(f"\n- W4: opflow/raw pool {ratio:.2f}x; goal <= {GOAL}x: {'met' if ratio <= GOAL else 'NOT met'}")
    _bench.write_csv(args.out / "data_transfer.csv", headers, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
