"""The contract suite: the same behaviours, run against every backend.

Each test runs a real workflow file through `opflow.api.run` and reads the run
directory, as a user would. Backends: process (the default), thread, inline, and
dask when the optional extra is installed.
"""
from __future__ import annotations

import importlib.util
import json
import shutil

import pandas as pd
import pytest

from helpers import REPO, dependency_order_problems, go, records, run_dirs, run_json

from opflow.api import run

BACKENDS = [
    "process",
    "thread",
    "inline",
    pytest.param("dask", marks=pytest.mark.skipif(
        importlib.util.find_spec("distributed") is None, reason="the dask extra (distributed) is not installed")),
]
CONCURRENT = ["process", "thread", pytest.param("dask", marks=BACKENDS[-1].marks)]


@pytest.fixture(params=BACKENDS)
def executor(request):
    """The name of the backend this run of a contract test is on (`executor=` to `opflow.api.run`)."""
    return request.param


@pytest.fixture(autouse=True)
def every_start_follows_its_dependencies(tmp_path):
    """On every contract run: no task started before each of its depends_on had finished."""
    yield
    for run_dir in run_dirs(tmp_path / "logs"):
        if (run_dir / "events.jsonl").exists():
            assert dependency_order_problems(run_dir) == [], run_dir


def test_a_task_with_several_dependencies_waits_for_the_last_of_them(executor, tmp_path, write_workflow, faults):
    # d needs a (ready at once) and c (two links down a chain): a ready set that let d go
    # when its first dependency finished would start it before c, on every backend.
    flow = write_workflow("""
        name: several
        tasks:
          - {id: a, plugin: python, config: {function: "faults:ok", args: [1]}}
          - {id: b, plugin: python, config: {function: "faults:ok", args: [10]}}
          - {id: c, plugin: python, config: {function: "faults:ok", args: [100]}, depends_on: [b]}
          - {id: d, plugin: python, config: {function: "faults:add_upstream"}, depends_on: [a, c]}
    """)
    result = go(flow, executor, tmp_path)
    assert result.exit_code == 0
    assert records(result.run_dir)["d"]["result"] == 111  # a, b and c: all there when d ran
    assert dependency_order_problems(result.run_dir) == []


def test_seed_example_metrics_equal_pandas_describe(executor, tmp_path):
    for name in ("workflow_example.yaml", "sample_data.csv"):
        shutil.copy(REPO / "examples" / name, tmp_path / name)
    result = go(tmp_path / "workflow_example.yaml", executor, tmp_path)
    assert result.exit_code == 0
    tasks = records(result.run_dir)
    expected = pd.read_csv(tmp_path / "sample_data.csv")[["age", "score"]].describe()
    metrics = tasks["compute_metrics"]["result"]
    for column in ("age", "score"):
        for stat, value in expected[column].items():
            assert metrics[column][stat] == pytest.approx(value), (column, stat)
    ingest = tasks["ingest_csv"]["result"]
    assert ingest["type"] == "DataFrame" and ingest["rows"] == len(pd.read_csv(tmp_path / "sample_data.csv"))
    assert ingest["columns"] == ["name", "age", "score", "city"]
    assert tasks["notify"]["result"]["stdout"] == "Metrics computed\n"


def test_context_holds_exactly_the_transitive_upstream_and_params(executor, tmp_path, write_workflow, faults):
    flow = write_workflow("""
        name: context
        params: {region: north}
        tasks:
          - {id: a, plugin: python, config: {function: "faults:ok", args: [1]}}
          - {id: b, plugin: python, config: {function: "faults:ok", args: [2]}, depends_on: [a]}
          - {id: c, plugin: python, config: {function: "faults:echo_context"}, depends_on: [b]}
          - {id: lone, plugin: python, config: {function: "faults:echo_context"}}
          - {id: total, plugin: python, config: {function: "faults:add_upstream"}, depends_on: [a, b]}
    """)
    result = go(flow, executor, tmp_path, params={"region": "south"})
    assert result.exit_code == 0
    tasks = records(result.run_dir)
    assert tasks["c"]["result"] == {"seen": ["a", "b"], "params": {"region": "south"}}
    assert tasks["lone"]["result"] == {"seen": [], "params": {"region": "south"}}
    assert tasks["total"]["result"] == 3


@pytest.mark.parametrize("executor", CONCURRENT)
def test_diamond_branches_overlap_in_time(executor, tmp_path, write_workflow, faults):
    # b waits for the file c writes and c for b's: both finish only if they run at once.
    flow = write_workflow(f"""
        name: diamond
        tasks:
          - {{id: a, plugin: python, config: {{function: "faults:ok"}}}}
          - id: b
            plugin: shell
            config: {{command: "touch b.flag; while [ ! -e c.flag ]; do sleep 0.01; done"}}
            depends_on: [a]
            timeout: 60
          - id: c
            plugin: shell
            config: {{command: "touch c.flag; while [ ! -e b.flag ]; do sleep 0.01; done"}}
            depends_on: [a]
            timeout: 60
          - {{id: d, plugin: python, config: {{function: "faults:echo_context"}}, depends_on: [b, c]}}
    """)
    result = go(flow, executor, tmp_path)
    assert result.exit_code == 0, records(result.run_dir)
    assert records(result.run_dir)["d"]["result"]["seen"] == ["a", "b", "c"]


