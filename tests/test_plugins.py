"""plugins/: the four built-ins and discovery, run through the real engine.

Each plugin test writes a workflow (and its files) into tmp_path, runs it with
`opflow.api.run`, and reads `tasks/<id>.json`, as a user would. The current
folder is an empty directory elsewhere, so "relative to the workflow file" and
"relative to where I ran it" can never be confused.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from helpers import GREET, latest_run_dir, records, run_cli, write
from click.testing import CliRunner

from opflow.api import run
from opflow.cli.commands import main
from opflow.errors import ConfigError, WorkflowError
from opflow.plugin_base import Plugin
from opflow.plugins import PLUGINS, PluginRef, discover_plugins, load_plugin_class, worker_dirs
from opflow.plugins.csv_ingest import CsvIngestPlugin
from opflow.plugins.metrics import MetricsPlugin
from opflow.plugins.python_call import PythonPlugin
from opflow.plugins.shell import ShellPlugin

CSV = """\
name,age,score,city,flag
Alice,34,88.5,Lisbon,true
Bob,28,92.0,Porto,false
Carla,45,75.25,Braga,true
Dinis,39,,Lisbon,false
Eva,23,81.0,Faro,true
Filipe,51,69.5,Porto,true
Gil,31,94.75,Lisbon,false
"""


@pytest.fixture
def flow_dir(tmp_path, monkeypatch) -> Path:
    """Where workflow files live; the current folder is a different, empty one."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    folder = tmp_path / "project"
    folder.mkdir()
    return folder




def run_flow(path: Path, executor: str = "process", **options):
    result = run(path, executor=executor, workers=2, log_dir=path.parent.parent / "logs", **options)
    tasks = {p.stem: json.loads(p.read_text()) for p in (result.run_dir / "tasks").glob("*.json")}
    return result, tasks


def failed_message(tasks, task_id) -> str:
    record = tasks[task_id]
    assert record["status"] == "failed", record
    assert record["result"] is None
    return record["error"]["message"]


# shell -----------------------------------------------------------------------

@pytest.mark.parametrize("executor", ["inline", "process"])
def test_shell_result_is_returncode_stdout_stderr(executor, flow_dir):
    flow = write(flow_dir, "flow.yaml", """
        name: shell
        tasks:
          - id: talk
            plugin: shell
            config: {command: "printf 'out line\\n'; printf 'err line\\n' >&2"}
    """)
    result, tasks = run_flow(flow, executor)
    assert result.exit_code == 0
    assert tasks["talk"]["status"] == "succeeded"
    assert tasks["talk"]["result"] == {"returncode": 0, "stdout": "out line\n", "stderr": "err line\n"}
    assert tasks["talk"]["error"] is None


def test_shell_non_zero_exit_fails_with_the_tail_of_stderr(flow_dir):
    flow = write(flow_dir, "flow.yaml", """
        name: shell
        tasks:
          - id: noisy
            plugin: shell
            config: {command: "for i in $(seq 1 30); do echo err$i >&2; done; echo to-stdout; exit 3"}
          - id: quiet_fail
            plugin: shell
            config: {command: "exit 4"}
          - id: killed
            plugin: shell
            config: {command: "kill -9 $$"}
    """)
    result, tasks = run_flow(flow, keep_going=True)
    assert result.exit_code == 1
    message = failed_message(tasks, "noisy")
    assert tasks["noisy"]["error"]["type"] == "PluginError"
    assert "exited with status 3" in message
    lines = message.splitlines()
    assert lines[-20:] == [f"err{i}" for i in range(11, 31)]  # the last 20 lines of stderr
    assert "err10" not in lines
    assert "to-stdout" not in message
    assert "exited with status 4; stderr was empty" in failed_message(tasks, "quiet_fail")
    assert "was killed by SIGKILL" in failed_message(tasks, "killed")


def test_shell_env_is_added_to_the_inherited_environment(flow_dir, monkeypatch):
    monkeypatch.setenv("OPFLOW_TEST_INHERITED", "from-parent")
    flow = write(flow_dir, "flow.yaml", """
        name: shell env
        tasks:
          - id: env
            plugin: shell
            config:
              command: 'echo "$GREETING $COUNT $OPFLOW_TEST_INHERITED"'
              env: {GREETING: hello, COUNT: 5}
    """)
    # inline: a pool's workers have the environment of the forkserver, which an earlier
    # test of this process started before the variable was set.
    _, tasks = run_flow(flow, executor="inline")
    assert tasks["env"]["result"]["stdout"] == "hello 5 from-parent\n"


