"""`retry_on:` retries only the failures it names (exception types along their bases,
`exit:N`); a misconfiguration is never retried. Through the real CLI on the process pool."""
from __future__ import annotations

import pytest

from helpers import latest_run_dir, records, run_cli, run_dirs, write

STEPS = """
    from pathlib import Path


    class Transient(Exception):
        pass


    class RateLimited(Transient):
        pass


    def fail_once(marker, error):
        marker = Path(marker)
        if not marker.exists():
            marker.write_text("1")
            raise {"refused": ConnectionRefusedError, "value": ValueError, "limited": RateLimited}[error]("first try")
        return "ok"
"""


def run_flow(tmp_path, tasks: str, defaults: str = ""):
    write(tmp_path, "steps.py", STEPS)
    write(tmp_path, "flow.yaml", f"name: retry_on\n{defaults}tasks:\n{tasks}")
    done = run_cli("run", "flow.yaml", "--workers", "2", "--keep-going", cwd=tmp_path)
    return done, records(latest_run_dir(tmp_path / "logs")) if run_dirs(tmp_path / "logs") else {}


def python_task(task_id: str, error: str, retry_on: str) -> str:
    return (f'  - {{id: {task_id}, plugin: python, retries: 2, retry_on: {retry_on}, '
            f'config: {{function: "steps:fail_once", args: ["{task_id}.marker", "{error}"]}}}}\n')


def test_an_exception_is_retried_when_retry_on_names_its_type_or_a_base_and_else_not(tmp_path):
    done, tasks = run_flow(tmp_path, "".join([
        python_task("by_base", "refused", "[ConnectionError]"),  # ConnectionRefusedError's base
        python_task("by_own_base", "limited", "[Transient]"),  # a user's class, by its base's name
        python_task("by_qualified", "limited", "[steps.RateLimited]"),
        python_task("not_named", "value", "[ConnectionError, exit:1]"),
    ]))
    assert done.returncode == 1
    for task_id in ("by_base", "by_own_base", "by_qualified"):
        assert tasks[task_id]["status"] == "succeeded" and tasks[task_id]["attempts"] == 2, task_id
    assert tasks["not_named"]["status"] == "failed" and tasks["not_named"]["attempts"] == 1
    assert tasks["not_named"]["error"]["type"] == "ValueError"


def test_exit_n_retries_a_command_of_that_exit_status_only_and_defaults_give_retry_on(tmp_path):
    command = "test -e {0}.marker && exit 0; touch {0}.marker; exit {1}"
    done, tasks = run_flow(tmp_path, "".join([
        f'  - {{id: temp_fail, plugin: shell, config: {{command: "{command.format("temp_fail", 75)}"}}}}\n',
        f'  - {{id: other_status, plugin: shell, config: {{command: "{command.format("other_status", 3)}"}}}}\n',
        f'  - {{id: own_list, plugin: shell, retry_on: ["exit:3"], '
        f'config: {{command: "{command.format("own_list", 3)}"}}}}\n',
    ]), defaults="defaults: {retries: 2, retry_on: [exit:75]}\n")
    assert done.returncode == 1
    assert tasks["temp_fail"]["status"] == "succeeded" and tasks["temp_fail"]["attempts"] == 2
    assert tasks["other_status"]["status"] == "failed" and tasks["other_status"]["attempts"] == 1
    assert tasks["own_list"]["status"] == "succeeded" and tasks["own_list"]["attempts"] == 2  # its own beats defaults


def test_without_retry_on_a_tasks_own_failure_is_retried_as_before(tmp_path):
    done, tasks = run_flow(tmp_path, '  - {id: t, plugin: python, retries: 1, '
                                     'config: {function: "steps:fail_once", args: ["t.marker", "value"]}}\n')
    assert done.returncode == 0 and tasks["t"]["attempts"] == 2


def test_a_module_that_cannot_be_loaded_is_never_retried(tmp_path):
    write(tmp_path, "nightly_tool.py", "def main(:\n    pass\n")
    done, tasks = run_flow(tmp_path, '  - {id: t, plugin: python, config: {function: "nightly_tool:main"}}\n',
                           defaults="defaults: {retries: 1, retry_delay: 30}\n")  # a retry would wait 24-30 s
    assert done.returncode == 1
    assert tasks["t"]["attempts"] == 1 and tasks["t"]["error"]["misconfigured"] is True
    assert "cannot import module 'nightly_tool': SyntaxError" in tasks["t"]["error"]["message"]
    assert "retrying" not in done.stdout


@pytest.mark.parametrize("retry_on, says", [
    ("ConnectionError", "'retry_on' must be a list of exception type names or exit:N"),
    ("[exit:300]", "retry_on: 'exit:300' is neither an exception type name (ConnectionError) nor exit:N "
                   "(an exit status is 0 to 255)"),
    ("[Connection Error]", "retry_on: 'Connection Error' is neither"),
    ("[3]", "retry_on: 3 is neither"),
])
def test_a_bad_retry_on_is_a_validate_error_at_its_line(tmp_path, retry_on, says):
    flow = write(tmp_path, "flow.yaml", f"""
        name: bad
        tasks:
          - id: t
            plugin: shell
            retry_on: {retry_on}
            config: {{command: "true"}}
    """)
    done = run_cli("validate", str(flow), cwd=tmp_path)
    assert done.returncode == 2
    assert f"flow.yaml:5: task 't': {says}" in done.stderr, done.stderr


def test_a_misspelled_module_with_retries_is_refused_before_any_attempt(tmp_path):
    write(tmp_path, "nightly_tool.py", "def main():\n    return 1\n")
    done, tasks = run_flow(tmp_path, '  - {id: t, plugin: python, config: {function: "nightly_tol:main"}}\n',
                           defaults="defaults: {retries: 1}\n")
    assert done.returncode == 2 and tasks == {}
    assert "flow.yaml:4: task 't': config 'function': module 'nightly_tol' is not installed" in done.stderr


def test_a_failure_opflow_records_matches_its_error_type(tmp_path):
    done, tasks = run_flow(tmp_path, "".join(
        f'  - {{id: {task_id}, plugin: shell, timeout: 0.5, retries: 1, retry_on: [{names}], '
        f'config: {{command: "sleep 30"}}}}\n' for task_id, names in (("named", "Timeout"), ("other", "ConnectionError"))))
    assert done.returncode == 1
    assert tasks["named"]["attempts"] == 2 and tasks["named"]["error"]["type"] == "Timeout"
    assert tasks["other"]["attempts"] == 1
