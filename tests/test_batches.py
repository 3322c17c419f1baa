"""Several tasks in one pool work item (batches, chains): outcomes as each task ends, and
a crash in the middle of a batch runs no finished task again.

The pool-level tests hand `ProcessBackend.submit_batch` a batch themselves, so the
batch is certain; the run-level ones set OPFLOW_BATCH_SECONDS high, so that the
coordinator batches every ready task once a first one has ended.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import latest_run_dir, records, run_cli, signal_when

from opflow.api import load, run
from opflow.attempt import NOT_STARTED, TaskRequest
from opflow.backends.process import ProcessBackend


def requests_for(flow: Path, log_dir: Path) -> list[TaskRequest]:
    """TaskRequests for every task of `flow`, in file order, as the coordinator builds them."""
    workflow, plugins = load(flow)
    (log_dir / "tasks").mkdir(parents=True)
    upstream: dict[str, frozenset] = {}
    made = []
    for token, task in enumerate(workflow.tasks, start=1):
        upstream[task.id] = frozenset(task.depends_on).union(*(upstream[d] for d in task.depends_on))
        made.append(TaskRequest(
            token=token, task_id=task.id, attempt=1, plugin=plugins[task.plugin], config=task.config,
            depends_on=task.depends_on, upstream=upstream[task.id], params={}, workflow_dir=str(workflow.directory),
            publish=any(task.id in t.depends_on for t in workflow.tasks), notify_start=True,
            log_path=str(log_dir / "tasks" / f"{task.id}.log")))
    return made


def run_batch_on_pool(requests: list[TaskRequest], workers: int = 2) -> tuple[dict, list]:
    """Submit `requests` as one batch; task_id -> Outcome, and the order their futures resolved in."""
    backend = ProcessBackend(workers)
    order: list[str] = []
    lock = threading.Lock()
    try:
        backend.start(needs_results=True)
        futures = backend.submit_batch(requests)
        for request, future in zip(requests, futures):
            def done(_, task_id=request.task_id):
                with lock:
                    order.append(task_id)
            future.add_done_callback(done)
        outcomes = {r.task_id: f.result(timeout=60) for r, f in zip(requests, futures)}
    finally:
        backend.close()
    return outcomes, order


def test_a_crash_in_the_middle_of_a_batch_runs_no_finished_task_again(tmp_path, write_workflow):
    lines = tmp_path / "lines.txt"
    flow = write_workflow(f"""
        name: batch-crash
        tasks:
          - {{id: s1, plugin: shell, config: {{command: "echo s1 >> {lines}"}}}}
          - {{id: s2, plugin: shell, config: {{command: "echo s2 >> {lines}"}}}}
          - {{id: crash, plugin: shell, config: {{command: "echo crash >> {lines}; kill -KILL $PPID; sleep 5"}}}}
          - {{id: s3, plugin: shell, config: {{command: "echo s3 >> {lines}"}}}}
          - {{id: s4, plugin: shell, config: {{command: "echo s4 >> {lines}"}}}}
    """)
    outcomes, order = run_batch_on_pool(requests_for(flow, tmp_path / "run"))
    assert outcomes["s1"].ok and outcomes["s2"].ok
    assert outcomes["crash"].error["type"] == "WorkerCrashed"
    assert "SIGKILL" in outcomes["crash"].error["message"]
    # Not started: back to the coordinator, which queues them again (no attempt counted).
    assert [outcomes[t].error["type"] for t in ("s3", "s4")] == [NOT_STARTED, NOT_STARTED]
    assert lines.read_text().split() == ["s1", "s2", "crash"]  # nothing ran twice, nothing after the crash
    # Each outcome came as its task ended, not with the batch: s1 and s2 before the crash's.
    assert order.index("s1") < order.index("crash") and order.index("s2") < order.index("crash")


def test_a_chain_in_one_batch_stops_where_a_task_fails(tmp_path, write_workflow, faults):
    flow = write_workflow("""
        name: batch-chain
        tasks:
          - {id: a, plugin: python, config: {function: "faults:ok", args: [1]}}
          - {id: b, plugin: python, config: {function: "faults:raise_error"}, depends_on: [a]}
          - {id: c, plugin: python, config: {function: "faults:ok"}, depends_on: [b]}
    """)
    outcomes, order = run_batch_on_pool(requests_for(flow, tmp_path / "run"))
    assert outcomes["a"].ok
    assert outcomes["b"].error["type"] == "ValueError"
    assert outcomes["c"].error["type"] == NOT_STARTED and "'b' did not succeed" in outcomes["c"].error["message"]
    assert order == ["a", "b", "c"]


def test_a_mid_batch_crash_in_a_run_loses_nothing_and_repeats_nothing(tmp_path, write_workflow):
    """The whole path: 80 shell tasks appending to one file, batched; one kills its worker."""
    lines = tmp_path / "lines.txt"
    ids = [f"t{i:02d}" for i in range(80)]
    tasks = [{"id": t, "plugin": "shell", "config": {"command": f"echo {t} >> {lines}"}} for t in ids]
    tasks[50] = {"id": "victim", "plugin": "shell",
                 "config": {"command": f"echo victim >> {lines}; kill -KILL $PPID; sleep 5"}}
    flow = write_workflow("name: many\ntasks:\n" + "".join(f"  - {json.dumps(t)}\n" for t in tasks))
    proc = run_cli("run", str(flow), "--workers", "2", "--keep-going", "--log-dir", str(tmp_path / "logs"),
                   cwd=tmp_path, env={"OPFLOW_BATCH_SECONDS": "10"})
    assert proc.returncode == 1, proc.stderr
    run_dir = latest_run_dir(tmp_path / "logs")
    tasks_seen = records(run_dir)
    assert tasks_seen["victim"]["status"] == "failed"
    assert tasks_seen["victim"]["error"]["type"] == "WorkerCrashed"
    others = {t: r for t, r in tasks_seen.items() if t != "victim"}
    assert len(others) == 79
    assert {r["status"] for r in others.values()} == {"succeeded"}
    assert {r["attempts"] for r in others.values()} == {1}
    written = lines.read_text().split()
    assert sorted(written) == sorted(t["id"] for t in tasks)  # every task once: none lost, none twice


def test_a_fused_chain_retries_its_failed_link_then_runs_the_rest(tmp_path, write_workflow, faults):
    marker = tmp_path / "count"
    flow = write_workflow(f"""
        name: chain-retry
        tasks:
          - {{id: a, plugin: python, config: {{function: "faults:ok", args: [1]}}}}
          - {{id: b, plugin: python, config: {{function: "faults:fail_until", args: ["{marker}", 1]}},
              depends_on: [a], retries: 1, retry_delay: 0}}
          - {{id: c, plugin: python, config: {{function: "faults:value_of", args: [a, b]}}, depends_on: [b]}}
          - {{id: d, plugin: python, config: {{function: "faults:value_of", args: [a, c]}}, depends_on: [c]}}
    """)
    result = run(flow, workers=2, log_dir=tmp_path / "logs")
    assert result.exit_code == 0
    tasks = records(result.run_dir)
    assert [tasks[t]["attempts"] for t in "abcd"] == [1, 2, 1, 1]
    assert tasks["c"]["result"] == {"a": {"value": 1}, "b": {"attempts_seen": 2}}
    assert tasks["d"]["result"]["c"] == tasks["c"]["result"]
    events = [json.loads(line) for line in (result.run_dir / "events.jsonl").read_text().splitlines()]
    finished = [e["task_id"] for e in events if e["event"] == "task_finished"]
    assert finished == ["a", "b", "c", "d"]
    # The journal keeps the dependency order, though a link starts in the worker
    # before its predecessor's outcome reaches the coordinator.
    at = {(e["event"], e.get("task_id")): i for i, e in reversed(list(enumerate(events)))}  # first occurrences
    for upstream, task in (("a", "b"), ("b", "c"), ("c", "d")):
        assert at[("task_finished", upstream)] < at[("task_started", task)]


@pytest.mark.parametrize("how, error", [("sigkill_self", "WorkerCrashed"), ("hang", "Timeout")])
def test_a_chain_link_that_dies_skips_the_rest_of_the_chain(how, error, tmp_path, write_workflow, faults):
    flow = write_workflow(f"""
        name: chain-crash
        tasks:
          - {{id: a, plugin: python, config: {{function: "faults:ok"}}}}
          - {{id: b, plugin: python, config: {{function: "faults:{how}"}}, depends_on: [a], timeout: 1}}
          - {{id: c, plugin: python, config: {{function: "faults:ok"}}, depends_on: [b]}}
          - {{id: d, plugin: python, config: {{function: "faults:ok"}}, depends_on: [c]}}
    """)
    started = time.monotonic()
    result = run(flow, workers=2, log_dir=tmp_path / "logs", keep_going=True)
    assert time.monotonic() - started < 60
    tasks = records(result.run_dir)
    assert tasks["a"]["status"] == "succeeded"
    assert tasks["b"]["status"] == "failed" and tasks["b"]["error"]["type"] == error
    assert [tasks[t]["status"] for t in "cd"] == ["skipped", "skipped"]
    assert tasks["c"]["reason"] == "upstream 'b' failed"
    assert tasks["c"]["attempts"] == 0


def test_batched_results_small_and_large_reach_their_readers(tmp_path, write_workflow, faults):
    """In a chain batch, a reader gets an earlier member's result whether it travelled
    inline (small) or through the store (large), and a distant ancestor's too."""
    flow = write_workflow("""
        name: chain-results
        tasks:
          - {id: big, plugin: python, config: {function: "faults:big_text", args: [200000]}}
          - {id: small, plugin: python, config: {function: "faults:ok", args: [7]}, depends_on: [big]}
          - {id: reader, plugin: python, config: {function: "faults:value_of", args: [small]}, depends_on: [small]}
          - {id: far, plugin: python, config: {function: "faults:length_of", args: [big]}, depends_on: [reader]}
    """)
    outcomes, _ = run_batch_on_pool(requests_for(flow, tmp_path / "run"))
    assert outcomes["reader"].ok and outcomes["far"].ok, (outcomes["reader"].error, outcomes["far"].error)
    assert outcomes["reader"].result == {"small": {"value": 7}}
    assert outcomes["far"].result == 200000


