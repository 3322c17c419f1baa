"""Failures that explain themselves: the console's FAILED line, --quiet output,
summary.txt and the record show the end of stderr / traceback."""
from __future__ import annotations

import textwrap

import pytest

from helpers import latest_run_dir, records, run_cli

TOOLS = '''
import sys

def helper(x):
    raise ValueError(f"bad value {x}")

def deep():
    print("working on it")
    helper(3)

def leave():
    print("cannot find config file /etc/x.conf", file=sys.stderr)
    sys.exit(2)
'''

FLOW = """
name: fails
tasks:
  - id: sh
    plugin: shell
    config: {command: "echo first-err >&2; echo 'disk quota exceeded on /data' >&2; exit 3"}
  - id: py
    plugin: python
    config: {function: "tools:deep"}
  - id: ex
    plugin: python
    config: {function: "tools:leave"}
  - id: slow
    plugin: shell
    timeout: 1
    config: {command: "echo about to hang >&2; sleep 30"}
"""


@pytest.fixture
def failing(tmp_path):
    (tmp_path / "tools.py").write_text(TOOLS)
    (tmp_path / "flow.yaml").write_text(textwrap.dedent(FLOW))
    return tmp_path


EXPECTED = [
    ("sh", "disk quota exceeded on /data"),
    ("py", "raise ValueError(f\"bad value {x}\")"),
    ("ex", "cannot find config file /etc/x.conf"),
    ("slow", "about to hang"),
]


@pytest.mark.parametrize("quiet", [False, True])
def test_console_failed_lines_show_the_end_of_stderr_or_traceback(failing, quiet):
    args = ["run", "flow.yaml", "--keep-going"] + (["--quiet"] if quiet else [])
    proc = run_cli(*args, cwd=failing)
    assert proc.returncode == 1
    out = proc.stdout
    for task_id, line in EXPECTED:
        assert f"FAILED    {task_id}:" in out
        head, _, rest = out.partition(f"FAILED    {task_id}:")
        assert line in rest.split("FAILED")[0], (task_id, out)
    # opflow's own frames are left out: the user's are what explains it
    assert "python_call.py" not in out and "tools.py\", line 5, in helper" in out
    if quiet:
        assert "ok " not in out


def test_summary_and_records_show_the_end_of_stderr_or_traceback(failing):
    proc = run_cli("run", "flow.yaml", "--keep-going", cwd=failing)
    assert proc.returncode == 1
    run_dir = latest_run_dir(failing / "logs")
    summary = (run_dir / "summary.txt").read_text()
    for _, line in EXPECTED:
        assert line in summary
    recs = records(run_dir)
    assert "disk quota exceeded on /data" in recs["sh"]["error"]["message"]
    assert "cannot find config file" in recs["ex"]["error"]["log_tail"]
    assert "about to hang" in recs["slow"]["error"]["log_tail"]
    assert "working on it" in recs["py"]["error"]["log_tail"]
