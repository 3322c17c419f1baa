"""plan.py: the networkx graph, layers, upstream closure, cycles as paths, critical path."""
from __future__ import annotations

import networkx as nx
import pytest

from opflow.workflow.plan import build_plan, find_cycles, plan_of
from opflow.workflow.spec import TaskSpec, load_workflow


def specs(edges: dict[str, list[str]]) -> list[TaskSpec]:
    """task_id -> its depends_on, in file order."""
    return [TaskSpec(id=task_id, plugin="shell", depends_on=tuple(deps)) for task_id, deps in edges.items()]


DIAMOND = {"load": [], "left": ["load"], "right": ["load"], "join": ["left", "right"], "solo": []}


def test_build_plan_from_a_real_file(write_workflow):
    path = write_workflow("""
        name: diamond
        tasks:
          - {id: load, plugin: shell}
          - {id: left, plugin: shell, depends_on: [load]}
          - {id: right, plugin: shell, depends_on: [load]}
          - {id: join, plugin: shell, depends_on: [left, right]}
          - {id: solo, plugin: shell}
    """)
    plan = build_plan(load_workflow(path, None))
    assert isinstance(plan.graph, nx.DiGraph)
    assert set(plan.graph.nodes) == {"load", "left", "right", "join", "solo"}
    # Edges point the way results flow: upstream -> downstream.
    assert set(plan.graph.edges) == {("load", "left"), ("load", "right"), ("left", "join"), ("right", "join")}
    assert plan.layers == [["load", "solo"], ["left", "right"], ["join"]]


def test_layers_are_networkx_topological_generations_sorted():
    plan = plan_of({"z": [], "b": ["z"], "a": ["z"], "c": ["a", "b"], "y": []})
    expected = [sorted(g) for g in nx.topological_generations(plan.graph)]
    assert plan.layers == expected == [["y", "z"], ["a", "b"], ["c"]]


def test_layer_of_a_task_is_one_past_its_deepest_upstream():
    # d depends on a (layer 1) and c (layer 3): d must wait for layer 4.
    plan = plan_of({"a": [], "b": ["a"], "c": ["b"], "d": ["a", "c"]})
    assert plan.layers == [["a"], ["b"], ["c"], ["d"]]


def test_independent_tasks_are_one_layer():
    plan = plan_of({"t3": [], "t1": [], "t2": []})
    assert plan.layers == [["t1", "t2", "t3"]]


def test_upstream_is_the_transitive_closure_only():
    plan = plan_of(DIAMOND)
    assert plan.upstream("join") == {"load", "left", "right"}
    assert plan.upstream("left") == {"load"}
    assert plan.upstream("load") == set()
    assert plan.upstream("solo") == set()
    assert plan.downstream("load") == {"left", "right", "join"}
    assert plan.downstream("join") == set()


def test_upstream_of_a_long_chain_excludes_siblings_and_descendants():
    plan = plan_of({"a": [], "b": ["a"], "c": ["b"], "d": ["c"], "side": ["a"], "after": ["d"]})
    assert plan.upstream("d") == {"a", "b", "c"}
    assert "side" not in plan.upstream("after")


def test_find_cycles_none_on_a_dag():
    assert find_cycles(DIAMOND) == []


def test_find_cycles_self_loop():
    assert find_cycles({"a": ["a"], "b": []}) == [["a"]]


def test_find_cycles_two_task_cycle_starts_at_the_first_task_in_the_file():
    assert find_cycles({"x": [], "b": ["a"], "a": ["b"]}) == [["b", "a"]]


def test_find_cycles_path_follows_the_edges():
    cycles = find_cycles({"p": ["r"], "q": ["p"], "r": ["q"], "tail": ["p"]})
    assert len(cycles) == 1
    (cycle,) = cycles
    assert cycle[0] == "p" and sorted(cycle) == ["p", "q", "r"]
    # Every step of the reported path is a real edge, and it closes back on its start.
    graph = plan_of({"p": ["r"], "q": ["p"], "r": ["q"], "tail": ["p"]}).graph
    for u, v in zip(cycle, cycle[1:] + cycle[:1]):
        assert graph.has_edge(u, v), (u, v)


def test_find_cycles_one_per_knot_in_file_order():
    cycles = find_cycles({"ok": [], "m": ["n"], "n": ["m"], "a": ["b"], "b": ["a"]})
    assert [c[0] for c in cycles] == ["m", "a"]
    assert [sorted(c) for c in cycles] == [["m", "n"], ["a", "b"]]


def test_critical_path_is_the_longest_chain_by_duration():
    plan = plan_of(DIAMOND)
    durations = {"load": 1.0, "left": 5.0, "right": 2.0, "join": 1.0, "solo": 3.0}
    path, total = plan.critical_path(durations)
    assert path == ["load", "left", "join"]
    assert total == pytest.approx(7.0)