@pytest.mark.parametrize("executor", CONCURRENT)
def test_dispatch_is_dependency_driven_not_layer_by_layer(executor, tmp_path, write_workflow, faults):
    # `slow` (layer 1) waits for a file that only `second` (layer 2) writes: a
    # layer-by-layer runner would never start `second` while `slow` runs.
    flag = tmp_path / "second.flag"
    flow = write_workflow(f"""
        name: eager
        tasks:
          - {{id: slow, plugin: python, config: {{function: "faults:wait_for_file", args: ["{flag}", 60]}}}}
          - {{id: first, plugin: python, config: {{function: "faults:ok"}}}}
          - {{id: second, plugin: python, config: {{function: "faults:touch", args: ["{flag}"]}}, depends_on: [first]}}
    """)
    result = go(flow, executor, tmp_path)
    assert result.exit_code == 0, records(result.run_dir)


def test_fail_fast_cancels_the_rest_and_skips_downstream(executor, tmp_path, write_workflow, faults):
    flow = write_workflow("""
        name: failfast
        tasks:
          - {id: bad, plugin: python, config: {function: "faults:raise_error", args: ["no good"]}}
          - {id: after_bad, plugin: python, config: {function: "faults:ok"}, depends_on: [bad]}
          - {id: gate, plugin: python, config: {function: "faults:ok"}, depends_on: [bad]}
          - {id: later, plugin: python, config: {function: "faults:ok"}, depends_on: [gate]}
    """)
    result = go(flow, executor, tmp_path)
    assert result.exit_code == 1
    tasks = records(result.run_dir)
    assert tasks["bad"]["status"] == "failed"
    assert tasks["bad"]["error"]["type"] == "ValueError"
    assert tasks["bad"]["error"]["message"] == "no good"
    assert "raise ValueError" in tasks["bad"]["error"]["traceback"]
    assert tasks["after_bad"]["status"] == "skipped" and "bad" in tasks["after_bad"]["reason"]
    assert tasks["later"]["status"] == "skipped" and "gate" in tasks["later"]["reason"]
    summary = run_json(result.run_dir)
    assert summary["status"] == "failed"
    assert summary["tasks"] == {"bad": "failed", "after_bad": "skipped", "gate": "skipped", "later": "skipped"}


def test_fail_fast_cancels_independent_tasks_not_yet_started(tmp_path, write_workflow, faults):
    flow = write_workflow("""
        name: failfast2
        tasks:
          - {id: bad, plugin: python, config: {function: "faults:raise_error"}}
          - {id: other, plugin: python, config: {function: "faults:ok"}}
    """)
    result = run(flow, executor="inline", log_dir=tmp_path / "logs")
    tasks = records(result.run_dir)
    assert tasks["other"]["status"] == "cancelled"
    assert "bad" in tasks["other"]["reason"]
    assert tasks["other"]["attempts"] == 0


def test_fail_fast_starts_nothing_queued_after_the_failure(tmp_path, write_workflow, faults):
    # One worker, and more submitted than it can run at once: the failing task is
    # first in the pool's queue, and none queued behind it may start.
    flow = write_workflow(f"""
        name: failfast-queue
        tasks:
          - {{id: bad, plugin: python, config: {{function: "faults:raise_error"}}}}
""" + "".join(f"""          - {{id: t{i}, plugin: python, config: {{function: "faults:touch", args: ["{tmp_path / f't{i}.ran'}"]}}}}
""" for i in range(6)))
    result = run(flow, workers=1, log_dir=tmp_path / "logs")
    statuses = run_json(result.run_dir)["tasks"]
    assert statuses == {"bad": "failed", **{f"t{i}": "cancelled" for i in range(6)}}
    assert not list(tmp_path.glob("*.ran"))


def test_keep_going_runs_everything_whose_upstream_succeeded(executor, tmp_path, write_workflow, faults):
    flow = write_workflow("""
        name: keepgoing
        tasks:
          - {id: bad, plugin: python, config: {function: "faults:raise_error"}}
          - {id: downstream, plugin: python, config: {function: "faults:ok"}, depends_on: [bad]}
          - {id: good, plugin: python, config: {function: "faults:ok"}}
          - {id: good_next, plugin: python, config: {function: "faults:ok"}, depends_on: [good]}
    """)
    result = go(flow, executor, tmp_path, keep_going=True)
    assert result.exit_code == 1
    assert run_json(result.run_dir)["tasks"] == {
        "bad": "failed", "downstream": "skipped", "good": "succeeded", "good_next": "succeeded"}


