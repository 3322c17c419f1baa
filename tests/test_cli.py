"""cli/commands.py: the commands, their output and exit codes, and the run directory they make.

Fast cases go through click's CliRunner; a few are real `python -m opflow`
processes on YAML in tmp_path, asserting exit code and run.json.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import types
from datetime import datetime, timezone
from pathlib import Path

import psutil
import pytest

import opflow
import opflow.api
import opflow.rundir.audit
from opflow.plugins import PLUGINS
from opflow.cli.scaffold import FILES

from helpers import GREET, invoke, latest_run_dir, run_cli, run_dirs, run_json

RUN_DIR_NAME = re.compile(r"^(\d{8}T\d{6}Z)-([a-z0-9-]+)$")


@pytest.fixture
def ok_flow(write_workflow):
    return write_workflow("""
        name: Two Steps
        params: {who: world}
        tasks:
          - {id: first, plugin: shell, config: {command: "echo one"}}
          - {id: second, plugin: shell, config: {command: "echo two"}, depends_on: [first]}
    """)


@pytest.fixture
def failing_flow(write_workflow):
    return write_workflow("""
        name: Fails
        tasks:
          - {id: bad, plugin: shell, config: {command: "echo broken >&2; exit 5"}}
          - {id: after, plugin: shell, config: {command: "true"}, depends_on: [bad]}
    """, name="fails.yaml")


# validate --------------------------------------------------------------------

def test_validate_valid_file_exit_0_and_runs_nothing(here, write_workflow, tmp_path):
    marker = tmp_path / "ran"
    flow = write_workflow(f"""
        name: v
        tasks:
          - {{id: a, plugin: shell, config: {{command: "touch {marker}"}}}}
          - {{id: b, plugin: shell, config: {{command: "true"}}, depends_on: [a]}}
          - {{id: c, plugin: shell, config: {{command: "true"}}}}
    """)
    result = invoke("validate", flow)
    assert result.exit_code == 0
    assert result.stdout == f"{flow}: ok: workflow 'v', 3 tasks in 2 layers\n"
    assert not marker.exists()
    assert not (here / "logs").exists()


def test_validate_invalid_file_exit_2_with_located_problems(here, write_workflow):
    flow = write_workflow("""
        name: v
        tasks:
          - {id: a, plugin: shell}
          - {id: b, plugin: shell, depends_on: [z]}
    """)
    result = invoke("validate", flow)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"{flow}:4: task 'b': depends_on 'z' is not a task id" in result.stderr
    assert "Traceback" not in result.output


def test_validate_missing_file_exit_2(here, tmp_path):
    result = invoke("validate", tmp_path / "nope.yaml")
    assert result.exit_code == 2
    assert "nope.yaml" in result.stderr and "Traceback" not in result.output


# plan ------------------------------------------------------------------------

DIAMOND = """
    name: diamond
    tasks:
      - {id: load, plugin: shell, config: {command: "touch %s"}}
      - {id: left, plugin: shell, config: {command: "true"}, depends_on: [load]}
      - {id: right, plugin: shell, config: {command: "true"}, depends_on: [load]}
      - {id: join, plugin: shell, config: {command: "true"}, depends_on: [left, right]}
      - {id: solo, plugin: shell, config: {command: "true"}}
