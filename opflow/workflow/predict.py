"""The wall time of each pool size, by simulating the dispatch on recorded durations
(`opflow plan --predict`, `opflow bench`).

Pure: a graph (`{task_id: its depends_on}`), seconds per task, a pool size in; seconds
out. The simulation is event-driven, as the coordinator is: whenever slots are free,
start the ready tasks that fit, longest remaining path first (the task's own seconds
plus the longest chain of seconds below it; ties in file order), and advance to the
next finish. A task without seconds (new, reused, or never started in the run measured)
takes none.

What a task takes, and what the pool gives, go through one hook: `demand(task_id)`
returns a `Demand` (pool slots, named limits held), and `limits` maps a limit's name to
how many may hold it at once. By default every task takes one slot and holds no limit.

The CPUs: a pool larger than the machine's CPUs does not make CPU-bound tasks faster.
Given `cpus` (the CPUs the run may use) and each task's CPU share in the measured run
(`cpu_share`: CPU seconds / wall seconds), the running tasks share the CPUs: while their
shares add up to D > cpus, a task of share f runs its CPU part D / cpus times slower, so
it progresses at 1 / ((1 - f) + f * D / cpus) (a sleeping task, f = 0, is not slowed).
Without them every task runs as long as it did.
"""
from __future__ import annotations

__all__ = ["Demand", "ONE_SLOT", "Prediction", "remaining_paths", "simulate", "predict", "demand_of"]

import heapq
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence


@dataclass(frozen=True)
class Demand:
    slots: int = 1  # pool slots the task takes while it runs (at most the pool's size)
    limits: tuple[str, ...] = ()  # named limits it holds while it runs


ONE_SLOT = Demand()


def _one_slot(task_id: str) -> Demand:
    return ONE_SLOT


@dataclass(frozen=True)
class Prediction:
    workers: int
    wall_s: float  # the simulated span of the tasks, plus `overhead_s`
    critical_path_s: float  # no pool is faster than the longest chain (plus overhead_s)
    work_bound_s: float  # nor than the work spread evenly over every slot (plus overhead_s)


def remaining_paths(depends_on: Mapping[str, Sequence[str]], seconds: Mapping[str, float]) -> dict[str, float]:
    """task_id -> its seconds plus the longest chain of seconds that waits on it."""
    children: dict[str, list[str]] = {t: [] for t in depends_on}
    for task_id, deps in depends_on.items():
        for dep in deps:
            children.setdefault(dep, []).append(task_id)
    remaining: dict[str, float] = {}
    for task_id in reversed(_topological(depends_on, children)):
        below = max((remaining[c] for c in children[task_id]), default=0.0)
        remaining[task_id] = seconds.get(task_id, 0.0) + below
    return remaining


def _topological(depends_on: Mapping[str, Sequence[str]], children: Mapping[str, list[str]]) -> list[str]:
    waiting = {t: len(deps) for t, deps in depends_on.items()}
    order = [t for t, n in waiting.items() if n == 0]
    for task_id in order:  # grows as it goes: Kahn's algorithm
        for child in children[task_id]:
            waiting[child] -= 1
            if waiting[child] == 0:
                order.append(child)
    if len(order) != len(depends_on):
        raise ValueError("the graph has a cycle")  # validate refuses these before a plan is made
    return order