def test_shell_env_not_a_mapping_is_refused_before_the_run(flow_dir):
    flow = write(flow_dir, "flow.yaml", """
        name: shell env
        tasks:
          - {id: env, plugin: shell, config: {command: "true", env: [A=1]}}
    """)
    with pytest.raises(WorkflowError) as info:  # the plugin's config_schema, checked by validate
        run_flow(flow)
    assert "task 'env': config.env must be a mapping" in str(info.value)


def test_shell_cwd_defaults_to_the_workflow_dir_and_resolves_relative_to_it(flow_dir):
    (flow_dir / "sub" / "deeper").mkdir(parents=True)
    flow = write(flow_dir, "flow.yaml", """
        name: shell cwd
        tasks:
          - {id: default, plugin: shell, config: {command: pwd}}
          - {id: relative, plugin: shell, config: {command: pwd, cwd: sub/deeper}}
          - {id: absolute, plugin: shell, config: {command: pwd, cwd: "%s"}}
          - {id: missing, plugin: shell, config: {command: pwd, cwd: nowhere}}
    """ % (flow_dir / "sub"))
    result, tasks = run_flow(flow, keep_going=True)
    assert Path(tasks["default"]["result"]["stdout"].strip()).resolve() == flow_dir.resolve()
    assert Path(tasks["relative"]["result"]["stdout"].strip()).resolve() == (flow_dir / "sub" / "deeper").resolve()
    assert Path(tasks["absolute"]["result"]["stdout"].strip()).resolve() == (flow_dir / "sub").resolve()
    message = failed_message(tasks, "missing")
    assert "config 'cwd'" in message and "nowhere" in message and "is not a directory" in message


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_shell_sees_params_as_opflow_param_variables(executor, flow_dir):
    flow = write(flow_dir, "flow.yaml", """
        name: shell params
        params: {region: north, batch_size: 5}
        tasks:
          - id: show
            plugin: shell
            config: {command: 'echo "$OPFLOW_PARAM_REGION/$OPFLOW_PARAM_BATCH_SIZE"'}
    """)
    _, tasks = run_flow(flow, executor)
    assert tasks["show"]["result"]["stdout"] == "north/5\n"
    _, tasks = run_flow(flow, executor, params={"region": "south"})
    assert tasks["show"]["result"]["stdout"] == "south/5\n"


@pytest.mark.parametrize("config, message", [
    ("{}", "missing required key 'command'"),
    ("{command: ''}", "config.command must not be empty"),
    ("{command: [ls]}", "config.command must be a string"),
])
def test_shell_without_a_command_is_refused_before_the_run(config, message, flow_dir):
    flow = write(flow_dir, "flow.yaml", f"""
        name: shell
        tasks:
          - {{id: nothing, plugin: shell, config: {config}}}
    """)
    with pytest.raises(WorkflowError) as info:
        run_flow(flow)
    assert message in str(info.value)


def test_shell_failure_skips_downstream(flow_dir):
    flow = write(flow_dir, "flow.yaml", """
        name: shell
        tasks:
          - {id: bad, plugin: shell, config: {command: "exit 1"}}
          - {id: after, plugin: shell, config: {command: "true"}, depends_on: [bad]}
    """)
    result, tasks = run_flow(flow)
    assert result.exit_code == 1
    assert tasks["bad"]["status"] == "failed"
    assert tasks["after"]["status"] == "skipped"


# python ----------------------------------------------------------------------

