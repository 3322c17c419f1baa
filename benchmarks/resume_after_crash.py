"""Resume after a crash: SIGKILL the coordinator at random instants, resume, compare.

Each trial runs a 100-300 task workflow (10 chains, each task reading the one
before it, and a `total` reading all), kills the coordinator with SIGKILL once a
random number of tasks started (plus a random 0-50 ms), then `opflow resume`s the
run. Per trial: the tasks the crashed run had not recorded as succeeded, the
tasks resume reran (they must be the same set), how many had started but died
unrecorded, and whether every rerun task's result is right.

    python benchmarks/resume_after_crash.py [--trials 15] [--seed 1]
"""
from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import _bench  # noqa: E402
from crash_trial import run_trial  # noqa: E402


def main() -> None:
    parser = _bench.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=15)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    work = _bench.prepare(args)
    # A killed coordinator leaves multiprocessing's pymp-* folders in TMPDIR: one of our own,
    # removed at the end, and short (a socket's path must fit in 108 bytes).
    scratch = tempfile.mkdtemp(prefix="opflow-crash-", dir="/tmp" if os.path.isdir("/tmp") else None)
    os.environ["TMPDIR"] = scratch
    try:
        trials(args, work)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def trials(args, work: Path) -> None:
    rng = random.Random(args.seed)
    count = 2 if args.quick else args.trials
    headers = ["trial", "tasks", "started before kill", "not succeeded", "resume reran", "same set",
               "started, unrecorded", "wrong results", "crashed run reads as"]
    rows = []
    for n in range(1, count + 1):
        n_tasks = 30 if args.quick else rng.randint(100, 300)
        kill_after = rng.randint(1, n_tasks - 10)
        root = Path(tempfile.mkdtemp(prefix=f"trial{n}-", dir=work))
        trial = run_trial(root, n_tasks, kill_after, workers=args.workers, delay=0.01,
                          kill_delay=rng.uniform(0, 0.05))
        if trial.resume_code != 0:
            raise SystemExit(f"trial {n}: resume exited {trial.resume_code}:\n{trial.resume_stderr}")
        if not trial.killed:
            _bench.say(f"trial {n}: the run ended before the kill; not counted")
            continue
        rows.append([n, n_tasks + 1, trial.done_before_kill, len(trial.not_succeeded), len(trial.rerun),
                     "yes" if trial.rerun == trial.not_succeeded else "NO", trial.started_unrecorded,
                     len(trial.wrong_results), trial.crashed_state])
        _bench.say(f"trial {n}: {rows[-1]}")
        if not args.keep_logs:
            shutil.rmtree(root, ignore_errors=True)
    _bench.print_machine()
    print(_bench.markdown_table(headers, rows))
    exact = sum(1 for r in rows if r[5] == "yes")
    print(f"\n{exact}/{len(rows)} trials: resume reran exactly the tasks that had not succeeded; "
          f"{sum(r[7] for r in rows)} wrong results")
    _bench.write_csv(args.out / "resume_after_crash.csv", headers, rows)


if __name__ == "__main__":
    main()
