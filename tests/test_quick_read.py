"""workflow/quick_read.py and the quick read it gives spec.py: the same Workflow as the
full read, for every file the quick read accepts; the full read for the rest.

The full read is what tests/test_spec.py checks, message by message: every
invalid file reaches it, since the quick read gives up at the first problem.
"""
from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest

from opflow import api
from opflow.workflow import spec
from opflow.workflow.quick_read import Unreadable, read_plain

REPO = Path(__file__).resolve().parent.parent

VALID = {
    "block-and-flow": """
        name: mixed
        description: "all the task keys"
        params: {n: 3, files: [a.csv, b.csv], when: 2024-01-02, ratio: 0.5, flag: yes, none: ~}
        defaults: {retries: 2, retry_delay: 1m, timeout: 90s, max_memory: 512MB, cache: false}
        x-notes: {anything: [1, 2, {deep: true}]}
        tasks:
          - id: first
            plugin: shell
            config:
              command: "echo ${params.n} ${HOME} $${literal}"
          - {id: second, plugin: python, config: {function: "m:f", kwargs: {a: 1, b: [x, 'y', "z"]}},
             depends_on: [first], retries: 0, timeout: 5, keep_children: true, trigger: all_done}
          - id: third
            plugin: python
            config: {function: "m:g"}
            depends_on:
              - second
            inputs: ["data/*.csv"]
            cache: true
            max_memory: 1GB
          - id: fan
            plugin: shell
            foreach: ${params.files}
            config: {command: "wc -l ${item}"}
          - id: after
            plugin: shell
            config: {command: "echo ${index}"}
            foreach: [1, 2]
            depends_on: [fan]
          - id: bare
            plugin: python
            config:
              function: "m:f"
          - id: empty
            plugin: python
            config: {function: "m:f", kwargs: {}}
    """,
    "forward-dependencies": """
        name: forward
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}, depends_on: [c, b]}
          - {id: b, plugin: shell, config: {command: "true"}, depends_on: [c]}
          - {id: c, plugin: shell, config: {command: "true"}, depends_on: []}
    """,
    "block-scalars": """
        name: literal
        tasks:
          - id: script
            plugin: shell
            config:
              command: |
                echo one
                echo ${params.x}
              cwd: >
                folded text
        params:
          x: 1
    """,
}


@pytest.fixture(autouse=True)
def _module_m(tmp_path):
    """The python tasks here call m:f and m:g: validate looks for m.py beside the workflow."""
    (tmp_path / "m.py").write_text("def f(*args, **kwargs):\n    return 1\n\n\ndef g():\n    return 2\n")


def same_workflow(quick, full) -> None:
    assert quick == full
    assert quick.params == full.params and quick.groups == full.groups
    for mine, theirs in zip(quick.tasks, full.tasks, strict=True):
        for f in dataclasses.fields(spec.TaskSpec):  # config, foreach, groups are compare=False
            assert getattr(mine, f.name) == getattr(theirs, f.name), (mine.id, f.name)


def full_read_only(monkeypatch):
    def unreadable(text):
        raise Unreadable

    monkeypatch.setattr(spec, "read_plain", unreadable)


