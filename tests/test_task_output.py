"""Per-task output: tasks/<id>.log, streamed, attempts separated, bounded memory,
never on opflow's own stdout/stderr; a task that closes its fds or sys streams
does not break the next task on its worker."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import flow_file, latest_run_dir, records, run_cli, wait_for

TOOLS = '''
import logging, os, sys, time
from pathlib import Path

def chatty():
    print("PRINTED-LINE")
    logging.warning("LOGGED-LINE")
    sys.stderr.write("STDERR-LINE\\n")
    return 1

def child_output():
    os.system("echo CHILD-LINE")
    return 1

def wait_for_file(path):
    print("BEFORE-WAIT", flush=False)
    deadline = time.time() + 60
    while not Path(path).exists() and time.time() < deadline:
        time.sleep(0.02)
    print("AFTER-WAIT")
    return 1

def fail_first(marker):
    print("ATTEMPT-OUTPUT")
    if not Path(marker).exists():
        Path(marker).write_text("x")
        raise ValueError("first attempt fails")
    return 1

def close_std_fds():
    os.close(0); os.close(1); os.close(2)
    return 1

def close_sys_streams():
    sys.stdout.close(); sys.stderr.close()
    return 1

def after_close():
    print("STILL-PRINTS")
    sys.stderr.write("STILL-STDERR\\n")
    return 1
'''


@pytest.fixture
def tools_folder(tmp_path):
    """tmp_path with tools.py (the task functions above) in it: the workflow's folder and the current one."""
    (tmp_path / "tools.py").write_text(TOOLS)
    return tmp_path


CHATTY = """
- id: chatty
  plugin: python
  config: {function: "tools:chatty"}
- id: sh
  plugin: shell
  config: {command: "echo SHELL-OUT; echo SHELL-ERR >&2"}
"""


@pytest.mark.parametrize("executor", ["process", "thread", "inline", "dask"])
def test_task_output_goes_to_its_log_and_not_to_opflow_output(tools_folder, executor):
    if executor == "dask":
        pytest.importorskip("distributed")
    flow = flow_file(tools_folder, CHATTY, name="out")
    proc = run_cli("run", str(flow), "--executor", executor, "--workers", "2", cwd=tools_folder)
    assert proc.returncode == 0, proc.stderr
    for marker in ("PRINTED-LINE", "LOGGED-LINE", "STDERR-LINE", "SHELL-OUT", "SHELL-ERR"):
        assert marker not in proc.stdout + proc.stderr
    run_dir = latest_run_dir(tools_folder / "logs")
    chatty = (run_dir / "tasks" / "chatty.log").read_text()
    assert "=== attempt 1" in chatty
    assert "PRINTED-LINE" in chatty and "LOGGED-LINE" in chatty and "STDERR-LINE" in chatty
    shell = (run_dir / "tasks" / "sh.log").read_text()
    assert "SHELL-OUT" in shell and "SHELL-ERR" in shell
    assert records(run_dir)["chatty"]["log"] == "tasks/chatty.log"
    assert json.loads((run_dir / "run.json").read_text())["task_output"] in ("fd", "python")


def test_quiet_prints_nothing_at_all_on_success(tools_folder):
    flow = flow_file(tools_folder, CHATTY, name="out")
    proc = run_cli("run", str(flow), "--quiet", cwd=tools_folder)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""


def test_child_processes_of_a_python_task_are_captured_on_the_process_backend(tools_folder):
    flow = flow_file(tools_folder, """
    - id: kid
      plugin: python
      config: {function: "tools:child_output"}
    """, name="out")
    proc = run_cli("run", str(flow), cwd=tools_folder)
    assert proc.returncode == 0, proc.stderr
    assert "CHILD-LINE" not in proc.stdout + proc.stderr
    assert "CHILD-LINE" in (latest_run_dir(tools_folder / "logs") / "tasks" / "kid.log").read_text()


