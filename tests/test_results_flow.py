"""Results between tasks through the real CLI on the process pool: `${tasks.ID.result...}`
in configs, `when:` conditions, and `foreach:` over an upstream result (contract v3)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from helpers import REPO, invoke, latest_run_dir, records, run_cli, run_json, write

TOOLS = '''
def make():
    return {"n": 3, "ratio": 0.5, "name": "it's a \\"b c\\"", "files": ["a.csv", "b c.csv"],
            "nested": {"deep": [10, 20]}, "flag": True}


def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


def listing(n):
    return [f"f{i}.csv" for i in range(n)]


def fail():
    raise RuntimeError("boom")


def counted(folder):
    """A result that says how often it was made (a file per call)."""
    import os
    calls = len(os.listdir(folder)) + 1
    open(os.path.join(folder, str(calls)), "w").close()
    return {"n": 3, "calls": calls}


def frame():
    import pandas
    return pandas.DataFrame({"a": [1, 2]})
'''


def last(here):
    run_dir = latest_run_dir(here / "logs")
    return run_json(run_dir), records(run_dir)


def refused(*args) -> list[str]:
    """A command that must refuse the file: exit 2, no traceback, no run made. Its problem lines."""
    runs = _runs()
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert _runs() == runs, "nothing may run"
    return [line for line in result.stderr.splitlines() if not line.startswith("opflow:")]


def _runs() -> list:
    return sorted(p for p in os.listdir("logs") if not p.startswith(".")) if os.path.isdir("logs") else []


# ${tasks.ID.result...} ---------------------------------------------------------------

def test_an_upstream_result_keeps_its_type_as_a_whole_string_and_is_text_inside_one(here):
    write(here, "tools.py", TOOLS)
    flow = write(here, "flow.yaml", """
        name: flow
        tasks:
          - {id: make, plugin: python, config: {function: "tools:make"}}
          - {id: mid, plugin: shell, config: {command: "true"}, depends_on: [make]}
          - id: use
            plugin: python
            depends_on: [mid]
            config:
              function: "tools:echo"
              kwargs:
                whole: ${tasks.make.result}
                n: ${tasks.make.result.n}
                ratio: ${tasks.make.result.ratio}
                flag: ${tasks.make.result.flag}
                deep: ${tasks.make.result.nested.deep.1}
                files: ${tasks.make.result.files}
                text: "n=${tasks.make.result.n} files=${tasks.make.result.files}"
                literal: "$${tasks.make.result.n}"
    """)
    result = invoke("run", flow)
    assert result.exit_code == 0, result.output
    _, tasks = last(here)
    made = tasks["make"]["result"]
    expected = {"whole": made, "n": 3, "ratio": 0.5, "flag": True, "deep": 20, "files": ["a.csv", "b c.csv"],
                "text": 'n=3 files=["a.csv", "b c.csv"]', "literal": "${tasks.make.result.n}"}
    assert tasks["use"]["result"]["kwargs"] == expected
    assert tasks["use"]["config"]["kwargs"] == expected  # the record shows the config as rendered


def test_an_upstream_result_in_a_shell_command_is_one_quoted_word(here):
    write(here, "tools.py", TOOLS)
    # A param's value is never read as a reference, even beside an upstream result.
    flow = write(here, "flow.yaml", """
        name: flow
        params: {sly: "${tasks.make.result.n} $${x}"}
        tasks:
          - {id: make, plugin: python, config: {function: "tools:make"}}
          - id: say
            plugin: shell
            depends_on: [make]
            config: {command: 'printf "<%s>" ${tasks.make.result.name} ${tasks.make.result.n} ${params.sly} "$${HOME}"; touch ${tasks.make.result.files.1}'}
    """)
    result = invoke("run", flow)
    assert result.exit_code == 0, result.output
    _, tasks = last(here)
    assert tasks["say"]["result"]["stdout"] == f'<it\'s a "b c"><3><${{tasks.make.result.n}} $${{x}}><{os.environ["HOME"]}>'
    assert (here / "b c.csv").is_file()


def test_a_missing_key_at_run_time_fails_that_task_with_the_path_and_not_the_run(here):
    write(here, "tools.py", TOOLS)
    flow = write(here, "flow.yaml", """
        name: flow
        tasks:
          - {id: make, plugin: python, config: {function: "tools:make"}}
          - {id: use, plugin: shell, depends_on: [make], config: {command: "echo ${tasks.make.result.nmae}"}}
          - {id: after, plugin: shell, depends_on: [use], config: {command: "echo after"}}
          - {id: other, plugin: shell, depends_on: [make], config: {command: "echo ${tasks.make.result.n}"}}
    """)
    result = invoke("run", flow, "--keep-going")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    run, tasks = last(here)
    assert run["tasks"] == {"make": "succeeded", "use": "failed", "after": "skipped", "other": "succeeded"}
    message = tasks["use"]["error"]["message"]
    assert "'${tasks.make.result.nmae}'" in message and "no key of tasks.make.result 'nmae'" in message
    assert "did you mean 'name'?" in message
    assert tasks["other"]["result"]["stdout"] == "3\n"


@pytest.mark.parametrize("reference, fragment", [
    ("${tasks.other.result}", "'${tasks.other.result}': task 'other' is not upstream of 'use'"),
    ("${tasks.mkae.result}", "'${tasks.mkae.result}': no task 'mkae' (did you mean 'make'?)"),
    ("${tasks.make.output}", "write ${tasks.ID.result} or ${tasks.ID.result.KEY}"),
    ("${task.make.result}", "did you mean '${tasks.make.result}'?"),
])
def test_a_reference_to_a_task_that_is_not_upstream_is_a_located_validate_error(here, reference, fragment):
    write(here, "tools.py", TOOLS)
    flow = write(here, "flow.yaml", f"""
        name: flow
        tasks:
          - {{id: make, plugin: python, config: {{function: "tools:make"}}}}
          - {{id: other, plugin: shell, config: {{command: "true"}}}}
          - id: use
            plugin: shell
            depends_on: [make]
            config:
              command: "echo {reference}"
    """)
    (line,) = refused("validate", flow)
    assert line.startswith(f"{flow}:9: task 'use': ") and fragment in line, line


def test_an_upstream_result_in_inputs_is_a_validate_error(here):
    write(here, "tools.py", TOOLS)
    flow = write(here, "flow.yaml", """
        name: flow
        tasks:
          - {id: make, plugin: python, config: {function: "tools:make"}}
          - id: use
            plugin: shell
            depends_on: [make]
            cache: true
            inputs: ["${tasks.make.result.files.0}"]
            config: {command: "true"}
    """)
    (line,) = refused("validate", flow)
    assert line.startswith(f"{flow}:8: task 'use': inputs: '${{tasks.make.result.files.0}}': an upstream result "
                           f"goes into 'config', 'when' or 'foreach', not here"), line


def test_a_resumed_or_cached_upstream_gives_its_earlier_result(here):
    write(here, "tools.py", TOOLS)
    (here / "calls").mkdir()
    flow = write(here, "flow.yaml", """
        name: flow
        tasks:
          - {id: make, plugin: python, cache: true, config: {function: "tools:counted", args: [calls]}}
          - id: use
            plugin: shell
            depends_on: [make]
            config: {command: 'test ! -e stop && echo ${tasks.make.result.n}/${tasks.make.result.calls}'}
    """)
    (here / "stop").touch()
    assert invoke("run", flow).exit_code == 1
    (here / "stop").unlink()
    result = invoke("run", flow, "--resume")
    assert result.exit_code == 0, result.output
    _, tasks = last(here)
    assert tasks["make"]["reused"] and tasks["use"]["result"]["stdout"] == "3/1\n"  # from the results kept
    result = invoke("run", flow)
    assert result.exit_code == 0, result.output
    _, tasks = last(here)
    assert tasks["make"]["reason"].startswith("cache: reused") and tasks["use"]["result"]["stdout"] == "3/1\n"
    assert len(os.listdir(here / "calls")) == 1


def test_a_foreach_group_reads_as_the_list_and_a_result_that_is_not_plain_data_fails_clearly(here):
    write(here, "tools.py", TOOLS)
    flow = write(here, "flow.yaml", """
        name: flow
        tasks:
          - {id: sq, plugin: python, foreach: [1, 2], config: {function: "tools:echo", args: ["${item}"]}}
          - {id: all, plugin: python, depends_on: [sq], config: {function: "tools:echo", args: ["${tasks.sq.result}"]}}
          - {id: df, plugin: python, config: {function: "tools:frame"}}
          - {id: bad, plugin: shell, depends_on: [df], config: {command: "echo ${tasks.df.result}"}}
    """)
    result = invoke("run", flow, "--keep-going")
    assert result.exit_code == 1, result.output
    run, tasks = last(here)
    assert tasks["all"]["result"]["args"] == [[{"args": [1], "kwargs": {}}, {"args": [2], "kwargs": {}}]]
    assert run["tasks"]["bad"] == "failed"
    assert "the result of 'df' is a pandas.DataFrame, not plain data" in tasks["bad"]["error"]["message"]


# when: EXPR ----------------------------------------------------------------------------

WHEN_FLOW = """
    name: flow
    params: {mode: full, limit: 2}
    tasks:
      - {id: make, plugin: python, config: {function: "tools:make"}}
      - id: gate
        plugin: shell
        depends_on: [make]
        when: "${tasks.make.result.n} > ${params.limit} and ${params.mode} in ['full', 'daily'] and not false"
        config: {command: "echo ran"}
      - {id: after, plugin: shell, depends_on: [gate], config: {command: "echo after"}}
      - {id: later, plugin: shell, depends_on: [after], config: {command: "echo later"}}
      - {id: cleanup, plugin: shell, depends_on: [gate], trigger: all_done, config: {command: "echo cleanup"}}
