"""Choosing what runs (workflow/selection.py): --only, --skip, tags, --from-run, --force,
through the real CLI on the process pool."""
from __future__ import annotations

import json
import textwrap

import pytest

from helpers import latest_run_dir, records, run_cli, run_dirs, run_json, write

STEPS = """
    from pathlib import Path

    HERE = Path(__file__).parent


    def _ran(name):
        with open(HERE / "ran.txt", "a") as out:
            out.write(name + "\\n")


    def load():
        _ran("load")
        return (HERE / "source.txt").read_text().strip()


    def clean(context):
        _ran("clean")
        return context["load"].upper()


    def fit(k, context):
        _ran(f"fit{k}")
        return f"{context['clean']}-{k}"


    def report(context):
        _ran("report")
        return ",".join(context["fit"])


    def lint(level):
        _ran("lint")
        return level
"""

FLOW = """
    name: sel
    params: {level: 1}
    tasks:
      - {id: load, plugin: python, tags: [etl], config: {function: "steps:load"}}
      - {id: clean, plugin: python, tags: [etl], depends_on: [load], config: {function: "steps:clean"}}
      - id: fit
        plugin: python
        tags: [model]
        foreach: [1, 2]
        depends_on: [clean]
        config: {function: "steps:fit", args: ["${item}"]}
      - {id: report, plugin: python, depends_on: [fit], config: {function: "steps:report"}}
      - {id: lint, plugin: python, config: {function: "steps:lint", args: ["${params.level}"]}}
"""
ALL = ["load", "clean", "fit[0]", "fit[1]", "report", "lint"]


@pytest.fixture
def flow(tmp_path):
    write(tmp_path, "steps.py", STEPS)
    write(tmp_path, "source.txt", "first\n")
    return write(tmp_path, "flow.yaml", FLOW)


def ran(tmp_path) -> list[str]:
    """The tasks that ran since the last call, in the order they ran (and forget them)."""
    log = tmp_path / "ran.txt"
    if not log.exists():
        return []
    names = log.read_text().split()
    log.unlink()
    return names


def opflow(tmp_path, *args):
    return run_cli("run", "flow.yaml", "--workers", "2", *args, cwd=tmp_path)


def test_only_runs_the_selected_task_and_reuses_its_upstream_from_the_latest_run(flow, tmp_path):
    assert opflow(tmp_path).returncode == 0
    first = latest_run_dir(tmp_path / "logs")
    assert sorted(ran(tmp_path)) == sorted(["load", "clean", "fit1", "fit2", "report", "lint"])
    (tmp_path / "source.txt").write_text("second\n")  # a rerun of load would say so

    result = opflow(tmp_path, "--only", "report")
    assert result.returncode == 0, result.stdout + result.stderr
    assert ran(tmp_path) == ["report"]
    run_dir = latest_run_dir(tmp_path / "logs")
    tasks = records(run_dir)
    assert sorted(tasks) == sorted(["load", "clean", "fit[0]", "fit[1]", "report"])  # lint: no record
    assert tasks["report"]["reused"] is False and tasks["report"]["result"] == "FIRST-1,FIRST-2"
    for upstream in ("load", "clean", "fit[0]", "fit[1]"):
        assert tasks[upstream]["reused"] is True and tasks[upstream]["reused_from"] == str(first)
        assert tasks[upstream]["attempts"] == 0
    doc = run_json(run_dir)
    assert doc["selection"] == {"asked": ["--only report"], "resolved": ["report"],
                                "reused": {t: str(first) for t in ("load", "clean", "fit[0]", "fit[1]")}}
    assert doc["status"] == "succeeded" and set(doc["tasks"]) == set(tasks)


