"""The backend wing: results cross processes whatever module defined them (the layering: test_layout.py)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import REPO, latest_run_dir, records, run_cli, wait_for

OPFLOW = REPO / "opflow"

SHAPES = """
    import os
    import time
    from dataclasses import dataclass


    @dataclass
    class Point:
        x: int
        y: int


    def make():
        return {"point": Point(3, 4), "pid": os.getpid()}


    def read(context, name):
        time.sleep(0.3)  # long enough that both workers take readers
        point = context["make"]["point"]
        return {"pid": os.getpid(), "sum": point.x + point.y, "from": context[name]["pid"]}
"""

PLUGIN = """
    import os
    from dataclasses import dataclass

    from opflow import Plugin


    @dataclass
    class Box:
        size: int


    class BoxMaker(Plugin):
        name = "box_maker"

        def run(self, config, context):
            return {"box": Box(config["size"]), "pid": os.getpid()}


    class BoxReader(Plugin):
        name = "box_reader"

        def run(self, config, context):
            import time

            time.sleep(0.3)
            return {"pid": os.getpid(), "size": context["boxes"]["box"].size}
"""


@pytest.mark.parametrize("executor", ["process", "thread"])
def test_a_result_of_a_users_class_is_read_on_another_worker(tmp_path, executor):
    (tmp_path / "shapes.py").write_text(textwrap.dedent(SHAPES))
    (tmp_path / "workers").mkdir()
    (tmp_path / "workers" / "boxes.py").write_text(textwrap.dedent(PLUGIN))
    readers = "\n".join(
        f"  - {{id: r{i}, plugin: python, config: {{function: 'shapes:read', kwargs: {{name: make}}}}, depends_on: [make]}}\n"
        f"  - {{id: b{i}, plugin: box_reader, depends_on: [boxes]}}"
        for i in range(6))
    (tmp_path / "flow.yaml").write_text(
        "name: classes\ntasks:\n"
        "  - {id: make, plugin: python, config: {function: 'shapes:make'}}\n"
        "  - {id: boxes, plugin: box_maker, config: {size: 7}}\n" + readers + "\n")
    result = run_cli("run", "flow.yaml", "--workers", "2", "--executor", executor, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    recs = records(latest_run_dir(tmp_path / "logs"))
    assert {recs[f"r{i}"]["result"]["sum"] for i in range(6)} == {7}
    assert {recs[f"b{i}"]["result"]["size"] for i in range(6)} == {7}
    if executor == "process":
        producer = recs["make"]["result"]["pid"]
        assert any(recs[f"r{i}"]["result"]["pid"] != producer for i in range(6)), "no reader ran on the other worker"
        box_producer = recs["boxes"]["result"]["pid"]
        assert any(recs[f"b{i}"]["result"]["pid"] != box_producer for i in range(6))


# -- the context: small results ride with the work, large ones go by the store ---------
CHAIN_FNS = """
    def make(size, label):
        return {"label": label, "payload": "x" * size}


    def read_all(context):
        # the direct upstream task, and a distant ancestor, both small and large
        return {name: (context[name]["label"], len(context[name]["payload"]))
                for name in sorted(context) if name != "params"}


    def keys(context):
        return sorted(context)
"""


@pytest.mark.parametrize("executor", ["process", "thread", "inline"])
def test_every_upstream_result_is_readable_small_or_large_near_or_far(tmp_path, executor):
    (tmp_path / "fns.py").write_text(textwrap.dedent(CHAIN_FNS))
    big = 200_000  # past the 64 KiB inline limit: it goes by the Manager
    steps = [("s0", 10), ("b1", big), ("s2", 10), ("s3", 10), ("b4", big), ("s5", 10)]
    lines = ["name: chain", "tasks:"]
    previous = None
    for task_id, size in steps:
        deps = f", depends_on: [{previous}]" if previous else ""
        lines.append(f"  - {{id: {task_id}, plugin: python, config: {{function: 'fns:make', "
                     f"kwargs: {{size: {size}, label: {task_id}}}}}{deps}}}")
        previous = task_id
    lines.append("  - {id: reader, plugin: python, config: {function: 'fns:read_all'}, depends_on: [s5]}")
    lines.append("  - {id: lister, plugin: python, config: {function: 'fns:keys'}, depends_on: [s0]}")
    (tmp_path / "flow.yaml").write_text("\n".join(lines) + "\n")
    result = run_cli("run", "flow.yaml", "--workers", "2", "--executor", executor, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    recs = records(latest_run_dir(tmp_path / "logs"))
    assert recs["reader"]["result"] == {task_id: [task_id, size] for task_id, size in steps}
    assert recs["lister"]["result"] == ["params", "s0"]  # exactly its upstream tasks, and params


def test_a_killed_coordinator_gets_no_leaked_semaphore_warning(tmp_path):
    """The resource tracker cleans up after a SIGKILLed coordinator, silently."""
    (tmp_path / "flow.yaml").write_text(textwrap.dedent("""
        name: killed
        tasks:
          - {id: slow, plugin: shell, config: {command: "sleep 30"}}
          - {id: after, plugin: shell, config: {command: "true"}, depends_on: [slow]}
    """))
    proc = subprocess.Popen([sys.executable, "-m", "opflow", "run", "flow.yaml", "--workers", "2"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any((tmp_path / "logs").glob("*/events.jsonl"))
                 and "task_started" in next((tmp_path / "logs").glob("*/events.jsonl")).read_text(),
                 timeout=60, what="the task to start")
    finally:
        proc.kill()
    out, err = proc.communicate(timeout=60)  # EOF once the workers and helpers have gone too
    assert "leaked" not in err and "resource_tracker" not in err, err


def test_a_silent_task_has_no_log_and_no_scratch_file_is_left(tmp_path):
    """Logs are made only for tasks that write (the worker's spool is renamed at the first byte)."""
    (tmp_path / "talk.py").write_text("def say():\n    print('HELLO-FROM-TASK')\n    return 1\n")
    (tmp_path / "flow.yaml").write_text(textwrap.dedent("""
        name: quiet-and-loud
        tasks:
          - {id: silent, plugin: python, config: {function: "os:getpid"}}
          - {id: loud, plugin: python, config: {function: "talk:say"}, depends_on: [silent]}
          - {id: silent_again, plugin: python, config: {function: "os:getpid"}, depends_on: [loud]}
          - {id: sh, plugin: shell, config: {command: "echo FROM-SHELL"}, depends_on: [silent_again]}
    """))
    result = run_cli("run", "flow.yaml", "--workers", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = latest_run_dir(tmp_path / "logs")
    recs = records(run_dir)
    assert recs["silent"]["log"] is None and not (run_dir / "tasks" / "silent.log").exists()
    assert recs["silent_again"]["log"] is None and not (run_dir / "tasks" / "silent_again.log").exists()
    loud = (run_dir / "tasks" / "loud.log").read_text()
    assert recs["loud"]["log"] == "tasks/loud.log" and "=== attempt 1" in loud and "HELLO-FROM-TASK" in loud
    assert "FROM-SHELL" in (run_dir / "tasks" / "sh.log").read_text()
    assert [p.name for p in (run_dir / "tasks").iterdir() if p.name.startswith(".")] == []