HELPERS = '''
import os


def add(a, b, scale=1):
    return (a + b) * scale


def seen(context, label="x"):
    return {"label": label, "keys": sorted(context), "params": context["params"], "up": context.get("first")}


def only_kwargs(**kwargs):
    return sorted(kwargs)


def boom():
    raise ValueError("bad input 42")


def where():
    return os.getpid()


NOT_CALLABLE = 3


class Tools:
    @staticmethod
    def double(x):
        return 2 * x
'''


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_python_calls_a_function_from_a_py_beside_the_workflow(executor, flow_dir):
    write(flow_dir, "helpers.py", HELPERS)
    flow = write(flow_dir, "flow.yaml", """
        name: python
        tasks:
          - {id: positional, plugin: python, config: {function: "helpers:add", args: [2, 3]}}
          - {id: keywords, plugin: python, config: {function: "helpers:add", args: [2], kwargs: {b: 3, scale: 10}}}
          - {id: nested, plugin: python, config: {function: "helpers:Tools.double", args: [21]}}
          - {id: installed, plugin: python, config: {function: "posixpath:join", args: [a, b]}}
    """)
    result, tasks = run_flow(flow, executor)
    assert result.exit_code == 0, tasks
    assert tasks["positional"]["result"] == 5
    assert tasks["keywords"]["result"] == 50
    assert tasks["nested"]["result"] == 42
    assert tasks["installed"]["result"] == "a/b"


def test_python_context_is_injected_only_where_declared(flow_dir):
    write(flow_dir, "helpers.py", HELPERS)
    flow = write(flow_dir, "flow.yaml", """
        name: python
        params: {mode: fast}
        tasks:
          - {id: first, plugin: python, config: {function: "helpers:add", args: [1, 1]}}
          - id: second
            plugin: python
            config: {function: "helpers:seen", kwargs: {label: y}}
            depends_on: [first]
          - {id: alone, plugin: python, config: {function: "helpers:seen"}}
          - {id: kw, plugin: python, config: {function: "helpers:only_kwargs", kwargs: {x: 1}}}
    """)
    result, tasks = run_flow(flow)
    assert result.exit_code == 0, tasks
    assert tasks["second"]["result"] == {"label": "y", "keys": ["first", "params"], "params": {"mode": "fast"}, "up": 2}
    assert tasks["alone"]["result"] == {"label": "x", "keys": ["params"], "params": {"mode": "fast"}, "up": None}
    # **kwargs does not declare a parameter named context: it gets none.
    assert tasks["kw"]["result"] == ["x"]


def test_python_errors_name_what_is_missing(flow_dir):
    write(flow_dir, "helpers.py", HELPERS)
    flow = write(flow_dir, "flow.yaml", """
        name: python errors
        tasks:
          - {id: no_attr, plugin: python, config: {function: "helpers:nope"}}
          - {id: not_callable, plugin: python, config: {function: "helpers:NOT_CALLABLE"}}
          - {id: raises, plugin: python, config: {function: "helpers:boom"}}
    """)
    result, tasks = run_flow(flow, keep_going=True)
    assert result.exit_code == 1
    assert tasks["no_attr"]["error"]["type"] == "PluginError"
    assert "module 'helpers' has no attribute 'nope'" in failed_message(tasks, "no_attr")
    assert "not callable" in failed_message(tasks, "not_callable")
    assert failed_message(tasks, "raises") == "bad input 42"
    # (validate refuses these before a run: tests/test_spec.py; the plugin still words them)
    with pytest.raises(ConfigError, match="config 'function' must be module:attr, got 'helpers.add'"):
        PythonPlugin().run({"function": "helpers.add"}, {})
    error = tasks["raises"]["error"]
    assert error["type"] == "ValueError" and "helpers.py" in error["traceback"] and "in boom" in error["traceback"]


def test_python_local_file_wins_over_an_installed_module_of_that_name(flow_dir):
    write(flow_dir, "json.py", "def dumps(obj):\n    return 'local ' + str(obj)\n")
    flow = write(flow_dir, "flow.yaml", """
        name: python shadow
        tasks:
          - {id: call, plugin: python, config: {function: "json:dumps", args: [1]}}
    """)
    _, tasks = run_flow(flow)
    assert tasks["call"]["result"] == "local 1"


# csv_ingest ------------------------------------------------------------------

