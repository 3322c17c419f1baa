"""W4, data transfer: one big DataFrame made once, described by four parallel tasks.

    warm_1, warm_2 ─▶ ingest (read_csv, ROWS x 4) ─┬─ m_a (describe a) ─┐
                                                   ├─ m_b              ─┤
                                                   ├─ m_c              ─┼─ join
                                                   └─ m_d              ─┘

Part 1, timing (alternating reps, one machine, one run): the *hand-off*, from the
moment the frame exists (the ingest function stamps it) to the last describe's
end, through opflow with shared memory (the default), through opflow's store
(OPFLOW_SHM_LIMIT=0: the path every large result took before), through a raw
pool given the frame as a `submit` argument, against one process doing the four
describes one after another. The two warm-up tasks make both workers import
pandas and describe a small series before the frame exists (each sleeps, so
each worker takes one), so that no variant pays pandas' first-call imports inside
the hand-off (the one process has paid them too). opflow runs through the CLI in a
subprocess (the store variant needs its environment); whole-run walls are given
too.

Part 2, memory: each describe task reports its process's RSS and private
(RssAnon) memory before it reads the frame, after, and after describing.

Part 3, a 1 GB frame (--big-rows x 4 float64) to four readers through the CLI,
the process tree's memory sampled every 0.2 s: the sum of RSS (which counts a
page mapped by several readers once per reader), the sum of private memory,
and the run's files in /dev/shm (counted once).

    python benchmarks/data_transfer.py [--reps 5] [--rows 1000000] [--workers 2] [--big-rows 31250000 | --no-big]
"""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402

COLUMNS = ["a", "b", "c", "d"]

W4_PY = '''\
import os, time
from pathlib import Path


def _status():
    """(VmRSS, RssAnon) of this process, bytes."""
    values = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(("VmRSS:", "RssAnon:")):
                key, value = line.split(":", 1)
                values[key] = int(value.split()[0]) * 1024
    return values.get("VmRSS", 0), values.get("RssAnon", 0)


def warm():
    import pandas
    pandas.Series(range(1000), dtype=float).describe()  # pandas' first-call imports, paid before timing
    time.sleep(0.5)  # long enough that the other worker takes the other warm-up


def ingest(path, stamp):
    import pandas as pd
    frame = pd.read_csv(path)
    Path(stamp).write_text(repr(time.time()))  # the frame exists: the hand-off starts
    return frame


def make_big(rows):
    import numpy as np
    import pandas as pd
    data = np.empty((4, rows))  # one block, filled in place: no temporary copy
    rng = np.random.default_rng(7)
    for i in range(4):
        rng.random(out=data[i])
    return pd.DataFrame(data.T, columns=list("abcd"), copy=False)


def describe_one(column, source, context):
    rss0, anon0 = _status()
    frame = context[source]
    rss1, anon1 = _status()
    described = frame[column].describe()
    rss2, anon2 = _status()
    stats = ("count", "mean", "std", "min", "25%", "50%", "75%", "max")
    return {"stats": {column: {s: float(described[s]) for s in stats}},
            "rss": [rss0, rss1, rss2], "anon": [anon0, anon1, anon2], "frame_bytes": int(frame.memory_usage().sum())}


def join(context):
    joined = {}
    for task_id, result in context.items():
        if task_id.startswith("m_"):
            joined.update(result["stats"])
    return joined
'''


def write_workflow(work: Path, csv_path: Path, stamp: Path) -> Path:
    (work / "w4.py").write_text(W4_PY, encoding="utf-8")
    tasks = [{"id": f"warm_{i}", "plugin": "python", "config": {"function": "w4:warm"}} for i in (1, 2)]
    tasks.append({"id": "ingest", "plugin": "python", "config": {"function": "w4:ingest", "args": [str(csv_path), str(stamp)]},
                  "depends_on": ["warm_1", "warm_2"]})
    tasks += [{"id": f"m_{c}", "plugin": "python", "config": {"function": "w4:describe_one", "args": [c, "ingest"]},
               "depends_on": ["ingest"]} for c in COLUMNS]
    tasks.append({"id": "join", "plugin": "python", "config": {"function": "w4:join"},
                  "depends_on": [f"m_{c}" for c in COLUMNS]})
    return _bench.write_tasks_yaml(work / "w4.yaml", "bench w4", tasks)