def test_an_interrupt_mid_batch_tells_running_tasks_from_those_never_started(tmp_path, write_workflow, faults):
    """Ctrl-C while batches wait in the workers: what ran is cancelled 'while running',
    what never started is cancelled by the interrupt, with no attempt."""
    go = tmp_path / "started"
    tasks = [{"id": f"quick{i}", "plugin": "python", "config": {"function": "faults:ok"}} for i in range(8)]
    tasks += [{"id": f"slow{i}", "plugin": "python", "config": {"function": "faults:touch_and_hang", "args": [str(go)]},
               "depends_on": ["quick0"]} for i in range(24)]
    flow = write_workflow("name: interrupted\ntasks:\n" + "".join(f"  - {json.dumps(t)}\n" for t in tasks))
    proc = subprocess.Popen([sys.executable, "-m", "opflow", "run", str(flow), "--workers", "2", "--log-dir",
                             str(tmp_path / "logs")], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "OPFLOW_BATCH_SECONDS": "10"})
    # The other worker starts its batch's first task too, or not: both cases are checked.
    output = signal_when(proc, go.exists, "a slow task to start", settle=0.3)
    assert proc.returncode == 130, output
    slow = {t: r for t, r in records(latest_run_dir(tmp_path / "logs")).items() if t.startswith("slow")}
    assert {r["status"] for r in slow.values()} == {"cancelled"}
    ran = [r for r in slow.values() if r["attempts"]]
    never = [r for r in slow.values() if not r["attempts"]]
    assert 1 <= len(ran) <= 2 and len(never) >= 22  # one running task per worker, at most
    assert all(r["reason"] == "interrupted by SIGINT while running" for r in ran)
    assert all(r["reason"] == "interrupted by SIGINT" for r in never)


def test_a_task_outliving_its_broken_pool_still_times_out(tmp_path, write_workflow, faults):
    """A sibling's crash leaves `slow` running on its retiring worker: its timeout still kills it."""
    go = tmp_path / "go"
    flow = write_workflow(f"""
        name: retiring
        tasks:
          - {{id: slow, plugin: python, config: {{function: "faults:touch_and_hang", args: ["{go}"]}}, timeout: 3}}
          - {{id: crash, plugin: python, config: {{function: "faults:crash_after_file", args: ["{go}"]}}}}
          - {{id: after, plugin: python, config: {{function: "faults:ok"}}, depends_on: [crash]}}
    """)
    started = time.monotonic()
    result = run(flow, workers=2, log_dir=tmp_path / "logs", keep_going=True)
    assert time.monotonic() - started < 60
    tasks = records(result.run_dir)
    assert tasks["crash"]["error"]["type"] == "WorkerCrashed"
    assert tasks["slow"]["error"]["type"] == "Timeout"
    assert tasks["slow"]["attempts"] == 1  # not rerun on the new pool: it ran on, and timed out
    assert tasks["after"]["status"] == "skipped"