def test_retry_then_succeed_records_every_attempt(executor, tmp_path, write_workflow, faults):
    marker = tmp_path / "attempts.txt"
    flow = write_workflow(f"""
        name: retry
        defaults: {{retries: 2, retry_delay: 0.01}}
        tasks:
          - {{id: flaky, plugin: python, config: {{function: "faults:fail_until", args: ["{marker}", 2]}}}}
    """)
    result = go(flow, executor, tmp_path)
    assert result.exit_code == 0
    record = records(result.run_dir)["flaky"]
    assert record["status"] == "succeeded"
    assert record["attempts"] == 3
    assert [a["error"]["type"] if a["error"] else None for a in record["attempt_log"]] == ["RuntimeError", "RuntimeError", None]
    assert record["result"] == {"attempts_seen": 3}


def test_unpicklable_result_fails_its_task_clearly(executor, tmp_path, write_workflow, faults):
    flow = write_workflow("""
        name: unpicklable
        tasks:
          - {id: lock, plugin: python, config: {function: "faults:unpicklable"}}
    """)
    result = go(flow, executor, tmp_path)
    record = records(result.run_dir)["lock"]
    assert record["status"] == "failed"
    assert record["error"]["type"] == "UnpicklableResult"
    assert "cannot be pickled" in record["error"]["message"]


def test_run_directory_holds_what_the_contract_lists(executor, tmp_path, write_workflow, faults):
    flow = write_workflow("""
        name: Records Check!
        params: {n: 3}
        tasks:
          - {id: one, plugin: python, config: {function: "faults:ok"}}
          - {id: two, plugin: shell, config: {command: "echo hi"}, depends_on: [one]}
    """)
    result = go(flow, executor, tmp_path)
    run_dir = result.run_dir
    assert run_dir.parent == tmp_path / "logs"
    assert run_dir.name.endswith("-records-check")
    doc = run_json(run_dir)
    for key in ("workflow", "status", "started_at", "finished_at", "duration_s", "tasks", "workflow_file",
                "workflow_sha256", "host", "python", "opflow_version", "packages", "params", "workers", "executor"):
        assert key in doc, key
    assert doc["workflow"] == "Records Check!" and doc["status"] == "succeeded"
    # The true concurrency: inline runs one task at a time, whatever the pool size asked.
    assert doc["params"] == {"n": 3} and doc["executor"] == executor and doc["workers"] == (1 if executor == "inline" else 2)
    assert len(doc["workflow_sha256"]) == 64
    for task_id in ("one", "two"):
        record = records(run_dir)[task_id]
        for key in ("id", "plugin", "status", "attempts", "started_at", "finished_at", "duration_s", "result", "error"):
            assert key in record, (task_id, key)
        assert record["attempts"] == 1 and record["error"] is None
        assert record["resources"]["peak_rss_bytes"] > 0
    assert "succeeded" in (run_dir / "summary.txt").read_text()
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("task_finished") == 2
    # the order of events respects the dependency: one finished before two started
    finished_one = next(i for i, e in enumerate(events) if e["event"] == "task_finished" and e["task_id"] == "one")
    started_two = next(i for i, e in enumerate(events) if e["event"] == "task_started" and e["task_id"] == "two")
    assert finished_one < started_two


def test_trigger_tasks_run_after_a_failure_on_every_backend(executor, tmp_path, write_workflow):
    flow = write_workflow("""
        name: triggers
        tasks:
          - {id: ok, plugin: shell, config: {command: "echo ok"}}
          - {id: bad, plugin: shell, config: {command: "exit 3"}, depends_on: [ok]}
          - {id: cleanup, plugin: shell, trigger: all_done, config: {command: "echo cleanup"}, depends_on: [bad]}
          - {id: notify, plugin: shell, trigger: one_failed, config: {command: "echo notify"}, depends_on: [bad]}
    """)
    result = go(flow, executor, tmp_path)
    assert result.exit_code == 1
    tasks = records(result.run_dir)
    assert {t: r["status"] for t, r in tasks.items()} == {"ok": "succeeded", "bad": "failed", "cleanup": "succeeded",
                                                         "notify": "succeeded"}
    assert tasks["notify"]["result"]["stdout"] == "notify\n"


@pytest.mark.parametrize("executor", CONCURRENT)
def test_a_task_the_run_timeout_kills_is_an_attempt_killed_while_running(executor, tmp_path, write_workflow):
    flow = write_workflow("""
        name: deadline
        tasks:
          - {id: hang, plugin: shell, config: {command: "echo started > started; sleep 60"}}
    """)
    result = go(flow, executor, tmp_path, timeout=3)
    assert result.exit_code == 1
    record = records(result.run_dir)["hang"]
    assert (tmp_path / "started").exists()
    assert record["status"] == "cancelled" and record["attempts"] == 1 and len(record["attempt_log"]) == 1
    assert record["reason"].endswith("killed while running"), record["reason"]
