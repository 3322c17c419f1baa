"""Admission (opflow/dispatch/admission.py): task cpus take pool slots, task memory waits
for room in the budget, named limits hold within a run and across runs of the machine, and
a task waiting for room is not overtaken forever."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from helpers import flow_file, gone, latest_run_dir, records, run_cli, wait_for, write

#: Tasks that say when they ran: a start and an end stamp in files (the workers' clock is the machine's).
STAMPS = """
import pathlib, time

def hold(name, folder, mb=0, seconds=0.0, until=None):
    where = pathlib.Path(folder)
    (where / f"{name}.start").write_text(repr(time.time()))
    block = bytearray(b"\\x01") * (mb * 1024 * 1024)  # filled, so resident: RSS really grows
    if until is not None:  # a handshake: hold until the test says so (bounded)
        deadline = time.time() + 120
        while not pathlib.Path(until).exists() and time.time() < deadline:
            time.sleep(0.01)
    time.sleep(seconds)
    (where / f"{name}.end").write_text(repr(time.time()))
    return len(block)
"""


def _task(task_id: str, folder: Path, extra: str = "", **kwargs) -> str:
    kw = json.dumps({"name": task_id, "folder": str(folder), **kwargs})
    return f'- {{id: {task_id}, plugin: python, config: {{function: "stamps:hold", kwargs: {kw}}}{extra}}}\n'


def _intervals(folder: Path, names) -> dict[str, tuple[float, float]]:
    return {n: (float((folder / f"{n}.start").read_text()), float((folder / f"{n}.end").read_text())) for n in names}


def _most_at_once(intervals) -> int:
    edges = sorted([(s, 1) for s, _ in intervals.values()] + [(e, -1) for _, e in intervals.values()],
                   key=lambda edge: (edge[0], edge[1]))  # an end before a start at the same instant
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def test_memory_budget_admits_one_200mb_task_at_a_time(tmp_path):
    """--memory 300MB, four tasks of memory: 200MB each holding ~150 MB: never two at once, all succeed."""
    write(tmp_path, "stamps.py", STAMPS)
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    names = ["m1", "m2", "m3", "m4"]
    flow_file(tmp_path, "".join(_task(n, stamps, ", memory: 200MB", mb=150, seconds=0.2) for n in names))
    result = run_cli("run", "flow.yaml", "--workers", "4", "--memory", "300MB", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    recs = records(latest_run_dir(tmp_path / "logs"))
    assert all(recs[n]["status"] == "succeeded" for n in names)
    assert all(recs[n]["resources"]["peak_rss_bytes"] > 150 * 1024**2 for n in names)  # they really held it
    spans = _intervals(stamps, names)
    assert _most_at_once(spans) == 1, spans
    assert sum(recs[n]["admission_wait_s"] > 0.1 for n in names) == 3  # three waited for room


def test_a_task_is_killed_past_its_memory(tmp_path):
    write(tmp_path, "stamps.py", STAMPS)
    # It holds the memory until killed (the monitor samples RSS: a task that let go at once could pass unseen).
    flow_file(tmp_path, _task("big", tmp_path, ", memory: 60MB", mb=200, until=str(tmp_path / "never")))
    result = run_cli("run", "flow.yaml", cwd=tmp_path)
    assert result.returncode == 1
    error = records(latest_run_dir(tmp_path / "logs"))["big"]["error"]
    assert "exceeded max_memory (60MB)" in error["message"]


def test_memory_auto_reserves_the_last_peak(tmp_path):
    """memory: auto reserves 1.25x the last recorded peak RSS: a first run admits both at once,
    the second (each ~150 MB, so 1.25x ~ 200 MB of a 300MB budget) one at a time, and kills none."""
    write(tmp_path, "stamps.py", STAMPS)
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    flow_file(tmp_path, _task("a1", stamps, ", memory: auto", mb=150, until=str(tmp_path / "both"))
              + _task("a2", stamps, ", memory: auto", mb=150, until=str(tmp_path / "both")))
    first = subprocess.Popen([sys.executable, "-m", "opflow", "run", "flow.yaml", "--workers", "2", "--memory", "300MB"],
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:  # no history: nothing reserved, both start (each waits for the other to have started)
        wait_for(lambda: (stamps / "a1.start").exists() and (stamps / "a2.start").exists(), 60, "both to start")
        (tmp_path / "both").write_text("")
        assert first.wait(timeout=120) == 0, first.stdout.read()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        first.stdout.close()
    for name in ("a1", "a2"):
        (stamps / f"{name}.start").unlink()
    result = run_cli("run", "flow.yaml", "--workers", "2", "--memory", "300MB", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _most_at_once(_intervals(stamps, ["a1", "a2"])) == 1


def test_cpus_take_pool_slots(tmp_path):
    """At 2 workers a cpus: 2 task runs alone; the two 1-cpu tasks may share the pool."""
    write(tmp_path, "stamps.py", STAMPS)
    flow_file(tmp_path, _task("one", tmp_path, seconds=0.3) + _task("wide", tmp_path, ", cpus: 2", seconds=0.3)
              + _task("two", tmp_path, seconds=0.3))
    result = run_cli("run", "flow.yaml", "--workers", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    spans = _intervals(tmp_path, ["one", "wide", "two"])
    wide = spans["wide"]
    for name in ("one", "two"):
        start, end = spans[name]
        assert end <= wide[0] or start >= wide[1], spans


def test_a_big_task_waiting_for_memory_is_not_overtaken_by_small_ones(tmp_path):
    """The first task that does not fit holds a reservation: small tasks behind it do not start
    from the room it waits for, so it starts as soon as the running task ends."""
    write(tmp_path, "stamps.py", STAMPS)
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    smalls = ["s1", "s2", "s3", "s4"]
    tasks = _task("s1", stamps, ", memory: 100MB", seconds=0.3) + _task("big", stamps, ", memory: 250MB", seconds=0.1)
    tasks += "".join(_task(n, stamps, ", memory: 100MB", seconds=0.3) for n in smalls[1:])
    flow_file(tmp_path, tasks)
    result = run_cli("run", "flow.yaml", "--workers", "4", "--memory", "300MB", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    spans = _intervals(stamps, ["big", *smalls])
    assert spans["big"][0] >= spans["s1"][1]  # it had to wait for s1
    assert all(spans["big"][1] <= spans[n][0] for n in smalls[1:]), spans  # and nobody behind it went first
    journal = (latest_run_dir(tmp_path / "logs") / "events.jsonl").read_text()
    waits = [json.loads(line) for line in journal.splitlines() if '"task_waiting"' in line]
    assert any(w["task_id"] == "big" and "memory 250MB" in w["waits_for"] for w in waits), waits


def test_a_run_limit_of_2_over_5_tasks(tmp_path):
    write(tmp_path, "stamps.py", STAMPS)
    names = [f"t{i}" for i in range(5)]
    write(tmp_path, "flow.yaml", "name: flow\nlimits: {api: 2}\ntasks:\n" + "".join(
        "  " + _task(n, tmp_path, ", limit: api", seconds=0.3) for n in names))
    result = run_cli("run", "flow.yaml", "--workers", "5", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    spans = _intervals(tmp_path, names)
    assert _most_at_once(spans) <= 2, spans


def _limited_flow(folder: Path, stamps: Path, task_id: str, until: str | None = None) -> Path:
    extra = {"until": until} if until else {}
    write(folder, "stamps.py", STAMPS)
    return write(folder, "flow.yaml", "name: limited\nlimits: {gpu: {max: 1, scope: machine}}\ntasks:\n  "
                 + _task(task_id, stamps, ", limit: gpu", **extra))


def _start(folder: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "opflow", "run", "flow.yaml", "--log-dir", str(folder / "logs")],
                            cwd=folder, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _journal(folder: Path) -> str:
    found = list((folder / "logs").glob("*/events.jsonl"))
    return found[0].read_text() if found else ""


def test_two_runs_share_a_machine_scope_limit(tmp_path):
    """Two opflow runs (other HOMEs, other log dirs, other workflow files) with a machine-scope limit of 1:
    the second's task waits until the first's has ended."""
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    limits = {"OPFLOW_LIMITS_DIR": str(tmp_path / "limits")}
    one, two = tmp_path / "one", tmp_path / "two"
    _limited_flow(one, stamps, "first", until=str(tmp_path / "release"))
    _limited_flow(two, stamps, "second")
    procs = []
    try:
        procs.append(_start(one, {**limits, "HOME": str(one)}))
        wait_for(lambda: (stamps / "first.start").exists(), 60, "the first run's task to start")
        procs.append(_start(two, {**limits, "HOME": str(two)}))
        wait_for(lambda: '"task_waiting"' in _journal(two), 60, "the second run's task to wait for the limit")
        assert not (stamps / "second.start").exists()
        (tmp_path / "release").write_text("")
        for proc in procs:
            assert proc.wait(timeout=120) == 0, proc.stdout.read()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
    spans = _intervals(stamps, ["first", "second"])
    assert spans["first"][1] <= spans["second"][0], spans
    waited = [json.loads(line) for line in _journal(two).splitlines() if '"task_waiting"' in line]
    assert waited[0]["task_id"] == "second" and "gpu" in waited[0]["waits_for"]


def test_a_sigkilled_holder_leaves_no_stale_hold(tmp_path):
    """The run holding the machine-scope slot is killed -9: the next run gets it at once."""
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    limits = {"OPFLOW_LIMITS_DIR": str(tmp_path / "limits")}
    one, two = tmp_path / "one", tmp_path / "two"
    _limited_flow(one, stamps, "first", until=str(tmp_path / "never"))
    _limited_flow(two, stamps, "second")
    holder = _start(one, limits)
    try:
        wait_for(lambda: (stamps / "first.start").exists(), 60, "the holder's task to start")
        # The journal's writer may trail the task's own start: wait for its line too.
        wait_for(lambda: '"task_started"' in _journal(one), 60, "the journal to record the start")
        worker = next(json.loads(line)["pid"] for line in _journal(one).splitlines() if '"task_started"' in line)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
        wait_for(lambda: gone(worker), 60, "the killed run's worker to die with it")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        holder.stdout.close()
    result = run_cli("run", "flow.yaml", "--log-dir", str(two / "logs"), "--timeout", "60", cwd=two, env=limits)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"task_waiting"' not in _journal(two)  # the slot was free on the first look
    assert (stamps / "second.end").exists()


def test_memory_on_the_thread_backend_is_reserved_and_the_kill_is_said_to_be_missing(tmp_path):
    write(tmp_path, "stamps.py", STAMPS)
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    flow_file(tmp_path, _task("t1", stamps, ", memory: 200MB", seconds=0.2) + _task("t2", stamps, ", memory: 200MB", seconds=0.2))
    result = run_cli("run", "flow.yaml", "--executor", "thread", "--workers", "2", "--memory", "300MB", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "memory: SIZE is reserved but not enforced on the thread backend" in result.stdout + result.stderr
    assert _most_at_once(_intervals(stamps, ["t1", "t2"])) == 1


def test_a_limits_folder_that_cannot_be_trusted_is_exit_2_before_anything_runs(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    open_to_all = tmp_path / "open"
    open_to_all.mkdir()
    open_to_all.chmod(0o777)
    write(tmp_path, "flow.yaml", """
        name: limited
        limits: {gpu: {max: 1, scope: machine}}
        tasks:
          - {id: a, plugin: shell, config: {command: "touch ran"}, limit: gpu}
    """)
    for folder, why in ((tmp_path / "link", "is a symlink"), (open_to_all, "writable by group or others")):
        result = run_cli("run", "flow.yaml", cwd=tmp_path, env={"OPFLOW_LIMITS_DIR": str(folder)})
        assert result.returncode == 2 and why in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "ran").exists() and not list(real.iterdir())


def test_plan_predict_simulates_cpus_and_limits(tmp_path):
    """A limit of 1 over two tasks and a cpus: 2 task at 2 workers: the prediction is all three in turn."""
    write(tmp_path, "flow.yaml", """
        name: pl
        limits: {api: 1}
        tasks:
          - {id: a, plugin: shell, config: {command: "sleep 0.2"}, limit: api}
          - {id: b, plugin: shell, config: {command: "sleep 0.2"}, limit: api}
          - {id: c, plugin: shell, config: {command: "sleep 0.2"}, cpus: 2}
    """)
    assert run_cli("run", "flow.yaml", "--workers", "2", cwd=tmp_path).returncode == 0
    recs = records(latest_run_dir(tmp_path / "logs"))
    result = run_cli("plan", "flow.yaml", "--predict", "2", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    simulated = doc["sizes"][0]["predicted_s"] - doc["overhead_s"]
    assert abs(simulated - sum(recs[t]["run_s"] for t in "abc")) < 1e-3, (doc, recs)
