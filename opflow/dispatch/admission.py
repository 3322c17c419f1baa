"""Admission: which ready tasks may start now, given the pool's slots, the memory budget
and the named limits. The rules, in one place (docs/machine.md says them to users):

    budget      cpus: --cpus, else resources.cpus, else the machine (machine.py: affinity
                capped by the cgroup quota); the pool has that many slots unless --workers
                says otherwise. memory: --memory, else resources.memory, else the machine
                (the cgroup limit or MemAvailable, less a margin).
    a task      takes `cpus` slots (1 by default) and reserves `memory` (a SIZE, or for
                `auto` 1.25x its peak RSS in the latest run that recorded one, at most the
                budget; else nothing) from when it is handed to a worker until its outcome is in;
                it holds each of its `limit`s (a slot of N; `scope: machine`: a lock file).
    order       ready tasks are considered in start order (priority, then the longest
                remaining path: workflow/plan.py `start_order`).
    no starving the first task that does not fit (slots or memory; its limits free) holds a
                reservation: until it starts, another task starts only if the slots and the
                memory left once it started would still hold the waiting one (a task that
                reserves no memory only needs the slots). Frees go to it first, so it starts
                as soon as the tasks running when it began waiting have made room.

Admission is a plain object with no clock and no loop: the coordinator asks it, and a
simulation (plan --predict) may too. Only a run whose tasks declare cpus, memory or a
limit uses it (`Admission.needed`); the others dispatch as before.
"""
from __future__ import annotations

__all__ = ["Budget", "resolve_budget", "task_memory", "too_big", "Admission", "AUTO_MEMORY_FACTOR"]

import bisect
from dataclasses import dataclass

from opflow.machine import cpus_available, memory_available
from opflow.words import format_bytes

AUTO_MEMORY_FACTOR = 1.25  # memory: auto reserves this times the last peak RSS


@dataclass(frozen=True)
class Budget:
    cpus: int
    memory_bytes: int | None
    cpus_from: str  # "--cpus", "resources", "affinity", "cgroup cpu.max", ...
    memory_from: str  # "--memory", "resources", "cgroup memory.max", "MemAvailable", ...

    def as_record(self) -> dict:
        return {"cpus": self.cpus, "memory_bytes": self.memory_bytes,
                "cpus_from": self.cpus_from, "memory_from": self.memory_from}


def resolve_budget(resources: dict, cpus: int | None = None, memory: int | None = None) -> Budget:
    """The run's budget: the command line's, else the workflow's `resources:`, else the machine's."""
    declared_cpus, declared_memory = resources.get("cpus"), resources.get("memory")
    if cpus is not None:
        cpus_from = "--cpus"
    elif isinstance(declared_cpus, int):
        cpus, cpus_from = declared_cpus, "resources"
    else:
        cpus, cpus_from = cpus_available()
    if memory is not None:
        memory_from = "--memory"
    elif isinstance(declared_memory, int):
        memory, memory_from = declared_memory, "resources"
    else:
        memory, memory_from = memory_available()
    return Budget(cpus, memory, cpus_from, memory_from)


def task_memory(spec, peak_rss: dict[str, int], budget: int | None) -> int:
    """The bytes a task reserves: its `memory` SIZE; for `auto` 1.25x its last peak RSS
    (at most the budget: it kills nothing, so it may run alone); 0 without `memory`."""
    if spec.memory == "auto":
        peak = peak_rss.get(spec.id) or peak_rss.get(spec.group or "") or 0
        want = int(peak * AUTO_MEMORY_FACTOR)
        return min(want, budget) if budget is not None else want
    return spec.memory or 0


def too_big(tasks, slots: int, budget: Budget, slots_from: str) -> list[tuple]:
    """(task, what it asks too much of) for each task that could never start in this run."""
    problems = []
    for spec in tasks:
        if spec.cpus > slots:
            problems.append((spec, f"cpus: {spec.cpus} is more than the {slots} slots of the pool ({slots_from})"))
        if isinstance(spec.memory, int) and budget.memory_bytes is not None and spec.memory > budget.memory_bytes:
            problems.append((spec, f"memory: {format_bytes(spec.memory)} is more than the memory budget, "
                                   f"{format_bytes(budget.memory_bytes)} ({budget.memory_from})"))
    return problems


@dataclass(frozen=True)
class _Need:
    cpus: int
    memory: int
    limits: tuple  # Limit objects (workflow/resources.py)


