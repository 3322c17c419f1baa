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


class _StopWatcher:
    """A backend stand-in that counts what the stop path asks of it."""

    name = "fake"

    def __init__(self, can_stop: bool):
        import threading

        self.can_stop = can_stop
        self.halted = 0
        self.interrupted = threading.Event()
        self.interrupts = 0

    def halt_queued(self):
        self.halted += 1

    def interrupt(self, grace: float = 5.0):
        self.interrupts += 1
        self.interrupted.set()


def _stoppable(write_workflow, can_stop=True):
    import asyncio

    workflow, plugins = api.load(write_workflow("""
        name: stops
        tasks:
          - {id: a, plugin: shell, config: {command: "true"}}
          - {id: tidy, plugin: shell, config: {command: "true"}, depends_on: [a], trigger: all_done}
    """))
    coordinator = Coordinator(workflow, plugins, RunOptions(timeout=5))
    loop = asyncio.new_event_loop()
    coordinator._loop, coordinator._finished = loop, loop.create_future()
    coordinator._backend = _StopWatcher(can_stop)
    return coordinator, loop


def test_abort_stops_once_kills_nothing_for_good_and_leaves_trigger_tasks_free(write_workflow):
    coordinator, loop = _stoppable(write_workflow)
    try:
        coordinator.abort("the record cannot be written")
        coordinator.abort("the record cannot be written again")
        loop.call_soon(loop.stop)
        loop.run_forever()  # the two calls handed to the loop, in order
        backend = coordinator._backend
        assert backend.interrupted.wait(10)
        assert backend.halted == 1 and backend.interrupts == 1  # the second abort: nothing more
        assert coordinator._ready.stop_reason == "aborted: the record cannot be written"
        assert coordinator._killed_why is None and not coordinator._ready._triggers_stopped
    finally:
        loop.close()


def test_a_timeout_stops_trigger_tasks_and_gives_up_on_what_cannot_be_stopped(write_workflow):
    import time

    from opflow.dispatch.record import Attempt
    from opflow.events import TaskStatus

    coordinator, loop = _stoppable(write_workflow, can_stop=False)
    try:
        running = coordinator.states["a"]  # a runs on a thread, which no one can stop
        running.status = TaskStatus.RUNNING
        running.attempts.append(Attempt(1, time.time()))
        coordinator._running[1] = "a"
        coordinator._on_run_timeout()
        reason = "the run timed out after 5s (--timeout)"
        assert running.status is TaskStatus.CANCELLED and running.reason == f"{reason}: killed while running"
        assert running.attempts[0].error["message"] == f"{reason}; the fake backend cannot stop it"
        assert coordinator._ready.stop_reason == reason and coordinator._ready._triggers_stopped
        assert coordinator._killed_why == f"{reason}: killed while running"
        assert coordinator._backend.halted == 1 and coordinator._backend.interrupts == 0  # a thread cannot be
        coordinator._on_signal(2)  # then Ctrl-C: the run ends interrupted, what runs says so
        assert coordinator._ready.stop_reason == "interrupted by SIGINT"
        assert coordinator._killed_why == "interrupted by SIGINT while running"
        assert coordinator._finished.done()  # nothing ran: over
    finally:
        loop.close()
