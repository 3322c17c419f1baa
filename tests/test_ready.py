"""dispatch/ready.py: the ready set driven directly, graphlib's way (prepare /
get_ready / done), with no coordinator, backend or run directory."""
from __future__ import annotations

import pytest

from opflow.attempt import Outcome, error_record
from opflow.dispatch.ready import CHAIN_MAX, ReadySet
from opflow.dispatch.record import TaskState
from opflow.events import TaskStatus
from opflow.workflow.plan import plan_of
from opflow.workflow.spec import TaskSpec


class Graph:
    """A ready set over `tasks` (id -> depends_on, or (depends_on, trigger)), with
    the statuses the coordinator would set made by hand, and every task the ready
    set settles recorded in `finished`, in order."""

    def __init__(self, tasks: dict, **spec_fields):
        specs = []
        for task_id, value in tasks.items():
            deps, trigger = value if value and isinstance(value[0], tuple) else (value, "all_success")
            specs.append(TaskSpec(id=task_id, plugin="python", depends_on=deps, trigger=trigger,
                                  **spec_fields.get(task_id, {})))
        self.states = {s.id: TaskState(s) for s in specs}
        self.finished: list[tuple[str, str, str | None]] = []  # (task_id, status, reason)
        layers = plan_of({s.id: s.depends_on for s in specs}).layers
        self.ready = ReadySet(specs, layers, self.states, self._finish)

    def _finish(self, state: TaskState) -> None:
        self.finished.append((state.spec.id, state.status.value, state.reason))

    def start(self, task_id: str) -> None:
        self.states[task_id].status = TaskStatus.RUNNING

    def succeed(self, task_id: str) -> list[str]:
        self.states[task_id].status = TaskStatus.SUCCEEDED
        return self.ready.done(task_id)

    def fail(self, task_id: str) -> None:
        state = self.states[task_id]
        state.status = TaskStatus.FAILED
        state.outcome = Outcome.failed(0, error_record("PluginError", f"{task_id} broke"))
        self.ready.ended(task_id)

    def drain(self) -> list[str]:
        """Every all_success task ready now, in the order get_ready gives them."""
        out = []
        while (task_id := self.ready.get_ready()) is not None:
            out.append(task_id)
        return out

    def drain_triggers(self) -> list[str]:
        out = []
        while (task_id := self.ready.get_ready_trigger()) is not None:
            out.append(task_id)
        return out


# -- prepare / get_ready / done -----------------------------------------------
def test_ready_tasks_come_in_workflow_order_and_a_child_only_after_all_its_upstream():
    g = Graph({"b": (), "a": (), "c": ("a", "b"), "d": ("c",)})
    g.ready.prepare()
    assert g.drain() == ["b", "a"]  # workflow order, not alphabetical
    g.start("a"), g.start("b")
    assert g.succeed("a") == [] and g.drain() == []  # c still waits for b
    assert g.succeed("b") == ["c"] and g.drain() == ["c"]
    g.start("c")
    assert g.succeed("c") == ["d"] and g.drain() == ["d"]
    assert g.drain() == [] and not g.ready.is_active()


def test_prepare_counts_reused_tasks_as_done():
    g = Graph({"a": (), "b": (), "c": ("a", "b")})
    g.states["a"].status = TaskStatus.SUCCEEDED  # resume: a is reused
    g.ready.prepare(reused=["a"])
    assert g.drain() == ["b"]
    g.start("b")
    assert g.succeed("b") == ["c"] and g.drain() == ["c"]


def test_a_child_already_running_is_not_made_ready_again():
    # A chain's link is sent in its head's work item: running before its head's success is heard.
    g = Graph({"a": (), "b": ("a",)})
    g.ready.prepare()
    assert g.drain() == ["a"]
    g.start("a"), g.start("b")
    assert g.ready.is_waiting("b")
    assert g.succeed("a") == ["b"]  # b waits for nothing now (the coordinator hears of its start)
    assert not g.ready.is_waiting("b") and g.drain() == []


def test_a_stop_keeps_all_success_tasks_from_starting_and_again_puts_one_first():
    g = Graph({"a": (), "b": (), "c": ()})
    g.ready.prepare()
    assert g.ready.get_ready() == "a"
    g.ready.again("a", first=True)
    assert g.ready.get_ready() == "a"
    g.ready.stop("interrupted by SIGINT", triggers_too=True)
    assert g.ready.get_ready() is None and not g.ready.has_ready() and g.ready.stop_reason == "interrupted by SIGINT"


