"""spec.py: every invalid workflow is exit 2, one located line per problem, nothing run.

Each case is a real YAML file in tmp_path, checked twice: through `load_workflow`
(the problems it carries: line, task id, message) and through the real CLI
(`opflow run`: exit 2, the file:line and task in the message, no traceback, no
run directory).
"""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from opflow.cli.commands import main
from opflow.errors import Problem, UsageError, WorkflowError
from opflow.plugins import PLUGINS
from opflow.workflow.params import CliValue, parse_cli_params
from opflow.workflow.spec import TaskSpec, Workflow, load_workflow

KNOWN = sorted(PLUGINS)


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path, monkeypatch):
    """The CLI also searches ./workers: run from an empty folder so only the built-ins exist."""
    monkeypatch.chdir(tmp_path)


def problems_of(path, **kwargs) -> list[Problem]:
    with pytest.raises(WorkflowError) as info:
        load_workflow(path, KNOWN, **kwargs)
    assert info.value.exit_code == 2
    return info.value.problems


def run_invalid(path, tmp_path, *extra):
    """`opflow run FILE` on an invalid file: exit 2, no traceback, nothing run. Returns stderr."""
    log_dir = tmp_path / "logs"
    result = CliRunner().invoke(main, ["run", str(path), "--log-dir", str(log_dir), "--executor", "inline", *extra])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert not log_dir.exists(), "an invalid workflow must not create a run directory"
    return result.stderr


