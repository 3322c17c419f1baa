"""opflow.run()/resume() give every task's record, the duration and the run dir."""
from __future__ import annotations

import json
import pydoc
import textwrap

import opflow

FLOW = """
name: api
tasks:
  - id: a
    plugin: shell
    config: {command: "echo hi"}
  - id: b
    plugin: shell
    depends_on: [a]
    config: {command: "test -e ok-marker"}
"""


def test_run_returns_records_like_the_task_files(tmp_path):
    flow = tmp_path / "flow.yaml"
    flow.write_text(textwrap.dedent(FLOW))
    result = opflow.run(flow, workers=2, log_dir=tmp_path / "logs", keep_going=True)
    assert result.status == "failed" and result.exit_code == 1
    assert set(result.records) == {"a", "b"}
    for task_id, record in result.records.items():
        on_disk = json.loads((result.run_dir / "tasks" / f"{task_id}.json").read_text())
        assert record == on_disk
    assert result.records["a"]["result"]["stdout"] == "hi\n"
    assert result.tasks == {"a": "succeeded", "b": "failed"}
    run_doc = json.loads((result.run_dir / "run.json").read_text())
    assert result.duration_s == run_doc["duration_s"] and result.duration_s > 0

    (tmp_path / "ok-marker").write_text("")
    resumed = opflow.resume(result.run_dir)
    assert resumed.status == "succeeded"
    assert resumed.records["a"]["reused"] is True and resumed.records["b"]["reused"] is False
    assert resumed.run_dir != result.run_dir


def test_help_of_run_shows_the_options():
    text = pydoc.render_doc(opflow.run, renderer=pydoc.plaintext)
    for option in ("workers", "executor", "log_dir", "params", "keep_going", "resume", "records"):
        assert option in text
    assert "resume" in opflow.__all__ and callable(opflow.resume)
