"""Shared fixtures: real files in tmp_path, the real CLI, and a guard against leaked processes."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

# Helper processes multiprocessing keeps for the life of the interpreter that
# started them (not per run): not leaks.
_INTERPRETER_HELPERS = ("multiprocessing.forkserver", "multiprocessing.resource_tracker")


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
    before = set(_children())
    yield
    leaked = {}
    for _ in range(50):  # processes being reaped may take a moment to go
        leaked = {pid: cmd for pid, cmd in _children().items() if pid not in before}
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
    shutil.copy(TESTS / "faults.py", target)
    return target


def run_cli(*args: str, cwd: Path, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m opflow ARGS` as a real process; bounded in time."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "opflow", *args], cwd=cwd, capture_output=True, text=True,
        timeout=timeout, env=full_env,
    )


def records(run_dir: Path) -> dict:
    """task_id -> its tasks/<id>.json record."""
    return {p.stem: json.loads(p.read_text()) for p in (run_dir / "tasks").glob("*.json")}


def wait_for(predicate, timeout=30.0, what="condition"):
    """Poll `predicate` until true; fail after `timeout` seconds (never wait unbounded)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def gone(pid: int) -> bool:
    """The process has exited (a zombie awaiting its parent counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def latest_run_dir(log_dir: Path) -> Path:
    runs = sorted(p for p in log_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert runs, f"no run directory under {log_dir}"
    return runs[-1]


def write(folder: Path, name: str, text: str) -> Path:
    """A file `name` under `folder` (folders made), its text dedented."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    """An empty current folder (./logs and ./workers are this test's own); workflow files go there too."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def invoke(*args, env=None):
    """The real CLI in this process (click's runner); an unexpected exception is raised, not swallowed."""
    from click.testing import CliRunner

    from opflow.cli.commands import main

    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler for `signum` (its SigCgt mask in /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
    except OSError:
        pass
    return False


def signal_when(proc: subprocess.Popen, ready, what: str, signum: int = signal.SIGINT, *,
                wait: float = 120, settle: float = 0.0, timeout: float = 60) -> str:
    """Once `ready()` holds, send `proc` `signum` and return its output; the process is reaped whatever happens."""
    try:
        wait_for(ready, wait, what)
        time.sleep(settle)
        proc.send_signal(signum)
        output, _ = proc.communicate(timeout=timeout)
        return output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
