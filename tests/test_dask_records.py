"""Dask keeps records as the process pool does: a timed-out task's record says how long it ran, and
SIGTERM to the whole process group, while the cluster starts or while a task runs, exits 143 cleanly."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="the dask extra is not installed: pip install 'opflow[dask]'")

from helpers import latest_run_dir, records, run_cli, run_dirs, run_json, wait_for  # noqa: E402

OPFLOW = Path(sys.executable).with_name("opflow")


def test_a_timed_out_dask_task_records_how_long_it_ran(tmp_path, write_workflow):
    flow = write_workflow("""
        name: dask timeout
        tasks:
          - {id: slow, plugin: shell, timeout: 2, config: {command: "sleep 60"}}
    """)
    done = run_cli("run", str(flow), "--executor", "dask", "--workers", "1", cwd=tmp_path, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    record = records(latest_run_dir(tmp_path / "logs"))["slow"]
    assert record["error"]["type"] == "Timeout"
    assert record["duration_s"] >= 1.9, record  # it ran for its 2 s, not 0.0
    assert record["attempt_log"][0]["duration_s"] >= 1.9
    assert record["resources"]["wall_s"] >= 1.9


@pytest.mark.parametrize("moment", ["cluster starting", "task running"])
def test_sigterm_to_a_dask_run_exits_cleanly(moment, tmp_path, write_workflow):
    # SIGTERM to the whole process group, as `timeout`, systemd or a container
    # stop send it: the Dask workers and nannies get it too.
    flow = write_workflow("""
        name: dask sigterm
        tasks:
          - {id: a, plugin: shell, config: {command: "sleep 60"}}
          - {id: b, plugin: python, config: {function: "time:sleep", args: [60]}}
          - {id: c, plugin: shell, config: {command: "true"}, depends_on: [a]}
    """)
    log, logs = tmp_path / "out.txt", tmp_path / "logs"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(OPFLOW), "run", str(flow), "--executor", "dask", "--workers", "2"],
                                cwd=tmp_path, stdout=out, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            if moment == "task running":
                wait_for(lambda: "start" in log.read_text() or proc.poll() is not None, 180, "a task to start")
            else:
                # The run directory is made just before the Dask backend is made and starts its
                # LocalCluster, run.json once the cluster is up: in between, it is starting.
                wait_for(lambda: run_dirs(logs) or proc.poll() is not None, 180, "the run directory")
                assert proc.poll() is None, f"it exited before its run began: {proc.returncode}"
                assert not (latest_run_dir(logs) / "run.json").exists(), "the cluster was up before the test looked"
            os.killpg(proc.pid, signal.SIGTERM)
            err = proc.communicate(timeout=120)[1]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert proc.returncode == 143, f"{moment}: exit {proc.returncode}\n{err}"
    assert "Traceback" not in err and "CommClosedError" not in err, err
    if moment == "task running":
        assert run_json(latest_run_dir(logs))["status"] == "interrupted"
    else:  # stopped before it started: no half a record is left
        assert run_dirs(logs) == []