# -- chains --------------------------------------------------------------------
def test_a_chain_is_each_task_whose_only_reader_reads_only_it():
    g = Graph({"a": (), "b": ("a",), "c": ("b",), "d": ("c",), "e": ("d",), "f": ("d",)})
    assert g.ready.chain_after("a") == ["b", "c", "d"]  # d has two readers: the chain ends there
    assert g.ready.chain_after("d") == []


@pytest.mark.parametrize("tasks, fields", [
    ({"a": (), "x": (), "b": ("a", "x")}, {}),  # b reads another task too
    ({"a": (), "b": (("a",), "all_done")}, {}),  # b has a trigger rule
    ({"a": (), "b": ("a",)}, {"b": {"cache": True}}),  # b may be a cache hit
])
def test_no_chain_through_a_task_that_may_not_ride_along(tasks, fields):
    assert Graph(tasks, **fields).ready.chain_after("a") == []


def test_no_chain_through_a_task_reading_two_even_when_one_is_done():
    g = Graph({"a": (), "x": (), "b": ("a", "x")})
    g.ready.prepare()
    g.drain(), g.start("x")
    g.succeed("x")  # b waits for a alone, but reads x's result too
    assert g.ready.chain_after("a") == []


def test_a_chain_stops_at_a_task_no_longer_pending_and_at_chain_max():
    g = Graph({"a": (), "b": ("a",), "c": ("b",)})
    g.start("b")
    assert g.ready.chain_after("a") == []
    ids = [f"t{i}" for i in range(CHAIN_MAX + 5)]
    long = Graph({t: (ids[i - 1],) if i else () for i, t in enumerate(ids)})
    assert long.ready.chain_after("t0") == ids[1:CHAIN_MAX + 1]


# -- upstream sets -------------------------------------------------------------
def test_upstream_sets_are_transitive_and_dropped_once_every_reader_has_its_own():
    g = Graph({"a": (), "b": (), "c": ("a", "b"), "d": ("c",), "e": ("c",)})
    assert g.ready.upstream("a") is g.ready.upstream("b")  # the one shared empty set
    assert g.ready.upstream("c") == {"a", "b"}
    assert "a" not in g.ready._upstream_sets and "b" not in g.ready._upstream_sets  # c was their only reader
    assert g.ready.upstream("d") == {"a", "b", "c"}
    assert "c" in g.ready._upstream_sets  # e has yet to read it
    assert g.ready.upstream("e") == {"a", "b", "c"}
    assert "c" not in g.ready._upstream_sets


# -- held results --------------------------------------------------------------
def test_a_held_result_is_released_when_its_last_downstream_task_is_final():
    g = Graph({"a": (), "b": ("a",), "c": ("b",), "x": ()})
    g.states["a"].status = TaskStatus.SUCCEEDED
    assert g.ready.release("a", held=True) == []  # b and c may read it
    g.states["b"].status = TaskStatus.SUCCEEDED
    assert g.ready.release("b") == []
    g.states["x"].status = TaskStatus.SUCCEEDED
    assert g.ready.release("x", held=True) == ["x"]  # no reader at all: free now
    g.states["c"].status = TaskStatus.FAILED
    assert g.ready.release("c") == ["a"]


# -- trigger rules -------------------------------------------------------------
def test_all_done_runs_after_a_failure_and_sees_what_failed():
    g = Graph({"a": (), "b": (), "cleanup": (("a", "b"), "all_done")})
    g.ready.prepare()
    assert g.drain() == ["a", "b"]
    g.start("a"), g.start("b")
    g.fail("a")
    assert g.drain_triggers() == []  # b has not ended yet
    g.succeed("b")
    assert g.drain() == [] and g.drain_triggers() == ["cleanup"]
    fields = g.ready.trigger_fields(g.states["cleanup"].spec, g.ready.upstream("cleanup"))
    assert fields == {"upstream_failed": {"a": {"status": "failed", "error": {"type": "PluginError",
                                                                             "message": "a broke"}}},
                      "ignore_halt": True}
    assert g.ready.trigger_fields(g.states["a"].spec, frozenset()) == {}


def test_one_failed_runs_only_if_an_upstream_task_failed():
    g = Graph({"a": (), "alert": (("a",), "one_failed")})
    g.ready.prepare()
    g.drain(), g.start("a")
    g.fail("a")
    assert g.drain_triggers() == ["alert"] and g.finished == []


def test_one_failed_not_triggered_is_skipped_and_so_is_what_waits_on_it():
    g = Graph({"a": (), "alert": (("a",), "one_failed"), "after": ("alert",)})
    g.ready.prepare()
    g.drain(), g.start("a")
    g.succeed("a")
    assert g.drain_triggers() == []
    assert g.finished == [("alert", "skipped", "not triggered (one_failed): no upstream task failed")]
    assert g.ready.not_triggered == {"alert"}
    assert g.ready.settle_blocked()  # idle: what waits on a rule that did not trigger is not triggered either
    assert g.finished[1] == ("after", "skipped", "not triggered: upstream 'alert' was not triggered")
    assert g.ready.not_triggered == {"alert", "after"}
    assert not g.ready.settle_blocked()  # settled once


