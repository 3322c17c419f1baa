"""Defects a review found, each pinned by a test that failed before its fix."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import latest_run_dir, records, run_cli

from opflow.api import run

BACKENDS = ["process", "thread", "inline"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_errors_and_results_of_user_types_are_recorded_not_looped(backend, tmp_path, write_workflow, faults):
    # Used to rerun forever on the process backend: the outcome pickled a reference
    # to the user's module, which the coordinator could not import.
    flow = write_workflow("""
        name: user-types
        tasks:
          - {id: enum, plugin: python, config: {function: "faults:local_enum_result"}}
          - {id: base, plugin: python, config: {function: "faults:raise_local_base_exception"}}
    """)
    result = run(flow, executor=backend, workers=2, log_dir=tmp_path / "logs", keep_going=True)
    tasks = records(result.run_dir)
    assert tasks["enum"]["status"] == "succeeded" and tasks["enum"]["result"] == {"color": "red"}
    assert tasks["base"]["status"] == "failed" and tasks["base"]["attempts"] == 1
    assert tasks["base"]["error"]["type"] == "LocalError"


def test_a_closed_stdout_does_not_stall_the_run(tmp_path, write_workflow, faults):
    flow = write_workflow("".join(
        ["name: piped\ntasks:\n"] +
        [f'  - {{id: t{i}, plugin: python, config: {{function: "faults:ok"}}}}\n' for i in range(30)]))
    proc = subprocess.Popen([sys.executable, "-m", "opflow", "run", str(flow), "--log-dir", str(tmp_path / "logs")],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    doc = json.loads((latest_run_dir(tmp_path / "logs") / "run.json").read_text())
    assert doc["status"] == "succeeded"


def test_keep_runs_spares_other_workflows_whose_slug_looks_like_a_suffix(tmp_path, write_workflow, faults):
    other = write_workflow("""
        name: job 2
        tasks:
          - {id: a, plugin: python, config: {function: "faults:ok"}}
    """, name="other.yaml")
    mine = write_workflow("""
        name: job
        tasks:
          - {id: a, plugin: python, config: {function: "faults:ok"}}
    """)
    for _ in range(2):
        assert run_cli("run", str(other), cwd=tmp_path).returncode == 0
    for _ in range(2):
        assert run_cli("run", str(mine), "--keep-runs", "1", cwd=tmp_path).returncode == 0
    runs = [p for p in (tmp_path / "logs").iterdir() if not p.name.startswith(".")]
    workflows = sorted(json.loads((p / "run.json").read_text())["workflow"] for p in runs)
    assert workflows == ["job", "job 2", "job 2"]  # both of the other's runs survive


def test_resume_after_param_overrides_reuses_what_succeeded(tmp_path, write_workflow, faults):
    count = tmp_path / "b.count"
    flow = write_workflow(f"""
        name: params-resume
        params: {{n: 1}}
        tasks:
          - {{id: a, plugin: python, config: {{function: "faults:ok"}}}}
          - {{id: b, plugin: python, config: {{function: "faults:fail_until", args: ["{count}", 1]}}, depends_on: [a]}}
    """)
    assert run_cli("run", str(flow), "--param", "n=2", cwd=tmp_path).returncode == 1
    first = latest_run_dir(tmp_path / "logs")
    again = run_cli("resume", str(first), "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["reused"] == ["a"] and doc["params"] == {"n": 2}


@pytest.mark.parametrize("bad_delay, flaky_delay", [(0.0, 0.0), (0.6, 0.0), (0.0, 0.6)],
                         ids=["together", "flaky-fails-first", "bad-fails-first"])
def test_a_cancelled_task_shows_its_reason_not_an_old_error(bad_delay, flaky_delay, tmp_path, write_workflow, faults):
    # Whichever failure the coordinator hears first, a task with retries left
    # ends cancelled (its retry never ran), never failed with its old error.
    flow = write_workflow(f"""
        name: stale
        tasks:
          - {{id: bad, plugin: python, config: {{function: "faults:raise_after", args: [{bad_delay}]}}}}
          - {{id: flaky, plugin: python, config: {{function: "faults:raise_after", args: [{flaky_delay}]}}, retries: 5, retry_delay: 30}}
    """)
    result = run(flow, workers=2, log_dir=tmp_path / "logs")
    flaky = records(result.run_dir)["flaky"]
    assert flaky["status"] == "cancelled" and flaky["error"] is None and "bad" in flaky["reason"]
    # Its one attempt, if a worker started it before the stop flag went up, keeps its error.
    assert flaky["attempts"] <= 1 and all(a["error"]["type"] == "ValueError" for a in flaky["attempt_log"])
    doc = json.loads((result.run_dir / "run.json").read_text())
    assert "bad" in doc["problems"]["flaky"]["why"]


@pytest.mark.parametrize("args, message", [
    (["--log-dir", "{tmp}/flow.yaml/logs"], "--log-dir"),
    (["--json"], None),
])
def test_odd_command_lines(args, message, tmp_path, write_workflow, faults):
    flow = write_workflow("""
        name: odd
        tasks:
          - {id: a, plugin: python, config: {function: "faults:ok"}}
    """)
    # options before FILE, as `python -m opflow --json FILE`
    proc = run_cli(*[a.format(tmp=tmp_path) for a in args], str(flow), cwd=tmp_path)
    assert "Traceback" not in proc.stderr
    if message:
        assert proc.returncode == 2 and message in proc.stderr
    else:
        assert proc.returncode == 0 and json.loads(proc.stdout)["status"] == "succeeded"


def test_a_huge_number_is_a_clear_error(tmp_path, write_workflow):
    flow = write_workflow("""
        name: huge
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}, retries: 1%s}
    """ % ("0" * 300))
    proc = run_cli("validate", str(flow), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{flow}:3: task 'a': 'retries' must be at most 1000" in proc.stderr


@pytest.mark.parametrize("second_depends_on_first", [True, False], ids=["with-context", "independent"])
def test_an_unguarded_script_fails_clearly_instead_of_running_itself_in_every_worker(
        second_depends_on_first, tmp_path, write_workflow, faults):
    # Worker (and Manager) processes re-import the script that started the run. Without
    # `if __name__ == "__main__":` each one used to start a run of its own: no end, and
    # processes left behind. Now the call is refused before any process starts, with one
    # message naming the line, not a traceback from every worker.
    depends = ", depends_on: [a]" if second_depends_on_first else ""
    write_workflow(f"""
        name: unguarded
        tasks:
          - {{id: a, plugin: python, config: {{function: "faults:ok"}}}}
          - {{id: b, plugin: python, config: {{function: "faults:ok"}}{depends}}}
    """)
    (tmp_path / "script.py").write_text(
        "import opflow\n"
        "result = opflow.run('flow.yaml', workers=2, log_dir='logs')\n"
        "print('exit code', result.exit_code)\n")
    done = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.count('under `if __name__ == "__main__":`') == 1, done.stderr
    assert done.stderr.count("Traceback") == 1
    assert done.stderr.splitlines()[-1] == (
        'opflow.errors.UsageError: script.py:2: opflow.run() must be called under `if __name__ == "__main__":`: '
        "worker processes import the script that started the run, and each would start the run again")
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").glob("*-unguarded"))
