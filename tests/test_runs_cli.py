"""History: `opflow runs`, `opflow show`, and --json on validate/plan/plugins."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import psutil
import pytest

from helpers import latest_run_dir, run_cli, wait_for

TOOLS = '''
import time
from pathlib import Path

def wait_for_file(path):
    deadline = time.time() + 60
    while not Path(path).exists() and time.time() < deadline:
        time.sleep(0.02)
    return 1
'''


@pytest.fixture
def flows_folder(tmp_path):
    """tmp_path holding tools.py, flow.yaml (hello, then a failing bad) and other.yaml (one shell task)."""
    (tmp_path / "tools.py").write_text(TOOLS)
    (tmp_path / "flow.yaml").write_text(textwrap.dedent("""
        name: hist
        tasks:
          - id: hello
            plugin: shell
            config: {command: "echo HELLO-OUTPUT; echo '{\\"n\\": 1}'"}
          - id: bad
            plugin: shell
            depends_on: [hello]
            config: {command: "echo broken-pipe-detail >&2; exit 4"}
    """))
    (tmp_path / "other.yaml").write_text("name: other\ntasks:\n  - id: x\n    plugin: shell\n    config: {command: 'true'}\n")
    return tmp_path


def _runs_json(flows_folder, *args):
    proc = run_cli("runs", *args, "--json", cwd=flows_folder)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_runs_lists_newest_first_one_line_each_and_filters_by_file(flows_folder):
    assert run_cli("run", "flow.yaml", cwd=flows_folder).returncode == 1
    assert run_cli("run", "other.yaml", cwd=flows_folder).returncode == 0
    rows = _runs_json(flows_folder)
    assert [r["workflow"] for r in rows] == ["other", "hist"]
    assert rows[1]["status"] == "failed" and rows[1]["counts"] == {"failed": 1, "succeeded": 1}
    assert rows[0]["duration_s"] > 0
    assert [r["workflow"] for r in _runs_json(flows_folder, "flow.yaml")] == ["hist"]
    text = run_cli("runs", cwd=flows_folder).stdout.splitlines()
    assert len(text) == 2 and "other" in text[0] and "hist" in text[1] and "1 failed, 1 succeeded" in text[1]


def test_show_prints_the_summary_and_one_task_with_its_log_and_result(flows_folder):
    run_cli("run", "flow.yaml", cwd=flows_folder)
    run_dir = latest_run_dir(flows_folder / "logs")
    summary = run_cli("show", str(run_dir), cwd=flows_folder)
    assert summary.returncode == 0 and "Status:   failed" in summary.stdout and "broken-pipe-detail" in summary.stdout
    task = run_cli("show", str(run_dir), "hello", cwd=flows_folder)
    assert task.returncode == 0
    assert "HELLO-OUTPUT" in task.stdout.split("Log (last lines):")[1]  # the log tail
    assert '"stdout"' in task.stdout  # the result
    record = json.loads(run_cli("show", str(run_dir), "bad", "--json", cwd=flows_folder).stdout)
    assert record["status"] == "failed" and "broken-pipe-detail" in record["log_tail"]
    missing = run_cli("show", str(run_dir), "nope", cwd=flows_folder)
    assert missing.returncode == 2 and "no task 'nope'" in missing.stderr and "hello" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert run_cli("show", str(flows_folder), cwd=flows_folder).returncode == 2  # not a run directory


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_running_run_whose_coordinator_is_dead_shows_as_crashed(flows_folder):
    run_cli("run", "other.yaml", cwd=flows_folder)
    run_dir = latest_run_dir(flows_folder / "logs")
    doc = json.loads((run_dir / "run.json").read_text())
    doc.update(status="running", finished_at=None, duration_s=None, pid=_dead_pid())
    (run_dir / "run.json").write_text(json.dumps(doc))
    assert _runs_json(flows_folder)[0]["status"] == "crashed"
    assert "crashed" in run_cli("show", str(run_dir), cwd=flows_folder).stdout
    # alive, the very process the record names (its start time too): still running
    doc.update(pid=os.getpid(), pid_create_time=psutil.Process().create_time())
    (run_dir / "run.json").write_text(json.dumps(doc))
    assert _runs_json(flows_folder)[0]["status"] == "running"
    del doc["pid"]  # older runs record no pid: shown as written
    (run_dir / "run.json").write_text(json.dumps(doc))
    assert _runs_json(flows_folder)[0]["status"] == "running"


@pytest.fixture
def zombie():
    """A child that has exited and is not reaped (its parent, this test, has not waited)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, timeout=60,
                 what="the child to exit")
        yield child.pid, psutil.Process(child.pid).create_time()
    finally:
        child.wait()