def test_selectors_ids_globs_tags_groups_and_graph_operators(flow, tmp_path):
    assert opflow(tmp_path).returncode == 0
    ran(tmp_path)
    cases = [
        (["tag:etl"], ["load", "clean"], ["load", "clean"]),
        (["+clean"], ["load", "clean"], ["load", "clean"]),
        (["clean+"], ["clean", "fit[0]", "fit[1]", "report"], ["clean", "fit1", "fit2", "report"]),
        (["fit"], ["fit[0]", "fit[1]"], ["fit1", "fit2"]),  # a foreach task's id: its instances
        (["fit[1]"], ["fit[1]"], ["fit2"]),
        (["l*"], ["load", "lint"], ["load", "lint"]),
        (["fit[0]+"], ["fit[0]", "report"], ["fit1", "report"]),  # fit[1] reused
        (["+clean+"], ["load", "clean", "fit[0]", "fit[1]", "report"], ["load", "clean", "fit1", "fit2", "report"]),
        (["tag:model", "lint"], ["fit[0]", "fit[1]", "lint"], ["fit1", "fit2", "lint"]),
    ]
    for selectors, resolved, really_ran in cases:
        args = [a for s in selectors for a in ("--only", s)]
        result = opflow(tmp_path, *args)
        assert result.returncode == 0, (selectors, result.stdout + result.stderr)
        doc = run_json(latest_run_dir(tmp_path / "logs"))
        assert doc["selection"]["resolved"] == resolved, selectors
        assert sorted(ran(tmp_path)) == sorted(really_ran), selectors
        tasks = records(latest_run_dir(tmp_path / "logs"))
        assert sorted(t for t in tasks if not tasks[t]["reused"]) == sorted(resolved), selectors


def test_skip_alone_runs_everything_else_and_with_only_removes_from_it(flow, tmp_path):
    result = opflow(tmp_path, "--skip", "lint")
    assert result.returncode == 0, result.stderr
    assert sorted(records(latest_run_dir(tmp_path / "logs"))) == sorted(t for t in ALL if t != "lint")
    assert "lint" not in ran(tmp_path)
    result = opflow(tmp_path, "--only", "clean+", "--skip", "report")
    assert result.returncode == 0, result.stderr
    doc = run_json(latest_run_dir(tmp_path / "logs"))
    assert doc["selection"]["asked"] == ["--only clean+", "--skip report"]
    assert doc["selection"]["resolved"] == ["clean", "fit[0]", "fit[1]"]
    assert sorted(ran(tmp_path)) == ["clean", "fit1", "fit2"]


def test_no_earlier_result_for_an_unselected_upstream_is_exit_2_naming_both_and_nothing_runs(flow, tmp_path):
    result = opflow(tmp_path, "--only", "clean")
    assert result.returncode == 2
    assert "task 'clean' needs the result of 'load'" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert ran(tmp_path) == [] and run_dirs(tmp_path / "logs") == []


def test_an_upstream_result_from_other_params_is_not_reused(flow, tmp_path):
    assert opflow(tmp_path).returncode == 0
    ran(tmp_path)
    result = opflow(tmp_path, "--only", "clean", "--param", "level=2")  # every task sees params
    assert result.returncode == 2 and "'clean' needs the result of 'load'" in result.stderr, result.stderr
    assert ran(tmp_path) == []


def test_an_upstream_is_taken_from_the_latest_run_it_succeeded_in_or_from_run(flow, tmp_path):
    assert opflow(tmp_path).returncode == 0
    first = latest_run_dir(tmp_path / "logs")
    (tmp_path / "source.txt").write_text("second\n")
    assert opflow(tmp_path, "--only", "+clean").returncode == 0  # a run where load succeeded again
    second = latest_run_dir(tmp_path / "logs")
    assert opflow(tmp_path, "--only", "lint").returncode == 0  # a later run without load
    ran(tmp_path)

    assert opflow(tmp_path, "--only", "clean").returncode == 0
    tasks = records(latest_run_dir(tmp_path / "logs"))
    assert tasks["load"]["reused_from"] == str(second) and tasks["clean"]["result"] == "SECOND"

    result = opflow(tmp_path, "--only", "clean", "--from-run", str(first))
    assert result.returncode == 0, result.stderr
    tasks = records(latest_run_dir(tmp_path / "logs"))
    assert tasks["load"]["reused_from"] == str(first) and tasks["clean"]["result"] == "FIRST"
    assert ran(tmp_path) == ["clean", "clean"]


