"""The log dir's disk fills mid-run.

A real `opflow run` with its log dir on a 1 MB tmpfs, where a task fills the
disk: the run stops dispatching, kills what runs, and run.json says failed with
the reason (written into the room reserved at the start). Needs root to mount;
skipped elsewhere.
"""
from __future__ import annotations

import json
import subprocess

import pytest

from helpers import latest_run_dir, run_cli


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "logs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_log_disk_stops_the_run_and_says_why(tmp_path, write_workflow, small_disk):
    (tmp_path / "out").mkdir()
    tasks = ['  - {id: fill, plugin: shell, config: {command: "head -c 4000000 /dev/zero > ' + str(small_disk)
             + '/filler; true"}}']
    tasks += [f'  - {{id: t{i}, plugin: shell, config: {{command: "sleep 0.3; touch {tmp_path}/out/ran{i}"}}}}'
              for i in range(40)]
    flow = tmp_path / "flow.yaml"
    flow.write_text("name: full disk\ntasks:\n" + "\n".join(tasks) + "\n")
    done = run_cli("run", str(flow), "--keep-going", "--workers", "2", "--log-dir", str(small_disk),
                   cwd=tmp_path, timeout=180)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "No space left on device" in done.stderr
    ran = len(list((tmp_path / "out").iterdir()))
    assert ran < 40, "tasks went on, unrecorded, after the disk filled"
    document = json.loads((latest_run_dir(small_disk) / "run.json").read_text())
    assert document["status"] == "failed"
    assert "No space left on device" in document["record_error"]
    assert not (latest_run_dir(small_disk) / ".reserve").exists()
