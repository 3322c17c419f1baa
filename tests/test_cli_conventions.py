"""The conventions of click CLIs people like (issue 25 item 9), through the real CLI: `-j`,
`opflow completion`, one-line helps that fit 80 columns, FORCE_COLOR and --color/--no-color,
and a config file (opflow.toml, or [tool.opflow] in pyproject.toml, beside the workflow).
`--version` and the PEP 621 metadata: tests/test_install.py."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import latest_run_dir, run_cli, run_json, write

FLOW = """
    name: conventions
    params: {n: 1}
    tasks:
      - {id: hello, plugin: shell, config: {command: "echo n=${params.n}"}}
"""
RED, GREEN = "\033[31m", "\033[32m"
UNCOLOURED = {"NO_COLOR": "", "FORCE_COLOR": ""}  # empty: unset, as knobs read them


@pytest.fixture
def flow(tmp_path) -> Path:
    return write(tmp_path / "project", "flow.yaml", FLOW)


def test_j_is_an_alias_of_workers(flow, tmp_path):
    result = run_cli("run", str(flow), "-j", "3", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert run_json(latest_run_dir(tmp_path / "logs"))["workers"] == 3


@pytest.mark.parametrize("shell, marker", [
    ("bash", "complete -o nosort -F _opflow_completion opflow"),
    ("zsh", "compdef _opflow_completion opflow"),
    ("fish", "complete --no-files --command opflow"),
])
def test_completion_prints_clicks_script_for_each_shell(tmp_path, shell, marker):
    result = run_cli("completion", shell, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert marker in result.stdout and "_OPFLOW_COMPLETE" in result.stdout


def test_the_completion_script_completes_through_the_console_script(tmp_path):
    script = Path(sys.executable).parent / "opflow"
    if not script.exists():
        pytest.skip("no console script beside this Python (not installed with pip)")
    env = {"_OPFLOW_COMPLETE": "bash_complete", "COMP_WORDS": "opflow comp", "COMP_CWORD": "1"}
    result = subprocess.run([str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env={**__import__("os").environ, **env})
    assert result.stdout.split() == ["plain,completion"], result.stdout + result.stderr


def test_completion_refuses_another_shell(tmp_path):
    result = run_cli("completion", "tcsh", cwd=tmp_path)
    assert result.returncode == 2 and "'tcsh' is not one of 'bash', 'zsh', 'fish'" in result.stderr


def test_each_commands_one_line_help_fits_80_columns_uncut(tmp_path):
    result = run_cli("--help", cwd=tmp_path, env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    commands = result.stdout.split("Commands:\n", 1)[1].splitlines()
    assert len(commands) >= 10 and any(line.split()[0] == "completion" for line in commands)
    assert [line for line in commands if len(line) > 80 or line.endswith("...")] == []
    assert all(line.rstrip().endswith(".") for line in commands), commands


def _coloured(result) -> bool:
    return GREEN in result.stdout or RED in result.stdout


def test_force_color_colours_output_that_is_not_a_terminal(flow, tmp_path):
    plain = run_cli("run", str(flow), cwd=tmp_path, env=UNCOLOURED)
    forced = run_cli("run", str(flow), cwd=tmp_path, env={**UNCOLOURED, "FORCE_COLOR": "1"})
    assert plain.returncode == forced.returncode == 0, plain.stderr + forced.stderr
    assert not _coloured(plain) and GREEN in forced.stdout
    assert re.search(r"^\S+ \S+ \033\[32m", forced.stdout, re.M), forced.stdout  # still dated lines, coloured


@pytest.mark.parametrize("env, flag, coloured", [
    ({"NO_COLOR": "1", "FORCE_COLOR": "1"}, None, False),  # NO_COLOR wins over FORCE_COLOR
    ({"FORCE_COLOR": "1"}, "--no-color", False),
    ({"NO_COLOR": "1"}, "--color", True),  # the command line wins over both
    ({}, "--color", True),
])
def test_color_flags_beat_the_environment(flow, tmp_path, env, flag, coloured):
    args = ["run", str(flow), *([flag] if flag else [])]
    result = run_cli(*args, cwd=tmp_path, env={**UNCOLOURED, **env})
    assert result.returncode == 0, result.stderr
    assert _coloured(result) is coloured, result.stdout


needs_toml = pytest.mark.skipif(sys.version_info < (3, 11) and not __import__("importlib").util.find_spec("tomli"),
                                reason="the config file needs Python 3.11 (tomllib) or tomli")


@needs_toml
def test_opflow_toml_beside_the_workflow_gives_defaults_and_the_command_line_and_environment_win(flow, tmp_path):
    write(flow.parent, "opflow.toml", """
        workers = 3
        log-dir = "runs"
        param = {n = 7}
        keep-going = true
    """)
    result = run_cli("run", str(flow), "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = run_json(latest_run_dir(flow.parent / "runs"))  # a relative path: beside the file
    assert doc["workers"] == 3 and doc["params"] == {"n": 7}
    assert not (tmp_path / "logs").exists()
    # environment > file
    result = run_cli("run", str(flow), "--quiet", cwd=tmp_path, env={"OPFLOW_WORKERS": "2"})
    assert result.returncode == 0 and run_json(latest_run_dir(flow.parent / "runs"))["workers"] == 2
    # command line > environment > file
    result = run_cli("run", str(flow), "--quiet", "-j", "1", "--param", "n=9", cwd=tmp_path,
                     env={"OPFLOW_WORKERS": "2"})
    doc = run_json(latest_run_dir(flow.parent / "runs"))
    assert result.returncode == 0 and doc["workers"] == 1 and doc["params"] == {"n": 9}
    # --no-config: the built-in defaults (./logs of the current folder)
    result = run_cli("run", str(flow), "--quiet", "--no-config", cwd=tmp_path)
    assert result.returncode == 0 and run_json(latest_run_dir(tmp_path / "logs"))["params"] == {"n": 1}


@needs_toml
def test_pyproject_tool_opflow_and_an_explicit_config(flow, tmp_path):
    write(flow.parent, "pyproject.toml", """
        [project]
        name = "analysis"

        [tool.opflow]
        workers = 2
    """)
    result = run_cli("run", str(flow), "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert run_json(latest_run_dir(tmp_path / "logs"))["workers"] == 2
    other = write(tmp_path, "cron.toml", "workers = 4\n")
    result = run_cli("run", str(flow), "--quiet", "--config", str(other), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert run_json(latest_run_dir(tmp_path / "logs"))["workers"] == 4


@needs_toml
def test_a_bad_config_file_is_exit_2_naming_the_file_and_each_key(flow, tmp_path):
    config = write(flow.parent, "opflow.toml", 'wokers = 3\nexecutor = "carrier-pigeon"\n')
    result = run_cli("run", str(flow), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"{config}: unknown key 'wokers' (did you mean 'workers'?)" in result.stderr
    assert f"{config}: executor = 'carrier-pigeon'" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "logs").exists()
    config.write_text("workers = [\n")
    result = run_cli("run", str(flow), cwd=tmp_path)
    assert result.returncode == 2 and f"{config}: not valid TOML" in result.stderr


def test_without_a_toml_reader_a_config_file_is_exit_2_saying_what_it_needs(flow, tmp_path, monkeypatch):
    # Python 3.10 without tomli, imitated: the reader is missing.
    from helpers import invoke
    from opflow.cli import config_file

    monkeypatch.setattr(config_file, "_toml", lambda: None)
    write(flow.parent, "opflow.toml", "workers = 2\n")
    monkeypatch.chdir(tmp_path)
    result = invoke("run", flow, "--quiet")
    assert result.exit_code == 2
    assert "reading a config file needs Python 3.11, or `pip install tomli` on 3.10" in result.output
    assert not (tmp_path / "logs").exists()
    result = invoke("run", flow, "--quiet", "--no-config")
    assert result.exit_code == 0, result.output
