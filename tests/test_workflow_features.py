"""Writing real workflows: every feature through the real CLI on real files.

Templating, declared params, foreach, trigger rules, caching by inputs, plugin
config schemas, `opflow schema`, every problem in one pass, batch options.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from helpers import REPO, invoke, latest_run_dir, records, run_cli, write


def invalid(*args) -> list[str]:
    """Run a command that must refuse the file: exit 2, no traceback, nothing run. Its problem lines."""
    runs_before = _run_count()
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert _run_count() == runs_before, "an invalid workflow must not make a run directory"
    return [line for line in result.stderr.splitlines() if not line.startswith("opflow:")]


def _run_count() -> int:
    logs = Path("logs")
    return len([p for p in logs.iterdir() if not p.name.startswith(".")]) if logs.is_dir() else 0


def last_records(here: Path) -> tuple[dict, dict]:
    run_dir = latest_run_dir(here / "logs")
    return json.loads((run_dir / "run.json").read_text()), records(run_dir)


# every problem in one pass, cycles included, sorted by line -------------------

def test_every_problem_in_one_pass_cycles_included_sorted_by_line(here):
    flow = write(here, "flow.yaml", """
        name: many
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}, depends_on: [b]}
          - {id: b, plugin: shell, config: {command: "true"}, depends_on: [a]}
          - id: c
            plugin: shell
            config: {comand: "true"}
          - {id: d, plugin: shell, config: {command: "echo ${params.nope}"}}
          - {id: e, plugin: shell, config: {command: "true"}, dependson: [a]}
    """)
    lines = invalid("validate", flow)
    numbers = [int(line.split(":")[1]) for line in lines]
    assert numbers == sorted(numbers), lines
    assert any("dependency cycle: a -> b -> a" in line for line in lines), lines
    assert any(f"{flow}:7: task 'c': config: unknown key 'comand' (did you mean 'command'?)" in line for line in lines)
    assert any(f"{flow}:8: task 'd':" in line and "no param 'nope'" in line for line in lines)
    assert any(f"{flow}:9: task 'e': unknown key 'dependson'" in line for line in lines)
    assert len(lines) == 4, lines


# params are declared ------------------------------------------------------------

@pytest.fixture
def params_flow(here):
    return write(here, "flow.yaml", """
        name: params
        params: {threshold: 10, ratio: 0.5, tag: "001", flag: false, anything: null, files: [a, b]}
        tasks:
          - id: show
            plugin: python
            config: {function: "json:dumps", args: ["${params}"]}
    """.replace('["${params}"]', '[{t: "${params.threshold}", r: "${params.ratio}", tag: "${params.tag}", '
                                   'f: "${params.flag}", any: "${params.anything}", files: "${params.files}"}]'))


def test_an_undeclared_param_is_exit_2_with_did_you_mean_and_runs_nothing(params_flow):
    lines = invalid("run", params_flow, "--param", "treshold=20")
    assert lines == [f"{params_flow}: --param treshold=20: the workflow declares no param 'treshold' "
                     "(did you mean 'threshold'?)"]


@pytest.mark.parametrize("override, fragment", [
    ("threshold=high", "expected an int like the declared default (10), got str 'high'"),
    ("threshold=1.5", "expected an int"),
    ("flag=maybe", "expected a bool"),
    ("files=a.csv", "expected a list"),
])
def test_a_param_of_the_wrong_type_is_exit_2(params_flow, override, fragment):
    (line,) = invalid("run", params_flow, "--param", override)
    assert fragment in line and f"--param {override}" in line


def test_param_values_take_the_declared_type(here, params_flow):
    result = invoke("run", params_flow, "--param", "threshold=20", "--param", "ratio=2",
                    "--param", "tag=007", "--param", "flag=true", "--param", "anything=[1, 2]",
                    "--param", "files=[x.csv, y.csv]")
    assert result.exit_code == 0, result.output
    run, tasks = last_records(here)
    expected = {"threshold": 20, "ratio": 2.0, "tag": "007", "flag": True, "anything": [1, 2],
                "files": ["x.csv", "y.csv"]}
    assert run["params"] == expected  # run.json: the params as used
    shown = json.loads(tasks["show"]["result"])
    assert shown == {"t": 20, "r": 2.0, "tag": "007", "f": True, "any": [1, 2], "files": ["x.csv", "y.csv"]}


# templating -------------------------------------------------------------------

def test_templating_types_keys_env_literals_and_the_record_keeps_the_rendered_config(here, monkeypatch):
    monkeypatch.setenv("OPFLOW_TEST_REGION", "south")
    monkeypatch.delenv("OPFLOW_TEST_UNSET", raising=False)
    flow = write(here, "flow.yaml", """
        name: templating
        params: {n: 3, db: {host: db.local, port: 5432}, name: world}
        tasks:
          - id: call
            plugin: python
            config:
              function: "json:dumps"
              args:
                - n: ${params.n}
                  port: ${params.db.port}
                  text: "n=${params.n} at ${params.db.host}:${params.db.port}"
                  region: ${env.OPFLOW_TEST_REGION}
                  fallback: ${env.OPFLOW_TEST_UNSET:-/tmp}
                  literal: "$${params.n} stays"
                  whole: ${params.db}
    """)
    result = invoke("run", flow, "--param", "n=7")
    assert result.exit_code == 0, result.output
    _, tasks = last_records(here)
    assert json.loads(tasks["call"]["result"]) == {
        "n": 7, "port": 5432, "text": "n=7 at db.local:5432", "region": "south", "fallback": "/tmp",
        "literal": "${params.n} stays", "whole": {"host": "db.local", "port": 5432}}
    assert tasks["call"]["config"]["args"][0]["n"] == 7  # the record keeps the config after templating


def test_values_in_a_shell_command_are_shell_quoted_and_shell_variables_are_left_alone(here):
    evil = "x; touch PWNED; echo $(id)"
    flow = write(here, "flow.yaml", f"""
        name: quoting
        params: {{evil: "{evil}"}}
        tasks:
          - {{id: say, plugin: shell, config: {{command: 'printf "%s|" ${{params.evil}} ${{HOME}} "$${{HOME}}"'}}}}
    """)
    result = invoke("run", flow)
    assert result.exit_code == 0, result.output
    _, tasks = last_records(here)
    assert not (here / "PWNED").exists() and not (flow.parent / "PWNED").exists()
    assert tasks["say"]["result"]["stdout"] == f"{evil}|{os.environ['HOME']}|{os.environ['HOME']}|"


@pytest.mark.parametrize("reference, fragment", [
    ("${param.n}", "unknown reference '${param.n}' (did you mean '${params.n}'?)"),
    ("${parms.n}", "unknown reference '${parms.n}' (did you mean '${params.n}'?)"),
    ("${params.nn}", "'${params.nn}': no param 'nn' (did you mean 'n'?)"),
    ("${params.n.key}", "params.n is a int, it has no key 'key'"),
    ("${env.OPFLOW_TEST_SURELY_UNSET}", "environment variable 'OPFLOW_TEST_SURELY_UNSET' is not set"),
    ("${item}", "'${item}' is only defined in a task with 'foreach'"),
])
def test_a_bad_reference_is_a_located_validate_error(here, reference, fragment):
    flow = write(here, "flow.yaml", f"""
        name: refs
        params: {{n: 1}}
        tasks:
          - id: a
            plugin: shell
            config:
              command: "echo {reference}"
    """)
    (line,) = invalid("validate", flow)
    assert line.startswith(f"{flow}:7: task 'a': ") and fragment in line, line


# plugin configs checked before the run -----------------------------------------

@pytest.mark.parametrize("task, line, fragment", [
    ("{id: a, plugin: shell, config: {comand: ls}}", 3, "config: unknown key 'comand' (did you mean 'command'?)"),
    ("{id: a, plugin: shell, config: {command: [ls]}}", 3, "config.command must be a string, got list"),
    ("{id: a, plugin: csv_ingest, config: {}}", 3, "config: missing required key 'path'"),
    ("{id: a, plugin: python, config: {function: 'json:dumps', args: 5}}", 3, "config.args must be a list, got int"),
    ("{id: a, plugin: metrics, config: {numeric_columns: [x]}, depends_on: [p, q]}", 3,
     "config 'source' is required when the task has 2 upstream tasks (p, q)"),
])
def test_built_in_plugin_configs_are_checked_by_validate(here, task, line, fragment):
    flow = write(here, "flow.yaml", f"""
        name: configs
        tasks:
          - {task}
          - {{id: p, plugin: shell, config: {{command: "true"}}}}
          - {{id: q, plugin: shell, config: {{command: "true"}}}}
    """)
    (problem,) = invalid("validate", flow)
    assert problem.startswith(f"{flow}:{line}: task 'a': ") and fragment in problem, problem


def test_workers_plugins_declare_schemas_subclasses_are_found_and_a_broken_file_is_reported_once(here):
    write(here, "workers/family.py", '''
        from opflow.plugin_base import Plugin


        class Base(Plugin):
            config_schema = {"type": "object", "properties": {"greeting": {"type": "string"}},
                             "additionalProperties": False}

            def run(self, config, context):
                return f"{config.get('greeting', 'hi')} from {self.name}"


        class Child(Base):
            """A plugin that only sets its name: its run and schema come from Base."""
            name = "child"
    ''')
    write(here, "workers/broken.py", "x = 1\nclass Oops(:\n    name = 'oops'\n")
    good = write(here, "good.yaml", """
        name: family
        tasks:
          - {id: a, plugin: child, config: {greeting: hello}}
    """)
    result = invoke("run", good)
    assert result.exit_code == 0, result.output
    assert last_records(here)[1]["a"]["result"] == "hello from child"
    bad = write(here, "bad.yaml", """
        name: family
        tasks:
          - {id: a, plugin: child, config: {greting: hello}}
          - {id: b, plugin: oops}
          - {id: c, plugin: oops}
    """)
    lines = invalid("validate", bad)
    assert any("task 'a': config: unknown key 'greting' (did you mean 'greeting'?)" in line for line in lines)
    notes = [line for line in lines if "broken.py" in line]
    assert notes == [f"{here / 'workers' / 'broken.py'}:2: note: cannot read plugin file: invalid syntax (broken.py, line 2)"]


# options for batch jobs ----------------------------------------------------------

def test_run_timeout_kills_and_cancels_the_rest_exit_1(here):
    flow = write(here, "flow.yaml", """
        name: slow
        tasks:
          - {id: sleeper, plugin: shell, config: {command: "sleep 60"}}
          - {id: after, plugin: shell, config: {command: "true"}, depends_on: [sleeper]}
    """)
    started = time.monotonic()
    result = invoke("run", flow, "--timeout", "1s", "--workers", "1")
    assert result.exit_code == 1, result.output
    assert time.monotonic() - started < 30
    run, tasks = last_records(here)
    assert run["status"] == "failed"
    assert tasks["sleeper"]["status"] == "cancelled"
    assert "timed out after 1s (--timeout)" in tasks["sleeper"]["reason"]
    assert tasks["after"]["status"] == "cancelled" and "timed out" in tasks["after"]["reason"]


def test_bad_run_timeout_is_a_usage_error(here):
    flow = write(here, "flow.yaml", """
        name: x
        tasks: [{id: a, plugin: shell, config: {command: "true"}}]
    """)
    result = invoke("run", flow, "--timeout", "soon")
    assert result.exit_code == 2 and "is not a duration" in result.stderr


def test_durations_are_accepted_wherever_a_duration_goes(here):
    flow = write(here, "flow.yaml", """
        name: durations
        defaults: {retry_delay: 90s}
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}, timeout: 5m}
          - {id: b, plugin: shell, config: {command: "true"}, timeout: 1h, retry_delay: 90}
          - {id: c, plugin: shell, config: {command: "true"}, timeout: 1.5m}
    """)
    from opflow.api import load

    workflow, _ = load(flow)
    assert [(t.timeout, t.retry_delay) for t in workflow.tasks] == [(300.0, 90.0), (3600.0, 90.0), (90.0, 90.0)]
    assert invoke("validate", flow).exit_code == 0


def test_opflow_env_variables_are_defaults_for_the_options(here, tmp_path):
    flow = write(here, "flow.yaml", """
        name: envs
        tasks: [{id: a, plugin: shell, config: {command: "true"}}]
    """)
    logs = tmp_path / "env-logs"
    env = {"OPFLOW_WORKERS": "3", "OPFLOW_LOG_DIR": str(logs), "OPFLOW_EXECUTOR": "thread"}
    result = invoke("run", flow, env=env)
    assert result.exit_code == 0, result.output
    run = json.loads((latest_run_dir(logs) / "run.json").read_text())
    assert (run["workers"], run["executor"]) == (3, "thread")
    assert not (here / "logs").exists()
    # An option on the command line still wins.
    assert invoke("run", flow, "--executor", "inline", env=env).exit_code == 0
    assert json.loads((latest_run_dir(logs) / "run.json").read_text())["executor"] == "inline"


# trigger rules -------------------------------------------------------------------

TRIGGER_TOOLS = '''
def fail():
    raise RuntimeError("the disk is full")


def report(context):
    return context["upstream_failed"]
'''


def test_trigger_rules_run_under_fail_fast_and_see_what_failed(here):
    write(here, "tools.py", TRIGGER_TOOLS)
    flow = write(here, "flow.yaml", """
        name: triggers
        tasks:
          - {id: load, plugin: shell, config: {command: "true"}}
          - {id: crunch, plugin: python, config: {function: "tools:fail"}, depends_on: [load]}
          - {id: publish, plugin: shell, config: {command: "true"}, depends_on: [crunch]}
          - {id: cleanup, plugin: shell, trigger: all_done, config: {command: "echo cleaned"}, depends_on: [crunch]}
          - {id: notify, plugin: python, trigger: one_failed, config: {function: "tools:report"}, depends_on: [publish]}
    """)
    result = invoke("run", flow)  # the process pool, fail fast
    assert result.exit_code == 1, result.output
    run, tasks = last_records(here)
    assert run["status"] == "failed"
    assert tasks["crunch"]["status"] == "failed"
    assert tasks["publish"]["status"] == "skipped" and tasks["publish"]["reason"] == "upstream 'crunch' failed"
    assert tasks["cleanup"]["status"] == "succeeded" and tasks["cleanup"]["result"]["stdout"] == "cleaned\n"
    assert tasks["notify"]["status"] == "succeeded"
    seen = tasks["notify"]["result"]
    assert seen["crunch"] == {"status": "failed", "error": {"type": "RuntimeError", "message": "the disk is full"}}
    assert seen["publish"] == {"status": "skipped", "reason": "upstream 'crunch' failed"}


def test_an_unmet_trigger_is_skipped_with_the_reason_and_does_not_fail_the_run(here):
    write(here, "tools.py", TRIGGER_TOOLS)
    flow = write(here, "flow.yaml", """
        name: triggers ok
        tasks:
          - {id: work, plugin: shell, config: {command: "true"}}
          - {id: notify, plugin: shell, trigger: one_failed, config: {command: "echo alarm"}, depends_on: [work]}
          - {id: cleanup, plugin: shell, trigger: all_done, config: {command: "true"}, depends_on: [work]}
    """)
    result = invoke("run", flow, "--quiet")
    assert result.exit_code == 0, result.output
    assert result.output == ""  # not triggered is no news
    run, tasks = last_records(here)
    assert run["status"] == "succeeded"
    assert tasks["notify"]["status"] == "skipped"
    assert tasks["notify"]["reason"] == "not triggered (one_failed): no upstream task failed"
    assert tasks["cleanup"]["status"] == "succeeded"


def test_a_bad_trigger_is_a_validate_error(here):
    flow = write(here, "flow.yaml", """
        name: x
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}, trigger: one_fail}
    """)
    (line,) = invalid("validate", flow)
    assert "'trigger' 'one_fail' is not a trigger rule (did you mean 'one_failed'?)" in line


# fan-out -------------------------------------------------------------------------

FANOUT_TOOLS = '''
def square(x, i):
    return {"x": x, "i": i, "sq": x * x}


def collect(context):
    return context["sq"]
'''


def test_foreach_fans_out_over_a_param_and_the_dependant_sees_the_list_in_order(here):
    write(here, "tools.py", FANOUT_TOOLS)
    flow = write(here, "flow.yaml", """
        name: fan
        params: {numbers: [3, 1, 2]}
        tasks:
          - id: sq
            plugin: python
            foreach: ${params.numbers}
            config: {function: "tools:square", args: ["${item}", "${index}"]}
          - {id: total, plugin: python, config: {function: "tools:collect"}, depends_on: [sq]}
          - id: words
            plugin: shell
            foreach: [alpha, beta]
            config: {command: "echo ${index}:${item}"}
    """)
    plan = invoke("plan", flow)
    assert plan.exit_code == 0
    assert "layer 1: sq[0], sq[1], sq[2], words[0], words[1]" in plan.output and "layer 2: total" in plan.output
    result = invoke("run", flow, "--param", "numbers=[4, 5, 6, 7]")
    assert result.exit_code == 0, result.output
    assert "ok        sq[3]" in result.output  # the live view shows instances
    run, tasks = last_records(here)
    assert list(run["tasks"]) == ["sq[0]", "sq[1]", "sq[2]", "sq[3]", "total", "words[0]", "words[1]"]
    assert tasks["total"]["result"] == [{"x": x, "i": i, "sq": x * x} for i, x in enumerate([4, 5, 6, 7])]
    assert tasks["total"]["depends_on"] == ["sq[0]", "sq[1]", "sq[2]", "sq[3]"]
    assert tasks["words[1]"]["result"]["stdout"] == "1:beta\n"
    assert (latest_run_dir(here / "logs") / "tasks" / "sq[0].json").is_file()


def test_foreach_over_a_non_list_is_a_validate_error(here):
    flow = write(here, "flow.yaml", """
        name: fan
        params: {n: 3}
        tasks:
          - id: a
            plugin: shell
            foreach: ${params.n}
            config: {command: "echo ${item}"}
    """)
    (line,) = invalid("validate", flow)
    assert line.startswith(f"{flow}:6: task 'a': 'foreach' must give a list"), line


# caching by inputs -----------------------------------------------------------------

def test_cache_reuses_until_an_input_changes_and_no_cache_ignores_it(here):
    data = here / "data"
    data.mkdir()
    (data / "a.txt").write_text("one")
    counter = here / "runs.count"
    flow = write(here, "flow.yaml", f"""
        name: cache
        defaults: {{cache: true}}
        tasks:
          - id: digest
            plugin: shell
            inputs: ["data/*.txt"]
            config: {{command: "cat data/*.txt; echo x >> {counter}"}}
          - id: shout
            plugin: shell
            config: {{command: "echo done"}}
            depends_on: [digest]
          - id: fresh
            plugin: shell
            cache: false
            config: {{command: "true"}}
    """)

    def run_once(*extra):
        result = invoke("run", flow, *extra)
        assert result.exit_code == 0, result.output
        return last_records(here)

    first_run, first = run_once()
    assert counter.read_text().count("x") == 1
    assert first["digest"]["cache_key"] and not first["digest"]["reused"]

    _, second = run_once()
    assert counter.read_text().count("x") == 1  # not run again
    first_dir = str(latest_run_dir(here / "logs").parent / Path(first_run["run_dir"]).name)
    assert second["digest"]["status"] == "succeeded" and second["digest"]["reused"]
    assert Path(second["digest"]["reused_from"]).name == Path(first_dir).name
    assert second["digest"]["result"] == first["digest"]["result"]
    assert second["shout"]["reused"] and not second["fresh"]["reused"]

    (data / "b.txt").write_text("two")  # a new file matching the glob
    _, third = run_once()
    assert counter.read_text().count("x") == 2 and not third["digest"]["reused"]
    assert third["digest"]["result"]["stdout"] == "onetwo"
    assert not third["shout"]["reused"] or third["shout"]["cache_key"] != second["shout"]["cache_key"]

    _, fourth = run_once("--no-cache")
    assert counter.read_text().count("x") == 3 and not fourth["digest"]["reused"]


def test_cache_key_changes_with_the_config_after_templating(here):
    counter = here / "runs.count"
    flow = write(here, "flow.yaml", f"""
        name: cache params
        params: {{word: a}}
        tasks:
          - {{id: t, plugin: shell, cache: true, config: {{command: "echo ${{params.word}} >> {counter}"}}}}
    """)
    for args in ([], [], ["--param", "word=b"], ["--param", "word=b"]):
        assert invoke("run", flow, *args).exit_code == 0
    assert counter.read_text().split() == ["a", "b"]


# a schema for editors ----------------------------------------------------------------

def test_schema_validates_the_shipped_examples_and_rejects_a_typo(here):
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    result = invoke("schema", REPO / "examples" / "city_report.yaml")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for example in sorted((REPO / "examples").glob("*.yaml")):
        document = yaml.safe_load(example.read_text())
        assert not list(validator.iter_errors(document)), example
    typo = yaml.safe_load("""
        name: x
        tasks:
          - {id: a, plugin: shell, config: {comand: ls}}
    """)
    assert list(validator.iter_errors(typo))
    misplaced = yaml.safe_load("""
        name: x
        tasks:
          - {id: a, plugin: shell, config: {command: ls}, dependson: [b]}
    """)
    assert list(validator.iter_errors(misplaced))
    # The copy shipped for editors (the example's modeline names it) is up to date.
    shipped = json.loads((REPO / "examples" / "workflow.schema.json").read_text())
    assert shipped == schema, "regenerate: opflow schema examples/city_report.yaml > examples/workflow.schema.json"


def test_the_shipped_example_runs(tmp_path):
    shutil.copytree(REPO / "examples", tmp_path / "examples", symlinks=False)
    result = run_cli("run", "examples/city_report.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    again = run_cli("run", "examples/city_report.yaml", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    tasks = records(Path(json.loads(again.stdout)["run_dir"]))
    assert tasks["ingest"]["reused"] and tasks["stats"]["reused"]
    assert tasks["notify_failure"]["status"] == "skipped"


def test_resume_compares_templated_configs_with_the_params_that_run_had(here):
    write(here, "tools.py", '''
import pathlib


def count(path, word):
    p = pathlib.Path(path)
    p.write_text(p.read_text() + word if p.exists() else word)
    return word


def fail_once(path):
    p = pathlib.Path(path)
    if not p.exists():
        p.write_text("failed once")
        raise RuntimeError("first time")
    return "ok"
''')
    flow = write(here, "flow.yaml", f"""
        name: resume templated
        params: {{word: a}}
        tasks:
          - {{id: t, plugin: python, config: {{function: "tools:count", args: ["{here / 'count.txt'}", "${{params.word}}"]}}}}
          - {{id: u, plugin: python, config: {{function: "tools:fail_once", args: ["{here / 'flag'}"]}}, depends_on: [t]}}
    """)
    assert invoke("run", flow, "--param", "word=b").exit_code == 1
    again = invoke("resume", latest_run_dir(here / "logs"))  # with that run's params
    assert again.exit_code == 0, again.output
    assert (here / "count.txt").read_text() == "b"  # t was reused, not run again


def test_cache_key_covers_the_source_of_a_workers_plugin_and_upstream_results(here):
    plugin = '''
from opflow.plugin_base import Plugin


class Stamp(Plugin):
    name = "stamp"

    def run(self, config, context):
        return "VERSION"
'''
    write(here, "workers/stamp.py", plugin.replace("VERSION", "v1"))
    flow = write(here, "flow.yaml", """
        name: cache code
        defaults: {cache: true}
        tasks:
          - {id: s, plugin: stamp}
          - {id: echo, plugin: python, config: {function: "json:dumps", args: ["x"]}, depends_on: [s]}
    """)
    assert invoke("run", flow).exit_code == 0
    assert invoke("run", flow).exit_code == 0
    _, tasks = last_records(here)
    assert tasks["s"]["reused"] and tasks["echo"]["reused"]
    write(here, "workers/stamp.py", plugin.replace("VERSION", "v2"))
    assert invoke("run", flow, "--executor", "process").exit_code == 0  # fresh workers import the new file
    _, tasks = last_records(here)
    assert not tasks["s"]["reused"] and tasks["s"]["result"] == "v2"
    assert not tasks["echo"]["reused"]  # its upstream result changed
