"""The task graph: networkx DiGraph, cycles as paths, layers, upstream closure.

Layers (`topological_generations`) are for `opflow plan`, validation and display;
dispatch itself is dependency-driven (see coordinator.py).
"""
from __future__ import annotations

__all__ = ["Plan", "build_plan", "plan_of", "find_cycles"]

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping

import networkx as nx

if TYPE_CHECKING:
    from .spec import Workflow


def _graph(depends_on: Mapping[str, Iterable[str]]) -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(depends_on)
    for task_id, deps in depends_on.items():
        for dep in deps:
            graph.add_edge(dep, task_id)
    return graph


def find_cycles(depends_on: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One cycle (task ids in dependency order) per knot in the graph of
    `{task_id: its depends_on}`, in the mapping's order."""
    graph = _graph(depends_on)
    order = {task_id: i for i, task_id in enumerate(depends_on)}
    cycles = []
    for component in nx.strongly_connected_components(graph):
        if len(component) == 1:
            (node,) = component
            if not graph.has_edge(node, node):
                continue
        start = min(component, key=order.__getitem__)
        edges = nx.find_cycle(graph.subgraph(component), source=start)
        cycles.append([u for u, _ in edges])
    cycles.sort(key=lambda c: order[c[0]])
    return cycles


@dataclass
class Plan:
    graph: nx.DiGraph

    @property
    def layers(self) -> list[list[str]]:
        return [sorted(layer) for layer in nx.topological_generations(self.graph)]

    def upstream(self, task_id: str) -> set[str]:
        """Every task that `task_id` transitively depends on."""
        return nx.ancestors(self.graph, task_id)

    def downstream(self, task_id: str) -> set[str]:
        return nx.descendants(self.graph, task_id)

    def critical_path(self, durations: Mapping[str, float]) -> tuple[list[str], float]:
        """The longest chain by known durations (unknown ones count as 0)."""
        if not durations:
            return [], 0.0
        # Weigh each edge by the duration of the task it leads to; a virtual start
        # node in front of the roots lets the first task's duration count too.
        start = object()
        weighted = self.graph.copy()
        for u, v in weighted.edges:
            weighted.edges[u, v]["w"] = durations.get(v, 0.0)
        for root in [n for n, degree in self.graph.in_degree() if degree == 0]:
            weighted.add_edge(start, root, w=durations.get(root, 0.0))
        path = [t for t in nx.dag_longest_path(weighted, weight="w", default_weight=0) if t is not start]
        return path, sum(durations.get(t, 0.0) for t in path)


def build_plan(workflow: Workflow) -> Plan:
    return plan_of({t.id: t.depends_on for t in workflow.tasks})


def plan_of(depends_on: Mapping[str, Iterable[str]]) -> Plan:
    """The plan of a graph given as `{task_id: its depends_on}`."""
    return Plan(_graph(depends_on))
