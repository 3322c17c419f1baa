"""Results between tasks through the real CLI on the process pool: `${tasks.ID.result...}`
in configs, `when:` conditions, and `foreach:` over an upstream result (contract v3)."""
from __future__ import annotations

import json
import os

import pytest

from helpers import invoke, latest_run_dir, records, run_json, write

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
'''


def last(here):
    run_dir = latest_run_dir(here / "logs")
    return run_json(run_dir), records(run_dir)


def refused(*args) -> list[str]:
    """A command that must refuse the file: exit 2, no traceback, no run made. Its problem lines."""
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not (os.path.isdir("logs") and os.listdir("logs")), "nothing may run"
    return [line for line in result.stderr.splitlines() if not line.startswith("opflow:")]


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
    flow = write(here, "flow.yaml", """
        name: flow
        tasks:
          - {id: make, plugin: python, config: {function: "tools:make"}}
          - id: say
            plugin: shell
            depends_on: [make]
            config: {command: 'printf "<%s>" ${tasks.make.result.name} ${tasks.make.result.n}; touch ${tasks.make.result.files.1}'}
    """)
    result = invoke("run", flow)
    assert result.exit_code == 0, result.output
    _, tasks = last(here)
    assert tasks["say"]["result"]["stdout"] == '<it\'s a "b c"><3>'
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
