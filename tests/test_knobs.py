"""Environment knobs (opflow/knobs.py): one list, read one way, a bad value an error, one page of docs."""
from __future__ import annotations

import ast
import re

import pytest

from helpers import REPO, run_cli, write
from opflow import knobs
from opflow.errors import UsageError

OPFLOW = REPO / "opflow"
DOC = REPO / "docs" / "environment.md"
#: Names opflow sets for a task's process and never reads (shell.py: OPFLOW_PARAM_<KEY>, and
#: what a task may know about itself, contract v3).
SET_FOR_TASKS = ("OPFLOW_PARAM_", "OPFLOW_TASK_ID", "OPFLOW_ATTEMPT", "OPFLOW_RUN_DIR")

FLOW = """
    name: knobs
    tasks:
      - {id: touch, plugin: shell, config: {command: "touch ran.txt"}}
"""


@pytest.mark.parametrize("name, value", [
    ("OPFLOW_BATCH_SECONDS", "abc"),
    ("OPFLOW_BATCH_SECONDS", "-1"),
    ("OPFLOW_START_METHOD", "bogus"),
    ("OPFLOW_SHM_LIMIT", "lots"),
    ("OPFLOW_WORKERS", "-1"),
    ("OPFLOW_EXECUTOR", "carrier-pigeon"),
])
def test_a_bad_value_is_exit_2_in_one_line_and_nothing_runs(tmp_path, name, value):
    flow = write(tmp_path, "flow.yaml", FLOW)
    result = run_cli("run", str(flow), cwd=tmp_path, env={name: value})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{name}={value!r}" in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "ran.txt").exists()
    assert not (tmp_path / "logs").exists()  # no run directory, not even the folder for one


def test_a_good_value_runs(tmp_path):
    flow = write(tmp_path, "flow.yaml", FLOW)
    result = run_cli("run", str(flow), "--quiet", cwd=tmp_path,
                     env={"OPFLOW_BATCH_SECONDS": "0", "OPFLOW_START_METHOD": "spawn"})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ran.txt").exists()


def test_opflow_run_refuses_a_bad_value_before_it_makes_a_run_directory(tmp_path, monkeypatch):
    flow = write(tmp_path, "flow.yaml", FLOW)
    monkeypatch.setenv("OPFLOW_BATCH_SECONDS", "abc")
    import opflow

    with pytest.raises(UsageError, match="OPFLOW_BATCH_SECONDS='abc'"):
        opflow.run(flow, log_dir=tmp_path / "logs", executor="inline")
    assert not (tmp_path / "logs").exists() and not (tmp_path / "ran.txt").exists()


def test_opflow_run_ignores_the_command_lines_own_knobs(tmp_path, monkeypatch):
    flow = write(tmp_path, "flow.yaml", FLOW)
    monkeypatch.setenv("OPFLOW_WORKERS", "many")  # a default for --workers: not opflow.run's to read
    monkeypatch.chdir(tmp_path)
    import opflow

    assert opflow.run(flow, log_dir=tmp_path / "logs", executor="inline").exit_code == 0


@pytest.mark.parametrize("name, text, value", [
    ("OPFLOW_BATCH_SECONDS", "0.5", 0.5),
    ("OPFLOW_BATCH_SECONDS", "0", 0.0),
    ("OPFLOW_BATCH_SECONDS", "", None),
    ("OPFLOW_SHM_LIMIT", "0", 0),
    ("OPFLOW_WORKERS", "3", 3),
    ("OPFLOW_START_METHOD", "forkserver", "forkserver"),
    ("NO_COLOR", "1", "1"),
])
def test_the_reader_parses_each_kind(name, text, value):
    assert knobs.read(name, {name: text} if text else {}) == value


@pytest.mark.parametrize("name, text", [
    ("OPFLOW_BATCH_SECONDS", "nan"), ("OPFLOW_BATCH_SECONDS", "inf"), ("OPFLOW_SHM_LIMIT", "-1"),
    ("OPFLOW_SHM_LIMIT", "1.5"), ("OPFLOW_WORKERS", "two"), ("OPFLOW_START_METHOD", "Fork"),
])
def test_the_reader_refuses_a_bad_value_naming_it(name, text):
    with pytest.raises(knobs.KnobError) as info:
        knobs.read(name, {name: text})
    assert str(info.value).startswith(f"{name}={text!r}: ") and info.value.exit_code == 2


