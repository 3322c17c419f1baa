"""What a task may know about itself (contract v3; issue 25 item 8), through the real CLI on each backend:
a shell task's OPFLOW_TASK_ID, OPFLOW_ATTEMPT, OPFLOW_RUN_DIR; a Python task's context.task_id,
context.attempt, context.run_dir, which add no key to the context mapping."""
from __future__ import annotations

import json

import pytest

from helpers import latest_run_dir, records, run_cli, write

FLOW = """
    name: identity
    tasks:
      - id: sh
        plugin: shell
        retries: 1
        config:
          command: >-
            printf '%s|%s|%s\\n' "$OPFLOW_TASK_ID" "$OPFLOW_ATTEMPT" "$OPFLOW_RUN_DIR" >> "$OPFLOW_RUN_DIR/sh.side";
            test "$OPFLOW_ATTEMPT" -ge 2
      - id: py
        plugin: python
        retries: 1
        depends_on: [sh]
        config: {function: "whoami:whoami"}
"""

MODULE = '''
import json, os

def whoami(context):
    seen = {"task_id": context.task_id, "attempt": context.attempt, "run_dir": context.run_dir,
            "keys": sorted(context)}
    with open(os.path.join(context.run_dir, "py.side"), "a") as side:
        side.write(json.dumps(seen) + "\\n")
    if context.attempt < 2:
        raise RuntimeError("first attempt fails on purpose")
    return seen
'''


@pytest.mark.parametrize("executor", ["process", "thread", "inline", "dask"])
def test_a_task_knows_its_id_attempt_and_run_directory(tmp_path, executor):
    if executor == "dask":
        pytest.importorskip("distributed")
    flow = write(tmp_path, "flow.yaml", FLOW)
    write(tmp_path, "whoami.py", MODULE)
    result = run_cli("run", str(flow), "--executor", executor, "-w", "2", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_dir = latest_run_dir(tmp_path / "logs").resolve()
    assert (run_dir / "sh.side").read_text().splitlines() == [f"sh|1|{run_dir}", f"sh|2|{run_dir}"]
    seen = [json.loads(line) for line in (run_dir / "py.side").read_text().splitlines()]
    assert seen == [{"task_id": "py", "attempt": n, "run_dir": str(run_dir), "keys": ["params", "sh"]}
                    for n in (1, 2)]
    assert records(run_dir)["py"]["result"]["attempt"] == 2
