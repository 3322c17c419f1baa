"""coordinator.py's per-task bookkeeping stays small: a 100,000-task run keeps one of
each of these per task (benchmarks/scale.py measures the whole)."""
from __future__ import annotations

from opflow import api
from opflow.coordinator import Coordinator, RunOptions


def test_leaf_tasks_and_empty_upstreams_cost_no_object_each(write_workflow):
    workflow, plugins = api.load(write_workflow("""
        name: small
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}}
          - {id: b, plugin: shell, config: {command: "true"}}
          - {id: c, plugin: shell, config: {command: "true"}, depends_on: [a, b]}
    """))
    coordinator = Coordinator(workflow, plugins, RunOptions())
    assert coordinator._children["a"] == ["c"] and coordinator._children["c"] == ()
    assert "c" not in coordinator._children  # read, not stored
    assert coordinator._upstream("a") is coordinator._upstream("b")  # one empty set for all
    assert coordinator._upstream("c") == {"a", "b"}
    # a's and b's sets served their only reader: dropped (a chain's would grow quadratic)
    assert "a" not in coordinator._upstream_cache and "b" not in coordinator._upstream_cache
