"""rundir/layout.py: the run directory's one name pattern, and the one rule for whether a
run's coordinator is alive. (tests/test_layout.py is the package's folder layout.)"""
from __future__ import annotations

import json
import shutil
import os
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import psutil
import pytest

import opflow
from opflow.rundir import history, layout, runs
from opflow.rundir.layout import (RunName, coordinator_alive, create_run_dir, effective_status, file_tag,
                                  find_runs, is_run_dir_name, parse_run_dir_name, run_state)

from helpers import wait_for

STAMP = "20260101T000000Z"


# -- names ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, workflow, parsed", [
    (f"{STAMP}-job", "job", RunName(STAMP, None, 1)),
    (f"{STAMP}-job-2", "job", RunName(STAMP, None, 2)),  # job's second run of that second
    (f"{STAMP}-job-2", "job 2", RunName(STAMP, None, 1)),  # "job 2"'s first: the slug ends in -2
    (f"{STAMP}-job-2-2", "job 2", RunName(STAMP, None, 2)),
    (f"{STAMP}-job-2-10", "job 2", RunName(STAMP, None, 10)),
    (f"{STAMP}-job-fabc123", "job", RunName(STAMP, "abc123", 1)),
    (f"{STAMP}-job-fabc123-3", "job", RunName(STAMP, "abc123", 3)),
    (f"{STAMP}-job-2-fabc123-3", "job 2", RunName(STAMP, "abc123", 3)),
    (f"{STAMP}-donnees-ete", "Données été", RunName(STAMP, None, 1)),
    (f"{STAMP}-job-3", "job 2", None),  # another workflow's
    (f"{STAMP}-jobs", "job", None),
    (f"{STAMP}-job-x", "job", None),
    (f"{STAMP}-job-fABC123", "job", None),  # tags are lower-case hex
    ("20260101T0000Z-job", "job", None),
    (f"{STAMP}job", "job", None),
    (f".{STAMP}-job", "job", None),
])
def test_a_run_dir_name_parses_exactly_against_its_workflow_name(name, workflow, parsed):
    assert parse_run_dir_name(name, workflow) == parsed
    if parsed is not None:
        assert is_run_dir_name(name)


@pytest.mark.parametrize("name, is_run", [
    (f"{STAMP}-job", True), (f"{STAMP}-日本", True), (f"{STAMP}-job-fabc123-2", True),
    (f"{STAMP}-", False), ("job", False), (".lock-job", False), (f"x{STAMP}-job", False),
])
def test_any_run_dir_name_is_told_from_other_files(name, is_run):
    assert is_run_dir_name(name) is is_run


def test_the_names_create_run_dir_makes_parse_back_and_sort_by_number(tmp_path):
    now = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
    flow = tmp_path / "flow.yaml"
    made = [create_run_dir(tmp_path / "logs", "job 2", now, flow) for _ in range(11)]
    for n, run_dir in enumerate(made, 1):
        assert parse_run_dir_name(run_dir.name, "job 2") == RunName(STAMP, file_tag(flow), n)
        (run_dir / "run.json").write_text("{}")
    other = create_run_dir(tmp_path / "logs", "job", now)  # "job"'s run: not one of "job 2"'s
    (other / "run.json").write_text("{}")
    assert find_runs(tmp_path / "logs", "job 2") == made  # -10 and -11 after -9: by number, not text
    assert history.find_runs is find_runs  # the old home still answers


# -- is the coordinator alive ------------------------------------------------------------
def _me(**fields) -> dict:
    """A run.json written by this very process, on this host."""
    return {"status": "running", "pid": os.getpid(), "host": socket.gethostname(),
            "pid_create_time": psutil.Process().create_time(), **fields}


