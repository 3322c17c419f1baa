"""The task graph: layers, upstream closure, cycles as paths, critical path.

Layers (networkx's `topological_generations`) are for `opflow plan`, validation,
run.json and display; dispatch itself is dependency-driven (see coordinator.py).
networkx is imported, and the graph built (about 300 bytes a task), only when a
command asks the graph something: `validate` and a run ask for the layers.
"""
from __future__ import annotations

__all__ = ["Plan", "build_plan", "plan_of", "find_cycles", "remaining_paths", "start_order"]

from typing import TYPE_CHECKING, Iterable, Mapping, Protocol, Sequence

if TYPE_CHECKING:
    import networkx as nx


class _Task(Protocol):
    id: str
    depends_on: tuple


class _Graph(Protocol):
    """What a plan reads of a workflow (spec.py's `Workflow`; spec.py imports this module)."""

    tasks: Sequence[_Task]
    groups: Mapping[str, tuple]  # a foreach task's id -> its instances' ids


def _graph(depends_on: Mapping[str, Iterable[str]]) -> nx.DiGraph:
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(depends_on)
    for task_id, deps in depends_on.items():
        for dep in deps:
            graph.add_edge(dep, task_id)
    return graph


def find_cycles(depends_on: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One cycle (task ids in dependency order) per knot in the graph of
    `{task_id: its depends_on}`, in the mapping's order."""
    import networkx as nx

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


class Plan:
    def __init__(self, depends_on: Mapping[str, Iterable[str]], groups: Mapping[str, tuple] | None = None):
        self._depends_on = depends_on
        self._groups = groups or {}  # a foreach task's id -> its instances' ids
        self._graph: nx.DiGraph | None = None
        self._layers: list[list[str]] | None = None

    @property
    def graph(self) -> nx.DiGraph:
        """Edges point the way results flow: upstream -> downstream."""
        if self._graph is None:
            self._graph = _graph(self._depends_on)
        return self._graph

    @property
    def layers(self) -> list[list[str]]:
        """networkx's topological_generations, each sorted (worked out once).

        Worked out on the graph with each foreach task as one node: its instances share
        its dependencies, so they share its generation, and a foreach task of N reading
        another of N is one edge there, not N² (3,000 x 3,000 took 1.9 GB as instances).
        """
        if self._layers is None:
            import networkx as nx

            graph = _graph(self._collapsed()) if self._groups else self.graph
            layers = [sorted(t for node in layer for t in self._groups.get(node, (node,)))
                      for layer in nx.topological_generations(graph)]
            self._layers = [layer for layer in layers if layer]  # an empty foreach has no instance
        return self._layers

    def _collapsed(self) -> dict[str, set[str]]:
        """`{node: its depends_on}` with every foreach task's instances as the task itself."""
        node_of = {instance: group for group, instances in self._groups.items() for instance in instances}
        collapsed: dict[str, set[str]] = {}
        for task_id, deps in self._depends_on.items():
            node = node_of.get(task_id, task_id)
            if node not in collapsed:  # the first instance speaks for all: they share depends_on
                collapsed[node] = {node_of.get(d, d) for d in deps}
        return collapsed

    def upstream(self, task_id: str) -> set[str]:
        """Every task that `task_id` transitively depends on."""
        import networkx as nx

        return nx.ancestors(self.graph, task_id)

    def downstream(self, task_id: str) -> set[str]:
        import networkx as nx

        return nx.descendants(self.graph, task_id)

    def critical_path(self, durations: Mapping[str, float]) -> tuple[list[str], float]:
        """The longest chain by known durations (unknown ones count as 0)."""
        if not durations:
            return [], 0.0
        import networkx as nx

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


def build_plan(workflow: _Graph) -> Plan:
    return Plan({t.id: t.depends_on for t in workflow.tasks}, workflow.groups)


def plan_of(depends_on: Mapping[str, Iterable[str]]) -> Plan:
    """The plan of a graph given as `{task_id: its depends_on}`."""
    return Plan({task_id: tuple(deps) for task_id, deps in depends_on.items()})


def remaining_paths(tasks: Sequence, layers: Sequence[Sequence[str]], durations: Mapping[str, float]) -> dict[str, float]:
    """task_id -> the longest path from its start to the end of the run: its own weight and
    its heaviest chain of dependents. Weights: `durations` (the latest run's `task_weights`),
    a task it lacks weighing their median; with no durations at all, 1 each (by task count)."""
    known = sorted(v for v in durations.values() if v is not None)
    fallback = known[len(known) // 2] if known else 1.0
    children: dict[str, list[str]] = {}
    for t in tasks:
        for dep in t.depends_on:
            children.setdefault(dep, []).append(t.id)
    remaining: dict[str, float] = {}
    for layer in reversed(layers):
        for task_id in layer:
            own = durations.get(task_id, fallback) if known else 1.0
            remaining[task_id] = own + max((remaining[c] for c in children.get(task_id, ())), default=0.0)
    return remaining


def start_order(tasks: Sequence, layers: Sequence[Sequence[str]], durations: Mapping[str, float]) -> dict[str, tuple]:
    """task_id -> its key in the order ready tasks start (smallest first): a higher `priority`
    first, then the longer remaining path (the critical path first), then file order."""
    remaining = remaining_paths(tasks, layers, durations)
    return {t.id: (-(getattr(t, "priority", None) or 0), -remaining.get(t.id, 0.0), i) for i, t in enumerate(tasks)}