def no_full_read(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the full read ran")

    monkeypatch.setattr(spec.yaml, "compose", refuse)


def read_both_ways_alike(path, monkeypatch) -> None:
    """The quick read (the full read refused) and the full read (the quick one refused) agree."""
    with monkeypatch.context() as m:
        no_full_read(m)
        quick, _ = api.load(path)
    with monkeypatch.context() as m:
        full_read_only(m)
        full, _ = api.load(path)
    same_workflow(quick, full)


@pytest.mark.parametrize("name", sorted(VALID))
def test_the_quick_read_builds_what_the_full_read_builds(name, write_workflow, monkeypatch):
    read_both_ways_alike(write_workflow(VALID[name]), monkeypatch)


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_the_examples_are_read_quickly_and_alike(example, monkeypatch):
    read_both_ways_alike(example, monkeypatch)


def test_a_file_with_anchors_is_read_by_the_full_read(write_workflow):
    path = write_workflow("""
        name: anchors
        x-base: &base {plugin: shell, config: {command: "true"}}
        tasks:
          - {id: a, <<: *base}
    """)
    with pytest.raises(Unreadable):
        read_plain(path.read_text())
    workflow, _ = api.load(path)
    assert workflow.task("a").plugin == "shell"


def test_a_problem_is_worded_by_the_full_read(write_workflow, monkeypatch):
    path = write_workflow("""
        name: bad
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}}
          - {id: b, plugin: shell, config: {command: "true"}, retries: -1}
    """)
    composed = []
    real = spec.yaml.compose
    monkeypatch.setattr(spec.yaml, "compose", lambda *a, **k: composed.append(1) or real(*a, **k))
    with pytest.raises(spec.WorkflowError) as info:
        api.load(path)
    assert composed and [str(p) for p in info.value.problems] == [
        f"{path}:4: task 'b': 'retries' must be a whole number >= 0, got -1"]


@pytest.mark.parametrize("text", [
    "",
    "# a comment\n",
    "a: &x 1\nb: *x\n",
    "a: {<<: {b: 1}}\n",
    "a: !!str 1\n",
    "a: !custom 1\n",
    "a: 1\na: 2\n",
    "{b: 1}: 2\n",
    "1: one\n",
    "yes: true\n",
    "a: 1\n---\nb: 2\n",
    "a: [1\n",
    "a: " + "[" * 101 + "]" * 101 + "\n",
], ids=["empty", "comment", "alias", "merge", "tag", "custom-tag", "duplicate-key", "complex-key", "int-key",
        "bool-key", "two-documents", "syntax", "deep"])
def test_what_only_the_full_read_reads(text):
    with pytest.raises(Unreadable):
        read_plain(text)


def test_plain_values_and_marks():
    text = ('name: n\ntasks:\n  - id: a\n    config: {k: "v"}\n  - just a string\n'
            '  - {id: b, config: null, n: 0x10, t: 2001-12-14, f: .5, s: \'1\'}\n')
    document = read_plain(text)
    tasks = document.root["tasks"]
    assert tasks[0] == {"id": "a", "config": {"k": "v"}}
    assert tasks[2]["n"] == 16 and str(tasks[2]["t"]) == "2001-12-14" and tasks[2]["f"] == 0.5 and tasks[2]["s"] == "1"
    assert document.task_lines == [3, None, 6]
    assert document.configs_to_render == set()
    assert read_plain('tasks:\n  - {config: {a: "${x}"}}\n  - {config: "plain"}\n  - {config: {g: "*.csv"}}\n'
                      '  - {id: "${not config}"}\n').configs_to_render == {0, 2}


def test_repeated_strings_are_one_object(write_workflow):
    path = write_workflow("name: many\ntasks:\n" + "".join(
        f'  - {{id: t{i}, plugin: python, config: {{function: "m:f"}}}}\n' for i in range(3)))
    workflow, _ = api.load(path)
    first, second = workflow.tasks[0], workflow.tasks[1]
    assert first.plugin is second.plugin
    assert first.config["function"] is second.config["function"]
    assert first.config is not second.config  # each task its own config: a plugin may change it


def test_task_specs_have_no_dict_and_still_pickle(write_workflow):
    workflow, _ = api.load(write_workflow('name: w\ntasks:\n  - {id: a, plugin: shell, config: {command: "true"}}\n'))
    task = workflow.tasks[0]
    assert not hasattr(task, "__dict__")
    assert pickle.loads(pickle.dumps(task)) == task
    assert dataclasses.replace(task, id="b").id == "b"


def test_a_config_repeated_by_many_tasks_is_reported_for_each_with_its_own_types(write_workflow):
    # expand.py checks a repeated config of scalars once: 1, 1.0 and true are equal keys, not equal configs.
    path = write_workflow("""
        name: repeated
        tasks:
          - {id: a, plugin: shell, config: {command: 1}}
          - {id: b, plugin: shell, config: {command: 1}}
          - {id: c, plugin: shell, config: {command: 1.0}}
          - {id: d, plugin: shell, config: {command: true}}
    """)
    with pytest.raises(spec.WorkflowError) as info:
        api.load(path)
    assert [(p.task_id, p.message) for p in info.value.problems] == [
        ("a", "config.command must be a string, got int 1"),
        ("b", "config.command must be a string, got int 1"),
        ("c", "config.command must be a string, got float 1.0"),
        ("d", "config.command must be a string, got bool True"),
    ]