def test_csv_ingest_resolves_relative_paths_beside_the_workflow(flow_dir):
    write(flow_dir, "data/people.csv", CSV)
    # A decoy with the same relative path in the current folder must not be read.
    write(Path.cwd(), "data/people.csv", "name\nDecoy\n")
    flow = write(flow_dir, "flow.yaml", """
        name: csv
        tasks:
          - {id: ingest, plugin: csv_ingest, config: {path: data/people.csv}}
    """)
    result, tasks = run_flow(flow)
    assert result.exit_code == 0
    rendered = tasks["ingest"]["result"]
    assert rendered["type"] == "DataFrame"
    assert rendered["rows"] == 7
    assert rendered["columns"] == ["name", "age", "score", "city", "flag"]
    assert rendered["dtypes"]["age"] == "int64" and rendered["dtypes"]["score"] == "float64"
    assert rendered["dtypes"]["flag"] == "bool"
    assert rendered["head"][0] == {"name": "Alice", "age": 34, "score": 88.5, "city": "Lisbon", "flag": True}
    assert rendered["head"][3]["score"] is None  # the empty cell is NaN -> null
    assert len(rendered["head"]) == 5


def test_csv_ingest_absolute_path_and_read_csv_options(flow_dir, tmp_path):
    write(tmp_path / "shared", "semi.csv", "a;b\n1;2\n3;4\n")
    flow = write(flow_dir, "flow.yaml", f"""
        name: csv
        tasks:
          - {{id: ingest, plugin: csv_ingest, config: {{path: "{tmp_path / 'shared' / 'semi.csv'}", read_csv: {{sep: ";"}}}}}}
    """)
    _, tasks = run_flow(flow)
    assert tasks["ingest"]["result"]["columns"] == ["a", "b"]
    assert tasks["ingest"]["result"]["head"] == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]


def test_csv_ingest_missing_file_names_the_resolved_path(flow_dir):
    flow = write(flow_dir, "flow.yaml", """
        name: csv
        tasks:
          - {id: ingest, plugin: csv_ingest, config: {path: missing.csv}}
          - {id: after, plugin: metrics, depends_on: [ingest]}
    """)
    result, tasks = run_flow(flow, keep_going=True)
    assert result.exit_code == 1
    message = failed_message(tasks, "ingest")
    assert message == (f"config 'path': no such file 'missing.csv'; looked for {flow.resolve().parent / 'missing.csv'} "
                       f"(beside the workflow file) and {Path.cwd() / 'missing.csv'} (in the current folder)")
    assert tasks["ingest"]["error"]["type"] == "PluginError"
    assert tasks["after"]["status"] == "skipped"


def test_csv_ingest_unparseable_file_is_a_task_error(flow_dir):
    (flow_dir / "bad.csv").write_bytes(b"a,b\n\xff\xfe,\x00\n")
    flow = write(flow_dir, "flow.yaml", """
        name: csv
        tasks:
          - {id: ingest, plugin: csv_ingest, config: {path: bad.csv, read_csv: {encoding: ascii}}}
    """)
    _, tasks = run_flow(flow)
    assert "cannot parse" in failed_message(tasks, "ingest")


# metrics ---------------------------------------------------------------------

def _metrics_flow(flow_dir, metrics_config: str, extra_tasks: str = "") -> Path:
    write(flow_dir, "people.csv", CSV)
    return write(flow_dir, "flow.yaml", textwrap.dedent(f"""
        name: metrics
        tasks:
          - {{id: ingest, plugin: csv_ingest, config: {{path: people.csv}}}}
          - {{id: stats, plugin: metrics, config: {metrics_config}, depends_on: [ingest]}}
    """) + textwrap.indent(textwrap.dedent(extra_tasks).lstrip("\n"), "  "))


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_metrics_equal_pandas_describe_nan_aware(executor, flow_dir):
    flow = _metrics_flow(flow_dir, "{numeric_columns: [age, score]}")
    result, tasks = run_flow(flow, executor)
    assert result.exit_code == 0, tasks
    got = tasks["stats"]["result"]
    expected = pd.read_csv(flow_dir / "people.csv")[["age", "score"]].describe()
    assert set(got) == {"age", "score"}
    for column in ("age", "score"):
        assert list(got[column]) == ["count", "mean", "std", "min", "25%", "50%", "75%", "max"]
        for stat, value in expected[column].items():
            assert got[column][stat] == pytest.approx(value), (column, stat)
    assert got["age"]["count"] == 7
    assert got["score"]["count"] == 6  # the empty cell is not counted
    assert got["score"]["mean"] == pytest.approx((88.5 + 92.0 + 75.25 + 81.0 + 69.5 + 94.75) / 6)