# (id, yaml text, 1-based line, task id or None, fragment of the message)
CASES = [
    ("yaml-syntax", """
        name: broken
        tasks:
          - id: a
            plugin: shell
            config: {command: "echo hi"
          - id: b
            plugin: shell
     """, 6, None, "invalid YAML"),
    ("yaml-bad-indent", """
        name: broken
        tasks:
          - id: a
           plugin: shell
     """, 4, None, "invalid YAML"),
    ("top-level-list", """
        - id: a
          plugin: shell
     """, 1, None, "top level must be a mapping"),
    ("top-level-scalar", """
        just some text
     """, 1, None, "top level must be a mapping"),
    ("missing-name", """
        description: no name here
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}}
     """, 1, None, "missing required key 'name'"),
    ("empty-name", """
        name: ""
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}}
     """, 1, None, "'name' must be a non-empty string"),
    ("missing-tasks", """
        name: no tasks
     """, 1, None, "missing required key 'tasks'"),
    ("empty-tasks", """
        name: no tasks
        tasks: []
     """, 2, None, "non-empty list"),
    ("tasks-not-a-list", """
        name: no tasks
        tasks:
          a: {plugin: shell}
     """, 3, None, "non-empty list"),
    ("task-not-a-mapping", """
        name: x
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}}
          - just-a-string
     """, 4, None, "each task must be a mapping"),
    ("missing-id", """
        name: x
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}}
          - plugin: shell
            config: {command: "true"}
     """, 4, None, "missing required key 'id'"),
    ("bad-id-charset", """
        name: x
        tasks:
          - id: "load data"
            plugin: shell
            config: {command: "true"}
     """, 3, None, "'load data' must match [A-Za-z0-9_.-]+"),
    ("bad-id-slash", """
        name: x
        tasks:
          - id: ../escape
            plugin: shell
            config: {command: "true"}
     """, 3, None, "'../escape' must match"),
    ("duplicate-id", """
        name: x
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}}
          - {id: b, plugin: shell, config: {command: "true"}}
          - {id: a, plugin: shell, config: {command: "true"}}
     """, 5, "a", "duplicate task id (first defined on line 3)"),
    ("reserved-id", """
        name: x
        tasks:
          - id: params
            plugin: shell
            config: {command: "true"}
     """, 3, None, "task id 'params' is reserved"),
    ("missing-plugin", """
        name: x
        tasks:
          - id: lonely
            config: {command: "true"}
     """, 3, "lonely", "missing required key 'plugin'"),
    ("unknown-plugin", """
        name: x
        tasks:
          - id: a
            plugin: shel
            config: {command: "true"}
     """, 4, "a", "unknown plugin 'shel' (did you mean 'shell'?)"),
    ("unknown-plugin-no-close-match", """
        name: x
        tasks:
          - id: a
            plugin: zzzzzzzz
     """, 4, "a", "unknown plugin 'zzzzzzzz' (known: csv_ingest, metrics, python, shell)"),
    ("config-not-a-mapping", """
        name: x
        tasks:
          - id: a
            plugin: shell
            config: [echo, hi]
     """, 5, "a", "'config' must be a mapping, got list"),
    ("config-a-string", """
        name: x
        tasks:
          - id: a
            plugin: shell
            config: "echo hi"
     """, 5, "a", "'config' must be a mapping, got str"),
    ("depends-on-not-a-list", """
        name: x
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}}
          - id: b
            plugin: shell
            config: {command: "true"}
            depends_on: a
     """, 7, "b", "'depends_on' must be a list"),
    ("depends-on-unknown", """
        name: x
        tasks:
          - {id: ingest, plugin: shell, config: {command: "true"}}
          - id: stats
            plugin: shell
            config: {command: "true"}
            depends_on: [ingset]
     """, 7, "stats", "depends_on 'ingset' is not a task id (did you mean 'ingest'?)"),
    ("depends-on-unknown-no-close-match", """
        name: x
        tasks:
          - {id: load, plugin: shell, config: {command: "true"}}
          - {id: clean, plugin: shell, config: {command: "true"}}
          - id: stats
            plugin: shell
            config: {command: "true"}
            depends_on:
              - qqqqqq
     """, 9, "stats", "depends_on 'qqqqqq' is not a task id (known: load, clean, stats)"),
    ("depends-on-twice", """
        name: x
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}}
          - {id: b, plugin: shell, config: {command: "true"}, depends_on: [a, a]}
     """, 4, "b", "depends_on lists 'a' twice"),
    ("self-dependency", """
        name: x
        tasks:
          - id: a
            plugin: shell
            config: {command: "true"}
            depends_on: [a]
     """, 6, "a", "a task cannot depend on itself (cycle a -> a)"),
    ("cycle", """
        name: x
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}, depends_on: [b]}
          - {id: b, plugin: shell, config: {command: "true"}, depends_on: [a]}
     """, 3, "a", "dependency cycle: a -> b -> a"),
    ("cycle-with-tail", """
        name: x
        tasks:
          - {id: root, plugin: shell, config: {command: "true"}}
          - {id: p, plugin: shell, config: {command: "true"}, depends_on: [root, r]}
          - {id: q, plugin: shell, config: {command: "true"}, depends_on: [p]}
          - {id: r, plugin: shell, config: {command: "true"}, depends_on: [q]}
     """, 4, "p", "dependency cycle: p -> q -> r -> p"),
    ("unknown-task-key", """
        name: x
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}}
          - id: b
            plugin: shell
            config: {command: "true"}
            dependson: [a]
     """, 7, "b", "unknown key 'dependson' (did you mean 'depends_on'?)"),
    ("unknown-task-key-no-close-match", """
        name: x
        tasks:
          - id: b
            plugin: shell
            config: {command: "true"}
            colour: blue
     """, 6, "b", "unknown key 'colour' (allowed: id, plugin, config, depends_on"),
    ("unknown-top-key", """
        name: x
        taks: []
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}}
     """, 2, None, "unknown key 'taks' (did you mean 'tasks'?)"),
    ("duplicate-top-key", """
        name: x
        name: y
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}}
     """, 2, None, "key 'name' appears twice (first on line 1)"),
    ("duplicate-task-key", """
        name: x
        tasks:
          - id: a
            plugin: shell
            config: {command: "echo one"}
            config: {command: "echo two"}
     """, 6, "a", "key 'config' appears twice (first on line 5)"),
    ("duplicate-task-key-before-id", """
        name: x
        tasks:
          - plugin: shell
            config: {command: "true"}
            plugin: python
            id: a
     """, 5, "a", "key 'plugin' appears twice (first on line 3)"),
    ("duplicate-config-key", """
        name: x
        tasks:
          - id: a
            plugin: shell
            config:
              command: echo one
              command: echo two
     """, 7, "a", "config: key 'command' appears twice (first on line 6)"),
    ("duplicate-nested-config-key", """
        name: x
        tasks:
          - id: a
            plugin: shell
            config:
              command: echo
              env:
                {X: 1, X: 2}
     """, 8, "a", "config: key 'X' appears twice (first on line 8)"),
    ("duplicate-params-key", """
        name: x
        params:
          region: north
          region: south
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}}
     """, 4, None, "params: key 'region' appears twice (first on line 3)"),
    ("retries-negative", """
        name: x
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}, retries: -1}
     """, 3, "a", "'retries' must be a whole number >= 0, got -1"),
    ("retries-fraction", """
        name: x
        tasks:
          - id: a
            plugin: shell
            config: {command: "true"}
            retries: 1.5
     """, 6, "a", "'retries' must be a whole number >= 0, got 1.5"),
    ("retries-text", """
        name: x
        tasks:
          - id: a
            plugin: shell
            config: {command: "true"}
            retries: twice
     """, 6, "a", "'retries' must be a number, got 'twice'"),
    ("retries-bool", """
        name: x
        tasks:
          - id: a
            plugin: shell
            config: {command: "true"}
            retries: true
     """, 6, "a", "'retries' must be a number, got True"),
    ("retry-delay-negative", """
        name: x
        tasks:
          - id: a
            plugin: shell
            config: {command: "true"}
            retry_delay: -0.5
     """, 6, "a", "'retry_delay' must be >= 0 seconds, got -0.5"),
    ("timeout-zero", """
        name: x
        tasks:
          - id: a
            plugin: shell
            config: {command: "true"}
            timeout: 0
     """, 6, "a", "'timeout' must be > 0, got 0"),
    ("timeout-text", """
        name: x
        tasks:
          - id: a
            plugin: shell
            config: {command: "true"}
            timeout: 10 parsecs
     """, 6, "a", "'timeout' must be a duration like 90, 90s, 5m or 1h, got '10 parsecs'"),
    ("timeout-nan", """
        name: x
        tasks:
          - id: a
            plugin: shell
            config: {command: "true"}
            timeout: .nan
     """, 6, "a", "'timeout' must be a number, got nan"),
    ("max-memory-bad", """
        name: x
        tasks:
          - id: a
            plugin: shell
            config: {command: "true"}
            max_memory: lots
     """, 6, "a", "'max_memory' must be a size like 512MB or 2GB, got 'lots'"),
    ("max-memory-negative", """
        name: x
        tasks:
          - id: a
            plugin: shell
            config: {command: "true"}
            max_memory: -5
     """, 6, "a", "'max_memory' must be > 0, got -5"),
    ("defaults-bad-value", """
        name: x
        defaults:
          retries: -2
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}}
     """, 3, None, "'retries' must be a whole number >= 0, got -2"),
    ("defaults-unknown-key", """
        name: x
        defaults:
          retires: 2
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}}
     """, 3, None, "unknown key 'retires' (did you mean 'retries'?)"),
    ("defaults-not-a-mapping", """
        name: x
        defaults: [retries]
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}}
     """, 2, None, "'defaults' must be a mapping"),
    ("params-not-a-mapping", """
        name: x
        params: [a, b]
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}}
     """, 2, None, "'params' must be a mapping"),
]


