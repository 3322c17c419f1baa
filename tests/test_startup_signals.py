"""SIGINT/SIGTERM from the first instant of `opflow run`.

A real `opflow run` (the console script) gets a signal at several moments of its
start-up: during imports, while parsing, while the run directory and the pool
and Manager start, and while a task runs. Each time: exit 130/143, one line on
stderr and no traceback, and every run directory that exists is complete and
says `interrupted`.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import catches, run_dirs, wait_for

OPFLOW = Path(sys.executable).with_name("opflow")


@pytest.fixture
def flow(tmp_path) -> Path:
    # Enough tasks that parsing and planning take a moment; the first sleeps.
    lines = ["name: startup", "tasks:", '  - {id: sleeper, plugin: shell, config: {command: "sleep 60"}}']
    lines += [f'  - {{id: t{i}, plugin: shell, config: {{command: "true"}}, depends_on: [sleeper]}}'
              for i in range(3000)]
    path = tmp_path / "flow.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def start(flow: Path, tmp_path: Path) -> subprocess.Popen:
    return subprocess.Popen([str(OPFLOW), "run", str(flow), "--log-dir", str(tmp_path / "logs"), "--workers", "2"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def check_clean_stop(proc: subprocess.Popen, signum: int, tmp_path: Path, when: str) -> None:
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{when}: opflow did not exit after {signal.Signals(signum).name}\n{err}")
    assert proc.returncode == 128 + signum, f"{when}: exit {proc.returncode}\n{out}\n{err}"
    assert "Traceback" not in err, f"{when}:\n{err}"
    assert signal.Signals(signum).name in out + err, f"{when}:\n{out}\n{err}"
    for run_dir in run_dirs(tmp_path / "logs"):
        document = json.loads((run_dir / "run.json").read_text())
        assert document["status"] == "interrupted", f"{when}: {run_dir.name} says {document['status']}"
        assert (run_dir / "summary.txt").exists()
        events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
        assert events[-1]["event"] == "run_finished", f"{when}: the journal ends with {events[-1]}"
        statuses = {json.loads(p.read_text())["status"] for p in (run_dir / "tasks").glob("*.json")}
        assert statuses <= {"cancelled"}, statuses


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("delay", [0.0, 0.1, 0.4, 1.0])
def test_a_signal_during_start_up_exits_cleanly(signum, delay, flow, tmp_path):
    proc = start(flow, tmp_path)
    # From the first instant opflow's code runs: its handler is in place (the
    # interpreter's own start-up, before any opflow code, is not ours to handle).
    wait_for(lambda: catches(proc.pid, signal.SIGTERM) or proc.poll() is not None, 60, "the handler")
    time.sleep(delay)
    proc.send_signal(signum)
    check_clean_stop(proc, signum, tmp_path, f"{delay}s after the handler")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_when_the_run_directory_appears(signum, flow, tmp_path):
    # The run directory exists, the pool and the Manager are starting: the run
    # directory must end complete and interrupted, or not exist at all.
    proc = start(flow, tmp_path)
    wait_for(lambda: run_dirs(tmp_path / "logs") or proc.poll() is not None, 120, "the run directory")
    proc.send_signal(signum)
    check_clean_stop(proc, signum, tmp_path, "as the run directory appeared")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_when_run_json_appears(signum, flow, tmp_path):
    proc = start(flow, tmp_path)
    wait_for(lambda: any((d / "run.json").exists() for d in run_dirs(tmp_path / "logs")) or proc.poll() is not None,
             120, "run.json")
    proc.send_signal(signum)
    check_clean_stop(proc, signum, tmp_path, "as run.json appeared")
    assert len(run_dirs(tmp_path / "logs")) == 1


def test_python_m_opflow_handles_a_signal_during_imports_too(flow, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "opflow", "run", str(flow), "--log-dir", str(tmp_path / "logs")],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: catches(proc.pid, signal.SIGTERM) or proc.poll() is not None, 60, "the handler")
    proc.send_signal(signal.SIGTERM)
    check_clean_stop(proc, signal.SIGTERM, tmp_path, "python -m opflow, during imports")