def test_check_reports_every_bad_value_at_once():
    with pytest.raises(knobs.KnobError) as info:
        knobs.check(environ={"OPFLOW_BATCH_SECONDS": "x", "OPFLOW_SHM_LIMIT": "y", "OPFLOW_WORKERS": "z"})
    assert [line.split("=")[0] for line in str(info.value).splitlines()] == \
        ["OPFLOW_WORKERS", "OPFLOW_BATCH_SECONDS", "OPFLOW_SHM_LIMIT"]
    knobs.check(knobs.RUN, environ={"OPFLOW_WORKERS": "z"})  # a run's own check leaves the CLI's knobs alone


def _names_in_source() -> dict[str, str]:
    """Every OPFLOW_* name written anywhere in opflow/, with where it first appears."""
    found = {}
    for path in sorted(OPFLOW.rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for name in re.findall(r"\bOPFLOW_[A-Z][A-Z0-9_]*", line):
                found.setdefault(name, f"{path.relative_to(REPO)}:{number}")
    return found


def test_every_opflow_variable_in_the_source_is_a_knob_and_documented():
    names = _names_in_source()
    assert "OPFLOW_BATCH_SECONDS" in names and "OPFLOW_PARAM_" in names  # the grep sees them
    assert {"OPFLOW_TASK_ID", "OPFLOW_ATTEMPT", "OPFLOW_RUN_DIR"} <= set(names)
    doc = DOC.read_text(encoding="utf-8")
    read = {n: where for n, where in names.items() if not n.startswith(SET_FOR_TASKS)}
    assert {n: where for n, where in read.items() if n not in knobs.KNOBS} == {}
    assert [n for n in read if f"`{n}`" not in doc] == []
    assert [n for n in knobs.KNOBS if f"`{n}`" not in doc] == []
    set_section = doc.split("## Set by opflow, not read", 1)[1]
    assert [n for n in names if n.startswith(SET_FOR_TASKS) and f"`{n}" not in set_section] == []


def test_the_doc_page_is_the_knob_list():
    doc = DOC.read_text(encoding="utf-8")
    users, tests = knobs.markdown_table(knobs.USER), knobs.markdown_table(knobs.TEST)
    assert users in doc and tests in doc  # each its own table, users first
    assert doc.index(users) < doc.index("## For opflow's own tests") < doc.index(tests)


def _reads_by_name(tree: ast.AST):
    """Each place that reads an environment variable named by a literal: os.environ.get("X"),
    os.getenv("X"), os.environ["X"], "X" in os.environ, click's envvar="X"."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            if func in ("os.environ.get", "environ.get", "os.getenv", "getenv") and node.args \
                    and isinstance(node.args[0], ast.Constant):
                yield node.lineno, node.args[0].value
            for keyword in node.keywords:
                if keyword.arg == "envvar":
                    yield node.lineno, ast.unparse(keyword.value)
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) in ("os.environ", "environ") \
                and isinstance(node.slice, ast.Constant):
            yield node.lineno, node.slice.value
        elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant) \
                and any(ast.unparse(c) in ("os.environ", "environ") for c in node.comparators):
            yield node.lineno, node.left.value


#: Python's own variable, which opflow sets (and takes back) for the helper processes it
#: starts (backends/mp_context.py): not a knob of opflow's.
SET_FOR_HELPERS = {"PYTHONSAFEPATH"}


def test_no_module_but_knobs_reads_a_variable_by_name():
    offences = []
    for path in sorted(OPFLOW.rglob("*.py")):
        if path == OPFLOW / "knobs.py":
            continue
        for line, name in _reads_by_name(ast.parse(path.read_text(encoding="utf-8"))):
            if name not in SET_FOR_HELPERS:
                offences.append(f"{path.relative_to(REPO)}:{line} reads {name}")
    assert offences == []


def test_the_read_check_sees_each_way_of_reading():
    code = ("import os\nos.environ.get('A')\nos.getenv('B')\nos.environ['C']\n'D' in os.environ\n"
            "click.option('--x', envvar='E')\nos.environ.get(name)\n")
    assert sorted(name for _, name in _reads_by_name(ast.parse(code))) == ["'E'", "A", "B", "C", "D"]


def test_the_listed_defaults_are_the_codes_own():
    from opflow.dispatch.coordinator import BATCH_SECONDS

    assert knobs.KNOBS["OPFLOW_BATCH_SECONDS"].default == f"{BATCH_SECONDS:g}"