def simulate(depends_on: Mapping[str, Sequence[str]], seconds: Mapping[str, float], workers: int,
             demand: Callable[[str], Demand] = _one_slot, limits: Mapping[str, int] | None = None,
             cpus: float | None = None, cpu_share: Mapping[str, float] | None = None) -> float:
    """The span, start of the first task to end of the last, of a run at `workers` slots."""
    if workers < 1:
        raise ValueError(f"a pool of {workers} slots")
    limits = dict(limits or {})
    share = {t: min(1.0, max(0.0, f)) for t, f in (cpu_share or {}).items()} if cpus else {}
    remaining = remaining_paths(depends_on, seconds)
    position = {t: i for i, t in enumerate(depends_on)}
    waiting = {t: len(deps) for t, deps in depends_on.items()}
    children: dict[str, list[str]] = {t: [] for t in depends_on}
    for task_id, deps in depends_on.items():
        for dep in deps:
            children[dep].append(task_id)
    ready = [(-remaining[t], position[t], t) for t, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    running: dict[str, float] = {}  # task_id -> its seconds still to run at full speed
    free, held = workers, dict.fromkeys(limits, 0)
    now = 0.0
    while ready or running:
        skipped = []
        while ready and free > 0:
            entry = heapq.heappop(ready)
            task_id = entry[2]
            need = demand(task_id)
            slots = min(max(1, need.slots), workers)
            if slots > free or any(held[name] >= limits[name] for name in need.limits if name in limits):
                skipped.append(entry)  # it waits; a smaller ready task may fit the free slots
                continue
            free -= slots
            for name in need.limits:
                if name in held:
                    held[name] += 1
            running[task_id] = seconds.get(task_id, 0.0)
        for entry in skipped:
            heapq.heappush(ready, entry)
        if not running:
            break  # (only a demand that can never be met leaves ready tasks here)
        rate = _rates(running, share, cpus)
        # The next to finish at the current rates (ties: the one started first, as dicts keep order).
        task_id = min(running, key=lambda t: running[t] / rate[t])
        step = running[task_id] / rate[task_id]
        now += step
        for other in running:
            running[other] -= step * rate[other]
        del running[task_id]
        need = demand(task_id)
        free += min(max(1, need.slots), workers)
        for name in need.limits:
            if name in held:
                held[name] -= 1
        for child in children[task_id]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (-remaining[child], position[child], child))
    return now


def _rates(running: Mapping[str, float], share: Mapping[str, float], cpus: float | None) -> dict[str, float]:
    """How fast each running task progresses (1: as in the measured run), the CPUs shared."""
    demand = sum(share.get(t, 0.0) for t in running)
    if not cpus or demand <= cpus:
        return dict.fromkeys(running, 1.0)
    stretch = demand / cpus
    return {t: 1.0 / ((1.0 - share.get(t, 0.0)) + share.get(t, 0.0) * stretch) for t in running}


def predict(depends_on: Mapping[str, Sequence[str]], seconds: Mapping[str, float], sizes: Iterable[int],
            overhead_s: float = 0.0, demand: Callable[[str], Demand] = _one_slot,
            limits: Mapping[str, int] | None = None, cpus: float | None = None,
            cpu_share: Mapping[str, float] | None = None) -> list[Prediction]:
    """One `Prediction` per pool size: the simulated wall time and the two bounds, each
    plus `overhead_s` (what the measured run spent outside its tasks: starting, recording).
    `cpus` and `cpu_share`: the CPUs shared (module docstring); the work bound then counts
    a pool no wider than the CPUs for the tasks' CPU seconds."""
    critical = max(remaining_paths(depends_on, seconds).values(), default=0.0)
    work = sum(seconds.get(t, 0.0) * max(1, demand(t).slots) for t in depends_on)
    cpu_work = sum(seconds.get(t, 0.0) * (cpu_share or {}).get(t, 0.0) for t in depends_on) if cpus else 0.0
    return [Prediction(workers=n, wall_s=overhead_s + simulate(depends_on, seconds, n, demand, limits, cpus, cpu_share),
                       critical_path_s=overhead_s + critical,
                       work_bound_s=overhead_s + max(work / n, cpu_work / cpus if cpus else 0.0))
            for n in sizes]


def demand_of(workflow) -> tuple[Callable[[str], Demand], dict[str, int]]:
    """What each task of `workflow` takes from the pool, and the named limits' sizes: the
    one place that reads task keys for the simulation: `cpus:` (slots) and `limit:`, with
    the workflow's `limits:` (workflow/resources.py; a `scope: machine` limit counts as if
    this run were alone on the machine). `memory:` is not simulated."""
    limits = {name: limit.max for name, limit in getattr(workflow, "limits", {}).items()}
    demands = {t.id: Demand(t.cpus, tuple(t.limit)) for t in workflow.tasks if t.cpus != 1 or t.limit}
    if not demands:
        return _one_slot, limits
    return (lambda task_id: demands.get(task_id, ONE_SLOT)), limits