"""


def test_a_true_condition_runs_the_task_and_its_dependents(here):
    write(here, "tools.py", TOOLS)
    flow = write(here, "flow.yaml", WHEN_FLOW)
    result = invoke("run", flow)
    assert result.exit_code == 0, result.output
    run, tasks = last(here)
    assert set(run["tasks"].values()) == {"succeeded"}
    assert tasks["gate"]["result"]["stdout"] == "ran\n"


def test_a_false_condition_skips_the_task_and_its_dependents_with_the_reason_and_exit_0(here):
    write(here, "tools.py", TOOLS)
    flow = write(here, "flow.yaml", WHEN_FLOW)
    result = invoke("run", flow, "--param", "mode=weekly")
    assert result.exit_code == 0, result.output
    run, tasks = last(here)
    assert run["status"] == "succeeded"
    assert run["tasks"] == {"make": "succeeded", "gate": "skipped", "after": "skipped", "later": "skipped",
                            "cleanup": "succeeded"}
    written = "${tasks.make.result.n} > ${params.limit} and ${params.mode} in ['full', 'daily'] and not false"
    assert tasks["gate"]["reason"] == f"when: {written} was false"
    assert tasks["gate"]["attempts"] == 0
    assert tasks["after"]["reason"] == f"upstream 'gate' was skipped (when: {written} was false)"
    assert tasks["later"]["reason"] == f"upstream 'after' was skipped (when: {written} was false)"


def test_a_condition_on_params_only_and_one_that_cannot_compare(here):
    flow = write(here, "flow.yaml", """
        name: flow
        params: {go: false, n: 1}
        tasks:
          - {id: first, plugin: shell, config: {command: "true"}}
          - {id: maybe, plugin: shell, depends_on: [first], when: "${params.go}", config: {command: "echo go"}}
          - {id: odd, plugin: shell, when: "${params.n} < 'a'", config: {command: "echo odd"}}
    """)
    result = invoke("run", flow, "--keep-going")
    assert result.exit_code == 1, result.output
    run, tasks = last(here)
    assert run["tasks"] == {"first": "succeeded", "maybe": "skipped", "odd": "failed"}
    assert tasks["maybe"]["reason"] == "when: ${params.go} was false"
    assert "'<' not supported between instances of 'int' and 'str'" in tasks["odd"]["error"]["message"]
    assert invoke("run", flow, "--keep-going", "--param", "go=true", "--param", "n=0").exit_code == 1  # odd fails
    assert last(here)[0]["tasks"]["maybe"] == "succeeded"


@pytest.mark.parametrize("expression, fragment", [
    ("len(${params.mode}) > 1", "a call is not allowed"),
    ("${params.mode}.upper() == 'X'", "is not allowed"),
    ("${params.mode}[0] == 'f'", "a subscript ([...]) is not allowed"),
    ("[x for x in ${params.list}]", "a comprehension is not allowed"),
    ("${params.limit} + 1 > 2", "arithmetic is not allowed"),
    ("mode == 'full'", "the name 'mode' is not allowed"),
    ("${params.mode} ==", "not an expression"),
    ("${env.HOME} == 'x'", "'${env.HOME}' cannot be used in 'when'"),
    ("${params.mdoe} == 'x'", "no param 'mdoe' (did you mean 'mode'?)"),
    ("${tasks.other.result} == 1", "task 'other' is not upstream of 'gate'"),
    ("${tasks.mkae.result} == 1", "no task 'mkae' (did you mean 'make'?)"),
])
def test_a_bad_condition_is_a_validate_error_at_its_line(here, expression, fragment):
    write(here, "tools.py", TOOLS)
    flow = write(here, "flow.yaml", f"""
        name: flow
        params: {{mode: full, limit: 2, list: [1]}}
        tasks:
          - {{id: make, plugin: python, config: {{function: "tools:make"}}}}
          - {{id: other, plugin: shell, config: {{command: "true"}}}}
          - id: gate
            plugin: shell
            depends_on: [make]
            when: "{expression}"
            config: {{command: "echo ran"}}
    """)
    (line,) = refused("validate", flow)
    assert line.startswith(f"{flow}:9: task 'gate': when: ") and fragment in line, line
    assert refused("run", flow) == [line]


# foreach: ${tasks.ID.result} ---------------------------------------------------------------

FAN_TOOLS = '''
import os


def listing(n):
    return {"files": [f"f{i}.csv" for i in range(n)], "n": n}


def measure(name, index, context):
    if os.path.exists("fail-" + name):
        raise RuntimeError("asked to fail: " + name)
    with open("calls.txt", "a") as calls:
        calls.write(name + "\\n")
    return {"name": name, "index": index, "sees": sorted(context)}


def total(context):
    return [r["name"] for r in context["per"]]


def not_a_list():
    return {"a": 1}
'''

FAN_FLOW = """
    name: fan
    params: {n: 3}
    tasks:
      - {id: other, plugin: shell, config: {command: "true"}}
      - {id: ls, plugin: python, depends_on: [other], config: {function: "tools:listing", args: ["${params.n}"]}}
      - id: per
        plugin: python
        depends_on: [ls]
        foreach: ${tasks.ls.result.files}
        max_items: ${params.most}
        config: {function: "tools:measure", args: ["${item}", "${index}"]}
      - {id: sum, plugin: python, depends_on: [per, other], config: {function: "tools:total"}}
      - id: names
        plugin: shell
        depends_on: [per, sum]
        when: "${tasks.per.result} != []"
        config: {command: "echo ${tasks.per.result.0.name} ${tasks.sum.result}"}
