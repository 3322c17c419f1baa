"""Real faults on the process backend: crashes, timeouts, signals, memory, resume, locks.

Every wait is bounded; every process a test starts is reaped, even when it fails.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from helpers import gone, latest_run_dir, records, run_cli, wait_for

from opflow.api import run
from opflow.rundir.lock import WorkflowLock
from opflow.procs import GRACE_SECONDS, kill_tree


@pytest.mark.parametrize("fault, how", [
    ("os_exit", "exited abruptly with status 7"),
    ("sigkill_self", "killed by SIGKILL"),
    ("segfault", "killed by SIGSEGV"),
])
def test_crashed_worker_fails_only_its_task_and_the_pool_recovers(fault, how, tmp_path, write_workflow, faults):
    go = tmp_path / "go.flag"
    flow = write_workflow(f"""
        name: crash
        tasks:
          # `sibling` is in flight when the victim's worker dies (it waits for the victim to start).
          - {{id: sibling, plugin: python, config: {{function: "faults:wait_for_file", args: ["{go}", 60]}}}}
          - {{id: victim_start, plugin: python, config: {{function: "faults:touch", args: ["{go}"]}}}}
          - {{id: victim, plugin: python, config: {{function: "faults:{fault}"}}, depends_on: [victim_start]}}
          - {{id: after_sibling, plugin: python, config: {{function: "faults:ok"}}, depends_on: [sibling]}}
    """)
    result = run(flow, workers=2, log_dir=tmp_path / "logs", keep_going=True)
    tasks = records(result.run_dir)
    assert result.exit_code == 1
    assert tasks["victim"]["status"] == "failed"
    assert tasks["victim"]["error"]["type"] == "WorkerCrashed"
    assert how in tasks["victim"]["error"]["message"]
    assert tasks["sibling"]["status"] == "succeeded"
    assert tasks["sibling"]["attempts"] == 1  # resubmitted after the pool rebuild, not counted
    assert tasks["after_sibling"]["status"] == "succeeded"


def test_crash_is_retried_when_the_task_has_retries(tmp_path, write_workflow, faults):
    marker = tmp_path / "count"
    flow = write_workflow(f"""
        name: crash-retry
        tasks:
          - {{id: flaky, plugin: python, config: {{function: "faults:fail_until", args: ["{marker}", 0]}}}}
          - {{id: crash, plugin: python, config: {{function: "faults:sigkill_self"}}, retries: 1}}
    """)
    result = run(flow, workers=2, log_dir=tmp_path / "logs", keep_going=True)
    record = records(result.run_dir)["crash"]
    assert record["status"] == "failed" and record["attempts"] == 2
    assert [a["error"]["type"] for a in record["attempt_log"]] == ["WorkerCrashed", "WorkerCrashed"]


def test_timeout_kills_a_hung_python_task(tmp_path, write_workflow, faults):
    flow = write_workflow("""
        name: hang
        tasks:
          - {id: stuck, plugin: python, config: {function: "faults:hang"}, timeout: 0.5, retries: 1}
          - {id: fine, plugin: python, config: {function: "faults:ok"}}
    """)
    started = time.monotonic()
    result = run(flow, workers=2, log_dir=tmp_path / "logs", keep_going=True)
    assert time.monotonic() - started < 30
    tasks = records(result.run_dir)
    assert tasks["stuck"]["status"] == "failed"
    assert tasks["stuck"]["attempts"] == 2
    assert all(a["error"]["type"] == "Timeout" for a in tasks["stuck"]["attempt_log"])
    assert "timed out after 0.5s" in tasks["stuck"]["error"]["message"]
    assert tasks["fine"]["status"] == "succeeded"
    for attempt in tasks["stuck"]["attempt_log"]:
        assert gone(attempt["pid"])


def test_timeout_kills_the_grandchildren_of_a_shell_task(tmp_path, write_workflow):
    pid_file = tmp_path / "grandchild.pid"
    flow = write_workflow(f"""
        name: grandchild
        tasks:
          - id: spawner
            plugin: shell
            config: {{command: "sleep 300 & echo $! > {pid_file}; wait"}}
            timeout: 2  # time enough, even on a loaded machine, for the pid file to be written
    """)
    result = run(flow, workers=1, log_dir=tmp_path / "logs")
    assert records(result.run_dir)["spawner"]["error"]["type"] == "Timeout"
    grandchild = int(pid_file.read_text())
    wait_for(lambda: gone(grandchild), 5, "the grandchild to be gone")


def test_max_memory_fails_the_task_cleanly(tmp_path, write_workflow, faults):
    flow = write_workflow("""
        name: memory
        tasks:
          - {id: hog, plugin: python, config: {function: "faults:allocate", args: [400, 10]}, max_memory: 150MB}
          - {id: fine, plugin: python, config: {function: "faults:ok"}}
    """)
    result = run(flow, workers=2, log_dir=tmp_path / "logs", keep_going=True)
    tasks = records(result.run_dir)
    assert tasks["hog"]["status"] == "failed"
    assert tasks["hog"]["error"]["type"] == "MemoryLimitExceeded"
    assert tasks["fine"]["status"] == "succeeded"


def _start_cli(flow: Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "opflow", "run", str(flow), "--log-dir", str(cwd / "logs")],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _signal_flow(write_workflow, tmp_path):
    pid_file = tmp_path / "sleeper.pid"
    flow = write_workflow(f"""
        name: signals
        tasks:
          - {{id: sleeper, plugin: shell, config: {{command: "sleep 300 & echo $! > {pid_file}; wait"}}}}
          - {{id: waiter, plugin: python, config: {{function: "faults:hang"}}}}
          - {{id: never, plugin: python, config: {{function: "faults:ok"}}, depends_on: [sleeper]}}
    """)
    return flow, pid_file


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_the_run_records_it_and_leaves_nothing(signum, code, tmp_path, write_workflow, faults):
    flow, pid_file = _signal_flow(write_workflow, tmp_path)
    proc = _start_cli(flow, tmp_path)
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 60, "the task to start")
        descendants = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signum)
        output, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, output
    assert "Traceback" not in output
    doc = json.loads((latest_run_dir(tmp_path / "logs") / "run.json").read_text())
    assert doc["status"] == "interrupted"
    assert doc["tasks"] == {"sleeper": "cancelled", "waiter": "cancelled", "never": "cancelled"}
    sleeper = int(pid_file.read_text())
    wait_for(lambda: gone(sleeper) and all(gone(p.pid) for p in descendants), 10, "every process to be gone")


def test_a_second_ctrl_c_kills_at_once_what_ignores_sigterm(tmp_path, write_workflow, faults):
    # The first Ctrl-C gives a worker deaf to SIGTERM a grace of procs.GRACE_SECONDS
    # before SIGKILL; the second one must not wait for that grace to run out.
    pid_file = tmp_path / "deaf.pid"
    flow = write_workflow(f"""
        name: deaf
        tasks:
          - {{id: deaf, plugin: python, config: {{function: "faults:ignore_sigterm_and_hang", args: ["{pid_file}"]}}}}
    """)

    def interrupts() -> list[dict]:
        journal = latest_run_dir(tmp_path / "logs") / "events.jsonl"
        return [e for e in map(json.loads, journal.read_text().splitlines()) if e["event"] == "interrupt"]

    proc = _start_cli(flow, tmp_path)
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 60, "the task to start")
        worker = int(pid_file.read_text())
        first = time.monotonic()
        proc.send_signal(signal.SIGINT)
        wait_for(interrupts, 30, "the first Ctrl-C in the journal")  # handled: the worker's grace has begun
        proc.send_signal(signal.SIGINT)
        # Its SIGTERM went after `first`: with the grace run out, it would outlive first + GRACE_SECONDS.
        wait_for(lambda: gone(worker), first + GRACE_SECONDS - time.monotonic(),
                 "the deaf worker to be killed by the second Ctrl-C, before its grace ran out")
        output, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, output
    assert "Traceback" not in output
    assert [e["hard"] for e in interrupts()] == [False, True]
    doc = json.loads((latest_run_dir(tmp_path / "logs") / "run.json").read_text())
    assert doc["status"] == "interrupted" and doc["tasks"] == {"deaf": "cancelled"}
    # Given up on by the second Ctrl-C, not after INTERRUPT_WAIT ("did not stop in time").
    attempt = records(latest_run_dir(tmp_path / "logs"))["deaf"]["attempt_log"][-1]
    assert (attempt["error"]["type"], attempt["error"]["message"]) == ("Interrupted", "killed by a second SIGINT")


def test_hurry_ends_a_kill_grace_at_once(tmp_path):
    # What a second Ctrl-C relies on: a kill waiting out its grace for a process
    # deaf to SIGTERM gives up waiting and SIGKILLs it as soon as `hurry` is set.
    ready = tmp_path / "ready"
    deaf = subprocess.Popen([sys.executable, "-c",
                             "import signal, sys, time, pathlib; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                             "pathlib.Path(sys.argv[1]).touch(); time.sleep(300)", str(ready)])
    hurry = threading.Event()
    killer = threading.Thread(target=kill_tree, args=(deaf.pid,), kwargs={"grace": 60, "hurry": hurry})
    try:
        wait_for(ready.exists, 30, "the deaf process to ignore SIGTERM")
        killer.start()
        time.sleep(0.3)
        assert deaf.poll() is None  # SIGTERM alone did not end it: the kill is in its grace
        hurry.set()
        killer.join(timeout=10)  # its grace is 60 s
        assert not killer.is_alive()
        assert gone(deaf.pid)  # kill_tree reaped it (it is our child), so Popen cannot see how it died
    finally:
        if deaf.poll() is None:
            deaf.kill()
            deaf.wait()
        if killer.ident is not None:
            killer.join(timeout=70)  # returns at once: what it waited for is dead


def test_coordinator_killed_with_sigkill_takes_its_workers_down(tmp_path, write_workflow, faults):
    flow, pid_file = _signal_flow(write_workflow, tmp_path)
    proc = _start_cli(flow, tmp_path)
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 60, "the task to start")
        # The journal is written by the audit trail's writer thread: let it catch up
        # (a loaded machine can lag it) before the kill, whose point is the workers.
        wait_for(lambda: any((tmp_path / "logs").glob("*/events.jsonl")) and '"task_started"' in
                 latest_run_dir(tmp_path / "logs").joinpath("events.jsonl").read_text(), 60, "the journal")
        descendants = psutil.Process(proc.pid).children(recursive=True)
        proc.kill()
        proc.communicate(timeout=10)
        sleeper = int(pid_file.read_text())
        wait_for(lambda: gone(sleeper) and all(gone(p.pid) for p in descendants), 10,
                 "workers and their commands to exit after the coordinator died")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    journal = (latest_run_dir(tmp_path / "logs") / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in journal]  # every line complete and readable
    assert events[0]["event"] == "run_started"
    assert any(e["event"] == "task_started" for e in events)


def test_resume_reruns_only_what_did_not_succeed(tmp_path, write_workflow, faults):
    count_a = tmp_path / "a.count"
    count_b = tmp_path / "b.count"
    flow = write_workflow(f"""
        name: resumable
        tasks:
          - {{id: a, plugin: python, config: {{function: "faults:fail_until", args: ["{count_a}", 0]}}}}
          - {{id: b, plugin: python, config: {{function: "faults:fail_until", args: ["{count_b}", 1]}}, depends_on: [a]}}
          - {{id: c, plugin: python, config: {{function: "faults:echo_context"}}, depends_on: [b]}}
    """)
    first = run_cli("run", str(flow), "--log-dir", "logs", cwd=tmp_path)
    assert first.returncode == 1
    first_dir = latest_run_dir(tmp_path / "logs")
    assert json.loads((first_dir / "run.json").read_text())["tasks"] == {"a": "succeeded", "b": "failed", "c": "skipped"}
    assert oct((first_dir / "results.pickles").stat().st_mode & 0o777) == "0o600"

    second = run_cli("resume", str(first_dir), cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    second_dir = latest_run_dir(tmp_path / "logs")
    assert second_dir != first_dir
    tasks = records(second_dir)
    assert count_a.read_text() == "1"  # a was not run again
    assert tasks["a"]["reused"] and tasks["a"]["attempts"] == 0
    assert tasks["b"]["status"] == "succeeded" and count_b.read_text() == "2"
    assert tasks["c"]["result"]["seen"] == ["a", "b"]  # c saw a's reused result


def test_resume_reruns_what_changed_and_says_why(tmp_path, write_workflow, faults):
    flow = write_workflow("""
        name: changing
        tasks:
          - {id: a, plugin: python, config: {function: "faults:ok", args: [1]}}
          - {id: b, plugin: python, config: {function: "faults:raise_error"}, depends_on: [a]}
    """)
    assert run_cli("run", str(flow), cwd=tmp_path).returncode == 1
    flow.write_text(flow.read_text().replace("args: [1]", "args: [2]").replace("faults:raise_error", "faults:ok"))
    again = run_cli("run", str(flow), "--resume", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["reused"] == []
    assert any("task 'a' changed (config)" in change for change in doc["resume_changes"])
    assert records(Path(doc["run_dir"]))["a"]["result"] == {"value": 2}


def test_a_second_run_of_a_locked_workflow_exits_3_and_runs_nothing(tmp_path, write_workflow, faults):
    flow = write_workflow("""
        name: locked
        tasks:
          - {id: a, plugin: python, config: {function: "faults:ok"}}
    """)
    with WorkflowLock(tmp_path / "logs", flow, "locked"):
        blocked = run_cli("run", str(flow), cwd=tmp_path)
    assert blocked.returncode == 3
    assert "another run of this workflow is in progress" in blocked.stderr
    assert not [p for p in (tmp_path / "logs").iterdir() if not p.name.startswith(".")]
    assert run_cli("run", str(flow), cwd=tmp_path).returncode == 0  # the lock died with its holder


def test_keep_runs_prunes_older_runs_of_the_workflow(tmp_path, write_workflow, faults):
    flow = write_workflow("""
        name: pruned
        tasks:
          - {id: a, plugin: python, config: {function: "faults:ok"}}
    """)
    for _ in range(3):
        assert run_cli("run", str(flow), "--keep-runs", "2", "--quiet", cwd=tmp_path).returncode == 0
    runs = [p for p in (tmp_path / "logs").iterdir() if not p.name.startswith(".")]
    assert len(runs) == 2