def test_critical_path_counts_the_first_task_and_a_lone_heavy_task():
    # A single task longer than any chain is the critical path by itself.
    plan = plan_of(DIAMOND)
    path, total = plan.critical_path({"load": 1.0, "left": 1.0, "right": 1.0, "join": 1.0, "solo": 10.0})
    assert path == ["solo"] and total == pytest.approx(10.0)
    # The root's own duration counts: the heavy root decides between two equal tails.
    plan = plan_of({"a": [], "b": [], "a2": ["a"], "b2": ["b"]})
    path, total = plan.critical_path({"a": 4.0, "b": 1.0, "a2": 1.0, "b2": 2.0})
    assert path == ["a", "a2"] and total == pytest.approx(5.0)


def test_critical_path_unknown_durations_count_as_zero():
    plan = plan_of({"a": [], "b": ["a"], "c": ["b"]})
    path, total = plan.critical_path({"a": 2.0, "c": 3.0})
    assert path == ["a", "b", "c"] and total == pytest.approx(5.0)


def test_critical_path_without_durations_is_empty():
    assert plan_of(DIAMOND).critical_path({}) == ([], 0.0)


def test_critical_path_does_not_change_the_graph():
    plan = plan_of(DIAMOND)
    before = (set(plan.graph.nodes), set(plan.graph.edges))
    plan.critical_path({"load": 1.0, "left": 2.0})
    assert (set(plan.graph.nodes), set(plan.graph.edges)) == before
    assert all("w" not in data for *_, data in plan.graph.edges(data=True))


def test_layers_match_networkx_on_a_larger_graph():
    import random

    rng = random.Random(8)
    depends_on = {f"t{i}": [f"t{rng.randrange(i)}" for _ in range(rng.randrange(4))] if i else [] for i in range(300)}
    depends_on["t7"] = ["t3", "t3", "outside"]  # a repeated edge, and a task known only as a dependency
    plan = plan_of(depends_on)
    assert plan.layers == [sorted(g) for g in nx.topological_generations(plan.graph)]


def test_layers_of_a_cycle_raise_as_networkx_does():
    with pytest.raises(nx.NetworkXUnfeasible):
        plan_of({"a": ["b"], "b": ["a"], "c": []}).layers



# -- the critical path weighs run time, not waits or backoff (issue 25) -------------------
def test_plan_and_report_weigh_the_critical_path_by_run_time(tmp_path, write_workflow, faults):
    # One worker. `flaky` runs for milliseconds, but its first start and its retry's end are
    # more than 2 s apart (a 2 s backoff, less jitter, and a wait behind the chain): weighed
    # by duration_s it would be the critical path; by the time it ran, slow_a -> slow_b is.
    import json
    import re

    from helpers import latest_run_dir, records, run_cli

    write_workflow(f"""
        name: weighed by run time
        tasks:
          - id: flaky
            plugin: python
            retries: 1
            retry_delay: 2.5
            config: {{function: "faults:flaky", args: ["{tmp_path / 'flaky.marker'}"]}}
          - {{id: slow_a, plugin: shell, config: {{command: "sleep 0.6"}}}}
          - {{id: slow_b, plugin: shell, depends_on: [slow_a], config: {{command: "sleep 0.6"}}}}
    """)
    proc = run_cli("run", "flow.yaml", "--workers", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = latest_run_dir(tmp_path / "logs")
    kept = records(run_dir)

    def ran(task_id):  # its attempts' time in a worker (attempt_log: on the unfixed code too)
        return sum(a["duration_s"] for a in kept[task_id]["attempt_log"])

    expected = ran("slow_a") + ran("slow_b")
    assert kept["flaky"]["duration_s"] > expected > 3 * ran("flaky")  # the trap is set

    plan = json.loads(run_cli("plan", "flow.yaml", "--json", cwd=tmp_path).stdout)["critical_path"]
    assert plan["tasks"] == ["slow_a", "slow_b"]
    assert plan["seconds"] == pytest.approx(expected, abs=1e-4)
    text = run_cli("plan", "flow.yaml", cwd=tmp_path).stdout
    assert f"slow_a -> slow_b ({expected:.2f}s)" in text

    assert run_cli("report", str(run_dir), "-o", str(tmp_path / "r.html"), cwd=tmp_path).returncode == 0
    match = re.search(r'Critical path \(([\d.]+)s of run time[^<]*<span class="mono">([^<]*)</span>',
                      (tmp_path / "r.html").read_text())
    assert match, "the report names no critical path by run time"
    assert match.group(2) == "slow_a → slow_b" and float(match.group(1)) == pytest.approx(expected, abs=0.01)
