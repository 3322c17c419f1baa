"""Nothing a task starts outlives it, unless the task says so.

Daemons (double fork + setsid) started by shell and python tasks, 50 background
children, and a daemon started by a task that then times out: all gone when the
run ends, and `opflow run ... | cat` returns as soon as the run does. A task
with `keep_children: true` keeps them.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from helpers import gone, latest_run_dir, records, run_cli, wait_for

OPFLOW = Path(sys.executable).with_name("opflow")

DAEMON = '''
import os, time


def daemon(pidfile):
    """Double fork and setsid, keeping every inherited descriptor (stdout included)."""
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            with open(pidfile + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename(pidfile + ".tmp", pidfile)
            time.sleep(300)
            os._exit(0)
        os._exit(0)
    os.wait()
    return "spawned"
'''


def pids(tmp_path: Path, name: str) -> list[int]:
    path = tmp_path / name
    wait_for(path.exists, 30, f"{name}")
    return [int(p) for p in path.read_text().split()]


def kill_all(pid_list):
    for pid in pid_list:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def daemon_module(tmp_path):
    (tmp_path / "daemons.py").write_text(DAEMON)


def test_daemons_and_children_of_tasks_die_with_their_task(tmp_path, write_workflow, daemon_module):
    flow = write_workflow("""
        name: escapers
        tasks:
          - {id: py, plugin: python, config: {function: "daemons:daemon", args: [py.pid]}}
          - id: sh
            plugin: shell
            config:
              command: "setsid sleep 300 & echo $! > sh.pid; for i in $(seq 50); do sleep 300 & echo $! >> many.pid; done"
          - {id: after, plugin: shell, config: {command: "true"}, depends_on: [py, sh]}
    """)
    started = time.monotonic()
    try:
        done = run_cli("run", str(flow), cwd=tmp_path, timeout=120)
        took = time.monotonic() - started
        assert done.returncode == 0, done.stdout + done.stderr
        left = [p for p in pids(tmp_path, "py.pid") + pids(tmp_path, "sh.pid") + pids(tmp_path, "many.pid")
                if not gone(p)]
        assert left == [], f"{len(left)} processes outlived their task"
        assert took < 60
    finally:
        kill_all(pids(tmp_path, "py.pid") + pids(tmp_path, "sh.pid"))


def test_a_daemon_dies_with_its_task_on_timeout(tmp_path, write_workflow):
    flow = write_workflow("""
        name: timeout escaper
        tasks:
          - id: slow
            plugin: shell
            timeout: 2
            # Double fork: the inner shell exits at once, leaving its sleep an orphan.
            config: {command: "setsid sh -c 'sleep 300 & echo $! > daemon.pid'; sleep 120"}
    """)
    try:
        done = run_cli("run", str(flow), cwd=tmp_path, timeout=120)
        assert done.returncode == 1, done.stdout + done.stderr
        assert records(latest_run_dir(tmp_path / "logs"))["slow"]["error"]["type"] == "Timeout"
        daemon = pids(tmp_path, "daemon.pid")[0]
        wait_for(lambda: gone(daemon), 10, "the timed-out task's daemon to die")
    finally:
        kill_all(pids(tmp_path, "daemon.pid"))


def test_opflow_run_piped_to_cat_returns_when_the_run_ends(tmp_path, write_workflow, daemon_module):
    # The python daemon inherits the worker's stdout (the pipe to `cat`) and the
    # forkserver's and resource tracker's pipes: it must not hold them past the run.
    flow = write_workflow("""
        name: piped
        tasks:
          - {id: py, plugin: python, config: {function: "daemons:daemon", args: [py.pid]}}
    """)
    try:
        pipeline = subprocess.Popen(f"'{OPFLOW}' run '{flow}' | cat", shell=True, cwd=tmp_path,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        started = time.monotonic()
        try:
            out, err = pipeline.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pipeline.kill()
            pipeline.communicate()
            pytest.fail("`opflow run | cat` still open 60 s later: something holds the pipe")
        took = time.monotonic() - started
        assert pipeline.returncode == 0, err
        assert b"record:" in out
        assert gone(pids(tmp_path, "py.pid")[0])
        assert took < 30, f"the pipe closed {took:.1f} s after the start"
    finally:
        kill_all(pids(tmp_path, "py.pid"))


def test_keep_children_lets_a_task_leave_a_process_running(tmp_path, write_workflow):
    flow = write_workflow("""
        name: keeper
        tasks:
          - id: starts_server
            plugin: shell
            keep_children: true
            config: {command: "setsid sleep 300 >/dev/null 2>&1 < /dev/null & echo $! > kept.pid"}
    """)
    try:
        done = run_cli("run", str(flow), cwd=tmp_path, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        kept = pids(tmp_path, "kept.pid")[0]
        assert not gone(kept), "keep_children: true, yet the process was killed"
    finally:
        kill_all(pids(tmp_path, "kept.pid"))
        for pid in pids(tmp_path, "kept.pid"):
            wait_for(lambda: not psutil.pid_exists(pid) or gone(pid), 10, "the kept process to go")


def test_keep_children_must_be_a_boolean(tmp_path, write_workflow):
    flow = write_workflow("""
        name: bad keep
        tasks:
          - {id: a, plugin: shell, keep_children: "yes please", config: {command: "true"}}
    """)
    done = run_cli("validate", str(flow), cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert "flow.yaml:3: task 'a': 'keep_children' must be true or false" in done.stderr


def test_a_background_job_does_not_hold_its_shell_task(tmp_path, write_workflow):
    # `cmd &` holding the task's stdout pipe: the task ends when the command does.
    flow = write_workflow("""
        name: background
        tasks:
          - {id: bg, plugin: shell, config: {command: "sleep 300 & echo $! > bg.pid; echo done"}}
    """)
    try:
        started = time.monotonic()
        done = run_cli("run", str(flow), "--executor", "thread", cwd=tmp_path, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert time.monotonic() - started < 60
        assert records(latest_run_dir(tmp_path / "logs"))["bg"]["result"]["stdout"] == "done\n"
        assert gone(pids(tmp_path, "bg.pid")[0])
    finally:
        kill_all(pids(tmp_path, "bg.pid"))