def write_big_workflow(work: Path, rows: int) -> Path:
    (work / "w4.py").write_text(W4_PY, encoding="utf-8")
    tasks = [{"id": "make", "plugin": "python", "config": {"function": "w4:make_big", "args": [rows]}}]
    tasks += [{"id": f"r_{c}", "plugin": "python", "config": {"function": "w4:describe_one", "args": [c, "make"]},
               "depends_on": ["make"]} for c in COLUMNS]
    return _bench.write_tasks_yaml(work / "w4big.yaml", "bench w4 big", tasks)


def _epoch(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso).timestamp()


def _cli(path: Path, args, workers: int, env: dict | None = None, sample=None) -> tuple[float, Path]:
    log_dir = args.log_dir
    before = set(log_dir.iterdir())
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "opflow", "run", str(path), "--workers", str(workers),
                             "--log-dir", str(log_dir), "--quiet"], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = None
    if sample is not None:
        sampler = threading.Thread(target=sample, args=(proc,), daemon=True)
        sampler.start()
    output, _ = proc.communicate()
    wall = time.perf_counter() - started
    if sampler is not None:
        sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"opflow run of {path} ended with exit code {proc.returncode}:\n{output}")
    [run_dir] = [p for p in set(log_dir.iterdir()) - before if p.is_dir() and not p.name.startswith(".")]
    return wall, run_dir


def _records(run_dir: Path) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in (run_dir / "tasks").glob("*.json")}


def opflow_run(path: Path, stamp: Path, args, env: dict | None = None) -> dict:
    wall, run_dir = _cli(path, args, args.workers, env)
    tasks = _records(run_dir)
    ready = float(stamp.read_text())
    last = max(_epoch(tasks[f"m_{c}"]["finished_at"]) for c in COLUMNS)
    readers = [tasks[f"m_{c}"] for c in COLUMNS]
    made = _epoch(tasks["ingest"]["finished_at"])
    first = min(_epoch(r["started_at"]) for r in readers)
    result = {"wall": last - ready, "run_wall": wall, "ingest_rss": tasks["ingest"]["resources"],
              "publish": made - ready, "dispatch": first - made,
              "reader_wall": sum(r["duration_s"] for r in readers) / len(readers),
              "reader_cpu": sum(r["resources"]["cpu_user_s"] + r["resources"]["cpu_system_s"] for r in readers) / len(readers),
              "readers": [r["result"] for r in readers], "peaks": [r["resources"]["peak_rss_bytes"] for r in readers]}
    if not args.keep_logs:
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
    return result


def sequential_run(frame) -> dict:
    started = time.perf_counter()
    _bench.join(*[_bench.describe(frame, c) for c in COLUMNS])
    return {"wall": time.perf_counter() - started}


def raw_run(pool, frame) -> dict:
    started = time.perf_counter()
    futures = [pool.submit(_bench.describe, frame, c) for c in COLUMNS]
    _bench.join(*[f.result() for f in futures])
    return {"wall": time.perf_counter() - started}


def _warm(_):
    import pandas
    pandas.Series(range(1000), dtype=float).describe()
    time.sleep(0.2)


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f}"


def memory_rows(samples: list[dict]) -> list[list]:
    """Per variant: median over reps and readers of each growth, in MB."""
    rows = []
    for name, runs in samples.items():
        load_rss, load_anon, done_rss, done_anon, peak, frame = [], [], [], [], [], 0
        for run in runs:
            for reader, peak_rss in zip(run["readers"], run["peaks"]):
                rss, anon = reader["rss"], reader["anon"]
                load_rss.append(rss[1] - rss[0])
                load_anon.append(anon[1] - anon[0])
                done_rss.append(rss[2] - rss[0])
                done_anon.append(anon[2] - anon[0])
                peak.append(peak_rss - rss[0])
                frame = reader["frame_bytes"]
        med = _bench.median
        rows.append([name, _mb(frame), _mb(med(load_anon)), _mb(med(load_rss)), _mb(med(done_anon)),
                     _mb(med(done_rss)), _mb(med(peak)), f"{100 * med(load_anon) / frame:.1f}%"])
    return rows