def test_a_failing_selected_task_is_exit_1_and_a_succeeding_selection_exit_0(flow, tmp_path):
    assert opflow(tmp_path).returncode == 0
    write(tmp_path, "steps.py", textwrap.dedent(STEPS) + "\n\ndef lint(level):\n    raise ValueError('lint failed')\n")
    assert opflow(tmp_path, "--only", "report").returncode == 0  # lint is not selected: not run
    assert opflow(tmp_path, "--only", "lint").returncode == 1


@pytest.mark.parametrize("args, says", [
    (["--only", "reprot"], "--only reprot: matches no task (did you mean 'report'?)"),
    (["--only", "tag:etls"], "--only tag:etls: matches no task (did you mean 'tag:etl'?)"),
    (["--skip", "+nothing*"], "--skip +nothing*: matches no task"),
    (["--force", "lnt"], "--force lnt: matches no task (did you mean 'lint'?)"),
    (["--only", "lint", "--force", "load"], "'load' is not selected"),
    (["--skip", "*"], "selects no task"),
    (["--from-run", "logs"], "--from-run goes with --only or --skip"),
])
def test_a_selection_that_cannot_run_is_exit_2_and_runs_nothing(flow, tmp_path, args, says):
    result = opflow(tmp_path, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
    assert ran(tmp_path) == [] and run_dirs(tmp_path / "logs") == []


def test_an_unselected_task_between_two_selected_ones_is_refused(flow, tmp_path):
    assert opflow(tmp_path).returncode == 0
    ran(tmp_path)
    result = opflow(tmp_path, "--skip", "clean", "--skip", "lint")
    assert result.returncode == 2
    assert "'clean' is not selected, but a selected task reads it and it reads 'load', which runs" in result.stderr
    assert ran(tmp_path) == []


CACHED = """
    name: forced
    tasks:
      - {id: a, plugin: shell, cache: true, config: {command: "echo a >> ran.txt; echo A"}}
      - {id: b, plugin: shell, cache: true, depends_on: [a], config: {command: "echo b >> ran.txt; echo B"}}
"""


def test_force_runs_a_task_the_cache_would_reuse_and_says_so(tmp_path):
    write(tmp_path, "flow.yaml", CACHED)
    assert opflow(tmp_path).returncode == 0
    assert ran(tmp_path) == ["a", "b"]
    assert opflow(tmp_path).returncode == 0
    assert ran(tmp_path) == []  # both from the cache
    result = opflow(tmp_path, "--force", "b")
    assert result.returncode == 0, result.stderr
    assert ran(tmp_path) == ["b"]
    tasks = records(latest_run_dir(tmp_path / "logs"))
    assert tasks["b"]["forced"] is True and tasks["b"]["reused"] is False and tasks["b"]["attempts"] == 1
    assert tasks["a"]["forced"] is False and tasks["a"]["reused"] is True


def test_force_runs_a_task_resume_would_reuse(tmp_path):
    write(tmp_path, "flow.yaml", CACHED.replace("cache: true", "cache: false")
          .replace("echo B", "test -e ok && echo B"))
    assert opflow(tmp_path).returncode == 1  # b fails: no file ok
    ran(tmp_path)
    (tmp_path / "ok").write_text("")
    result = opflow(tmp_path, "--resume", "--force", "a")
    assert result.returncode == 0, result.stderr
    assert ran(tmp_path) == ["a", "b"]
    tasks = records(latest_run_dir(tmp_path / "logs"))
    assert tasks["a"]["forced"] is True and tasks["a"]["reused"] is False
    assert json.loads((latest_run_dir(tmp_path / "logs") / "run.json").read_text())["reused"] == []


def test_opflow_resume_force_reruns_a_task_that_succeeded(tmp_path):
    write(tmp_path, "flow.yaml", CACHED.replace("cache: true", "cache: false"))
    assert opflow(tmp_path).returncode == 0
    first = latest_run_dir(tmp_path / "logs")
    ran(tmp_path)
    result = run_cli("resume", str(first), "--force", "b", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert ran(tmp_path) == ["b"]
    tasks = records(latest_run_dir(tmp_path / "logs"))
    assert tasks["a"]["reused"] is True and tasks["b"]["forced"] is True and tasks["b"]["reused"] is False