@pytest.mark.parametrize("executor", ["process", "thread"])
def test_the_log_is_readable_while_the_task_runs(tools_folder, executor):
    go = tools_folder / "go"
    flow = flow_file(tools_folder, f"""
    - id: slow
      plugin: python
      config: {{function: "tools:wait_for_file", args: ["{go}"]}}
    """, name="out")
    coordinator = subprocess.Popen([sys.executable, "-m", "opflow", "run", str(flow), "--executor", executor],
                                   cwd=tools_folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def seen():
            logs = list((tools_folder / "logs").glob("*/tasks/slow.log"))
            return bool(logs) and "BEFORE-WAIT" in logs[0].read_text()
        wait_for(seen, timeout=60, what="the first line in the log while the task waits")
        assert "AFTER-WAIT" not in next((tools_folder / "logs").glob("*/tasks/slow.log")).read_text()
        go.write_text("go")
        assert coordinator.wait(timeout=60) == 0
    finally:
        if coordinator.poll() is None:
            coordinator.kill()
            coordinator.wait()
        coordinator.stdout.close()
        coordinator.stderr.close()
    assert "AFTER-WAIT" in next((tools_folder / "logs").glob("*/tasks/slow.log")).read_text()


def test_attempts_are_separated_in_the_log(tools_folder):
    flow = flow_file(tools_folder, f"""
    - id: flaky
      plugin: python
      retries: 1
      config: {{function: "tools:fail_first", args: ["{tools_folder / 'marker'}"]}}
    """, name="out")
    proc = run_cli("run", str(flow), cwd=tools_folder)
    assert proc.returncode == 0, proc.stderr
    text = (latest_run_dir(tools_folder / "logs") / "tasks" / "flaky.log").read_text()
    assert text.count("ATTEMPT-OUTPUT") == 2
    first, second = text.index("=== attempt 1"), text.index("=== attempt 2")
    assert first < text.index("ATTEMPT-OUTPUT") < second


def test_a_hundred_megabytes_of_output_cost_little_memory(tools_folder):
    flow = flow_file(tools_folder, """
    - id: loud
      plugin: shell
      config: {command: "yes 0123456789012345678901234567890123456789 | head -c 100000000"}
    """, name="out")
    proc = run_cli("run", str(flow), cwd=tools_folder, timeout=300)
    assert proc.returncode == 0, proc.stderr
    run_dir = latest_run_dir(tools_folder / "logs")
    assert (run_dir / "tasks" / "loud.log").stat().st_size >= 100_000_000
    record = records(run_dir)["loud"]
    assert record["resources"]["peak_rss_bytes"] < 150_000_000
    assert record["result"]["truncated"] == ["stdout"]


def test_a_task_that_closes_fds_0_to_2_does_not_break_the_next_task_on_its_worker(tools_folder):
    # One worker, so the second task runs where the first closed its fds.
    flow = flow_file(tools_folder, """
    - id: closer
      plugin: python
      config: {function: "tools:close_std_fds"}
    - id: after
      plugin: python
      depends_on: [closer]
      config: {function: "tools:after_close"}
    - id: sh
      plugin: shell
      depends_on: [after]
      config: {command: "echo SHELL-AFTER"}
    """, name="out")
    proc = run_cli("run", str(flow), "--workers", "1", cwd=tools_folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = latest_run_dir(tools_folder / "logs")
    statuses = {k: v["status"] for k, v in records(run_dir).items()}
    assert statuses == {"closer": "succeeded", "after": "succeeded", "sh": "succeeded"}
    pids = {r["resources"]["pid"] for r in records(run_dir).values()}
    assert len(pids) == 1  # the same worker process
    assert "STILL-PRINTS" in (run_dir / "tasks" / "after.log").read_text()
    assert "STILL-STDERR" in (run_dir / "tasks" / "after.log").read_text()


def test_a_task_that_closes_sys_stdout_does_not_break_the_next_task_on_its_worker(tools_folder):
    flow = flow_file(tools_folder, """
    - id: closer
      plugin: python
      config: {function: "tools:close_sys_streams"}
    - id: after
      plugin: python
      depends_on: [closer]
      config: {function: "tools:after_close"}
    """, name="out")
    proc = run_cli("run", str(flow), "--workers", "1", cwd=tools_folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "STILL-PRINTS" in (latest_run_dir(tools_folder / "logs") / "tasks" / "after.log").read_text()
