"""Kill a real coordinator with SIGKILL mid-run, resume, and compare what resume reran
with what had not succeeded. Used by tests/test_records.py (one trial) and
benchmarks/resume_after_crash.py (many)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
CHAINS = 10


def write_flow(root: Path, n_tasks: int, delay: float) -> Path:
    """n_tasks in CHAINS chains (task i reads task i-CHAINS), and `total` after every chain's end."""
    (root / "marks").mkdir()
    lines = ["name: crash-trial", "tasks:"]
    for i in range(n_tasks):
        deps = f", depends_on: [t{i - CHAINS}]" if i >= CHAINS else ""
        read = f"t{i - CHAINS}" if i >= CHAINS else None
        lines.append(f'  - {{id: t{i}, plugin: python, config: {{function: "faults:chained", '
                     f'args: ["{root / "marks"}", {i}, {delay}, {json.dumps(read)}]}}{deps}}}')
    ends = [f"t{i}" for i in range(max(0, n_tasks - CHAINS), n_tasks)]
    lines.append(f'  - {{id: total, plugin: python, config: {{function: "faults:add_upstream"}}, '
                 f'depends_on: [{", ".join(ends)}]}}')
    flow = root / "flow.yaml"
    flow.write_text("\n".join(lines) + "\n")
    return flow


def expected_values(n_tasks: int) -> dict[str, int]:
    values: dict[str, int] = {}
    for i in range(n_tasks):
        values[f"t{i}"] = i + (values[f"t{i - CHAINS}"] if i >= CHAINS else 0)
    values["total"] = sum(values.values())  # add_upstream sums its whole upstream closure
    return values


@dataclass
class Trial:
    done_before_kill: int  # tasks whose function had run when the coordinator was killed
    not_succeeded: set  # tasks the crashed run had not recorded as succeeded
    rerun: set  # tasks the resume ran (not reused)
    started_unrecorded: int  # had started (in flight, or ended unrecorded) when the coordinator died
    wrong_results: list
    killed: bool  # the coordinator died of the SIGKILL (had not already finished)
    crashed_state: str
    resume_code: int
    resume_stderr: str


def _cli(*args, cwd, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "opflow", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def run_trial(root: Path, n_tasks: int, kill_after: int, workers: int = 2, delay: float = 0.01,
              kill_delay: float = 0.0) -> Trial:
    """Run, SIGKILL the coordinator once `kill_after` tasks ran (plus kill_delay s), resume."""
    from opflow.rundir.history import run_state

    flow = write_flow(root, n_tasks, delay)
    shutil.copy(REPO / "tests" / "faults.py", root / "faults.py")
    marks = root / "marks"
    env = dict(os.environ)  # TMPDIR: the caller's (a short path: sockets live there)
    proc = _cli("run", str(flow), "--workers", str(workers), "--quiet", cwd=root, env=env)
    try:
        deadline = time.monotonic() + 120
        while len(os.listdir(marks)) < kill_after and proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError("the run never got going")
            time.sleep(0.005)
        time.sleep(kill_delay)
        descendants = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
        proc.kill()
        _, run_err = proc.communicate(timeout=30)
        killed = proc.returncode == -9
        _, alive = psutil.wait_procs(descendants, timeout=30)  # workers follow their coordinator
        assert not alive, f"left behind: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    runs = sorted(p for p in (root / "logs").iterdir() if not p.name.startswith(".")) if (root / "logs").is_dir() else []
    if not runs:
        raise AssertionError(f"the run left no run directory (exit {proc.returncode}):\n{run_err}")
    run_dir = runs[-1]
    done_before = {name for name in os.listdir(marks)}
    journal = []
    for line in (run_dir / "events.jsonl").read_text().splitlines():
        try:
            journal.append(json.loads(line))
        except ValueError:
            pass
    succeeded = {e["task_id"] for e in journal if e["event"] == "task_finished" and e["status"] == "succeeded"}
    all_ids = set(expected_values(n_tasks))
    state = run_state(run_dir)

    resumed = _cli("resume", str(run_dir), "--json", cwd=root, env=env)
    out, err = resumed.communicate(timeout=600)
    rerun: set = set()
    wrong = []
    if resumed.returncode == 0:
        doc = json.loads(out)
        new_dir = Path(doc["run_dir"])
        expected = expected_values(n_tasks)
        for path in (new_dir / "tasks").glob("*.json"):
            record = json.loads(path.read_text())
            if not record["reused"]:
                rerun.add(record["id"])
                got = record["result"] if record["id"] == "total" else (record["result"] or {}).get("value")
                if got != expected[record["id"]]:
                    wrong.append((record["id"], got, expected[record["id"]]))
    executed = {f"t{name}" for name in done_before}
    return Trial(done_before_kill=len(done_before), not_succeeded=all_ids - succeeded, rerun=rerun,
                 started_unrecorded=len(executed - succeeded), wrong_results=wrong,
                 killed=killed, crashed_state=state, resume_code=resumed.returncode, resume_stderr=err)