"""


def test_plan_prints_the_layers_and_runs_nothing(here, write_workflow, tmp_path):
    marker = tmp_path / "ran"
    flow = write_workflow(DIAMOND % marker)
    result = invoke("plan", flow)
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "workflow 'diamond': 5 tasks",
        "layer 1: load, solo",
        "layer 2: left, right",
        "layer 3: join",
    ]
    assert not marker.exists()
    assert not (here / "logs").exists()


def test_plan_shows_the_critical_path_from_the_last_run(here, write_workflow, tmp_path):
    flow = write_workflow(DIAMOND % (tmp_path / "ran"))
    assert invoke("run", flow, "--executor", "inline").exit_code == 0
    result = invoke("plan", flow)
    assert result.exit_code == 0
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("critical path")]
    assert re.fullmatch(r"critical path \(last run's durations\): load -> (left|right) -> join \(\d+\.\d\ds\)", line) \
        or re.fullmatch(r"critical path \(last run's durations\): solo \(\d+\.\d\ds\)", line), line


def test_plan_critical_path_ignores_runs_of_other_workflows(here, write_workflow):
    other = write_workflow("""
        name: Two Steps
        tasks:
          - {id: first, plugin: shell, config: {command: "true"}}
    """, name="other.yaml")
    assert invoke("run", other, "--executor", "inline").exit_code == 0
    flow = write_workflow("""
        name: two
        tasks:
          - {id: first, plugin: shell, config: {command: "true"}}
    """)
    result = invoke("plan", flow)
    assert result.exit_code == 0
    assert "critical path" not in result.stdout  # 'two' has never run


def test_plan_of_an_invalid_file_exit_2(here, write_workflow):
    flow = write_workflow("""
        name: cyc
        tasks:
          - {id: a, plugin: shell, depends_on: [b]}
          - {id: b, plugin: shell, depends_on: [a]}
    """)
    result = invoke("plan", flow)
    assert result.exit_code == 2
    assert f"{flow}:3: task 'a': dependency cycle: a -> b -> a" in result.stderr


# plugins ---------------------------------------------------------------------

def _plugin_lines(stdout: str) -> dict[str, str]:
    lines = stdout.splitlines()
    assert all(line.strip() for line in lines)
    return {line.split()[0]: line for line in lines}


def test_plugins_lists_the_builtins_one_line_each_with_a_description(here):
    result = invoke("plugins")
    assert result.exit_code == 0
    lines = _plugin_lines(result.stdout)
    assert set(lines) == set(PLUGINS)
    for name, cls in PLUGINS.items():
        assert cls.summary() in lines[name]
        assert "(no description)" not in lines[name]
        assert lines[name].endswith("[builtin]")


def test_plugins_lists_workers_in_the_current_folder(here):
    (here / "workers").mkdir()
    (here / "workers" / "greet.py").write_text(GREET)
    result = invoke("plugins")
    assert result.exit_code == 0
    lines = _plugin_lines(result.stdout)
    assert set(lines) == set(PLUGINS) | {"greet"}
    assert "Say hello to config 'name' (default: world)." in lines["greet"]
    assert str(here / "workers" / "greet.py") in lines["greet"]


def test_plugins_lists_workers_beside_file(here, tmp_path):
    project = tmp_path / "project"
    (project / "workers").mkdir(parents=True)
    (project / "workers" / "greet.py").write_text(GREET)
    flow = project / "flow.yaml"
    flow.write_text("name: x\ntasks:\n  - {id: a, plugin: greet}\n")
    without = invoke("plugins")
    assert "greet" not in _plugin_lines(without.stdout)  # not in the current folder
    result = invoke("plugins", flow)
    assert result.exit_code == 0
    assert "Say hello" in _plugin_lines(result.stdout)["greet"]


# init ------------------------------------------------------------------------

def test_init_writes_a_runnable_example_then_refuses_to_overwrite(here, tmp_path):
    target = tmp_path / "new" / "project"
    result = invoke("init", target)
    assert result.exit_code == 0
    assert sorted(p.name for p in target.iterdir()) == sorted(FILES)
    assert f"wrote {target / 'workflow.yaml'}" in result.stdout
    assert f"next: opflow run {target / 'workflow.yaml'}" in result.stdout

    # The example runs, for real, from another folder, and computes its metrics.
    proc = run_cli("run", str(target / "workflow.yaml"), "--log-dir", str(tmp_path / "logs"), cwd=here)
    assert proc.returncode == 0, proc.stderr
    run_dir = latest_run_dir(tmp_path / "logs")
    assert run_json(run_dir)["status"] == "succeeded"
    metrics = json.loads((run_dir / "tasks" / "compute_metrics.json").read_text())["result"]
    assert metrics["age"]["count"] == 8 and metrics["score"]["count"] == 7

    # A second init refuses and keeps the user's edits.
    (target / "workflow.yaml").write_text("# my edits\n")
    again = invoke("init", target)
    assert again.exit_code == 2
    assert "already exist" in again.stderr and "--force" in again.stderr
    assert "Traceback" not in again.output
    assert (target / "workflow.yaml").read_text() == "# my edits\n"

    forced = invoke("init", target, "--force")
    assert forced.exit_code == 0
    assert (target / "workflow.yaml").read_text() == FILES["workflow.yaml"]


def test_init_defaults_to_the_current_folder(here):
    result = invoke("init")
    assert result.exit_code == 0
    assert (here / "workflow.yaml").is_file() and (here / "sample_data.csv").is_file()
    assert invoke("validate", here / "workflow.yaml").exit_code == 0


# run: exit codes and output --------------------------------------------------

def test_run_success_exit_0_prints_the_record(here, ok_flow):
    result = invoke("run", ok_flow, "--executor", "inline")
    assert result.exit_code == 0
    run_dir = latest_run_dir(here / "logs")  # default: ./logs of the current folder
    assert run_dir.parent == here / "logs"
    assert result.stdout.rstrip().endswith(f"record: {here / 'logs' / run_dir.name}")  # absolute: for cron's mail


def test_run_failure_exit_1(here, failing_flow):
    result = invoke("run", failing_flow, "--executor", "inline")
    assert result.exit_code == 1
    doc = run_json(latest_run_dir(here / "logs"))
    assert doc["status"] == "failed"
    assert doc["tasks"] == {"bad": "failed", "after": "skipped"}
    assert "exited with status 5" in result.output


@pytest.mark.parametrize("args, fragment", [
    (["--executor", "nope"], "--executor"),
    (["--workers", "-1"], "--workers"),
    (["--param", "novalue"], "expected KEY=VALUE"),
    (["--no-such-option"], "no-such-option"),
])
def test_run_usage_errors_exit_2_and_run_nothing(args, fragment, here, ok_flow):
    result = invoke("run", ok_flow, *args)
    assert result.exit_code == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.output
    assert not (here / "logs").exists()


def test_run_missing_file_exit_2(here, tmp_path):
    result = invoke("run", tmp_path / "missing.yaml")
    assert result.exit_code == 2
    assert "missing.yaml" in result.stderr
    assert not (here / "logs").exists()


def test_run_quiet_prints_nothing_on_success(here, ok_flow):
    result = invoke("run", ok_flow, "--executor", "inline", "--quiet")
    assert result.exit_code == 0
    assert result.stdout == "" and result.stderr == ""
    assert latest_run_dir(here / "logs")


def test_run_quiet_still_reports_a_failure(here, failing_flow):
    result = invoke("run", failing_flow, "--executor", "inline", "-q")
    assert result.exit_code == 1
    assert "FAILED" in result.output and "bad" in result.output
    assert "record:" in result.stderr


def test_run_json_prints_only_run_json_on_stdout(here, ok_flow):
    result = invoke("run", ok_flow, "--executor", "inline", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)  # the whole of stdout is one JSON document
    assert doc == run_json(latest_run_dir(here / "logs"))
    assert doc["status"] == "succeeded"
    assert "run 'Two Steps'" in result.stderr  # progress went to stderr


def test_run_json_on_failure_is_still_the_document_and_exit_1(here, failing_flow):
    result = invoke("run", failing_flow, "--executor", "inline", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["status"] == "failed" and doc["tasks"]["bad"] == "failed"


def test_run_json_with_an_invalid_file_prints_the_problems_document_on_stdout(here, write_workflow):
    flow = write_workflow("name: x\n")
    result = invoke("run", flow, "--json")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)  # validate --json's document (tests/test_paper_cuts.py compares the two)
    assert doc["ok"] is False and doc["problems"][0]["message"] == "missing required key 'tasks'"
    assert not (here / "logs").exists()


def test_run_json_real_process_stdout_is_only_the_document(here, ok_flow):
    proc = run_cli("run", str(ok_flow), "--json", "--workers", "2", cwd=here)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc == run_json(latest_run_dir(here / "logs"))
    assert doc["executor"] == "process" and doc["workers"] == 2


def test_run_json_stdout_stays_clean_when_a_task_prints(here, write_workflow):
    (here.parent / "noisy.py").write_text("def speak():\n    print('noise from a task')\n    return 1\n")
    flow = write_workflow("""
        name: noisy
        tasks:
          - {id: speak, plugin: python, config: {function: "noisy:speak"}}
    """)
    proc = run_cli("run", str(flow), "--json", "--workers", "1", cwd=here)
    assert proc.returncode == 0, proc.stderr
    run_dir = latest_run_dir(here / "logs")
    assert json.loads(proc.stdout) == run_json(run_dir)
    assert proc.stdout == (run_dir / "run.json").read_text()  # run.json and nothing else: no progress, no print
    assert "noise from a task" in (run_dir / "tasks" / "speak.log").read_text()  # the print went to the task's log


def test_run_param_overrides_reach_run_json_and_tasks(here, write_workflow):
    flow = write_workflow("""
        name: params
        params: {who: world, n: 1}
        tasks:
          - {id: say, plugin: shell, config: {command: 'echo "$OPFLOW_PARAM_WHO $OPFLOW_PARAM_N"'}}
    """)
    result = invoke("run", flow, "--executor", "inline", "--param", "who=you", "--param", "n=5")
    assert result.exit_code == 0
    run_dir = latest_run_dir(here / "logs")
    assert run_json(run_dir)["params"] == {"who": "you", "n": 5}
    assert json.loads((run_dir / "tasks" / "say.json").read_text())["result"]["stdout"] == "you 5\n"


def test_run_log_dir_option(here, ok_flow, tmp_path):
    result = invoke("run", ok_flow, "--executor", "inline", "--log-dir", tmp_path / "elsewhere" / "logs")
    assert result.exit_code == 0
    assert latest_run_dir(tmp_path / "elsewhere" / "logs")
    assert not (here / "logs").exists()


# python -m opflow FILE -------------------------------------------------------

def test_python_m_opflow_file_runs_like_opflow_run(here, ok_flow, failing_flow):
    proc = run_cli(str(ok_flow), cwd=here)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    run_dir = latest_run_dir(here / "logs")
    doc = run_json(run_dir)
    assert doc["status"] == "succeeded" and doc["executor"] == "process"
    assert doc["workers"] == len(os.sched_getaffinity(0))  # default pool size: the CPUs this process may use
    assert doc["tasks"] == {"first": "succeeded", "second": "succeeded"}
    assert json.loads((run_dir / "tasks" / "second.json").read_text())["result"]["stdout"] == "two\n"

    proc = run_cli(str(failing_flow), "--executor", "thread", cwd=here)
    assert proc.returncode == 1
    (failed_dir,) = (here / "logs").glob("*-fails")
    assert run_json(failed_dir)["status"] == "failed"


def test_python_m_opflow_invalid_file_exit_2_without_traceback(here, write_workflow):
    flow = write_workflow("""
        name: bad
        tasks:
          - {id: a, plugin: shel}
    """)
    proc = run_cli(str(flow), cwd=here)
    assert proc.returncode == 2
    assert f"{flow}:3: task 'a': unknown plugin 'shel' (did you mean 'shell'?)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert not (here / "logs").exists()


# leaving the process ------------------------------------------------------------
# The console script exits without the interpreter's teardown (cli._exit_without_teardown):
# what that teardown did that matters must still happen.
EXIT_PROBE = """
import atexit, pathlib, sys, threading, time