def test_metrics_all_nan_and_single_value_columns_render_nan_as_null(flow_dir):
    write(flow_dir, "sparse.csv", "a,b\n,5\n,\n")
    flow = write(flow_dir, "flow.yaml", """
        name: metrics
        tasks:
          - {id: ingest, plugin: csv_ingest, config: {path: sparse.csv}}
          - {id: stats, plugin: metrics, config: {numeric_columns: [a, b]}, depends_on: [ingest]}
    """)
    result, tasks = run_flow(flow)
    assert result.exit_code == 0, tasks
    got = tasks["stats"]["result"]
    assert got["a"] == {"count": 0.0, "mean": None, "std": None, "min": None, "25%": None, "50%": None,
                        "75%": None, "max": None}
    assert got["b"]["count"] == 1 and got["b"]["mean"] == 5 and got["b"]["std"] is None


def test_metrics_non_numeric_column_is_a_task_error_naming_it(flow_dir):
    flow = _metrics_flow(flow_dir, "{numeric_columns: [age, city]}")
    result, tasks = run_flow(flow)
    assert result.exit_code == 1
    message = failed_message(tasks, "stats")
    assert "not numeric" in message and "city" in message and "age" not in message
    assert tasks["stats"]["error"]["type"] == "PluginError"


def test_metrics_bool_column_is_not_numeric(flow_dir):
    flow = _metrics_flow(flow_dir, "{numeric_columns: [flag]}")
    _, tasks = run_flow(flow)
    assert "flag (bool)" in failed_message(tasks, "stats")


def test_metrics_missing_column_is_a_task_error_naming_it(flow_dir):
    flow = _metrics_flow(flow_dir, "{numeric_columns: [age, salary]}")
    result, tasks = run_flow(flow)
    assert result.exit_code == 1
    message = failed_message(tasks, "stats")
    assert message.startswith("column(s) not found: salary ")
    assert "(columns: name, age, score, city, flag)" in message


def test_metrics_without_numeric_columns_describes_every_numeric_one(flow_dir):
    flow = _metrics_flow(flow_dir, "{}")
    _, tasks = run_flow(flow)
    assert sorted(tasks["stats"]["result"]) == ["age", "score"]  # not name/city (text), not flag (bool)


def test_metrics_source_defaults_to_the_single_direct_upstream(flow_dir):
    write(flow_dir, "other.csv", "age\n1000\n2000\n")
    # `stats` depends directly on `ingest` only; `ingest` depends on `other`, which it
    # therefore sees too: the default is the direct upstream, not "the only one in context".
    flow = _metrics_flow(flow_dir, "{numeric_columns: [age]}")
    text = flow.read_text().replace(
        "  - {id: ingest, plugin: csv_ingest, config: {path: people.csv}}",
        "  - {id: other, plugin: csv_ingest, config: {path: other.csv}}\n"
        "  - {id: ingest, plugin: csv_ingest, config: {path: people.csv}, depends_on: [other]}",
    )
    flow.write_text(text)
    result, tasks = run_flow(flow)
    assert result.exit_code == 0, tasks
    assert tasks["stats"]["result"]["age"]["max"] == 51


def test_metrics_source_picks_one_of_several_upstreams(flow_dir):
    write(flow_dir, "other.csv", "age\n1000\n2000\n")
    flow = _metrics_flow(flow_dir, "{numeric_columns: [age]}", """
          - {id: other, plugin: csv_ingest, config: {path: other.csv}}
          - {id: chosen, plugin: metrics, config: {numeric_columns: [age], source: other}, depends_on: [ingest, other]}
          - {id: stranger, plugin: metrics, config: {numeric_columns: [age], source: other}, depends_on: [ingest]}
          - {id: not_frame, plugin: metrics, config: {numeric_columns: [age]}, depends_on: [stats]}
    """)
    result, tasks = run_flow(flow, keep_going=True)
    assert result.exit_code == 1
    assert tasks["chosen"]["status"] == "succeeded"
    assert tasks["chosen"]["result"]["age"]["max"] == 2000
    assert tasks["chosen"]["result"]["age"]["count"] == 2
    assert "'other' is not an upstream task" in failed_message(tasks, "stranger")
    assert "not a DataFrame" in failed_message(tasks, "not_frame")


# discovery -------------------------------------------------------------------

