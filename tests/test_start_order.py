"""Ready tasks start in critical-path order: the longest remaining path first, by the
latest run's durations (else by task count); `priority:` overrides (workflow/plan.py
`start_order`, dispatch/ready.py)."""
from __future__ import annotations

from helpers import flow_file, latest_run_dir, records, run_cli


def _start_order(tmp_path) -> list[str]:
    recs = records(latest_run_dir(tmp_path / "logs"))
    return sorted(recs, key=lambda t: recs[t]["started_at"])


def test_without_history_the_longest_chain_by_task_count_starts_first(tmp_path):
    """File order is the worst: three lone tasks first, the head of a chain of three last."""
    flow_file(tmp_path, """
        - {id: lone1, plugin: shell, config: {command: "true"}}
        - {id: lone2, plugin: shell, config: {command: "true"}}
        - {id: head, plugin: shell, config: {command: "true"}}
        - {id: mid, plugin: shell, config: {command: "true"}, depends_on: [head]}
        - {id: tail, plugin: shell, config: {command: "true"}, depends_on: [mid]}
    """)
    result = run_cli("run", "flow.yaml", "--workers", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _start_order(tmp_path)[0] == "head"


def test_the_latest_runs_durations_order_the_next_run(tmp_path):
    """By count, the chain a1 -> a2 is longer than `long`; by the first run's durations `long` is."""
    flow_file(tmp_path, """
        - {id: a1, plugin: shell, config: {command: "true"}}
        - {id: a2, plugin: shell, config: {command: "true"}, depends_on: [a1]}
        - {id: long, plugin: shell, config: {command: "sleep 0.5"}}
    """)
    assert run_cli("run", "flow.yaml", "--workers", "1", cwd=tmp_path).returncode == 0
    assert _start_order(tmp_path) == ["a1", "a2", "long"]  # no history: by task count
    assert run_cli("run", "flow.yaml", "--workers", "1", cwd=tmp_path).returncode == 0
    assert _start_order(tmp_path) == ["long", "a1", "a2"]  # the first run's durations


def test_skewed_workflow_at_2_workers_starts_the_long_chain_first(tmp_path):
    """At 2 workers the long chain's head and the heaviest lone task start first, not the
    lone tasks the file lists first."""
    flow_file(tmp_path, """
        - {id: s1, plugin: shell, config: {command: "sleep 0.05"}}
        - {id: s2, plugin: shell, config: {command: "sleep 0.05"}}
        - {id: s3, plugin: shell, config: {command: "sleep 0.05"}}
        - {id: c1, plugin: shell, config: {command: "sleep 0.1"}}
        - {id: c2, plugin: shell, config: {command: "sleep 0.1"}, depends_on: [c1]}
        - {id: c3, plugin: shell, config: {command: "sleep 0.1"}, depends_on: [c2]}
    """)
    assert run_cli("run", "flow.yaml", "--workers", "2", cwd=tmp_path).returncode == 0
    recs = records(latest_run_dir(tmp_path / "logs"))
    assert recs["c1"]["started_at"] <= min(recs[s]["started_at"] for s in ("s1", "s2", "s3"))


def test_priority_overrides_the_critical_path(tmp_path):
    flow_file(tmp_path, """
        - {id: head, plugin: shell, config: {command: "true"}}
        - {id: tail, plugin: shell, config: {command: "true"}, depends_on: [head]}
        - {id: urgent, plugin: shell, config: {command: "true"}, priority: 10}
        - {id: later, plugin: shell, config: {command: "true"}, priority: -1}
        - {id: plain, plugin: shell, config: {command: "true"}}
    """)
    assert run_cli("run", "flow.yaml", "--workers", "1", cwd=tmp_path).returncode == 0
    order = _start_order(tmp_path)
    assert order[0] == "urgent" and order[1] == "head" and order[-1] == "later", order