"""


def test_a_foreach_over_an_upstream_result_makes_its_instances_when_that_task_has_run(here):
    write(here, "tools.py", FAN_TOOLS)
    flow = write(here, "flow.yaml", FAN_FLOW.replace("${params.most}", "5"))
    result = invoke("run", flow, "--param", "n=4")
    assert result.exit_code == 0, result.output
    assert "ok        per[3]" in result.output  # the live view shows instances
    run, tasks = last(here)
    assert list(run["tasks"]) == ["other", "ls", "per[0]", "per[1]", "per[2]", "per[3]", "sum", "names"]
    assert set(run["tasks"].values()) == {"succeeded"}
    assert tasks["names"]["result"]["stdout"] == 'f0.csv ["f0.csv", "f1.csv", "f2.csv", "f3.csv"]\n'
    assert tasks["per[2]"]["result"] == {"name": "f2.csv", "index": 2, "sees": ["ls", "other", "params"]}  # its upstream
    assert tasks["per[2]"]["config"]["args"] == ["f2.csv", 2]
    assert tasks["sum"]["depends_on"] == ["per[0]", "per[1]", "per[2]", "per[3]", "other"]
    assert tasks["sum"]["result"] == ["f0.csv", "f1.csv", "f2.csv", "f3.csv"]
    shown = invoke("show", latest_run_dir(here / "logs"), "per[1]")
    assert shown.exit_code == 0 and "f1.csv" in shown.output
    # No items: no instances, and what depends on the task runs with an empty list.
    assert invoke("run", flow, "--param", "n=0").exit_code == 0
    run, tasks = last(here)
    assert list(run["tasks"]) == ["other", "ls", "sum", "names"] and tasks["sum"]["result"] == []
    assert tasks["names"]["reason"] == "when: ${tasks.per.result} != [] was false"


def test_past_max_items_or_over_a_non_list_the_task_fails_with_the_count_or_the_type(here):
    write(here, "tools.py", FAN_TOOLS)
    flow = write(here, "flow.yaml", FAN_FLOW.replace("${params.most}", "2"))
    result = invoke("run", flow, "--keep-going")
    assert result.exit_code == 1, result.output
    run, tasks = last(here)
    assert run["tasks"] == {"other": "succeeded", "ls": "succeeded", "per": "failed", "sum": "skipped",
                            "names": "skipped"}
    assert "gave 3 items, more than max_items (2)" in tasks["per"]["error"]["message"]
    assert tasks["sum"]["reason"] == "upstream 'per' failed"
    flow = write(here, "flow.yaml", """
        name: fan
        tasks:
          - {id: ls, plugin: python, config: {function: "tools:not_a_list"}}
          - {id: per, plugin: shell, depends_on: [ls], foreach: "${tasks.ls.result}", config: {command: "echo ${item}"}}
    """)
    assert invoke("run", flow).exit_code == 1
    _, tasks = last(here)
    assert "foreach: ${tasks.ls.result} must give a list, got a dict" in tasks["per"]["error"]["message"]


def test_a_resumed_run_with_an_unchanged_list_reuses_the_instances_that_succeeded(here):
    write(here, "tools.py", FAN_TOOLS)
    flow = write(here, "flow.yaml", FAN_FLOW.replace("${params.most}", "100"))
    (here / "fail-f1.csv").touch()
    assert invoke("run", flow, "--keep-going").exit_code == 1
    assert last(here)[0]["tasks"]["per[1]"] == "failed"
    (here / "fail-f1.csv").unlink()
    result = invoke("run", flow, "--resume")
    assert result.exit_code == 0, result.output
    run, tasks = last(here)
    assert [t for t in run["tasks"] if tasks[t]["reused"]] == ["other", "ls", "per[0]", "per[2]"]
    assert tasks["sum"]["result"] == ["f0.csv", "f1.csv", "f2.csv"]
    assert sorted((here / "calls.txt").read_text().split()) == ["f0.csv", "f1.csv", "f2.csv"]  # each made once


@pytest.mark.parametrize("foreach, extra, fragment", [
    ("${tasks.other.result}", "", "task 'other' is not upstream of 'per'"),
    ("${tasks.lst.result}", "", "no task 'lst' (did you mean 'ls'?)"),
    ("x${tasks.ls.result}", "", "'foreach' over an upstream result must be exactly one reference"),
    ("${tasks.ls.result}", "max_items: 0", "'max_items' must be a whole number from 1 to 100000"),
])
def test_a_bad_dynamic_foreach_is_a_validate_error_at_its_line(here, foreach, extra, fragment):
    write(here, "tools.py", FAN_TOOLS)
    flow = write(here, "flow.yaml", f"""
        name: fan
        tasks:
          - {{id: ls, plugin: python, config: {{function: "tools:listing", args: [2]}}}}
          - {{id: other, plugin: shell, config: {{command: "true"}}}}
          - id: per
            plugin: shell
            depends_on: [ls]
            foreach: "{foreach}"
            {extra or "config: {command: 'echo ${item}'}"}
    """)
    (line,) = refused("validate", flow)
    assert fragment in line and line.startswith(f"{flow}:{9 if extra else 8}: task 'per': "), line


def test_a_dynamic_foreach_config_is_checked_by_validate_and_reads_other_upstream_results(here):
    write(here, "tools.py", FAN_TOOLS)
    flow = write(here, "flow.yaml", """
        name: fan
        params: {sep: ":"}
        tasks:
          - {id: ls, plugin: python, config: {function: "tools:listing", args: [2]}}
          - {id: tag, plugin: python, config: {function: "builtins:str", args: [of]}}
          - id: per
            plugin: shell
            depends_on: [ls, tag]
            foreach: ${tasks.ls.result.files}
            config: {command: "echo ${index}${params.sep}${item} ${tasks.tag.result} ${tasks.ls.result.n}"}
    """)
    result = invoke("run", flow)
    assert result.exit_code == 0, result.output
    _, tasks = last(here)
    assert tasks["per[1]"]["result"]["stdout"] == "1:f1.csv of 2\n"
    write(here, "flow.yaml", flow.read_text().replace("${params.sep}", "${params.spe}"))
    (line,) = refused("validate", flow)
    assert line.startswith(f"{flow}:10: task 'per': ") and "no param 'spe' (did you mean 'sep'?)" in line, line


def test_the_shipped_fan_out_example_counts_the_rows_of_each_csv_file(tmp_path):
    shutil.copytree(REPO / "examples", tmp_path / "examples", symlinks=False)
    result = run_cli("run", "examples/csv_fanout.yaml", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert list(run["tasks"]) == ["list_files", "count_rows[0]", "count_rows[1]", "count_rows[2]", "summary",
                                  "note_big"]
    tasks = records(Path(run["run_dir"]))
    assert [tasks[f"count_rows[{i}]"]["result"] for i in range(3)] == [
        {"file": "sales/east.csv", "rows": 4}, {"file": "sales/north.csv", "rows": 3},
        {"file": "sales/south.csv", "rows": 2}]
    assert tasks["summary"]["result"] == {"files": 3, "rows": 9, "largest": "sales/east.csv"}
    assert tasks["note_big"]["result"]["stdout"] == "largest file: sales/east.csv, 9 rows in all\n"
    quiet = run_cli("run", "examples/csv_fanout.yaml", "--param", "big=100", "--json", cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert json.loads(quiet.stdout)["tasks"]["note_big"] == "skipped"


@pytest.mark.parametrize("name, args, statuses", [
    ("results", (), {"make": "succeeded", "use": "succeeded"}),
    ("conditions", ("--param", "mode=weekly"), {"count": "succeeded", "report": "skipped", "publish": "skipped"}),
    ("listing", (), None),
])
def test_the_examples_in_the_workflows_page_run(here, name, args, statuses):
    import re

    page = (REPO / "docs" / "workflows.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", page, re.S) if b.startswith(f"name: {name}\n")]
    flow = write(here, f"{name}.yaml", block)
    result = invoke("run", flow, *args)
    assert result.exit_code == 0, result.output
    run, tasks = last(here)
    if statuses is not None:
        assert run["tasks"] == statuses
    if name == "results":
        assert tasks["use"]["result"]["stdout"] == '3 files: b c.csv it\'s a "b c"\n'
    if name == "listing":
        assert run["tasks"]["done"] == "succeeded" and "size" not in run["tasks"]