@pytest.mark.parametrize("executor", ["inline", "process"])
def test_workers_dir_beside_the_workflow_provides_plugins(executor, flow_dir):
    write(flow_dir, "workers/greet.py", GREET)
    flow = write(flow_dir, "flow.yaml", """
        name: greet
        tasks:
          - {id: hello, plugin: greet, config: {name: Ada}}
          - {id: default, plugin: greet}
    """)
    result, tasks = run_flow(flow, executor)
    assert result.exit_code == 0, tasks
    assert tasks["hello"]["result"] == {"message": "Hello, Ada!"}
    assert tasks["default"]["result"] == {"message": "Hello, world!"}


def test_discover_plugins_reads_workers_files_without_importing_them(tmp_path):
    folder = tmp_path / "workers"
    write(folder, "greet.py", GREET)
    # Importing this file would fail; discovery reads it with ast, so it must not.
    write(folder, "lazy.py", '''
        raise RuntimeError("imported at discovery time")

        class LazyPlugin:
            """Has a run and a name: a plugin without the base class."""
            name = "lazy"
            description = "an explicit description"

            def run(self, config, context):
                return 1

        class NotAPlugin:
            name = "nope"

        class _Helper(Plugin):
            """No name: not a plugin."""
    ''')
    write(folder, "_private.py", GREET.replace('"greet"', '"hidden"'))
    write(folder, "notes.txt", "not python")
    refs, warnings = discover_plugins([folder])
    assert warnings == []
    assert refs["greet"] == PluginRef("greet", "file", f"{folder / 'greet.py'}:GreetPlugin",
                                      "Say hello to config 'name' (default: world).")
    assert refs["lazy"].description == "an explicit description"
    assert refs["lazy"].target == f"{folder / 'lazy.py'}:LazyPlugin"
    assert "nope" not in refs and "hidden" not in refs
    for name, cls in PLUGINS.items():
        assert refs[name].source == "builtin"
        assert load_plugin_class(refs[name]) is cls


def test_a_broken_workers_file_is_a_warning_not_a_crash(flow_dir):
    write(flow_dir, "workers/greet.py", GREET)
    write(flow_dir, "workers/broken.py", "class Broken(Plugin:\n    name = 'broken'\n")
    refs, warnings = discover_plugins([flow_dir / "workers"])
    assert "greet" in refs and "broken" not in refs
    (warning,) = warnings
    assert warning.startswith(f"{flow_dir / 'workers' / 'broken.py'}:1: cannot read plugin file")

    flow = write(flow_dir, "flow.yaml", """
        name: greet
        tasks:
          - {id: hello, plugin: greet}
    """)
    result, tasks = run_flow(flow)
    assert result.exit_code == 0 and tasks["hello"]["result"] == {"message": "Hello, world!"}

    # The listing still works, and says why broken.py is missing from it.
    listing = CliRunner().invoke(main, ["plugins", str(flow)])
    assert listing.exit_code == 0, listing.output
    assert "greet" in listing.stdout
    assert "warning:" in listing.stderr and "broken.py:1" in listing.stderr

    # A workflow naming the plugin from the broken file: exit 2, and the note says why.
    bad = write(flow_dir, "bad.yaml", """
        name: broken
        tasks:
          - {id: b, plugin: broken}
    """)
    checked = CliRunner().invoke(main, ["validate", str(bad)])
    assert checked.exit_code == 2
    assert "unknown plugin 'broken'" in checked.stderr
    assert "note:" in checked.stderr and "broken.py:1" in checked.stderr
    assert "Traceback" not in checked.output


def test_a_workers_file_that_fails_on_import_fails_only_its_task(flow_dir):
    write(flow_dir, "workers/greet.py", GREET)
    write(flow_dir, "workers/explodes.py", '''
        from opflow.plugin_base import Plugin
        import no_such_dependency_xyz

        class ExplodingPlugin(Plugin):
            name = "explodes"

            def run(self, config, context):
                return 1
    ''')
    flow = write(flow_dir, "flow.yaml", """
        name: explodes
        tasks:
          - {id: bang, plugin: explodes}
          - {id: hello, plugin: greet}
    """)
    result, tasks = run_flow(flow, keep_going=True)
    assert result.exit_code == 1
    message = failed_message(tasks, "bang")
    assert "cannot load plugin 'explodes'" in message and "no_such_dependency_xyz" in message
    assert tasks["hello"]["status"] == "succeeded"