atexit.register(lambda: pathlib.Path("atexit.txt").write_text("ran"))

if __name__ == "__main__":
    if sys.argv[1] == "--thread":
        del sys.argv[1]
        threading.Thread(target=lambda: (time.sleep(0.3), pathlib.Path("thread.txt").write_text("done"))).start()
    from opflow.cli.commands import entry
    entry()
"""


def exit_probe(tmp_path, *args: str):
    script = tmp_path / "probe.py"
    script.write_text(EXIT_PROBE)
    return subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("command, code, output", [
    ("run", 0, "record: "), ("validate", 0, "ok: workflow 'Two Steps'"), ("validate-missing", 2, "no such file"),
])
def test_the_cli_exits_with_its_output_flushed_and_atexit_handlers_run(tmp_path, ok_flow, command, code, output):
    args = {"run": ["run", str(ok_flow), "--log-dir", str(tmp_path / "logs")], "validate": ["validate", str(ok_flow)],
            "validate-missing": ["validate", str(tmp_path / "missing.yaml")]}[command]
    done = exit_probe(tmp_path, *args)  # stdout is a pipe: block-buffered, lost unless flushed
    assert done.returncode == code, done.stderr
    assert output in (done.stdout if code == 0 else done.stderr)
    assert (tmp_path / "atexit.txt").read_text() == "ran"


def test_the_cli_still_waits_for_a_thread_that_is_not_a_daemon(tmp_path, ok_flow):
    done = exit_probe(tmp_path, "--thread", "validate", str(ok_flow))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "thread.txt").read_text() == "done"
    assert (tmp_path / "atexit.txt").read_text() == "ran"


def test_validate_imports_none_of_the_run_machinery(tmp_path, ok_flow):
    code = ("import sys; from opflow.cli.commands import main; main(['validate', sys.argv[1]], standalone_mode=False); "
            "print(sorted(sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, str(ok_flow)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = set(eval(done.stdout.splitlines()[-1]))  # a printed list of module names
    for module in ("asyncio", "psutil", "opflow.api", "opflow.rundir.audit", "opflow.rundir.history", "opflow.dispatch.coordinator",
                   "opflow.procs", "opflow.worker.output"):
        assert module not in loaded, f"validate imports {module}"


# run.json and the run directory ----------------------------------------------

def test_run_json_has_the_contract_keys_and_provenance(here, ok_flow):
    # thread, not inline: inline records its true concurrency, 1 (test_paper_cuts.py)
    result = invoke("run", ok_flow, "--executor", "thread", "--workers", "3", "--param", "who=you")
    assert result.exit_code == 0
    run_dir = latest_run_dir(here / "logs")
    doc = run_json(run_dir)
    assert doc["workflow"] == "Two Steps"
    assert doc["status"] == "succeeded"
    assert doc["tasks"] == {"first": "succeeded", "second": "succeeded"}
    started = datetime.fromisoformat(doc["started_at"])
    finished = datetime.fromisoformat(doc["finished_at"])
    assert started.utcoffset().total_seconds() == 0 and finished.utcoffset().total_seconds() == 0
    assert started <= finished
    assert isinstance(doc["duration_s"], (int, float)) and doc["duration_s"] >= 0
    assert doc["duration_s"] == pytest.approx((finished - started).total_seconds(), abs=0.01)
    assert doc["workflow_file"] == str(ok_flow.resolve())
    assert doc["workflow_sha256"] == hashlib.sha256(ok_flow.read_bytes()).hexdigest()
    assert isinstance(doc["host"], str) and doc["host"]
    # Who wrote it (the CLI ran in this process): what tells a crashed run from a running one.
    assert doc["pid"] == os.getpid()
    assert doc["pid_create_time"] == pytest.approx(psutil.Process().create_time(), abs=0.01)
    assert doc["python"] == ".".join(map(str, sys.version_info[:3]))
    assert doc["opflow_version"] == opflow.__version__
    assert isinstance(doc["packages"], dict)
    for name in ("pandas", "networkx", "PyYAML", "click"):
        assert isinstance(doc["packages"].get(name), str), name
    assert doc["params"] == {"who": "you"}
    assert doc["workers"] == 3
    assert doc["executor"] == "thread"
    for name in ("run.json", "summary.txt", "events.jsonl"):
        assert (run_dir / name).is_file(), name
    assert sorted(p.name for p in (run_dir / "tasks").glob("*.json")) == ["first.json", "second.json"]
    summary = (run_dir / "summary.txt").read_text()
    assert "Two Steps" in summary and "succeeded" in summary


def test_run_dir_name_is_utc_time_and_slug(here, ok_flow):
    before = datetime.now(timezone.utc).replace(microsecond=0)
    assert invoke("run", ok_flow, "--executor", "inline").exit_code == 0
    after = datetime.now(timezone.utc)
    (run_dir,) = run_dirs(here / "logs")
    match = RUN_DIR_NAME.match(run_dir.name)
    assert match, run_dir.name
    assert match.group(2) == "two-steps"
    stamp = datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    assert before <= stamp <= after
    assert run_json(run_dir)["workflow"] == "Two Steps"


def test_two_runs_in_the_same_second_get_a_suffix(here, ok_flow, monkeypatch):
    # Pin the clock the run's start is read from, so all runs fall in the same second.
    fixed = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc).timestamp()
    monkeypatch.setattr(opflow.api, "time", types.SimpleNamespace(time=lambda: fixed))
    assert invoke("run", ok_flow, "--executor", "inline").exit_code == 0
    assert invoke("run", ok_flow, "--executor", "inline").exit_code == 0
    assert invoke("run", ok_flow, "--executor", "inline").exit_code == 0
    names = sorted(p.name for p in run_dirs(here / "logs"))
    assert names == ["20300102T030405Z-two-steps", "20300102T030405Z-two-steps-2", "20300102T030405Z-two-steps-3"]
    for name in names:
        assert run_json(here / "logs" / name)["status"] == "succeeded"


@pytest.mark.parametrize("name, slug", [
    ("Example Workflow", "example-workflow"),
    ("  Ünïcode & stuff!! ", "unicode-stuff"),
    ("Données — été 2026 / v2", "donnees-ete-2026-v2"),
    ("***", "workflow"),
    ("x" * 100, "x" * 60),
])
def test_slug_of_the_workflow_name(name, slug):
    assert opflow.rundir.audit.slugify(name) == slug
