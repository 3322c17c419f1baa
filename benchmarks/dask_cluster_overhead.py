"""Per-task overhead of opflow on a hand-started Dask cluster, against plain `client.submit`.

    cluster:  `dask scheduler` + `dask worker --nworkers 2 --nthreads 1` started as processes
              (from their own folders in a temporary directory), the same for both variants
    raw       N `client.submit(noop)` futures of a no-op that stamps its start and end
    opflow    `opflow run` of N independent no-op `python` tasks, --scheduler ADDRESS
    measure:  span, from the first task's start to the last task's end, both stamped on the
              workers (opflow: the task records' started_at / finished_at); per task = span / N

One run of each, raw first; prints the load average before and after (the machine may be
shared: read the figures with it).

    python benchmarks/dask_cluster_overhead.py [--tasks 200]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def noop() -> tuple[float, float]:
    start = time.time()
    return start, time.time()


def _spawn(args: list[str], cwd: Path) -> subprocess.Popen:
    with open(cwd / "out.log", "wb") as log:
        return subprocess.Popen([sys.executable, "-m", *args], cwd=cwd, stdout=log, stderr=subprocess.STDOUT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    tasks = parser.parse_args().tasks
    import distributed

    from opflow.procs import kill_tree

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folders = [root / name for name in ("scheduler", "worker", "work")]
        for folder in folders:
            folder.mkdir()
        sched = root / "sched.json"
        procs = [_spawn(["distributed.cli.dask_scheduler", "--port", "0", "--no-dashboard", "--scheduler-file",
                         str(sched)], folders[0])]
        try:
            while not (sched.exists() and sched.stat().st_size):
                time.sleep(0.1)
            procs.append(_spawn(["distributed.cli.dask_worker", "--scheduler-file", str(sched), "--nworkers", "2",
                                 "--nthreads", "1", "--no-dashboard"], folders[1]))
            address = json.loads(sched.read_text())["address"]
            before = os.getloadavg()
            with distributed.Client(address, set_as_default=False) as client:
                client.wait_for_workers(2, timeout=60)
                client.submit(noop, pure=False).result()  # warm: the function reaches the workers
                stamps = client.gather([client.submit(noop, pure=False) for _ in range(tasks)])
            raw = max(end for _, end in stamps) - min(start for start, _ in stamps)
            (folders[2] / "benchnoop.py").write_text("def noop():\n    return None\n")
            lines = ["name: cluster overhead", "tasks:"] + [
                f"  - {{id: t{i}, plugin: python, config: {{function: 'benchnoop:noop'}}}}" for i in range(tasks)]
            (folders[2] / "noop.yaml").write_text("\n".join(lines) + "\n")
            done = subprocess.run([sys.executable, "-m", "opflow", "run", "noop.yaml", "--executor", "dask",
                                   "--scheduler", address, "--quiet"], cwd=folders[2], capture_output=True, text=True)
            assert done.returncode == 0, done.stdout + done.stderr
            run_dir = max(p for p in (folders[2] / "logs").iterdir() if p.is_dir() and not p.name.startswith("."))
            records = [json.loads(p.read_text()) for p in (run_dir / "tasks").glob("*.json")]
            # Records keep milliseconds: enough for a span of seconds.
            ours = max(_epoch(r["finished_at"]) for r in records) - min(_epoch(r["started_at"]) for r in records)
            after = os.getloadavg()
        finally:
            for proc in reversed(procs):
                kill_tree(proc.pid, grace=5.0)
                proc.wait(timeout=10)
    print(f"{tasks} no-op tasks on a hand-started cluster (2 workers, 1 thread each)")
    print(f"load average before {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}, "
          f"after {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}")
    print(f"raw client.submit: span {raw:.3f} s, {raw / tasks * 1000:.2f} ms a task")
    print(f"opflow:            span {ours:.3f} s, {ours / tasks * 1000:.2f} ms a task ({ours / raw:.2f}x raw)")


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


if __name__ == "__main__":
    main()