def test_a_rule_that_did_not_trigger_is_no_failure_to_the_trigger_tasks_after_it():
    g = Graph({"a": (), "alert": (("a",), "one_failed"), "cleanup": (("a", "alert"), "all_done")})
    g.ready.prepare()
    g.drain(), g.start("a")
    g.succeed("a")  # alert: not triggered, skipped; cleanup: every upstream task ended
    assert g.drain_triggers() == ["cleanup"]
    assert g.ready.trigger_fields(g.states["cleanup"].spec, g.ready.upstream("cleanup"))["upstream_failed"] == {}


def test_trigger_tasks_run_after_fail_fast_but_not_after_an_interrupt():
    g = Graph({"a": (), "b": (), "cleanup": (("a",), "all_done")})
    g.ready.prepare()
    assert g.ready.get_ready() == "a"
    g.start("a")
    g.ready.stop("the run stopped after 'a' failed", triggers_too=False)
    g.fail("a")
    assert g.drain() == [] and g.drain_triggers() == ["cleanup"]

    g = Graph({"a": (), "cleanup": (("a",), "all_done")})
    g.ready.prepare()
    g.drain(), g.start("a")
    g.ready.stop("interrupted by SIGINT", triggers_too=True)
    g.fail("a")
    assert g.drain_triggers() == [] and not g.ready.is_active()
    assert not g.ready.settle_blocked()  # after an interrupt all waits for settle_unrun


# -- settling what can no longer run --------------------------------------------
def test_a_blocked_task_is_settled_once_and_its_trigger_child_hears_of_it():
    g = Graph({"a": (), "b": ("a",), "c": ("b",), "report": (("c",), "all_done")})
    g.ready.prepare()
    g.drain(), g.start("a")
    g.fail("a")
    assert g.drain_triggers() == []  # report waits for c, which waits for b
    assert g.ready.settle_blocked()
    assert g.finished == [("b", "skipped", "upstream 'a' failed"), ("c", "skipped", "upstream 'b' was skipped")]
    assert g.drain_triggers() == ["report"]
    assert not g.ready.settle_blocked()
    g.states["report"].status = TaskStatus.SUCCEEDED  # it ran
    g.ready.settle_unrun()
    assert [f[0] for f in g.finished] == ["b", "c"]  # each settled once
    fields = g.ready.trigger_fields(g.states["report"].spec, g.ready.upstream("report"))
    assert list(fields["upstream_failed"]) == ["a", "b", "c"]


def test_mid_run_a_task_behind_no_failure_is_left_until_the_stop():
    g = Graph({"a": (), "b": ("a",), "t": (("b",), "all_done")})
    g.ready.prepare()
    g.drain(), g.start("a")
    assert not g.ready.settle_blocked()  # a still runs: b may yet run
    g.states["a"].status = TaskStatus.CANCELLED
    g.states["a"].reason = "the run stopped"
    g.ready.ended("a")
    assert not g.ready.settle_blocked() and g.finished == []  # no stop: b is not the ready set's to cancel
    g.ready.stop("aborted: disk full", triggers_too=False)
    assert g.ready.settle_blocked()
    assert g.finished == [("b", "cancelled", "aborted: disk full")]
    assert g.drain_triggers() == ["t"]


def test_at_the_end_every_unrun_task_is_settled_in_dependency_order():
    g = Graph({"z": ("y",), "y": ("x",), "x": (), "w": (), "t": (("x",), "one_failed")})
    g.ready.prepare()
    g.drain(), g.start("x")
    g.fail("x")  # t (one_failed) is ready, but the run is interrupted before it starts
    g.ready.stop("interrupted by SIGTERM", triggers_too=True)
    g.ready.settle_unrun()
    assert g.finished == [
        ("w", "cancelled", "interrupted by SIGTERM"),
        ("y", "skipped", "upstream 'x' failed"),
        ("t", "skipped", "upstream 'x' failed"),
        ("z", "skipped", "upstream 'y' was skipped"),
    ]


def test_at_the_end_without_a_stop_reason_a_task_still_gets_one():
    g = Graph({"a": ()})
    g.ready.settle_unrun()
    assert g.finished == [("a", "cancelled", "the run stopped before it could run")]


def test_the_layer_order_is_computed_once():
    g = Graph({"b": (), "a": (), "c": ("b",)})
    assert g.ready.order() == ["b", "a", "c"]
    assert g.ready.order() is g.ready.order()