def test_only_the_workers_folder_beside_the_workflow_is_searched(tmp_path, monkeypatch):
    beside, here = tmp_path / "beside", tmp_path / "here"
    write(beside, "workers/greet.py", GREET)
    write(here, "workers/extra.py", GREET.replace('"greet"', '"extra"'))
    monkeypatch.chdir(here)
    dirs = worker_dirs(beside)
    assert dirs == [(beside / "workers").resolve()]
    refs, _ = discover_plugins(dirs)
    assert refs["greet"].target.startswith(str((beside / "workers").resolve()))
    assert "extra" not in refs  # the current folder's workers/ is not beside the workflow
    assert worker_dirs(None) == [(here / "workers").resolve()]  # no file: the current folder
    assert worker_dirs(tmp_path / "no-such") == []


def test_a_workers_file_may_override_a_builtin(tmp_path):
    write(tmp_path / "workers", "myshell.py", GREET.replace('"greet"', '"shell"'))
    refs, _ = discover_plugins([tmp_path / "workers"])
    assert refs["shell"].source == "file"


ENTRY_MODULE = '''
from opflow.plugin_base import Plugin


class ShoutPlugin(Plugin):
    """Shout config 'text' in capitals."""

    name = "shout"

    def run(self, config, context):
        return config.get("text", "").upper() + "!"
'''


@pytest.fixture
def entry_points(monkeypatch, tmp_path):
    """Install fake entry points in the `opflow.plugins` group; returns the list to fill."""
    site = tmp_path / "site"
    write(site, "opflow_shout_plugin.py", ENTRY_MODULE)
    monkeypatch.syspath_prepend(str(site))
    installed: list[importlib.metadata.EntryPoint] = []
    real = importlib.metadata.entry_points

    def fake(**kwargs):
        if kwargs.get("group") == "opflow.plugins":
            return importlib.metadata.EntryPoints(installed)
        return real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    return installed


def test_entry_point_plugins_are_discovered_and_run(entry_points, flow_dir):
    entry_points.append(importlib.metadata.EntryPoint("shout", "opflow_shout_plugin:ShoutPlugin", "opflow.plugins"))
    refs, warnings = discover_plugins([])
    assert warnings == []
    assert refs["shout"] == PluginRef("shout", "entry point", "opflow_shout_plugin:ShoutPlugin", "")
    described, _ = discover_plugins([], describe=True)
    assert described["shout"].description == "Shout config 'text' in capitals."
    assert load_plugin_class(refs["shout"]).__name__ == "ShoutPlugin"

    flow = write(flow_dir, "flow.yaml", """
        name: entry points
        tasks:
          - {id: loud, plugin: shout, config: {text: hey}}
    """)
    result, tasks = run_flow(flow)
    assert result.exit_code == 0, tasks
    assert tasks["loud"]["result"] == "HEY!"

    listing = CliRunner().invoke(main, ["plugins"])
    assert listing.exit_code == 0
    (line,) = [line for line in listing.stdout.splitlines() if line.startswith("shout ")]
    assert "Shout config 'text' in capitals." in line and "[entry point]" in line


def test_a_broken_entry_point_does_not_hide_the_others(entry_points):
    entry_points.append(importlib.metadata.EntryPoint("ghost", "no_such_module_xyz:Ghost", "opflow.plugins"))
    entry_points.append(importlib.metadata.EntryPoint("shout", "opflow_shout_plugin:ShoutPlugin", "opflow.plugins"))
    refs, _ = discover_plugins([], describe=True)
    assert refs["ghost"].description.startswith("(cannot load: ModuleNotFoundError")
    assert refs["shout"].description == "Shout config 'text' in capitals."
    assert "shell" in refs


def test_a_workers_file_wins_over_an_entry_point_of_the_same_name(entry_points, tmp_path):
    entry_points.append(importlib.metadata.EntryPoint("greet", "opflow_shout_plugin:ShoutPlugin", "opflow.plugins"))
    write(tmp_path / "workers", "greet.py", GREET)
    refs, _ = discover_plugins([tmp_path / "workers"])
    assert refs["greet"].source == "file"


# PluginRef loading -----------------------------------------------------------

