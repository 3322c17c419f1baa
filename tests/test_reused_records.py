"""Reused tasks keep their result rendering and original duration; summary and
console mark them."""
from __future__ import annotations

import json
import textwrap

from helpers import latest_run_dir, records, run_cli


def test_a_resumed_run_keeps_the_reused_tasks_result_and_duration(tmp_path):
    (tmp_path / "flow.yaml").write_text(textwrap.dedent("""
        name: again
        tasks:
          - id: make
            plugin: shell
            config: {command: "sleep 0.3; echo made"}
          - id: use
            plugin: shell
            depends_on: [make]
            config: {command: "test -e fixed"}
    """))
    assert run_cli("run", "flow.yaml", cwd=tmp_path).returncode == 1
    first = latest_run_dir(tmp_path / "logs")
    before = records(first)["make"]
    (tmp_path / "fixed").write_text("")
    proc = run_cli("resume", str(first), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    second = latest_run_dir(tmp_path / "logs")
    assert second != first
    after = records(second)["make"]
    assert after["reused"] is True and after["reused_from"] == str(first)
    assert after["result"] == before["result"] == {"returncode": 0, "stdout": "made\n", "stderr": ""}
    assert after["duration_s"] == before["duration_s"] >= 0.3
    assert after["started_at"] == before["started_at"]
    line = next(l for l in proc.stdout.splitlines() if " make" in l)
    assert "ok" in line and "(reused)" in line and f"{before['duration_s']:.2f}s" in line
    summary_line = next(l for l in (second / "summary.txt").read_text().splitlines() if " make " in l)
    assert "(reused)" in summary_line and f"{before['duration_s']:.2f}s" in summary_line
    assert records(second)["use"]["reused"] is False
    assert json.loads((second / "run.json").read_text())["tasks"] == {"make": "succeeded", "use": "succeeded"}