class Admission:
    """Ready tasks in, tasks that may start out; holds what each started task took.

    `take_machine_slot(name, count)` -> a hold (or None: none free) and `drop_machine_slot(hold)`
    are the machine-scope locks (rundir/machine_limits.py), passed in so this stays plain.
    """

    def __init__(self, slots: int, memory: int | None, needs: dict, take_machine_slot, drop_machine_slot):
        self.slots = slots
        self.memory = memory  # None: unknown, never the reason a task waits
        self._needs = needs  # task_id -> _Need
        self._take, self._drop = take_machine_slot, drop_machine_slot
        self._free_slots = slots
        self._free_memory = memory
        self._in_use: dict[str, int] = {}  # run-scope limit name -> holders
        self._held: dict[str, tuple] = {}  # task_id -> (its need, its machine-scope holds)
        self._waiting: list[tuple] = []  # (start-order key, task_id), sorted
        self._first: str | None = None  # the task holding the reservation (no starving)
        self.blocked_elsewhere = False  # the last admit found a machine-scope limit held by another run
        self.passed_over: list[str] = []  # the tasks the last admit looked at and left waiting

    @classmethod
    def for_run(cls, workflow, slots: int, memory: int | None, peak_rss: dict, take, drop) -> Admission | None:
        """The run's admission, or None when no task declares cpus, memory or a limit."""
        if not any(t.cpus != 1 or t.memory is not None or t.limit for t in workflow.tasks):
            return None
        limits = workflow.limits
        needs = {t.id: _Need(t.cpus, task_memory(t, peak_rss, memory), tuple(limits[n] for n in t.limit))
                 for t in workflow.tasks}
        return cls(slots, memory, needs, take, drop)

    def wait(self, task_id: str, key: tuple) -> None:
        """`task_id` is ready: it waits for admission."""
        bisect.insort(self._waiting, (key, task_id))

    def has_waiting(self) -> bool:
        return bool(self._waiting)

    def drop_waiting(self, keep=None) -> list[str]:
        """The run stops: nothing waiting will start but what `keep(task_id)` keeps (returns what waited)."""
        dropped = [t for _, t in self._waiting if keep is None or not keep(t)]
        gone = set(dropped)
        self._waiting = [e for e in self._waiting if e[1] not in gone]
        if self._first in gone:
            self._first = None
        return dropped

    def why_waiting(self, task_id: str) -> str:
        """What `task_id` waits for, in words (for the journal)."""
        need = self._needs[task_id]
        for limit in need.limits:
            if limit.scope == "run" and self._in_use.get(limit.name, 0) >= limit.max:
                return f"limit '{limit.name}' ({limit.max} at once)"
        if need.cpus > self._free_slots:
            return f"{need.cpus} slots ({self._free_slots} free)"
        if self._free_memory is not None and need.memory > self._free_memory:
            return f"memory {format_bytes(need.memory)} ({format_bytes(self._free_memory)} free)"
        if any(limit.scope == "machine" for limit in need.limits):
            return "a machine-scope limit (" + ", ".join(l.name for l in need.limits if l.scope == "machine") + ")"
        return f"'{self._first}', which waits for room first" if self._first else "room"

    def admit(self, room: int) -> list[str]:
        """The waiting tasks that start now (at most `room`), in start order, their holds taken."""
        admitted: list[str] = []
        passed: list[str] = []
        self.blocked_elsewhere = False
        if self._first is not None and not any(t == self._first for _, t in self._waiting):
            self._first = None
        for entry in ([e for e in self._waiting if e[1] == self._first] + [e for e in self._waiting if e[1] != self._first]):
            if len(admitted) >= room or self._free_slots == 0:
                break  # (every task takes a slot: none can start now)
            task_id = entry[1]
            passed.append(task_id)
            need = self._needs[task_id]
            if not self._run_limits_free(need):
                if task_id == self._first:
                    self._first = None  # it cannot start anyway: it holds no reservation
                continue
            if not self._fits(need):
                if self._first is None:
                    self._first = task_id
                continue
            if self._first is not None and task_id != self._first and not self._leaves_room(need, self._needs[self._first]):
                continue
            machine = self._take_machine(need)
            if machine is None:
                self.blocked_elsewhere = True
                if task_id == self._first:
                    self._first = None
                continue
            self._hold(task_id, need, machine)
            admitted.append(task_id)
            if task_id == self._first:
                self._first = None
        if admitted:
            gone = set(admitted)
            self._waiting = [e for e in self._waiting if e[1] not in gone]
            passed = [t for t in passed if t not in gone]
        self.passed_over = passed
        return admitted

    def release(self, task_id: str) -> None:
        """`task_id`'s attempt is over: what it held is free."""
        held = self._held.pop(task_id, None)
        if held is None:
            return
        need, machine = held
        self._free_slots += need.cpus
        if self._free_memory is not None:
            self._free_memory += need.memory
        for limit in need.limits:
            if limit.scope == "run":
                self._in_use[limit.name] -= 1
        for hold in machine:
            self._drop(hold)

    def release_all(self) -> None:
        for task_id in list(self._held):
            self.release(task_id)

    # -- inside -----------------------------------------------------------------
    def _run_limits_free(self, need: _Need) -> bool:
        return all(self._in_use.get(l.name, 0) < l.max for l in need.limits if l.scope == "run")

    def _fits(self, need: _Need) -> bool:
        return need.cpus <= self._free_slots and (self._free_memory is None or need.memory <= self._free_memory)

    def _leaves_room(self, need: _Need, first: _Need) -> bool:
        """Once `need` started, would the slots (and, if it reserves memory, the memory) left hold `first`?"""
        if self._free_slots - need.cpus < first.cpus:
            return False
        return need.memory == 0 or self._free_memory is None or self._free_memory - need.memory >= first.memory

    def _take_machine(self, need: _Need) -> list | None:
        holds = []
        for limit in need.limits:
            if limit.scope != "machine":
                continue
            hold = self._take(limit.name, limit.max)
            if hold is None:
                for taken in holds:
                    self._drop(taken)
                return None
            holds.append(hold)
        return holds

    def _hold(self, task_id: str, need: _Need, machine: list) -> None:
        self._free_slots -= need.cpus
        if self._free_memory is not None:
            self._free_memory -= need.memory
        for limit in need.limits:
            if limit.scope == "run":
                self._in_use[limit.name] = self._in_use.get(limit.name, 0) + 1
        self._held[task_id] = (need, machine)
