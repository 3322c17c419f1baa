"""The Dask backend: the contract on a real LocalCluster, its own seams, and a real cluster.

A real cluster here is `dask scheduler` and two `dask worker` processes on
127.0.0.1, started as separate processes, driven through the real CLI. Every
wait is bounded; every process a test starts is stopped and reaped (conftest's
autouse guard fails a test that leaks one).
"""
from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from opflow.rundir.results_log import RESULTS_FILE, read_results

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed: pip install 'opflow-runner[dask]'")

from helpers import REPO, HandStartedCluster, go, gone, latest_run_dir, records, run_cli, run_dirs, run_json, wait_for  # noqa: E402

from opflow.backends.dask import backend as dask_backend  # noqa: E402
from opflow.backends.dask import cluster as dask_cluster_module  # noqa: E402
from opflow.api import run  # noqa: E402
from opflow.errors import UsageError  # noqa: E402
from opflow.plugins import PluginRef, discover_plugins  # noqa: E402
from opflow.procs import kill_tree  # noqa: E402
from opflow.attempt import TaskRequest  # noqa: E402


# -- availability ----------------------------------------------------------------
def test_missing_distributed_is_a_usage_error_naming_the_extra(monkeypatch, tmp_path, write_workflow, faults):
    from click.testing import CliRunner

    from opflow.cli.commands import main

    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` now raises ImportError
    with pytest.raises(UsageError, match=r"pip install 'opflow-runner\[dask\]'"):
        dask_cluster_module.check_available()
    flow = write_workflow("""
        name: nodask
        tasks:
          - {id: a, plugin: python, config: {function: "faults:ok"}}
    """)
    result = CliRunner().invoke(main, ["run", str(flow), "--executor", "dask", "--log-dir", str(tmp_path / "logs")])
    assert result.exit_code == 2, result.output
    assert "pip install 'opflow-runner[dask]'" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").iterdir())


def test_an_unreachable_scheduler_is_a_usage_error(monkeypatch, tmp_path, write_workflow, faults):
    monkeypatch.setattr(dask_cluster_module, "CONNECT_TIMEOUT", 1.0)
    flow = write_workflow("""
        name: unreachable
        tasks:
          - {id: a, plugin: python, config: {function: "faults:ok"}}
    """)
    with pytest.raises(UsageError, match="cannot connect"):
        run(flow, executor="dask", scheduler="tcp://127.0.0.1:9", log_dir=tmp_path / "logs")


# -- the contract, on a LocalCluster ----------------------------------------------
def test_example_workflow_metrics_equal_pandas_describe(tmp_path):
    for name in ("workflow_example.yaml", "sample_data.csv"):
        shutil.copy(REPO / "examples" / name, tmp_path / name)
    result = go(tmp_path / "workflow_example.yaml", "dask", tmp_path)
    assert result.exit_code == 0
    tasks = records(result.run_dir)
    expected = pd.read_csv(tmp_path / "sample_data.csv")[["age", "score"]].describe()
    metrics = tasks["compute_metrics"]["result"]
    for column in ("age", "score"):
        for stat, value in expected[column].items():
            assert metrics[column][stat] == pytest.approx(value), (column, stat)
    assert tasks["ingest_csv"]["result"]["columns"] == ["name", "age", "score", "city"]
    assert tasks["notify"]["result"]["stdout"] == "Metrics computed\n"
    doc = run_json(result.run_dir)
    assert doc["executor"] == "dask" and doc["workers"] == 2 and doc["status"] == "succeeded"
    # Results are kept for resume, written by the workers (they share this disk).
    assert "ingest_csv" in read_results(str(result.run_dir / RESULTS_FILE))


def test_diamond_context_is_the_transitive_upstream_and_params(tmp_path, write_workflow, faults):
    flow = write_workflow("""
        name: diamond
        params: {region: north}
        tasks:
          - {id: a, plugin: python, config: {function: "faults:ok", args: [1]}}
          - {id: b, plugin: python, config: {function: "faults:ok", args: [2]}, depends_on: [a]}
          - {id: c, plugin: python, config: {function: "faults:ok", args: [3]}, depends_on: [a]}
          - {id: d, plugin: python, config: {function: "faults:echo_context"}, depends_on: [b, c]}
          - {id: total, plugin: python, config: {function: "faults:add_upstream"}, depends_on: [b, c]}
          - {id: lone, plugin: python, config: {function: "faults:echo_context"}}
    """)
    result = go(flow, "dask", tmp_path, params={"region": "south"})
    assert result.exit_code == 0, records(result.run_dir)
    tasks = records(result.run_dir)
    assert tasks["d"]["result"] == {"seen": ["a", "b", "c"], "params": {"region": "south"}}
    assert tasks["total"]["result"] == 6
    assert tasks["lone"]["result"] == {"seen": [], "params": {"region": "south"}}


def test_without_the_outcome_messages_outcomes_are_read_from_the_cluster(tmp_path, write_workflow, faults, monkeypatch):
    # Each task sends its Outcome as it ends; lost, the backend reads it in place
    # (a result some task reads) or gathers it (one none reads).
    on_event = dask_backend.DaskBackend._on_event
    dropped = []

    def drop_outcomes(self, event):
        if "outcome" in event[1]:
            dropped.append(event[1]["token"])
            return None
        return on_event(self, event)

    monkeypatch.setattr(dask_backend.DaskBackend, "_on_event", drop_outcomes)
    flow = write_workflow("""
        name: lost
        tasks:
          - {id: a, plugin: python, config: {function: "faults:ok", args: [1]}}
          - {id: b, plugin: python, config: {function: "faults:ok", args: [2]}, depends_on: [a]}
          - {id: total, plugin: python, config: {function: "faults:add_upstream"}, depends_on: [a, b]}
          - {id: bad, plugin: python, config: {function: "faults:raise_error"}, depends_on: [total]}
    """)
    result = go(flow, "dask", tmp_path)
    assert result.exit_code == 1
    tasks = records(result.run_dir)
    assert len(dropped) == 4
    assert tasks["total"]["result"] == 3 and tasks["b"]["result"] == {"value": 2}
    assert tasks["bad"]["status"] == "failed" and tasks["bad"]["error"]["type"] == "ValueError"


def test_an_outcome_too_large_for_a_message_is_read_from_the_cluster(tmp_path, write_workflow):
    (tmp_path / "big.py").write_text("def text(n):\n    return 'x' * n\n")
    flow = write_workflow("""
        name: big
        tasks:
          - {id: long, plugin: python, config: {function: "big:text", args: [60000]}}
          - {id: short, plugin: python, config: {function: "big:text", args: [10]}}
    """)
    result = go(flow, "dask", tmp_path)
    assert result.exit_code == 0
    tasks = records(result.run_dir)
    assert tasks["long"]["result"] == "x" * 60000 and tasks["short"]["result"] == "x" * 10


def test_a_failure_is_recorded_and_fail_fast_skips_downstream(tmp_path, write_workflow, faults):
    flow = write_workflow("""
        name: failfast
        tasks:
          - {id: bad, plugin: python, config: {function: "faults:raise_error", args: ["no good"]}}
          - {id: after_bad, plugin: python, config: {function: "faults:ok"}, depends_on: [bad]}
          - {id: later, plugin: python, config: {function: "faults:ok"}, depends_on: [after_bad]}
    """)
    result = go(flow, "dask", tmp_path)
    assert result.exit_code == 1
    tasks = records(result.run_dir)
    assert tasks["bad"]["status"] == "failed"
    assert tasks["bad"]["error"]["type"] == "ValueError" and tasks["bad"]["error"]["message"] == "no good"
    assert "raise ValueError" in tasks["bad"]["error"]["traceback"]
    assert tasks["after_bad"]["status"] == "skipped" and "bad" in tasks["after_bad"]["reason"]
    assert run_json(result.run_dir)["tasks"] == {"bad": "failed", "after_bad": "skipped", "later": "skipped"}


def test_fail_fast_lets_running_tasks_finish_and_cancels_the_rest(tmp_path, write_workflow, faults):
    # `running` is in flight when `bad` fails, and returns only once the failure is
    # on record (tasks/bad.json): it finishes, and its child never starts.
    (tmp_path / "gate.py").write_text(textwrap.dedent(f"""
        import glob, time

        def until_bad_is_recorded():
            deadline = time.monotonic() + 60
            while not glob.glob({str(tmp_path / "logs" / "*" / "tasks" / "bad.json")!r}):
                if time.monotonic() > deadline:
                    raise TimeoutError("bad was never recorded")
                time.sleep(0.02)
            return "saw it"
    """))
    flow = write_workflow("""
        name: failfast2
        tasks:
          - {id: running, plugin: python, config: {function: "gate:until_bad_is_recorded"}}
          - {id: bad, plugin: python, config: {function: "faults:raise_error"}}
          - {id: child, plugin: python, config: {function: "faults:ok"}, depends_on: [running]}
    """)
    result = go(flow, "dask", tmp_path)
    assert result.exit_code == 1
    tasks = records(result.run_dir)
    assert tasks["running"]["status"] == "succeeded"
    assert tasks["bad"]["status"] == "failed"
    assert tasks["child"]["status"] == "cancelled" and tasks["child"]["attempts"] == 0
    assert "bad" in tasks["child"]["reason"]


def test_fail_fast_starts_none_of_the_tasks_queued_on_the_cluster(tmp_path, write_workflow, faults):
    # One worker, and more tasks submitted than it runs at once: `bad` runs first,
    # the markers wait in Dask's queue. Once `bad` failed, none of them starts.
    marks = tmp_path / "marks"
    marks.mkdir()
    markers = "\n".join(
        f'  - {{id: m{i}, plugin: python, config: {{function: "faults:chained", args: [{str(marks)!r}, {i}]}}}}'
        for i in range(12))
    flow = write_workflow("name: failfast3\ntasks:\n"
                          '  - {id: bad, plugin: python, config: {function: "faults:raise_error"}}\n' + markers + "\n")
    result = run(flow, executor="dask", workers=1, log_dir=tmp_path / "logs")
    assert result.exit_code == 1
    tasks = records(result.run_dir)
    assert tasks["bad"]["status"] == "failed"
    ran = sorted(int(p.name) for p in marks.iterdir())
    assert {f"m{i}" for i in ran} == {t for t, r in tasks.items() if r["status"] == "succeeded"}
    # A marker that ran had started before bad ended (queued behind it, none would).
    bad_end = tasks["bad"]["finished_at"]
    assert all(tasks[f"m{i}"]["started_at"] <= bad_end for i in ran), (ran, bad_end)
    cancelled = [t for t, r in tasks.items() if r["status"] == "cancelled"]
    assert cancelled and all(tasks[t]["attempts"] == 0 for t in cancelled)


def test_keep_going_runs_everything_whose_upstream_succeeded(tmp_path, write_workflow, faults):
    flow = write_workflow("""
        name: keepgoing
        tasks:
          - {id: bad, plugin: python, config: {function: "faults:raise_error"}}
          - {id: downstream, plugin: python, config: {function: "faults:ok"}, depends_on: [bad]}
          - {id: good, plugin: python, config: {function: "faults:ok"}}
          - {id: good_next, plugin: python, config: {function: "faults:ok"}, depends_on: [good]}
    """)
    result = go(flow, "dask", tmp_path, keep_going=True)
    assert result.exit_code == 1
    assert run_json(result.run_dir)["tasks"] == {
        "bad": "failed", "downstream": "skipped", "good": "succeeded", "good_next": "succeeded"}


def test_retry_then_succeed_records_every_attempt(tmp_path, write_workflow, faults):
    marker = tmp_path / "attempts.txt"
    flow = write_workflow(f"""
        name: retry
        tasks:
          - {{id: flaky, plugin: python, config: {{function: "faults:fail_until", args: ["{marker}", 2]}},
              retries: 2, retry_delay: 0.01}}
    """)
    result = go(flow, "dask", tmp_path)
    assert result.exit_code == 0
    record = records(result.run_dir)["flaky"]
    assert record["attempts"] == 3 and record["result"] == {"attempts_seen": 3}
    assert [a["error"]["type"] if a["error"] else None for a in record["attempt_log"]] == ["RuntimeError", "RuntimeError", None]


def test_resume_puts_earlier_results_on_the_cluster(tmp_path, write_workflow, faults):
    marker = tmp_path / "count"
    flow = write_workflow(f"""
        name: resumable
        tasks:
          - {{id: a, plugin: python, config: {{function: "faults:ok", args: [5]}}}}
          - {{id: b, plugin: python, config: {{function: "faults:fail_until", args: ["{marker}", 1]}}, depends_on: [a]}}
          - {{id: c, plugin: python, config: {{function: "faults:add_upstream"}}, depends_on: [a]}}
    """)
    first = go(flow, "dask", tmp_path, keep_going=True)
    assert run_json(first.run_dir)["tasks"] == {"a": "succeeded", "b": "failed", "c": "succeeded"}
    second = go(flow, "dask", tmp_path, resume=True)
    assert second.exit_code == 0
    tasks = records(second.run_dir)
    assert tasks["a"]["reused"] and tasks["b"]["status"] == "succeeded"


# -- what only the Dask backend does ------------------------------------------------
def test_results_stay_on_the_cluster(tmp_path, write_workflow, monkeypatch):
    """A DataFrame read by three tasks is never fetched by the coordinator, nor is any result:
    each Outcome comes as a message from its worker (no gather, no Client.run per task)."""
    (tmp_path / "frames.py").write_text(textwrap.dedent("""
        import pandas as pd

        def make(rows):
            return pd.DataFrame({"x": range(rows)})

        def total(context):
            return int(context["make"]["x"].sum())
    """))
    flow = write_workflow("""
        name: locality
        tasks:
          - {id: make, plugin: python, config: {function: "frames:make", args: [100000]}}
          - {id: r1, plugin: python, config: {function: "frames:total"}, depends_on: [make]}
          - {id: r2, plugin: python, config: {function: "frames:total"}, depends_on: [make]}
          - {id: r3, plugin: python, config: {function: "frames:total"}, depends_on: [make]}
    """)
    fetched: list[str] = []
    result_of, run_on = distributed.Future.result, distributed.Client.run

    def spy_result(self, *args, **kwargs):
        fetched.append(str(self.key))
        return result_of(self, *args, **kwargs)

    def spy_run(self, function, *args, **kwargs):
        fetched.append(f"{function.__name__}{args}")
        return run_on(self, function, *args, **kwargs)

    monkeypatch.setattr(distributed.Future, "result", spy_result)
    monkeypatch.setattr(distributed.Client, "run", spy_run)
    result = go(flow, "dask", tmp_path)
    assert result.exit_code == 0
    expected = sum(range(100000))
    assert {t: r["result"] for t, r in records(result.run_dir).items() if t != "make"} == dict.fromkeys(("r1", "r2", "r3"), expected)
    assert fetched == []


def test_a_result_is_reported_while_its_worker_runs_the_next_task(tmp_path, write_workflow, faults):
    # One worker: `x` runs right after `a` and returns only once a's outcome is on
    # record, so reading that outcome must not wait behind `x` on the worker.
    (tmp_path / "gate.py").write_text(textwrap.dedent(f"""
        import glob, time

        def until_a_is_recorded():
            deadline = time.monotonic() + 30
            while not glob.glob({str(tmp_path / "logs" / "*" / "tasks" / "a.json")!r}):
                if time.monotonic() > deadline:
                    raise TimeoutError("a was never recorded")
                time.sleep(0.02)
            return "saw it"
    """))
    flow = write_workflow("""
        name: busy
        tasks:
          - {id: a, plugin: python, config: {function: "faults:ok"}}
          - {id: x, plugin: python, config: {function: "gate:until_a_is_recorded"}}
          - {id: b, plugin: python, config: {function: "faults:echo_context"}, depends_on: [a]}
    """)
    result = run(flow, executor="dask", workers=1, log_dir=tmp_path / "logs")
    assert result.exit_code == 0, records(result.run_dir)
    assert records(result.run_dir)["b"]["result"]["seen"] == ["a"]


@pytest.fixture
def cluster_backend():
    """A DaskBackend of 2 workers on its own LocalCluster; `.starts` and `.started` record the start messages."""
    starts: list[tuple[int, int]] = []
    started = threading.Event()

    def on_start(token, pid):
        starts.append((token, pid))
        started.set()

    instance = dask_backend.DaskBackend(2, on_start)
    instance.starts, instance.started = starts, started
    try:
        yield instance
    finally:
        instance.close()


def _request(token, task_id, plugin: PluginRef, config=None, tmp_path=None, **fields) -> TaskRequest:
    return TaskRequest(token=token, task_id=task_id, attempt=1, plugin=plugin, config=config or {}, depends_on=(),
                       upstream=(), params={}, workflow_dir=str(tmp_path or "."), **fields)


def _builtin(name):
    refs, _ = discover_plugins([])
    return refs[name]


def test_start_pid_worker_address_and_scheduler_are_reported(cluster_backend, tmp_path):
    assert cluster_backend.scheduler_address.startswith("tls://127.0.0.1:")
    outcome = cluster_backend.submit(_request(1, "one", _builtin("shell"), {"command": "echo hi"}, tmp_path)).result(timeout=60)
    assert outcome.ok, outcome.error
    wait_for(cluster_backend.started.is_set, 10, "the start message")
    workers = cluster_backend._client.scheduler_info()["workers"]
    assert outcome.where["worker"] in workers
    assert cluster_backend.starts == [(1, outcome.pid)]
    assert outcome.pid in {p.pid for p in psutil.Process().children(recursive=True)}  # a LocalCluster worker


def test_halt_queued_answers_not_started_for_tasks_that_had_not_started(cluster_backend, tmp_path):
    cluster_backend.halt_queued()
    shell = _builtin("shell")
    deadline = time.monotonic() + 30
    token = 0
    while True:  # the halt reaches the workers a moment later (Client.run on a thread)
        token += 1
        outcome = cluster_backend.submit(_request(token, f"t{token}", shell, {"command": "true"}, tmp_path)).result(timeout=60)
        if not outcome.ok:
            break
        assert time.monotonic() < deadline, "halt_queued never reached the workers"
    assert outcome.error["type"] == "NotStarted"
    # A trigger task (all_done, one_failed) still runs after a fail-fast stop.
    trigger = cluster_backend.submit(_request(token + 1, "cleanup", shell, {"command": "true"}, tmp_path, ignore_halt=True))
    assert trigger.result(timeout=60).ok


def test_finished_tasks_are_released_on_the_cluster_in_batches(cluster_backend, tmp_path, monkeypatch):
    # Each release makes the scheduler message the task's worker, and a worker gets
    # one batch every 5 ms: one at a time, those messages held back the next task.
    monkeypatch.setattr(dask_backend, "RELEASE_BATCH", 3)
    shell = _builtin("shell")
    scheduler = cluster_backend._cluster.scheduler

    def ours():
        return [k for k in scheduler.tasks if str(k).startswith("opflow-")]

    for token in (1, 2):
        assert cluster_backend.submit(_request(token, f"t{token}", shell, {"command": "true"}, tmp_path)).result(timeout=60).ok
    # A round trip after them on the client's stream: a release sent before it is handled by now.
    cluster_backend._client.submit(int, 0, pure=False).result(timeout=60)
    assert len(ours()) == 2, "finished tasks were released one by one"
    assert cluster_backend.submit(_request(3, "t3", shell, {"command": "true"}, tmp_path)).result(timeout=60).ok
    wait_for(lambda: not ours(), 30, "the batch of three to be released")


def test_a_plugin_file_a_worker_lacks_fails_its_task_saying_so(cluster_backend, tmp_path):
    ref = PluginRef("ghost", "file", f"{tmp_path / 'workers' / 'ghost.py'}:Ghost")
    outcome = cluster_backend.submit(_request(1, "ghost", ref, tmp_path=tmp_path)).result(timeout=60)
    assert not outcome.ok
    assert outcome.error["type"] == "PluginError"
    assert "does not exist on dask worker" in outcome.error["message"] and "ghost.py" in outcome.error["message"]


def test_a_workers_folder_is_shipped_to_workers_that_lack_it(cluster_backend, tmp_path):
    folder = tmp_path / "workers"
    folder.mkdir()
    (folder / "helper.py").write_text("GREETING = 'hello from a shipped file'\n")
    (folder / "shipped.py").write_text(textwrap.dedent("""
        from opflow.plugin_base import Plugin
        import helper

        class Shipped(Plugin):
            name = "shipped"

            def run(self, config, context):
                return {"said": helper.GREETING, "file": __file__}
    """))
    refs, _ = discover_plugins([folder])
    ref = refs["shipped"]
    bundle = cluster_backend._bundle_for(ref)  # what a remote scheduler gets: read here, scattered once
    shutil.rmtree(folder)  # ...and the workers do not have the folder
    cluster_backend._bundle_for = lambda ref: bundle
    cluster_backend.local = False
    outcome = cluster_backend.submit(_request(1, "shipped", ref, tmp_path=tmp_path)).result(timeout=60)
    cluster_backend.local = True
    assert outcome.ok, outcome.error
    assert outcome.result["said"] == "hello from a shipped file"
    assert "opflow-plugins" in outcome.result["file"]


def test_timeout_kills_the_hung_task_and_the_cluster_goes_on(tmp_path, write_workflow, faults):
    flow = write_workflow("""
        name: hang
        tasks:
          - {id: stuck, plugin: python, config: {function: "faults:hang"}, timeout: 0.5, retries: 1}
          - {id: fine, plugin: python, config: {function: "faults:ok"}}
          - {id: after, plugin: python, config: {function: "faults:ok"}, depends_on: [fine]}
    """)
    started = time.monotonic()
    result = go(flow, "dask", tmp_path, keep_going=True)
    assert time.monotonic() - started < 60
    tasks = records(result.run_dir)
    assert tasks["stuck"]["status"] == "failed" and tasks["stuck"]["attempts"] == 2
    assert all(a["error"]["type"] == "Timeout" for a in tasks["stuck"]["attempt_log"])
    assert tasks["fine"]["status"] == "succeeded", tasks["fine"]
    assert tasks["after"]["status"] == "succeeded", tasks["after"]
    for attempt in tasks["stuck"]["attempt_log"]:
        assert attempt["pid"] and gone(attempt["pid"])  # the worker process that ran it was killed


def test_timeout_kills_the_grandchildren_of_a_shell_task(tmp_path, write_workflow):
    pid_file = tmp_path / "grandchild.pid"
    flow = write_workflow(f"""
        name: grandchild
        tasks:
          - id: spawner
            plugin: shell
            config: {{command: "sleep 300 & echo $! > {pid_file}; wait"}}
            timeout: 2  # time enough, even on a loaded machine, for the pid file to be written
    """)
    result = run(flow, executor="dask", workers=1, log_dir=tmp_path / "logs")
    assert records(result.run_dir)["spawner"]["error"]["type"] == "Timeout"
    grandchild = int(pid_file.read_text())
    wait_for(lambda: gone(grandchild), 10, "the grandchild to be gone")


def test_a_crashing_task_fails_alone(tmp_path, write_workflow, faults):
    flow = write_workflow("""
        name: crash
        tasks:
          - {id: victim, plugin: python, config: {function: "faults:os_exit"}}
          - {id: fine, plugin: python, config: {function: "faults:ok"}}
          - {id: after, plugin: python, config: {function: "faults:ok"}, depends_on: [fine]}
    """)
    result = go(flow, "dask", tmp_path, keep_going=True)
    tasks = records(result.run_dir)
    assert tasks["victim"]["status"] == "failed"
    assert tasks["victim"]["error"]["type"] == "WorkerCrashed"
    assert tasks["fine"]["status"] == "succeeded", tasks["fine"]
    assert tasks["after"]["status"] == "succeeded", tasks["after"]


def test_sigint_stops_a_dask_run_and_leaves_nothing(tmp_path, write_workflow, faults):
    pid_file = tmp_path / "sleeper.pid"
    flow = write_workflow(f"""
        name: signals
        tasks:
          - {{id: sleeper, plugin: shell, config: {{command: "sleep 300 & echo $! > {pid_file}; wait"}}}}
          - {{id: waiter, plugin: python, config: {{function: "faults:hang"}}}}
          - {{id: never, plugin: python, config: {{function: "faults:ok"}}, depends_on: [sleeper]}}
    """)
    proc = subprocess.Popen([sys.executable, "-m", "opflow", "run", str(flow), "--executor", "dask", "--workers", "2",
                             "--log-dir", str(tmp_path / "logs")],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 60, "the task to start")
        descendants = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            kill_tree(proc.pid, grace=1.0)
            proc.wait(timeout=10)
    assert proc.returncode == 130, output
    doc = run_json(latest_run_dir(tmp_path / "logs"))
    assert doc["status"] == "interrupted"
    assert doc["tasks"] == {"sleeper": "cancelled", "waiter": "cancelled", "never": "cancelled"}
    sleeper = int(pid_file.read_text())
    wait_for(lambda: gone(sleeper) and all(gone(p.pid) for p in descendants), 15, "every process to be gone")


# -- a real cluster: scheduler and workers as separate processes ---------------------
@contextlib.contextmanager
def _hand_started_cluster(tmp_path: Path, worker_args: list[list[str]]):
    """helpers.HandStartedCluster; yields the scheduler address."""
    with HandStartedCluster(tmp_path, worker_args) as cluster:
        yield cluster.address


@pytest.fixture
def dask_cluster(tmp_path):
    """A scheduler and two single-thread workers started by hand; yields the scheduler address."""
    with _hand_started_cluster(tmp_path, [[], []]) as address:
        yield address


def test_the_example_runs_on_a_separately_started_cluster(dask_cluster, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    for name in ("workflow_example.yaml", "sample_data.csv"):
        shutil.copy(REPO / "examples" / name, work / name)
    result = run_cli("run", "workflow_example.yaml", "--executor", "dask", "--scheduler", dask_cluster,
                     "--log-dir", str(work / "logs"), cwd=work, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    doc = run_json(latest_run_dir(work / "logs"))
    assert doc["status"] == "succeeded" and doc["executor"] == "dask"
    assert doc["tasks"] == {"ingest_csv": "succeeded", "compute_metrics": "succeeded", "notify": "succeeded"}
    metrics = json.loads((latest_run_dir(work / "logs") / "tasks" / "compute_metrics.json").read_text())["result"]
    assert metrics["age"]["mean"] == pytest.approx(pd.read_csv(work / "sample_data.csv")["age"].mean())


def test_a_timeout_on_a_remote_worker_restarts_that_worker(dask_cluster, tmp_path, write_workflow, faults):
    flow = write_workflow("""
        name: remote-hang
        tasks:
          - {id: stuck, plugin: python, config: {function: "faults:hang"}, timeout: 1}
          - {id: after, plugin: python, config: {function: "faults:ok"}}
    """)
    result = run_cli("run", str(flow), "--executor", "dask", "--scheduler", dask_cluster, "--keep-going",
                     "--log-dir", str(tmp_path / "logs"), cwd=tmp_path, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    tasks = records(latest_run_dir(tmp_path / "logs"))
    assert tasks["stuck"]["error"]["type"] == "Timeout"
    assert tasks["after"]["status"] == "succeeded"
    wait_for(lambda: gone(tasks["stuck"]["attempt_log"][0]["pid"]), 15, "the stuck worker process to end")
    with distributed.Client(dask_cluster, timeout=30, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)  # its Nanny started a fresh one


OLD_OPFLOW = """
import opflow._version

opflow._version.__version__ = "0.0.1-old"  # this worker's opflow reports another version
"""


def test_a_worker_with_another_opflow_version_is_refused_naming_it_and_both_versions(tmp_path, write_workflow):
    preload = tmp_path / "old_opflow.py"
    preload.write_text(OLD_OPFLOW)
    flow = write_workflow("""
        name: versions
        tasks:
          - {id: a, plugin: shell, config: {command: "echo a"}}
    """)
    with _hand_started_cluster(tmp_path, [[], ["--preload", str(preload)]]) as address:
        done = run_cli("run", str(flow), "--executor", "dask", "--scheduler", address, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    from opflow._version import __version__

    line = done.stderr.strip().splitlines()[-1]
    assert "0.0.1-old" in line and f"({__version__})" in line and "worker(s) tcp://127.0.0.1:" in line, line
    assert line.count("tcp://127.0.0.1:") == 2  # the scheduler, and the one old worker only
    assert run_dirs(tmp_path / "logs") == []  # nothing ran


def test_run_json_records_the_cluster_it_ran_on(dask_cluster, tmp_path, write_workflow):
    flow = write_workflow("""
        name: where
        tasks:
          - {id: a, plugin: shell, config: {command: "echo a"}}
    """)
    done = run_cli("run", str(flow), "--executor", "dask", "--scheduler", dask_cluster, "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    cluster = run_json(latest_run_dir(tmp_path / "logs"))["cluster"]
    # Two single-thread workers started by hand with --no-dashboard: no link to give.
    assert cluster == {"scheduler": dask_cluster, "dashboard": None, "workers": 2, "threads": 2}


def test_results_between_tasks_when_and_a_dynamic_foreach_give_the_same_records_as_the_pool(tmp_path):
    shutil.copytree(REPO / "examples", tmp_path / "examples", symlinks=False)
    flow = tmp_path / "examples" / "csv_fanout.yaml"
    seen = {}
    for executor in ("process", "dask"):
        result = go(flow, executor, tmp_path / executor)
        assert result.exit_code == 0, executor
        seen[executor] = {t: (r["status"], r["result"], r["config"], r["depends_on"], r["reason"])
                          for t, r in records(result.run_dir).items()}
    assert seen["dask"] == seen["process"]
    assert seen["dask"]["count_rows[0]"][1] == {"file": "sales/east.csv", "rows": 4}
    skipped = go(flow, "dask", tmp_path / "dask", params={"big": 100})
    assert skipped.exit_code == 0
    assert records(skipped.run_dir)["note_big"]["reason"].startswith("when: ${tasks.summary.result.rows} > ${params.big}")