def big_run(work: Path, args) -> dict:
    path = write_big_workflow(work, args.big_rows)
    timeline = []  # (time, sum RSS, sum private, run's /dev/shm bytes)

    def sample(proc):
        prefix = f"opflow-{proc.pid}-"
        while proc.poll() is None:
            rss = anon = 0
            try:
                tree = [_bench_process(proc.pid)] + _bench_process(proc.pid).children(recursive=True)
            except Exception:
                break
            for p in tree:
                try:
                    status = _status_of(p.pid)
                except OSError:
                    continue
                rss += status.get("VmRSS", 0)
                anon += status.get("RssAnon", 0)
            shm = 0
            try:
                for entry in os.scandir("/dev/shm"):
                    if entry.name.startswith(prefix):
                        shm += entry.stat().st_size
            except OSError:
                pass
            timeline.append((time.time(), rss, anon, shm))
            time.sleep(0.2)

    wall, run_dir = _cli(path, args, args.workers, sample=sample)
    tasks = _records(run_dir)
    frame = tasks["r_a"]["result"]["frame_bytes"]
    transport = tasks["make"]["resources"].get("result_shared_bytes")
    made = _epoch(tasks["make"]["finished_at"])
    # Two phases: making and publishing the frame (its maker holds its own copy
    # while it writes the shared one), then the four readers.
    peaks = {}
    for phase, samples in (("make", [s for s in timeline if s[0] <= made]), ("read", [s for s in timeline if s[0] > made])):
        samples = samples or [(0, 0, 0, 0)]
        peaks[phase] = {"rss": max(s[1] for s in samples), "anon": max(s[2] for s in samples),
                        "shm": max(s[3] for s in samples), "total": max(s[2] + s[3] for s in samples)}
    if not args.keep_logs:
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
    return {"wall": wall, "frame": frame, "shared": transport, "peaks": peaks}


def _bench_process(pid):
    import psutil

    return psutil.Process(pid)


def _status_of(pid: int) -> dict:
    values = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(("VmRSS:", "RssAnon:")):
                key, value = line.split(":", 1)
                values[key] = int(value.split()[0]) * 1024
    return values


