"""`matrix:` one instance per combination (`<id>[NAME=value,...]`), `exclude:`, `${matrix.NAME}`:
through the real CLI on the process pool, and validate's errors at their lines."""
from __future__ import annotations

import json

import pytest

from helpers import latest_run_dir, records, run_cli, run_json, write

STEPS = """
    def fit(model, depth, context):
        return f"{model}/{depth}"


    def report(context):
        return context["fit"]
"""

FLOW = """
    name: grid
    tasks:
      - id: fit
        plugin: python
        matrix:
          model: [tree, linear]
          depth: [1, 3]
          exclude:
            - {model: linear, depth: 3}
        config: {function: "steps:fit", args: ["${matrix.model}", "${matrix.depth}"]}
      - {id: report, plugin: python, depends_on: [fit], config: {function: "steps:report"}}
      - id: say
        plugin: shell
        matrix: {who: [ann, bob]}
        config: {command: "echo hello ${matrix.who}"}
"""
INSTANCES = ["fit[model=tree,depth=1]", "fit[model=tree,depth=3]", "fit[model=linear,depth=1]"]


@pytest.fixture
def flow(tmp_path):
    write(tmp_path, "steps.py", STEPS)
    return write(tmp_path, "flow.yaml", FLOW)


def test_a_matrix_runs_one_instance_per_combination_and_its_dependents_wait_for_all(flow, tmp_path):
    done = run_cli("run", "flow.yaml", "--workers", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = latest_run_dir(tmp_path / "logs")
    tasks = records(run_dir)
    assert sorted(tasks) == sorted([*INSTANCES, "report", "say[who=ann]", "say[who=bob]"])
    assert [tasks[i]["result"] for i in INSTANCES] == ["tree/1", "tree/3", "linear/1"]  # typed: depth is an int
    assert tasks["fit[model=tree,depth=3]"]["config"]["args"] == ["tree", 3]
    assert tasks["report"]["result"] == ["tree/1", "tree/3", "linear/1"]  # in the order the names are written
    assert tasks["report"]["depends_on"] == INSTANCES
    assert tasks["say[who=bob]"]["result"]["stdout"] == "hello bob\n"
    assert list(run_json(run_dir)["tasks"]) == [*INSTANCES, "report", "say[who=ann]", "say[who=bob]"]
    for instance in INSTANCES:
        assert f"ok        {instance}" in done.stdout  # the live view names each
    shown = run_cli("show", str(run_dir), cwd=tmp_path)
    assert shown.returncode == 0 and all(i in shown.stdout for i in INSTANCES), shown.stdout
    one = run_cli("show", str(run_dir), "fit[model=linear,depth=1]", "--json", cwd=tmp_path)
    assert one.returncode == 0 and json.loads(one.stdout)["result"] == "linear/1", one.stdout + one.stderr
    assert run_cli("report", str(run_dir), cwd=tmp_path).returncode == 0
    assert "fit[model=linear,depth=1]" in (run_dir / "report.html").read_text()

    again = run_cli("run", "flow.yaml", "--only", "fit", cwd=tmp_path)  # the group id selects its instances
    assert again.returncode == 0, again.stderr
    assert run_json(latest_run_dir(tmp_path / "logs"))["selection"]["resolved"] == INSTANCES


def test_a_resumed_run_reuses_the_instances_that_succeeded(tmp_path):
    write(tmp_path, "flow.yaml", """
        name: grid
        tasks:
          - id: t
            plugin: shell
            matrix: {n: [1, 2, 3]}
            config: {command: "echo ${matrix.n} >> ran.txt; test ${matrix.n} != 2 || test -e ok"}
    """)
    assert run_cli("run", "flow.yaml", "--keep-going", cwd=tmp_path).returncode == 1
    (tmp_path / "ran.txt").unlink()
    (tmp_path / "ok").write_text("")
    assert run_cli("run", "flow.yaml", "--resume", cwd=tmp_path).returncode == 0
    assert (tmp_path / "ran.txt").read_text().split() == ["2"]
    tasks = records(latest_run_dir(tmp_path / "logs"))
    assert tasks["t[n=1]"]["reused"] and tasks["t[n=3]"]["reused"] and not tasks["t[n=2]"]["reused"]


@pytest.mark.parametrize("matrix, line, says", [
    ("{os: [linux, mac], exclude: [{oss: mac}]}", 5, "matrix: exclude: 'oss' is not a matrix name (did you mean 'os'?)"),
    ("{os: [linux, mac], exclude: [{os: windows}]}", 5, "matrix: exclude: os: 'windows' is not one of its values (linux, mac)"),
    ("{os: linux}", 5, "matrix: 'os' must be a non-empty list of values, got 'linux'"),
    ("{os: [linux, linux]}", 5, "matrix: 'os' lists 'linux' twice"),
    ("{os: [a/b]}", 5, "matrix: 'os': 'a/b' cannot name an instance (t[os=...])"),
    ("[linux]", 5, "'matrix' must be a mapping of names to lists of values"),
])
def test_a_bad_matrix_is_a_validate_error_at_its_line(tmp_path, matrix, line, says):
    flow = write(tmp_path, "flow.yaml", f"""
        name: bad
        tasks:
          - id: t
            plugin: shell
            matrix: {matrix}
            config: {{command: "echo ${{matrix.os}}"}}
    """)
    done = run_cli("validate", str(flow), cwd=tmp_path)
    assert done.returncode == 2
    assert f"flow.yaml:{line}: task 't': {says}" in done.stderr, done.stderr


def test_matrix_mistakes_across_lines_are_named_at_each(tmp_path):
    flow = write(tmp_path, "flow.yaml", """
        name: bad
        tasks:
          - id: t
            plugin: shell
            foreach: [1, 2]
            matrix:
              os: [linux, mac]
          - id: u
            plugin: shell
            matrix:
              os: [linux, mac]
              exclude:
                - os: linux
                  arch: arm
            config: {command: "echo ${matrix.oss}"}
          - id: v
            plugin: shell
            config: {command: "echo ${matrix.os}"}
    """)
    done = run_cli("validate", str(flow), cwd=tmp_path)
    assert done.returncode == 2
    assert "flow.yaml:6: task 't': a task has 'foreach' or 'matrix', not both" in done.stderr, done.stderr
    assert "flow.yaml:14: task 'u': matrix: exclude: 'arch' is not a matrix name (names: os)" in done.stderr
    assert "flow.yaml:15: task 'u': '${matrix.oss}': no matrix name 'oss' (did you mean 'os'?)" in done.stderr
    assert "flow.yaml:18: task 'v': '${matrix.os}' is only defined in a task with 'matrix'" in done.stderr


def test_the_docs_example_of_tags_retry_on_and_matrix_runs(tmp_path):
    from helpers import REPO

    page = (REPO / "docs" / "workflows.md").read_text(encoding="utf-8")
    section = page.split("## Tags, `retry_on` and `matrix`", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "grid.yaml").write_text(example)
    done = run_cli("run", "grid.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    tasks = records(latest_run_dir(tmp_path / "logs"))
    assert sorted(tasks) == sorted(["fetch", "report", *INSTANCES])
    assert tasks["fit[model=linear,depth=1]"]["result"]["stdout"] == "fit linear at depth 1\n"
    only = run_cli("run", "grid.yaml", "--only", "tag:model", cwd=tmp_path)
    assert only.returncode == 0, only.stderr
    assert run_json(latest_run_dir(tmp_path / "logs"))["selection"]["resolved"] == INSTANCES