@pytest.mark.parametrize("case", ["zombie", "no-host-later-pid"])
def test_every_command_reads_one_liveness_rule(case, flows_folder, zombie):
    # One planted run.json, read by `runs`, `show`, `report`, `resume` and --keep-runs alike.
    # A zombie coordinator has exited: dead (crashed). A record without `host` whose pid now
    # belongs to a later process: where that pid lives cannot be told, so never crashed by guess.
    assert run_cli("run", "other.yaml", cwd=flows_folder).returncode == 0
    run_dir = latest_run_dir(flows_folder / "logs")
    doc = json.loads((run_dir / "run.json").read_text())
    doc.update(status="running", finished_at=None, duration_s=None)
    if case == "zombie":
        pid, created = zombie
        doc.update(pid=pid, pid_create_time=created, host=socket.gethostname())
    else:  # this test's own process, which started long after that run (an hour before it, flows_folder)
        del doc["host"]
        doc.update(pid=os.getpid(), started_at="2000-01-01T00:00:00+00:00", pid_create_time=946684800.0)
    (run_dir / "run.json").write_text(json.dumps(doc))
    expected = "crashed" if case == "zombie" else "running"

    assert _runs_json(flows_folder)[0]["status"] == expected
    assert json.loads(run_cli("show", str(run_dir), "--json", cwd=flows_folder).stdout)["status"] == expected
    assert f"Status:   {expected}" in run_cli("show", str(run_dir), cwd=flows_folder).stdout
    report = run_cli("report", str(run_dir), "-o", str(flows_folder / "report.html"), cwd=flows_folder)
    assert report.returncode == 0, report.stderr
    assert f">{expected}</span></h2>" in (flows_folder / "report.html").read_text()
    resumed = run_cli("resume", str(run_dir), cwd=flows_folder)
    if case == "zombie":
        assert resumed.returncode == 0, resumed.stderr
    else:
        assert resumed.returncode == 2 and "cannot tell whether its coordinator" in resumed.stderr
    assert run_cli("run", "other.yaml", "--keep-runs", "1", cwd=flows_folder).returncode == 0
    assert run_dir.exists() == (case != "zombie")  # pruned only when its coordinator is known dead


