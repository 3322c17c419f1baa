"""Shared fixtures: real files in tmp_path, and a guard against leaked processes.

Plain helper functions are in helpers.py (`from helpers import ...`); only fixtures live here.
"""
from __future__ import annotations

import os
import shutil
import textwrap
import time
import uuid
from pathlib import Path

import psutil
import pytest

_FAULTS = Path(__file__).resolve().parent / "faults.py"

# Helper processes multiprocessing keeps for the life of the interpreter that
# started them (not per run): not leaks.
_INTERPRETER_HELPERS = ("multiprocessing.forkserver", "multiprocessing.resource_tracker")


#: Every process the suite starts inherits this mark, so a process that escaped the test's
#: tree (re-parented to init when its parent died: the very leak a broken kill makes) is
#: still found by its environment.
_MARK = "OPFLOW_TESTS_SESSION"
os.environ[_MARK] = f"{os.getpid()}-{uuid.uuid4().hex}"
_SESSION_START = time.time() - 1


def _escaped() -> dict[int, str]:
    """Marked processes of this session that are no longer in this process's tree."""
    ours = {p.pid for p in psutil.Process().children(recursive=True)} | {os.getpid()}
    found = {}
    for proc in psutil.process_iter(["pid", "create_time"]):
        if proc.pid in ours or (proc.info["create_time"] or 0) < _SESSION_START:
            continue
        try:
            if proc.environ().get(_MARK) != os.environ[_MARK] or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if not any(helper in cmdline for helper in _INTERPRETER_HELPERS):
            found[proc.pid] = f"{cmdline} (escaped: parent {proc.ppid()})"
    return found


def _children() -> dict[int, str]:
    found = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(proc.cmdline())
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        if not any(helper in cmdline for helper in _INTERPRETER_HELPERS):
            found[proc.pid] = cmdline
    return found


@pytest.fixture(autouse=True)
def no_leaked_processes():
    """Fail any test that leaves a child process behind (and kill it, so others do not suffer)."""
    before = set(_children()) | set(_escaped())  # an earlier test's: reported (and killed) there
    yield
    leaked = {}
    for _ in range(50):  # processes being reaped may take a moment to go
        leaked = {pid: cmd for pid, cmd in {**_children(), **_escaped()}.items() if pid not in before}
        if not leaked:
            break
        psutil.wait_procs([psutil.Process(p) for p in leaked if psutil.pid_exists(p)], timeout=0.1)
    if leaked:
        for pid in leaked:
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
        pytest.fail(f"test left processes running: {leaked}")


@pytest.fixture(autouse=True)
def temp_files_in_tmp_path(tmp_path, monkeypatch):
    """Processes a test starts put their temporary files (multiprocessing's pymp-*
    folders, left behind when a test kills a coordinator) in the test's tmp_path."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))


@pytest.fixture
def write_workflow(tmp_path):
    """write_workflow(text, name="flow.yaml") -> Path: a workflow file in tmp_path (dedented)."""

    def write(text: str, name: str = "flow.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


@pytest.fixture
def faults(tmp_path) -> Path:
    """The fault catalogue (tests/faults.py) copied beside the workflow files, as 'faults'."""
    target = tmp_path / "faults.py"
    shutil.copy(_FAULTS, target)
    return target


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    """An empty current folder (./logs and ./workers are this test's own); workflow files go there too."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


# -- strict mode (.ci/run): a skip there is a defect ---------------------------------
_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(f"{report.nodeid}: {report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr}")


def pytest_sessionfinish(session, exitstatus):
    # .ci/run installs everything every test needs (the dask extra, chromium, root for the
    # second-user tests): there, any skip means a test that did not run, and fails the run.
    if os.environ.get("OPFLOW_TESTS_STRICT") == "1" and _skipped:
        print("\nstrict mode (OPFLOW_TESTS_STRICT=1): these tests were skipped:\n  " + "\n  ".join(_skipped))
        session.exitstatus = 1
