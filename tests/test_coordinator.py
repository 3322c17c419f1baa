"""coordinator.py's per-task bookkeeping stays small: a 100,000-task run keeps one of
each of these per task (benchmarks/scale.py measures the whole)."""
from __future__ import annotations

from opflow import api
from opflow.dispatch.coordinator import Coordinator, RunOptions


def test_leaf_tasks_and_empty_upstreams_cost_no_object_each(write_workflow):
    workflow, plugins = api.load(write_workflow("""
        name: small
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}}
          - {id: b, plugin: shell, config: {command: "true"}}
          - {id: c, plugin: shell, config: {command: "true"}, depends_on: [a, b]}
    """))
    ready = Coordinator(workflow, plugins, RunOptions())._ready  # the coordinator's ready set (ready.py)
    assert ready.children["a"] == ["c"] and ready.children["c"] == ()
    assert "c" not in ready.children  # read, not stored
    assert ready.upstream("a") is ready.upstream("b")  # one empty set for all
    assert ready.upstream("c") == {"a", "b"}
    # a's and b's sets served their only reader: dropped (a chain's would grow quadratic)
    assert "a" not in ready._upstream_sets and "b" not in ready._upstream_sets


def test_no_task_starts_while_a_reporter_is_far_behind(write_workflow, tmp_path):
    """A record writer left behind (a slow disk) holds dispatch back instead of letting
    its queue grow without bound; the run goes on once it catches up."""
    import time

    from opflow.dispatch.coordinator import RECORD_BACKLOG_MAX
    from opflow.events import Reporter

    class Lagging(Reporter):
        def __init__(self):
            self.behind_until = None
            self.first_start = None

        def handle(self, event):
            if event["event"] == "run_started":
                self.behind_until = time.monotonic() + 0.5
            elif event["event"] == "task_started" and self.first_start is None:
                self.first_start = time.monotonic()

        def backlog(self):
            behind = self.behind_until is not None and time.monotonic() < self.behind_until
            return RECORD_BACKLOG_MAX + 1 if behind else 0

    lagging = Lagging()
    result = api.run(write_workflow("""
        name: lagging
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}}
          - {id: b, plugin: shell, config: {command: "true"}, depends_on: [a]}
    """), workers=1, executor="thread", log_dir=tmp_path / "logs", reporters=[lagging])
    assert result.exit_code == 0
    assert lagging.first_start >= lagging.behind_until