@pytest.fixture
def zombie_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, timeout=60, what="the child to exit")
        yield child.pid
    finally:
        child.wait()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("doc, alive", [
    (_me(), True),
    (_me(pid_create_time=None), True),  # none recorded, started_at missing: the pid alone
    (_me(pid_create_time=psutil.Process().create_time() + 0.5), True),  # rounding
    (_me(pid_create_time=psutil.Process().create_time() - 3600), False),  # the pid is a later process's
    (_me(pid_create_time=None, started_at="2000-01-01T00:00:00+00:00"), False),  # started long after the run
    (_me(pid_create_time=None, started_at=datetime.now(timezone.utc).isoformat()), True),
    (_me(host="elsewhere.example"), None),  # another host: its pids mean nothing here
    (_me(host=None), None),  # no host recorded: cannot tell where the pid lives
    (_me(pid_create_time=0.0, host=None), None),  # ... even where the pid here is a later process's
    (_me(pid=None), None),  # a record from before opflow kept the pid
    (_me(pid=True), None), (_me(pid=0), None), (_me(pid=-1), None), (_me(pid="12"), None),
], ids=["this-process", "no-create-time", "create-time-rounded", "pid-reused", "pid-reused-by-started-at",
        "started-after-this-process", "another-host", "no-host", "no-host-reused-pid", "no-pid",
        "pid-bool", "pid-0", "pid-negative", "pid-text"])
def test_the_liveness_rule(doc, alive):
    assert coordinator_alive(doc) is alive
    assert effective_status(doc) == ("crashed" if alive is False else "running")


def test_a_dead_or_zombie_coordinator_is_dead(zombie_pid):
    assert coordinator_alive(_me(pid=_dead_pid(), pid_create_time=None)) is False
    zombie = _me(pid=zombie_pid, pid_create_time=psutil.Process(zombie_pid).create_time())
    assert coordinator_alive(zombie) is False
    assert effective_status(zombie) == "crashed"
    assert effective_status(dict(zombie, status="succeeded")) == "succeeded"  # only a running run can crash


@pytest.mark.parametrize("error, alive", [(psutil.AccessDenied, None), (psutil.Error, None),
                                          (psutil.NoSuchProcess, False), (psutil.ZombieProcess, False)])
def test_what_psutil_errors_mean(error, alive, monkeypatch):
    # AccessDenied: the pid is taken, by a process opflow may not read: whose it is, cannot tell.
    def refuse(pid):
        raise error(pid) if error is not psutil.Error else error()

    doc = _me()
    monkeypatch.setattr(psutil, "Process", refuse)
    assert coordinator_alive(doc) is alive


def test_one_rule_under_every_name(tmp_path, zombie_pid):
    assert history.coordinator_alive is runs.coordinator_alive is coordinator_alive
    assert history.run_state is opflow.run_state is run_state
    assert runs.effective_status is effective_status
    assert run_state(tmp_path) == "unknown"  # no run.json
    zombie = _me(pid=zombie_pid, pid_create_time=psutil.Process(zombie_pid).create_time())
    (tmp_path / "run.json").write_text(json.dumps(zombie))
    assert run_state(tmp_path) == "crashed"
    (tmp_path / "run.json").write_text(json.dumps(_me()))
    assert run_state(Path(tmp_path)) == "running"
    (tmp_path / "run.json").write_text("[]")  # not an object
    assert run_state(tmp_path) == "unknown"
    assert layout.read_run_json(tmp_path) is None


def test_a_run_dir_name_freed_by_pruning_is_not_taken_again_within_its_second(tmp_path):
    # Pruning keeps the newest runs by name order: a later run must never take a freed suffix.
    now = 1_800_000_000.0
    made = [create_run_dir(tmp_path, "job", now) for _ in range(3)]
    assert [d.name.rsplit("-job", 1)[1] for d in made] == ["", "-2", "-3"]
    for run_dir in made:
        (run_dir / "run.json").write_text("{}")
    shutil.rmtree(made[1])  # --keep-runs deleted the second
    later = create_run_dir(tmp_path, "job", now)
    (later / "run.json").write_text("{}")
    assert later.name.endswith("-job-4")
    assert find_runs(tmp_path, "job") == [made[0], made[2], later]  # oldest first, the later one last
