"""Failures that explain themselves: the console's FAILED line, --quiet output,
summary.txt and the record show the end of stderr / traceback."""
from __future__ import annotations

import re
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


# where an excerpt starts, and when there is none -----------------------------------

EXCERPT_TOOLS = '''
import importlib

def f1():
    exec("f2()", globals())  # a frame with no source line: an odd count of lines

def f2():
    f3()

def f3():
    f4()

def f4():
    f5()

def f5():
    raise ValueError("deep down")

def load_broken():
    return importlib.import_module("broken_mod")
'''

EXCERPT_FLOW = """
name: excerpts
tasks:
  - {id: deep, plugin: python, config: {function: "excerpt_tools:f1"}}
  - {id: frozen, plugin: python, config: {function: "excerpt_tools:load_broken"}}
  - {id: ours, plugin: python, config: {function: "excerpt_tools:no_such_function"}}
"""


def _excerpt(text: str, head: str) -> list[str]:
    """The `| ` lines right under the line holding `head`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if head in line)
    out = []
    for line in lines[start + 1:]:
        line = re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", "", line).strip()  # the console's time stamp
        if not line.startswith("|"):
            break
        out.append(line[1:].strip())
    return out


def test_excerpts_start_at_a_frame_skip_frozen_frames_and_are_left_out_with_no_user_frame(tmp_path):
    (tmp_path / "excerpt_tools.py").write_text(EXCERPT_TOOLS)
    (tmp_path / "broken_mod.py").write_text("x = 1\nraise RuntimeError('broken at import')\n")
    (tmp_path / "flow.yaml").write_text(textwrap.dedent(EXCERPT_FLOW))
    proc = run_cli("run", "flow.yaml", "--keep-going", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    run_dir = latest_run_dir(tmp_path / "logs")
    summary = (run_dir / "summary.txt").read_text()
    shown = {t: run_cli("show", str(run_dir), t, cwd=tmp_path).stdout for t in ("deep", "frozen", "ours")}
    for where, text, head in [("console", proc.stdout, "FAILED    {}:"), ("summary", summary, "why:"),
                              ("show", None, "Error:")]:
        for task_id in ("deep", "frozen", "ours"):
            source = shown[task_id] if text is None else text
            key = head.format(task_id) if "{}" in head else head
            if where == "summary":  # why: lines follow each task's line
                source = source.split(f" {task_id} ", 1)[1]
            excerpt = _excerpt(source, key)
            if task_id == "deep":
                # never a frame's source line without its File line
                assert excerpt and excerpt[0].startswith('File "'), (where, excerpt)
                assert 'raise ValueError("deep down")' in excerpt, (where, excerpt)
            elif task_id == "frozen":
                assert not any("<frozen" in line for line in excerpt), (where, excerpt)
                assert any("broken_mod.py" in line for line in excerpt), (where, excerpt)
            else:
                # opflow's own error: no frame of the user's, so no pseudo-traceback repeating the headline
                assert excerpt == [], (where, excerpt)