@pytest.mark.parametrize("text, line, task_id, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_workflow_is_one_located_problem_and_exit_2(text, line, task_id, fragment, tmp_path, write_workflow):
    path = write_workflow(text)
    problems = problems_of(path)
    assert len(problems) == 1, [str(p) for p in problems]
    (problem,) = problems
    assert problem.path == str(path)
    assert problem.line == line, str(problem)
    assert problem.task_id == task_id, str(problem)
    assert fragment in problem.message

    stderr = run_invalid(path, tmp_path)
    where = f"{path}:{line}:" + (f" task '{task_id}':" if task_id else "")
    assert where in stderr, stderr
    assert fragment in stderr
    assert "1 problem found; nothing was run" in stderr


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"], ids=["empty", "blank-lines", "comment-only"])
def test_empty_file_is_exit_2_naming_the_file(text, tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    (problem,) = problems_of(path)
    assert problem.path == str(path) and "empty" in problem.message
    stderr = run_invalid(path, tmp_path)
    assert stderr.startswith(f"{path}: the file is empty")


def test_missing_file_and_directory_and_non_utf8_are_exit_2(tmp_path):
    missing = tmp_path / "nope.yaml"
    assert "no such file" in problems_of(missing)[0].message
    assert "is a directory" in problems_of(tmp_path)[0].message
    binary = tmp_path / "latin1.yaml"
    binary.write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert "not UTF-8" in problems_of(binary)[0].message
    for path in (missing, binary):
        assert str(path) in run_invalid(path, tmp_path)


def test_yaml_syntax_error_line_is_one_based(tmp_path):
    path = tmp_path / "flow.yaml"
    path.write_text("name: x\ntasks:\n  - id: a\n    plugin: shell\n  config: {oops\n")
    (problem,) = problems_of(path)
    # PyYAML marks are 0-based; the problem (line 5 as an editor counts) must not read 4.
    assert problem.line in (5, 6)
    assert problem.line != 4


def test_every_problem_is_reported_at_once_and_nothing_runs(tmp_path, write_workflow):
    marker = tmp_path / "ran.txt"
    path = write_workflow(f"""
        name: many problems
        tasks:
          - id: would_run
            plugin: shell
            config: {{command: "touch {marker}"}}
          - id: typo
            plugin: shel
          - id: bad_retries
            plugin: shell
            config: {{command: "true"}}
            retries: -3
          - id: unknown_dep
            plugin: shell
            config: {{command: "true"}}
            depends_on: [ghost]
          - id: misspelt_key
            plugin: shell
            config: {{command: "true"}}
            dependson: [would_run]
    """)
    problems = problems_of(path)
    located = {(p.line, p.task_id) for p in problems}
    assert located == {(7, "typo"), (11, "bad_retries"), (15, "unknown_dep"), (19, "misspelt_key")}, [str(p) for p in problems]
    stderr = run_invalid(path, tmp_path)
    assert "4 problems found; nothing was run" in stderr
    for line, task_id in located:
        assert f"{path}:{line}: task '{task_id}':" in stderr
    assert not marker.exists()
    # validate agrees, and also runs nothing.
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2 and "4 problems found" in result.stderr
    assert not marker.exists()


def test_cycle_is_checked_even_with_unknown_plugin_names_skipped(write_workflow):
    # known_plugins=None skips only the plugin check: the graph is still checked.
    path = write_workflow("""
        name: x
        tasks:
          - {id: a, plugin: anything, depends_on: [c]}
          - {id: b, plugin: anything, depends_on: [a]}
          - {id: c, plugin: anything, depends_on: [b]}
    """)
    with pytest.raises(WorkflowError) as info:
        load_workflow(path, None)
    (problem,) = info.value.problems
    assert problem.message == "dependency cycle: a -> b -> c -> a"  # in the direction results flow
    assert (problem.line, problem.task_id) == (3, "a")


def test_two_separate_cycles_are_both_reported(write_workflow):
    path = write_workflow("""
        name: x
        tasks:
          - {id: a, plugin: shell, depends_on: [b]}
          - {id: b, plugin: shell, depends_on: [a]}
          - {id: ok, plugin: shell}
          - {id: x, plugin: shell, depends_on: [y]}
          - {id: y, plugin: shell, depends_on: [x]}
    """)
    messages = [p.message for p in problems_of(path)]
    assert messages == ["dependency cycle: a -> b -> a", "dependency cycle: x -> y -> x"]


def test_valid_workflow_loads_into_frozen_specs(write_workflow):
    path = write_workflow("""
        name: Good One
        description: does things
        params: {region: north, n: 3}
        tasks:
          - id: ingest
            plugin: csv_ingest
            config: {path: data.csv}
          - id: stats
            plugin: metrics
            depends_on: [ingest]
            retries: 2
            retry_delay: 0.5
            timeout: 30
            max_memory: 512MB
          - id: no_config
            plugin: shell
            config:
    """)
    workflow = load_workflow(path, KNOWN)
    assert isinstance(workflow, Workflow)
    assert workflow.name == "Good One" and workflow.description == "does things"
    assert workflow.params == {"region": "north", "n": 3}
    assert workflow.path == path.resolve() and workflow.directory == path.resolve().parent
    assert len(workflow.sha256) == 64
    assert [t.id for t in workflow.tasks] == ["ingest", "stats", "no_config"]
    stats = workflow.task("stats")
    assert stats == TaskSpec(id="stats", plugin="metrics", depends_on=("ingest",), retries=2, retry_delay=0.5,
                             timeout=30, max_memory=512 * 1024**2, line=8)
    assert workflow.task("ingest").config == {"path": "data.csv"}
    assert workflow.task("ingest").line == 5
    assert workflow.task("no_config").config == {}  # `config:` with nothing reaches the plugin as {}
    with pytest.raises(AttributeError):
        stats.retries = 5  # frozen


def test_defaults_block_applies_to_every_task_and_a_task_overrides_it(write_workflow):
    path = write_workflow("""
        name: defaults
        defaults:
          retries: 3
          retry_delay: 1.5
          timeout: 60
          max_memory: 1GB
        tasks:
          - {id: plain, plugin: shell}
          - {id: own, plugin: shell, retries: 0, timeout: 5}
    """)
    workflow = load_workflow(path, KNOWN)
    plain, own = workflow.task("plain"), workflow.task("own")
    assert (plain.retries, plain.retry_delay, plain.timeout, plain.max_memory) == (3, 1.5, 60, 1024**3)
    assert (own.retries, own.retry_delay, own.timeout, own.max_memory) == (0, 1.5, 5, 1024**3)


def test_without_defaults_tasks_get_the_documented_defaults(write_workflow):
    path = write_workflow("""
        name: bare
        tasks:
          - {id: a, plugin: shell}
    """)
    task = load_workflow(path, KNOWN).task("a")
    assert (task.retries, task.retry_delay, task.timeout, task.max_memory, task.depends_on) == (0, 0.0, None, None, ())
    assert task.config == {}
    assert load_workflow(path, KNOWN).params == {}


@pytest.mark.parametrize("text, expected", [
    ("512", 512), ("512B", 512), ("2K", 2048), ("1.5MB", int(1.5 * 1024**2)), ("2gib", 2 * 1024**3),
    (" 3 GB ", 3 * 1024**3),
])
def test_max_memory_sizes(text, expected, write_workflow):
    path = write_workflow(f"""
        name: mem
        tasks:
          - {{id: a, plugin: shell, max_memory: "{text}"}}
    """)
    assert load_workflow(path, KNOWN).task("a").max_memory == expected


def test_unknown_plugin_hint_is_appended(write_workflow):
    path = write_workflow("""
        name: x
        tasks:
          - {id: a, plugin: greet}
    """)
    with pytest.raises(WorkflowError) as info:
        load_workflow(path, KNOWN, plugin_hint="\n    note: workers/greet.py:3: cannot read plugin file")
    assert "unknown plugin 'greet'" in str(info.value)
    assert "note: workers/greet.py:3" in str(info.value)


# --param overrides -----------------------------------------------------------

# The one --param parser is the command line's (workflow/params.py): it splits KEY=VALUE and
# keeps VALUE as typed; the workflow's declared default gives it its type (merge_params).

@pytest.mark.parametrize("items, expected", [
    ([], {}),
    (["n=5"], {"n": "5"}),
    (["region=south"], {"region": "south"}),
    (["empty="], {"empty": ""}),
    (["url=http://x/?a=b"], {"url": "http://x/?a=b"}),  # split at the first '='
    ([" key =value"], {"key": "value"}),
    (["items=[1, 2]"], {"items": "[1, 2]"}),
    (["n=1", "n=2"], {"n": "2"}),  # the last one wins
])
def test_parse_cli_params(items, expected):
    parsed = parse_cli_params(items)
    assert parsed == expected
    assert all(isinstance(value, CliValue) for value in parsed.values())  # not yet typed


@pytest.mark.parametrize("item", ["novalue", "=value", " =value", ""])
def test_malformed_param_override_is_a_usage_error(item):
    with pytest.raises(UsageError, match="expected KEY=VALUE") as info:
        parse_cli_params(["ok=1", item])
    assert info.value.exit_code == 2


@pytest.mark.parametrize("item, key, expected", [
    ("n=7", "n", 7),
    ("rate=0.25", "rate", 0.25),
    ("rate=2", "rate", 2.0),  # an int for a float default
    ("flag=true", "flag", True),
    ("tag=007", "tag", "007"),  # a string param keeps the text as written
    ("files=[a.csv, b.csv]", "files", ["a.csv", "b.csv"]),
    ("free=null", "free", None),  # a null default: read as a YAML scalar
    ("free=5", "free", 5),
])
def test_param_overrides_replace_file_params_with_the_declared_type(write_workflow, item, key, expected):
    path = write_workflow("""
        name: p
        params: {region: north, n: 3, rate: 0.5, flag: false, tag: x, files: [], free: null}
        tasks:
          - {id: a, plugin: shell}
    """)
    workflow = load_workflow(path, KNOWN, param_overrides=parse_cli_params([item]))
    assert workflow.params[key] == expected and type(workflow.params[key]) is type(expected)
    assert workflow.params["region"] == "north"


def test_malformed_param_on_the_command_line_is_exit_2_and_runs_nothing(tmp_path, write_workflow):
    marker = tmp_path / "ran.txt"
    path = write_workflow(f"""
        name: p
        tasks:
          - {{id: a, plugin: shell, config: {{command: "touch {marker}"}}}}
    """)
    stderr = run_invalid(path, tmp_path, "--param", "region")
    assert "--param 'region': expected KEY=VALUE" in stderr
    assert not marker.exists()


def test_anchors_aliases_and_merge_keys_are_not_duplicates(write_workflow):
    path = write_workflow("""
        name: merge
        params:
          base: &base {a: 1, b: 2}
          derived:
            <<: *base
            b: 3
          again: *base
        tasks:
          - id: a
            plugin: shell
            config: {command: echo, list: [{x: 1}, {x: 2}], env: *base}
    """)
    workflow = load_workflow(path, KNOWN)
    assert workflow.params == {"base": {"a": 1, "b": 2}, "derived": {"a": 1, "b": 3}, "again": {"a": 1, "b": 2}}
    assert workflow.task("a").config["env"] == {"a": 1, "b": 2}


# what validate says where a new user trips (issue 25) ---------------------------------

def _validate(path, cwd):
    """`opflow validate FILE` as a real process: (exit code, stderr lines)."""
    from helpers import run_cli

    proc = run_cli("validate", str(path), cwd=cwd)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stderr.splitlines()


def test_a_duplicate_id_keeps_each_tasks_problems_on_its_own_lines(tmp_path, write_workflow):
    path = write_workflow("""
        name: dups
        tasks:
          - id: a
            plugin: shell
            config:
              command: 5
          - id: a
            plugin: shell
            config:
              env: {X: 1}
              comand: "true"
    """)
    code, lines = _validate(path, tmp_path)
    assert code == 2
    problems = [line for line in lines if line.startswith(f"{path}:")]
    assert problems[0].startswith(f"{path}:6: task 'a': ") and "command" in problems[0], lines
    assert problems[1] == f"{path}:7: task 'a': duplicate task id (first defined on line 3)", lines
    # the second task's own problem, at its own line, is reported too
    assert any(p.startswith(f"{path}:11: task 'a': ") and "comand" in p for p in problems[2:]), lines
    assert not any(p.startswith(f"{path}:10:") and "command" in p and "comand" not in p for p in problems), lines


def test_a_function_without_a_colon_a_module_nowhere_and_an_input_matching_nothing_are_validate_errors(
        tmp_path, write_workflow):
    (tmp_path / "near.py").write_text("def go():\n    return 1\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("x\n1\n")
    path = write_workflow("""
        name: checks
        tasks:
          - id: dotted
            plugin: python
            config:
              function: "stub.spin"
          - id: nowhere
            plugin: python
            config:
              function: "no_such_module_anywhere_xyz:go"
          - id: globbed
            plugin: shell
            inputs: ["data/*.parquet"]
            config: {command: "true"}
          - {id: fine_local, plugin: python, config: {function: "near:go"}, inputs: ["data/*.csv"]}
          - {id: fine_installed, plugin: python, config: {function: "json:dumps", args: [1]}}
    """)
    code, lines = _validate(path, tmp_path)
    assert code == 2
    assert lines == [
        f"{path}:6: task 'dotted': config 'function' must be module:attr, got 'stub.spin'",
        f"{path}:10: task 'nowhere': config 'function': module 'no_such_module_anywhere_xyz' is not installed, "
        "and there is no no_such_module_anywhere_xyz.py beside the workflow",
        f"{path}:13: task 'globbed': inputs: 'data/*.parquet' matches no file (looked for in {tmp_path})",
        "opflow: 3 problems found; nothing was run",
    ], lines


def test_a_missing_workflow_file_suggests_the_one_beside_it(tmp_path):
    from helpers import run_cli

    (tmp_path / "nightly.yaml").write_text("name: n\ntasks:\n  - {id: a, plugin: shell, config: {command: 'true'}}\n")
    proc = run_cli("run", "nightly.yml", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == "nightly.yml: no such file (did you mean nightly.yaml?)", proc.stderr
    proc = run_cli("validate", "flows/nightly.yml", cwd=tmp_path)  # no such folder: nothing to suggest
    assert proc.returncode == 2 and proc.stderr.splitlines()[0] == "flows/nightly.yml: no such file", proc.stderr