def main(argv=None) -> int:
    parser = _bench.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="CSV rows (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="pool size (default: %(default)s)")
    parser.add_argument("--big-rows", type=int, default=31_250_000, help="rows of the 1 GB frame (x 4 float64)")
    parser.add_argument("--no-big", action="store_true", help="skip part 3 (the 1 GB frame)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.big_rows = 2_000, 200_000
    work = _bench.prepare(args)
    ctx = _bench.mp_context()
    csv_path = _bench.write_numeric_csv(work / "w4.csv", args.rows, COLUMNS)
    stamp = work / "w4.stamp"
    path = write_workflow(work, csv_path, stamp)
    frame = _bench.read_csv(str(csv_path))
    started = time.perf_counter()
    _bench.read_csv(str(csv_path))
    read_csv_s = time.perf_counter() - started
    _bench.say(f"W4: {args.rows} x {len(COLUMNS)} CSV ({frame.memory_usage().sum() / 1e6:.0f} MB frame), {args.workers} workers")
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx) as pool:
        list(pool.map(_warm, range(args.workers)))
        results = _bench.alternate(args.reps, {
            "opflow, shared memory": lambda: opflow_run(path, stamp, args),
            "opflow, store (OPFLOW_SHM_LIMIT=0)": lambda: opflow_run(path, stamp, args, {"OPFLOW_SHM_LIMIT": "0"}),
            "raw pool, frame as argument": lambda: raw_run(pool, frame),
            "one process, 4 describes in turn": lambda: sequential_run(frame),
        })
    sequential = _bench.med(results["one process, 4 describes in turn"])
    headers = ["variant", "hand-off s (median)", "min–max", "vs one process", "whole run s (median)"]
    rows = []
    for name, samples in results.items():
        whole = _bench.med(samples, "run_wall") if "run_wall" in samples[0] else ""
        rows.append([name, round(_bench.med(samples), 3), _bench.spread([x["wall"] for x in samples]),
                     round(_bench.med(samples) / sequential, 2), round(whole, 3) if whole else "-"])
    _bench.print_machine()
    print(f"\nW4: {args.rows:,} x {len(COLUMNS)} CSV, ingest -> 4 x describe -> join, {args.workers} workers, "
          f"medians of {args.reps} alternating reps (read_csv alone: {read_csv_s:.3f} s)\n")
    print(_bench.markdown_table(headers, rows))
    ratio = _bench.med(results["opflow, shared memory"]) / sequential
    print(f"\n- hand-off through shared memory / one process: {ratio:.2f}x; goal <= 1: {'met' if ratio <= 1 else 'NOT met'}")
    opflow_samples = {k: v for k, v in results.items() if k.startswith("opflow")}
    print("\nWhere the hand-off goes (medians; a reader's wall and CPU are the mean of the four):\n")
    print(_bench.markdown_table(
        ["variant", "frame ready -> its task's end (pickle, publish) s", "-> first reader starts s",
         "a reader's wall s", "a reader's CPU s", "one describe in one process s"],
        [[name, round(_bench.med(v, "publish"), 3), round(_bench.med(v, "dispatch"), 3),
          round(_bench.med(v, "reader_wall"), 3), round(_bench.med(v, "reader_cpu"), 3), round(sequential / 4, 3)]
         for name, v in opflow_samples.items()]))
    mem_headers = ["variant", "frame MB", "private after read MB", "RSS after read MB", "private after describe MB",
                   "RSS after describe MB", "peak RSS - start MB", "private after read / frame"]
    mem_rows = memory_rows(opflow_samples)
    print("\nA reader's memory growth (medians over reps and the four readers; RSS counts mapped shared pages):\n")
    print(_bench.markdown_table(mem_headers, mem_rows))
    _bench.write_csv(args.out / "data_transfer.csv", headers, rows)
    _bench.write_csv(args.out / "data_transfer_memory.csv", mem_headers, mem_rows)
    if not args.no_big:
        _bench.say(f"W4 big: {args.big_rows:,} x 4 float64 frame to four readers")
        big = big_run(work, args)
        print(f"\nA {big['frame'] / 1e9:.2f} GB frame to four describe readers, {args.workers} workers, one run "
              f"({big['wall']:.1f} s; in shared memory: {bool(big['shared'])}), peaks sampled every 0.2 s:\n")
        make, read = big["peaks"]["make"], big["peaks"]["read"]
        print(_bench.markdown_table(["peak, GB", "making + publishing", "four readers"], [
            ["sum of RSS of the process tree (a shared page once per process mapping it)",
             f"{make['rss'] / 1e9:.2f}", f"{read['rss'] / 1e9:.2f}"],
            ["sum of private memory (RssAnon)", f"{make['anon'] / 1e9:.2f}", f"{read['anon'] / 1e9:.2f}"],
            ["the run's files in /dev/shm", f"{make['shm'] / 1e9:.2f}", f"{read['shm'] / 1e9:.2f}"],
            ["private + /dev/shm (every page once)", f"{make['total'] / 1e9:.2f}", f"{read['total'] / 1e9:.2f}"],
        ]))
        rss = max(make["rss"], read["rss"])
        print(f"\n- 1 GB frame: peak total RSS {rss / 1e9:.2f} GB; goal < 2 GB: {'met' if rss < 2e9 else 'NOT met'}; "
              f"every page once: {make['total'] / 1e9:.2f} GB making, {read['total'] / 1e9:.2f} GB reading")
    return 0


if __name__ == "__main__":
    sys.exit(main())
