"""attempt.py: error kinds are the contract strings, and an outcome says it never
started by a field, not by its error's text."""
from __future__ import annotations

import pickle

from opflow import api
from opflow.attempt import NOT_STARTED, STOPPED_BEFORE_START, ErrorKind, Outcome, error_record

from helpers import records


def test_error_kinds_are_the_contract_strings_and_records_hold_plain_strings():
    assert {k.value for k in ErrorKind} == {
        "NotStarted", "PluginError", "UnpicklableResult", "SystemExit", "Timeout", "Interrupted", "Cancelled",
        "WorkerCrashed", "MemoryLimitExceeded", "PoolError", "BrokenPool", "UnguardedScript", "MissingOutput"}
    assert NOT_STARTED == "NotStarted"
    record = error_record(ErrorKind.TIMEOUT, "timed out")
    assert type(record["type"]) is str and record == {"type": "Timeout", "message": "timed out", "traceback": ""}
    assert error_record("ValueError", "bad")["type"] == "ValueError"  # a plugin's own exception: its class name


def test_not_started_is_a_field_that_travels_and_failed_is_not_not_started():
    outcome = Outcome.not_started(7, pid=42)
    assert outcome.never_started and not outcome.ok and outcome.pid == 42
    assert outcome.error == {"type": "NotStarted", "message": STOPPED_BEFORE_START, "traceback": ""}
    assert pickle.loads(pickle.dumps(outcome)).never_started  # from a worker process
    failed = Outcome.failed(7, error_record(ErrorKind.INTERRUPTED, "did not stop in time"), started_at=1.0)
    assert not failed.never_started and not failed.ok and failed.started_at == 1.0
    assert failed.finished_at >= failed.started_at and failed.where == {}


def test_a_plugin_error_named_like_not_started_is_a_failure(tmp_path, write_workflow):
    """The coordinator tells a never-started attempt by its field: a task whose own
    exception is called NotStarted fails (it is not queued again as never started)."""
    (tmp_path / "named.py").write_text(
        "class NotStarted(Exception):\n    pass\n\n\ndef run(context):\n    raise NotStarted('mine')\n")
    flow = write_workflow("""
        name: named
        tasks:
          - {id: a, plugin: python, config: {function: "named:run"}}
    """)
    # timeout: were it taken for never started, it would be queued again without end
    result = api.run(flow, workers=1, executor="thread", log_dir=tmp_path / "logs", timeout=30)
    record = records(result.run_dir)["a"]
    assert result.exit_code == 1
    assert record["status"] == "failed" and record["error"]["type"] == "NotStarted"
    assert record["attempts"] == 1
