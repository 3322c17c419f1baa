"""`opflow export RUN_DIR --format chrome-trace -o FILE` (contract v3, issue 24), through the real CLI:
the trace is checked by the Trace Event Format's rules (what Perfetto and chrome://tracing load), and
against the run's own records: a track per worker process, a slice per attempt, retries and waits."""
from __future__ import annotations

import json
from collections import defaultdict

import pytest

from helpers import latest_run_dir, records, run_cli, write

FLOW = """
    name: traced
    tasks:
      - {id: a, plugin: python, config: {function: "faults:ok"}}
      - {id: b, plugin: python, config: {function: "faults:ok"}}
      - {id: c, plugin: python, config: {function: "faults:ok"}}
      - id: flaky
        plugin: python
        depends_on: [a]
        retries: 1
        retry_delay: 0.3
        config: {function: "faults:fail_until", args: [flaky.count]}
      - {id: broken, plugin: python, depends_on: [b], config: {function: "faults:raise_error"}}
"""


def check_trace_format(doc: dict) -> dict[tuple, list[dict]]:
    """Fail unless `doc` follows the Trace Event Format's rules; returns (pid, tid) -> its X slices."""
    assert isinstance(doc, dict) and isinstance(doc["traceEvents"], list) and doc["traceEvents"]
    tracks: dict[tuple, list[dict]] = defaultdict(list)
    named: set[tuple] = set()
    for event in doc["traceEvents"]:
        assert {"ph", "ts", "pid", "tid", "name"} <= set(event), event
        assert isinstance(event["pid"], int) and isinstance(event["tid"], int), event
        assert isinstance(event["ts"], (int, float)) and event["ts"] >= 0, event
        assert event["ph"] in ("X", "M"), event
        if event["ph"] == "M":
            assert event["name"] in ("process_name", "thread_name", "thread_sort_index"), event
            if event["name"] == "thread_name":
                named.add((event["pid"], event["tid"]))
            continue
        assert isinstance(event["dur"], (int, float)) and event["dur"] >= 0, event
        tracks[(event["pid"], event["tid"])].append(event)
    for track, slices in tracks.items():
        assert track in named, f"track {track} has no thread_name"
        slices.sort(key=lambda e: e["ts"])
        for earlier, later in zip(slices, slices[1:]):
            assert earlier["ts"] + earlier["dur"] <= later["ts"], f"overlap on {track}: {earlier} / {later}"
    return tracks


def _thread_names(doc: dict) -> dict[tuple, str]:
    return {(e["pid"], e["tid"]): e["args"]["name"] for e in doc["traceEvents"]
            if e["ph"] == "M" and e["name"] == "thread_name"}


@pytest.fixture
def traced_run(tmp_path, faults):
    flow = write(tmp_path, "flow.yaml", FLOW)
    ran = run_cli("run", str(flow), "--workers", "2", "--keep-going", "--quiet", cwd=tmp_path)
    assert ran.returncode == 1, ran.stderr  # `broken` fails; the rest succeed (flaky on its retry)
    return latest_run_dir(tmp_path / "logs")


def test_a_run_exports_as_a_valid_chrome_trace(tmp_path, traced_run):
    out = tmp_path / "trace.json"
    result = run_cli("export", str(traced_run), "--format", "chrome-trace", "-o", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout
    doc = json.loads(out.read_text())
    tracks = check_trace_format(doc)
    names = _thread_names(doc)
    tasks = records(traced_run)

    attempts = [e for slices in tracks.values() for e in slices if e["cat"] == "attempt"]
    assert len(attempts) == sum(r["attempts"] for r in tasks.values()) == 6
    # One track per worker process: each attempt sits on the track named after its worker's pid.
    for event in attempts:
        record = tasks[event["name"]]
        pid = record["attempt_log"][event["args"]["attempt"] - 1]["pid"]
        assert names[(event["pid"], event["tid"])] == f"worker {pid}"
    worker_pids = {a["pid"] for r in tasks.values() for a in r["attempt_log"]}
    assert {n for n in names.values() if n.startswith("worker")} == {f"worker {p}" for p in worker_pids}

    # The retry: two slices, the first failed (marked), the second succeeded.
    first, second = sorted((e for e in attempts if e["name"] == "flaky"), key=lambda e: e["ts"])
    assert (first["args"]["attempt"], second["args"]["attempt"]) == (1, 2)
    assert first["cname"] == "terrible" and first["args"]["status"] == "failed" and "error" in first["args"]
    assert "cname" not in second and second["args"]["status"] == "succeeded"
    (broken,) = [e for e in attempts if e["name"] == "broken"]
    assert broken["cname"] == "terrible" and broken["args"]["error"] == "ValueError: boom"

    # Waits: the retry's backoff, between its two attempts, as long as the record says.
    waits = [e for slices in tracks.values() for e in slices if e["cat"] == "wait"]
    (backoff,) = [e for e in waits if e["name"] == "flaky (backoff)"]
    assert first["ts"] + first["dur"] <= backoff["ts"] and backoff["ts"] + backoff["dur"] <= second["ts"]
    assert abs(backoff["dur"] / 1e6 - tasks["flaky"]["backoff_s"]) < 0.01
    assert any(e["name"].endswith("(queue wait)") for e in waits)
    assert all(names[(e["pid"], e["tid"])].startswith("waits") for e in waits)


def test_export_writes_trace_json_in_the_run_dir_by_default(tmp_path, traced_run):
    result = run_cli("export", str(traced_run), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    check_trace_format(json.loads((traced_run / "trace.json").read_text()))


@pytest.mark.parametrize("make", ["missing", "empty", "bad run.json"])
def test_a_bad_run_dir_is_one_line_and_exit_2(tmp_path, make):
    target = tmp_path / "run"
    if make != "missing":
        target.mkdir()
    if make == "bad run.json":
        (target / "run.json").write_text("{not json")
    result = run_cli("export", str(target), "-o", str(tmp_path / "t.json"), cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and str(target) in result.stderr, result.stderr
    assert not (tmp_path / "t.json").exists()


def test_an_unknown_format_is_exit_2(tmp_path, traced_run):
    result = run_cli("export", str(traced_run), "--format", "svg", cwd=tmp_path)
    assert result.returncode == 2 and "chrome-trace" in result.stderr and "Traceback" not in result.stderr


def test_tasks_on_threads_of_one_process_get_a_track_each_while_they_overlap(tmp_path, faults):
    flow = write(tmp_path, "flow.yaml", """
        name: threads
        tasks:
          - {id: one, plugin: shell, timeout: 60, config: {command: "touch one; while [ ! -e two ]; do sleep 0.01; done"}}
          - {id: two, plugin: shell, timeout: 60, config: {command: "touch two; while [ ! -e one ]; do sleep 0.01; done"}}
    """)  # each ends only once the other has started: they overlap
    ran = run_cli("run", str(flow), "--executor", "thread", "--workers", "2", "--quiet", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    run_dir = latest_run_dir(tmp_path / "logs")
    out = tmp_path / "trace.json"
    assert run_cli("export", str(run_dir), "-o", str(out), cwd=tmp_path).returncode == 0
    doc = json.loads(out.read_text())
    tracks = check_trace_format(doc)  # never both on one track
    names = _thread_names(doc)
    pid = records(run_dir)["one"]["attempt_log"][0]["pid"]
    used = {names[track] for track, slices in tracks.items() if any(e["cat"] == "attempt" for e in slices)}
    assert used == {f"worker {pid}", f"worker {pid} #2"}