def test_a_killed_coordinator_reads_as_crashed(flows_folder):
    go = flows_folder / "go"
    (flows_folder / "slow.yaml").write_text(textwrap.dedent(f"""
        name: slow
        tasks:
          - id: wait
            plugin: python
            config: {{function: "tools:wait_for_file", args: ["{go}"]}}
    """))
    coordinator = subprocess.Popen([sys.executable, "-m", "opflow", "run", "slow.yaml"], cwd=flows_folder,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        started = psutil.Process(coordinator.pid).create_time()
        # It prints nothing, so it has no log: its start is in the journal.
        wait_for(lambda: any('"task_started"' in p.read_text() for p in (flows_folder / "logs").glob("*/events.jsonl")),
                 timeout=60, what="the task to start")
        coordinator.send_signal(signal.SIGKILL)
        coordinator.wait(timeout=30)
    finally:
        go.write_text("go")  # let the orphaned worker finish (its parent watch ends it too)
        if coordinator.poll() is None:
            coordinator.kill()
            coordinator.wait()
    doc = json.loads((latest_run_dir(flows_folder / "logs") / "run.json").read_text())
    # Crash detection reads these two: a run.json without them could never read as crashed.
    assert doc.get("pid") == coordinator.pid
    assert doc.get("pid_create_time") == pytest.approx(started, abs=0.01)
    assert doc.get("host") == socket.gethostname()
    assert _runs_json(flows_folder)[0]["status"] == "crashed"
    assert json.loads(run_cli("show", str(latest_run_dir(flows_folder / "logs")), "--json", cwd=flows_folder).stdout)["status"] == "crashed"


def test_json_on_validate_plan_and_plugins(flows_folder):
    valid = json.loads(run_cli("validate", "flow.yaml", "--json", cwd=flows_folder).stdout)
    assert valid == {"file": "flow.yaml", "ok": True, "workflow": "hist", "tasks": 2, "layers": 2}
    (flows_folder / "broken.yaml").write_text("name: b\ntasks:\n  - id: a\n    plugin: nope\n")
    broken = run_cli("validate", "broken.yaml", "--json", cwd=flows_folder)
    assert broken.returncode == 2
    problems = json.loads(broken.stdout)["problems"]
    assert problems[0]["line"] == 4 and problems[0]["task_id"] == "a"
    plan = json.loads(run_cli("plan", "flow.yaml", "--json", cwd=flows_folder).stdout)
    assert plan["layers"] == [["hello"], ["bad"]] and plan["critical_path"] is None
    plugins = json.loads(run_cli("plugins", "--json", cwd=flows_folder).stdout)
    assert {"shell", "python", "csv_ingest", "metrics"} <= {p["name"] for p in plugins}


# -- hostile run directories: the read commands validate what they read ----------------
GOOD = {"workflow": "hist", "status": "succeeded", "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:00:01+00:00", "duration_s": 1.0, "tasks": {"a": "succeeded"},
        "workflow_file": "/nowhere/flow.yaml", "workers": 1, "executor": "process"}


def _plant(log_dir, name: str, text: str | None = None, **changes):
    """A run directory made by hand: log_dir/<name>/run.json (GOOD with `changes`, or `text` as is)."""
    run_dir = log_dir / name
    (run_dir / "tasks").mkdir(parents=True)
    (run_dir / "run.json").write_text(text if text is not None else json.dumps({**GOOD, **changes}))
    return run_dir


def _one_error_line(proc, *names):
    """Exit 2, one line on stderr that names the file (and each of `names`), no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


BAD_SHAPES = {
    "a list": "[1, 2]",
    "tasks a string": json.dumps({**GOOD, "tasks": "abc"}),
    "started_at a number": json.dumps({**GOOD, "started_at": 5}),
    "duration_s a string": json.dumps({**GOOD, "duration_s": "long"}),
    "workers a script": json.dumps({**GOOD, "workers": "<script>alert(1)</script>"}),
    "a nesting bomb": "[" * 100_000 + "]" * 100_000,
}


@pytest.mark.parametrize("shape", BAD_SHAPES)
def test_every_read_command_refuses_a_malformed_run_json_in_one_line(shape, tmp_path):
    log_dir = tmp_path / "logs"
    bad = _plant(log_dir, "20260101T000000Z-hist", BAD_SHAPES[shape])
    run_json = str(bad / "run.json")
    _one_error_line(run_cli("show", str(bad), cwd=tmp_path), run_json)
    _one_error_line(run_cli("show", str(bad), "a", cwd=tmp_path), run_json)
    _one_error_line(run_cli("report", str(bad), "-o", str(tmp_path / "r.html"), cwd=tmp_path), run_json)
    assert not (tmp_path / "r.html").exists()
    listed = run_cli("runs", "--log-dir", str(log_dir), cwd=tmp_path)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    assert f"skipped {bad}" in listed.stderr


def test_a_malformed_task_record_is_refused_in_one_line(tmp_path):
    run_dir = _plant(tmp_path / "logs", "20260101T000000Z-hist")
    record = run_dir / "tasks" / "a.json"
    record.write_text(json.dumps({"id": "a", "status": "succeeded", "duration_s": "x", "depends_on": "b"}))
    _one_error_line(run_cli("show", str(run_dir), "a", cwd=tmp_path), str(record))
    record.write_text("{\"a\":" * 100_000 + "1" + "}" * 100_000)  # a nesting bomb
    _one_error_line(run_cli("show", str(run_dir), "a", cwd=tmp_path), str(record))


@pytest.mark.parametrize("where", ["run.json", "tasks/a.json"])
def test_a_fifo_never_blocks_a_read_command(where, tmp_path):
    log_dir = tmp_path / "logs"
    run_dir = _plant(log_dir, "20260101T000000Z-hist")
    fifo = run_dir / where
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    commands = [("show", str(run_dir), "a")] if where != "run.json" else \
        [("show", str(run_dir)), ("report", str(run_dir), "-o", str(tmp_path / "r.html"))]
    for command in commands:
        _one_error_line(run_cli(*command, cwd=tmp_path, timeout=30), str(fifo), "not a regular file")
    if where == "run.json":
        listed = run_cli("runs", "--log-dir", str(log_dir), cwd=tmp_path, timeout=30)
        assert listed.returncode == 0 and f"skipped {run_dir}" in listed.stderr


def test_an_oversized_run_json_is_refused_unread(tmp_path):
    log_dir = tmp_path / "logs"
    run_dir = _plant(log_dir, "20260101T000000Z-hist")
    os.truncate(run_dir / "run.json", 2 << 30)  # sparse: 2 GiB of no disk
    line = _one_error_line(run_cli("show", str(run_dir), cwd=tmp_path, timeout=30), str(run_dir / "run.json"))
    assert "larger than" in line
    listed = run_cli("runs", "--log-dir", str(log_dir), cwd=tmp_path, timeout=30)
    assert listed.returncode == 0 and f"skipped {run_dir}" in listed.stderr


def test_one_bad_run_is_skipped_and_named_the_others_listed(tmp_path):
    log_dir = tmp_path / "logs"
    first = _plant(log_dir, "20260101T000000Z-hist", started_at="2026-01-01T00:00:00+00:00")
    bad = _plant(log_dir, "20260101T000001Z-hist", tasks="abc")
    last = _plant(log_dir, "20260101T000002Z-hist", started_at="2026-01-01T00:00:02+00:00")
    listed = run_cli("runs", "--log-dir", str(log_dir), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 2 and str(last) in lines[0] and str(first) in lines[1]
    assert listed.stderr.strip().splitlines() == [f"opflow: skipped {bad}: {bad / 'run.json'}: tasks: "
                                                  "not an object of task id -> status"]
    rows = json.loads(run_cli("runs", "--log-dir", str(log_dir), "--json", cwd=tmp_path).stdout)
    assert [r["run_dir"] for r in rows] == [str(last), str(first)]


def test_a_tasks_folder_that_links_out_of_the_run_dir_is_never_read(tmp_path):
    run_dir = _plant(tmp_path / "logs", "20260101T000000Z-hist")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.json").write_text(json.dumps({"id": "a", "status": "succeeded", "result": "OTHER-USERS-RESULT"}))
    (elsewhere / "a.log").write_text("OTHER-USERS-LOG\n")
    (run_dir / "tasks").rmdir()
    (run_dir / "tasks").symlink_to(elsewhere)
    shown = run_cli("show", str(run_dir), "a", cwd=tmp_path)
    assert "OTHER-USERS" not in shown.stdout + shown.stderr
    _one_error_line(shown, str(run_dir / "tasks"), "is a symlink")
    report = run_cli("report", str(run_dir), "-o", str(tmp_path / "r.html"), cwd=tmp_path)
    _one_error_line(report, str(run_dir / "tasks"), "is a symlink")


# the log dir from the environment, and a task id written a little wrong (issue 25) ------

def test_runs_and_plan_read_OPFLOW_LOG_DIR_and_show_suggests_a_close_task_id(tmp_path):
    (tmp_path / "flow.yaml").write_text(
        "name: weather\ntasks:\n  - {id: boot_weather, plugin: shell, config: {command: 'true'}}\n"
        "  - {id: report, plugin: shell, depends_on: [boot_weather], config: {command: 'true'}}\n")
    env = {"OPFLOW_LOG_DIR": str(tmp_path / "elsewhere")}
    ran = run_cli("run", "flow.yaml", cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    run_dir = latest_run_dir(tmp_path / "elsewhere")

    listed = run_cli("runs", cwd=tmp_path, env=env)
    assert listed.returncode == 0 and run_dir.name in listed.stdout, listed.stdout + listed.stderr
    planned = run_cli("plan", "flow.yaml", cwd=tmp_path, env=env)
    assert "critical path (last run's durations): boot_weather -> report" in planned.stdout, planned.stdout

    shown = run_cli("show", str(run_dir), "boot_wether", cwd=tmp_path)
    assert shown.returncode == 2
    assert shown.stderr.strip() == (f"opflow: error: {run_dir}: no task 'boot_wether' in this run "
                                    "(did you mean 'boot_weather'?)"), shown.stderr
