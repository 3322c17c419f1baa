"""--if-running skip|wait|fail (contract v3, issue 24): what a second launch does while a first run of
the same workflow holds the lock, through the real CLI. The first run is held mid-way by a task that
waits for a file the test creates (a handshake, not a sleep)."""
from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import latest_run_dir, run_cli, run_dirs, run_json, wait_for

FLOW = """
    name: nightly
    tasks:
      - id: held
        plugin: python
        timeout: 120
        config: {function: "faults:first_caller_waits", args: ["started", "go"]}
"""


@pytest.fixture
def held_run(tmp_path, write_workflow, faults):
    """(workflow file, the first run's Popen) while its task waits for tmp_path/go; reaped after."""
    flow = write_workflow(FLOW)
    first = subprocess.Popen([sys.executable, "-m", "opflow", "run", str(flow), "--quiet"], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (tmp_path / "started").exists() or first.poll() is not None, 120, "the first run's task")
        assert first.poll() is None, first.communicate()
        yield flow, first
    finally:
        (tmp_path / "go").touch()
        try:
            first.communicate(timeout=120)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()


def _the_first_run_dir(log_dir: Path) -> Path:
    (only,) = run_dirs(log_dir)
    return only


def test_skip_exits_0_in_one_line_naming_the_other_run(tmp_path, held_run):
    flow, first = held_run
    holder = _the_first_run_dir(tmp_path / "logs")
    skipped = run_cli("run", str(flow), "--if-running", "skip", cwd=tmp_path)
    assert skipped.returncode == 0, skipped.stderr
    lines = (skipped.stdout + skipped.stderr).splitlines()
    assert len(lines) == 1, lines
    assert "skipped" in lines[0] and f"pid {first.pid}" in lines[0] and str(holder) in lines[0]
    assert run_dirs(tmp_path / "logs") == [holder]  # nothing ran: no run directory of its own


def test_fail_is_the_default_and_exits_3(tmp_path, held_run):
    flow, first = held_run
    for flags in ([], ["--if-running", "fail"]):
        blocked = run_cli("run", str(flow), *flags, cwd=tmp_path)
        assert blocked.returncode == 3, blocked.stderr
        assert "another run of this workflow is in progress" in blocked.stderr and f"pid {first.pid}" in blocked.stderr
    assert len(run_dirs(tmp_path / "logs")) == 1


@contextlib.contextmanager
def waiting_launch(tmp_path: Path, flow: Path):
    """(a second `run --if-running wait`, its output file) once it says it waits; reaped after."""
    out = tmp_path / "second.out"
    with out.open("w") as sink:
        second = subprocess.Popen([sys.executable, "-m", "opflow", "run", str(flow), "--if-running", "wait"],
                                  cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT)
        try:
            # It says it waits (and for whom) once it found the lock taken.
            wait_for(lambda: "waiting" in out.read_text() or second.poll() is not None, 120, "the second run to wait")
            assert second.poll() is None, out.read_text()
            yield second, out
        finally:
            if second.poll() is None:
                second.kill()
                second.wait()


def test_wait_starts_once_the_first_run_ends_and_succeeds(tmp_path, held_run):
    flow, first = held_run
    with waiting_launch(tmp_path, flow) as (second, out):
        assert f"pid {first.pid}" in out.read_text()
        assert len(run_dirs(tmp_path / "logs")) == 1  # it has not started
        (tmp_path / "go").touch()  # only now may the first run end
        assert second.wait(timeout=120) == 0, out.read_text()
    first.communicate(timeout=120)
    assert first.returncode == 0
    earlier, later = run_dirs(tmp_path / "logs")
    before, after = run_json(earlier), run_json(later)
    assert before["status"] == after["status"] == "succeeded"
    assert after["started_at"] >= before["finished_at"]  # ISO 8601 in UTC: ordered as text
    assert after["if_running"] == "wait" and after["lock_wait_s"] > 0
    assert before["if_running"] == "fail"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_waiting_exits_at_once_and_runs_nothing(tmp_path, held_run, signum):
    flow, first = held_run
    with waiting_launch(tmp_path, flow) as (second, out):
        second.send_signal(signum)
        assert second.wait(timeout=60) == 128 + signum, out.read_text()
    assert len(run_dirs(tmp_path / "logs")) == 1
    assert first.poll() is None  # the holder goes on


def test_skip_and_wait_run_at_once_when_nothing_holds_the_lock(tmp_path, write_workflow, faults):
    flow = write_workflow(FLOW)
    (tmp_path / "started").touch()  # first_caller_waits: not the first caller, so it does not wait
    for policy in ("skip", "wait"):
        result = run_cli("run", str(flow), "--if-running", policy, "--quiet", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert run_json(latest_run_dir(tmp_path / "logs"))["if_running"] == policy


def test_if_running_with_no_lock_is_a_usage_error(tmp_path, write_workflow, faults):
    flow = write_workflow(FLOW)
    (tmp_path / "started").touch()  # were it to run, its task would not wait
    result = run_cli("run", str(flow), "--if-running", "skip", "--no-lock", cwd=tmp_path)
    assert result.returncode == 2
    assert "--if-running" in result.stderr and "--no-lock" in result.stderr
    assert run_dirs(tmp_path / "logs") == []


def test_resume_takes_the_same_lock_and_the_same_policy(tmp_path, held_run):
    flow, first = held_run
    holder = _the_first_run_dir(tmp_path / "logs")
    skipped = run_cli("resume", str(holder), "--if-running", "skip", cwd=tmp_path)
    assert skipped.returncode == 0, skipped.stderr
    assert "skipped" in skipped.stderr and f"pid {first.pid}" in skipped.stderr
    assert run_cli("resume", str(holder), cwd=tmp_path).returncode == 3
    assert run_dirs(tmp_path / "logs") == [holder]


def test_the_policy_can_live_in_the_config_file(tmp_path, held_run):
    flow, first = held_run
    (tmp_path / "opflow.toml").write_text('if-running = "skip"\n')  # after the first run read its own
    skipped = run_cli("run", str(flow), cwd=tmp_path)
    assert skipped.returncode == 0 and "skipped" in skipped.stderr, skipped.stderr
    (tmp_path / "opflow.toml").write_text('if-running = "sometimes"\n')
    refused = run_cli("run", str(flow), cwd=tmp_path)
    assert refused.returncode == 2 and "opflow.toml" in refused.stderr and "if-running" in refused.stderr


def test_skip_with_json_prints_a_document_saying_so(tmp_path, held_run):
    flow, first = held_run
    skipped = run_cli("run", str(flow), "--if-running", "skip", "--json", cwd=tmp_path)
    assert skipped.returncode == 0, skipped.stderr
    document = json.loads(skipped.stdout)
    assert document["status"] == "skipped" and f"pid {first.pid}" in document["message"]
    assert len(skipped.stderr.splitlines()) == 1