def test_plugin_ref_is_small_picklable_and_loads_its_class(tmp_path):
    ref = PluginRef("shell", "builtin", "opflow.plugins.shell:ShellPlugin", "x")
    assert pickle.loads(pickle.dumps(ref)) == ref
    assert load_plugin_class(ref) is ShellPlugin

    path = write(tmp_path / "workers", "greet.py", GREET)
    file_ref = PluginRef("greet", "file", f"{path}:GreetPlugin")
    cls = load_plugin_class(file_ref)
    assert issubclass(cls, Plugin) and cls.name == "greet"
    assert cls().run({"name": "Bo"}, {}) == {"message": "Hello, Bo!"}
    assert load_plugin_class(file_ref) is cls  # imported once per process

    # Two files with the same name in different folders are different modules.
    other = write(tmp_path / "elsewhere" / "workers", "greet.py", GREET.replace("Hello", "Hi"))
    other_cls = load_plugin_class(PluginRef("greet", "file", f"{other}:GreetPlugin"))
    assert other_cls is not cls
    assert other_cls().run({}, {}) == {"message": "Hi, world!"}


def test_plugin_ref_to_a_missing_attribute_raises(tmp_path):
    path = write(tmp_path / "workers", "greet.py", GREET)
    with pytest.raises(AttributeError):
        load_plugin_class(PluginRef("x", "file", f"{path}:NoSuchClass"))
    with pytest.raises(ModuleNotFoundError):
        load_plugin_class(PluginRef("x", "entry point", "no_such_module_xyz:Thing"))


def test_builtins_have_names_and_one_line_descriptions():
    assert PLUGINS == {"shell": ShellPlugin, "python": PythonPlugin, "csv_ingest": CsvIngestPlugin,
                       "metrics": MetricsPlugin}
    for name, cls in PLUGINS.items():
        assert issubclass(cls, Plugin) and cls.name == name
        summary = cls.summary()
        assert summary and "\n" not in summary


def test_plugin_base_resolve_path_and_summary(tmp_path):
    class Documented(Plugin):
        """First line.

        More text.
        """

    class Described(Plugin):
        """Doc."""

        description = "explicit"

    class Bare(Plugin):
        pass

    assert Documented.summary() == "First line."
    assert Described.summary() == "explicit"
    assert Bare.summary() == ""
    plugin = Bare()
    plugin.workflow_dir = tmp_path
    assert plugin.resolve_path("a/b.csv") == tmp_path / "a" / "b.csv"
    assert plugin.resolve_path("/abs/x.csv") == Path("/abs/x.csv")
    assert plugin.resolve_path("~/x.csv") == Path.home() / "x.csv"


def test_a_plugin_from_a_really_installed_distribution_runs_on_the_process_pool(tmp_path):
    # A tiny distribution built and installed by pip into a folder of the test's own (no
    # faked importlib.metadata): its entry point is found by `opflow plugins` and its class
    # is imported by the pool's workers, in other processes, through the installed metadata.
    source = tmp_path / "src"
    write(source, "opflow_shout_plugin.py", ENTRY_MODULE)
    write(source, "pyproject.toml", """
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "opflow-shout-plugin"
        version = "1.0"

        [tool.setuptools]
        py-modules = ["opflow_shout_plugin"]

        [project.entry-points."opflow.plugins"]
        shout = "opflow_shout_plugin:ShoutPlugin"
    """)
    site = tmp_path / "site"
    built = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                            "--no-build-isolation", "--target", str(site), str(source)],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert list(site.glob("opflow_shout_plugin-1.0.dist-info/entry_points.txt"))
    env = {"PYTHONPATH": str(site)}
    listing = run_cli("plugins", cwd=tmp_path, env=env)
    assert listing.returncode == 0, listing.stderr
    assert any(line.startswith("shout ") and "[entry point]" in line for line in listing.stdout.splitlines())
    flow = write(tmp_path, "flow.yaml", """
        name: installed
        tasks:
          - {id: loud, plugin: shout, config: {text: hey}}
    """)
    done = run_cli("run", str(flow), "--quiet", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    record = records(latest_run_dir(tmp_path / "logs"))["loud"]
    assert record["result"] == "HEY!" and record["resources"]["pid"] != os.getpid()
