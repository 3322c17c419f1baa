"""An honest live view: queued is not running; a status line that fits the
terminal; NO_COLOR; dated plain lines when not a terminal."""
from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time


from helpers import flow_file, latest_run_dir, run_cli

ANSI = re.compile(r"\033\[[0-9;]*[A-Za-z]")


def _sleepers(tmp_path, n=8, seconds=0.6):
    """tmp_path/flow.yaml: `n` tasks with long names, each sleeping `seconds`, none waiting for another."""
    task = '- {{id: a_rather_long_task_name_{}, plugin: shell, config: {{command: "sleep {}"}}}}'
    flow_file(tmp_path, "\n".join(task.format(i, seconds) for i in range(n)), name="many")


def _run_in_pty(tmp_path, *args, columns=60, env=None) -> tuple[int, str]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    full_env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    full_env.update(TERM="xterm", **(env or {}))
    proc = subprocess.Popen([sys.executable, "-m", "opflow", *args], cwd=tmp_path, stdin=slave, stdout=slave,
                            stderr=slave, env=full_env, close_fds=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child side closed
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", errors="replace")


def test_the_journal_says_queued_at_submit_and_started_in_a_worker(tmp_path):
    _sleepers(tmp_path)
    proc = run_cli("run", "flow.yaml", "--workers", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in (latest_run_dir(tmp_path / "logs") / "events.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    first_finish = kinds.index("task_finished")
    before = events[:first_finish]
    # all eight submitted at once, but only the two workers' tasks had started
    assert sum(e["event"] == "task_queued" for e in before) == 8
    started_pids = {e["pid"] for e in before if e["event"] == "task_started"}
    assert 1 <= len(started_pids) <= 2
    assert sum(e["event"] == "task_started" for e in events) == 8
    for e in events:
        if e["event"] == "task_started":  # each start follows its task's queued event
            assert kinds[: events.index(e)].count("task_queued") >= 1


def test_a_terminal_gets_one_status_line_that_fits_and_counts_queued_apart(tmp_path):
    _sleepers(tmp_path)
    code, out = _run_in_pty(tmp_path, "run", "flow.yaml", "--workers", "2", columns=60)
    assert code == 0, out
    statuses = [ANSI.sub("", s) for s in re.split(r"\r\033\[K|\r?\n", out)]
    status_lines = [s for s in statuses if re.match(r"\[\d+:\d\d\] \d+/8 done", s)]
    assert status_lines, out
    for line in status_lines:
        assert len(line) < 60, line
        running = int(re.search(r"(\d+) running", line).group(1))
        assert running <= 2, line  # never more running than workers
    assert any(re.search(r"2 running · [1-6] queued · a_rather_long", s) for s in status_lines), status_lines
    assert "\033[32m" in out  # colour on a terminal
    assert "start " not in out  # no per-start lines on a terminal: the status line says it


def test_no_color_turns_colour_off(tmp_path):
    _sleepers(tmp_path, n=2, seconds=0.1)
    code, out = _run_in_pty(tmp_path, "run", "flow.yaml", env={"NO_COLOR": "1"})
    assert code == 0, out
    assert "ok " in out and not re.search(r"\033\[\d+m", out)


def test_plain_dated_lines_when_not_a_terminal(tmp_path):
    _sleepers(tmp_path, n=2, seconds=0.1)
    proc = run_cli("run", "flow.yaml", cwd=tmp_path)
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()[:-1]  # the last is "record: ..."
    assert lines and all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (run|start|ok) ", line) for line in lines), lines
    assert "\033" not in proc.stdout
