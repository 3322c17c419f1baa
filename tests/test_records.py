"""Trustworthy records: the results log, resume after a crash, what resume
trusts, symlinks, file modes, pruning. Real CLI runs on real YAML in tmp_path."""
from __future__ import annotations

import json
import os
import pickle
import stat
import struct
import subprocess
import sys
import zlib

import pytest

from helpers import REPO, latest_run_dir, records, run_cli, wait_for

HEADER = struct.Struct("<4sHQI")  # results_log's record header


def _record_spans(data: bytes) -> list[tuple[str, int, int]]:
    """(task_id, start, end) of each record in a results log."""
    spans, offset = [], 0
    while offset < len(data):
        _, key_len, blob_len, _ = HEADER.unpack_from(data, offset)
        key = data[offset + HEADER.size: offset + HEADER.size + key_len].decode()
        end = offset + HEADER.size + key_len + blob_len
        spans.append((key, offset, end))
        offset = end
    return spans


def _counting_flow(write_workflow, tmp_path):
    """a, b, c each count their runs; `total` sums them; `gate` fails its first attempt."""
    return write_workflow(f"""
        name: counted
        tasks:
          - {{id: a, plugin: python, config: {{function: "faults:counted", args: ["{tmp_path / 'a.n'}", 1]}}}}
          - {{id: b, plugin: python, config: {{function: "faults:counted", args: ["{tmp_path / 'b.n'}", 10]}}}}
          - {{id: c, plugin: python, config: {{function: "faults:counted", args: ["{tmp_path / 'c.n'}", 100]}}}}
          - {{id: total, plugin: python, config: {{function: "faults:add_upstream"}}, depends_on: [a, b, c]}}
          - {{id: gate, plugin: python, config: {{function: "faults:fail_until", args: ["{tmp_path / 'gate.n'}", 1]}},
             depends_on: [a, b, c]}}
    """)


@pytest.mark.parametrize("damage", ["torn", "flipped"])
def test_a_damaged_results_record_is_detected_and_only_its_task_reruns(damage, tmp_path, write_workflow, faults):
    flow = _counting_flow(write_workflow, tmp_path)
    first = run_cli("run", str(flow), "--keep-going", "--workers", "2", cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    first_dir = latest_run_dir(tmp_path / "logs")
    log = first_dir / "results.pickles"
    data = log.read_bytes()
    spans = _record_spans(data)
    assert sorted(k for k, _, _ in spans) == ["a", "b", "c"]
    victim, start, end = spans[0]  # the first record: another follows it
    if damage == "torn":  # its last bytes never reached the disk; the next record follows at once
        data = data[:end - 5] + data[end:]
    else:  # one bit flipped in its blob
        middle = (start + HEADER.size + end) // 2
        data = data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:]
    log.write_bytes(data)

    again = run_cli("resume", str(first_dir), "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert sorted(doc["reused"]) == sorted({"a", "b", "c"} - {victim})
    assert any(f"task '{victim}': its result is missing" in c for c in doc["resume_changes"])
    counts = {t: int((tmp_path / f"{t}.n").read_text()) for t in "abc"}
    assert counts == {t: 2 if t == victim else 1 for t in "abc"}
    assert records(latest_run_dir(tmp_path / "logs"))["total"]["result"] == 111


def test_resume_after_a_coordinator_sigkill_reruns_exactly_what_had_not_succeeded(tmp_path):
    from crash_trial import run_trial

    trial = run_trial(tmp_path, n_tasks=40, kill_after=12, workers=2, delay=0.05)
    assert trial.killed
    assert trial.crashed_state == "crashed"  # run.json still says running; its pid is dead
    assert trial.resume_code == 0, trial.resume_stderr
    assert trial.rerun == trial.not_succeeded
    assert len(trial.not_succeeded) < 41  # what succeeded before the crash was reused
    assert trial.wrong_results == []


# -- what resume trusts --------------------------------------------------------------
def _failed_run(write_workflow, tmp_path):
    """A run where `a` succeeded (its result read by `b`) and `b` failed."""
    flow = write_workflow(f"""
        name: trusting
        tasks:
          - {{id: a, plugin: python, config: {{function: "faults:counted", args: ["{tmp_path / 'a.n'}", 5]}}}}
          - {{id: b, plugin: python, config: {{function: "faults:fail_until", args: ["{tmp_path / 'b.n'}", 1]}},
             depends_on: [a]}}
    """)
    assert run_cli("run", str(flow), cwd=tmp_path).returncode == 1
    return flow, latest_run_dir(tmp_path / "logs")


def _run_dirs(tmp_path):
    return sorted(p for p in (tmp_path / "logs").iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize("what, mode", [("results.pickles", 0o666), ("results.pickles", 0o620), (".", 0o777),
                                        ("run.json", 0o646)])
def test_resume_refuses_a_run_dir_others_may_write(what, mode, tmp_path, write_workflow, faults):
    _, run_dir = _failed_run(write_workflow, tmp_path)
    (run_dir / what).chmod(mode)
    before = _run_dirs(tmp_path)
    refused = run_cli("resume", str(run_dir), cwd=tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "writable by group or others" in refused.stderr and "Traceback" not in refused.stderr
    assert _run_dirs(tmp_path) == before  # nothing ran
    assert (tmp_path / "b.n").read_text() == "1"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_resume_refuses_a_results_log_owned_by_someone_else(tmp_path, write_workflow, faults):
    _, run_dir = _failed_run(write_workflow, tmp_path)
    os.chown(run_dir / "results.pickles", 65534, 65534)
    refused = run_cli("resume", str(run_dir), cwd=tmp_path)
    assert refused.returncode == 2 and "owned by uid 65534, not by you" in refused.stderr


def test_a_planted_pickle_is_never_loaded(tmp_path, write_workflow, faults):
    # Someone else's results log (here: world-writable) holding a pickle whose loading runs code.
    _, run_dir = _failed_run(write_workflow, tmp_path)
    pwned = tmp_path / "pwned"
    payload = pickle.dumps(_Touch(str(pwned)))
    log = run_dir / "results.pickles"
    old_format = struct.pack("<4sHQ", b"OPR1", 1, len(payload)) + b"a" + payload  # what opflow 1 read
    crc = zlib.crc32(payload, zlib.crc32(b"a", zlib.crc32(struct.pack("<HQ", 1, len(payload)))))
    log.write_bytes(old_format + HEADER.pack(b"OPR2", 1, len(payload), crc) + b"a" + payload)
    log.chmod(0o666)
    assert run_cli("resume", str(run_dir), cwd=tmp_path).returncode == 2
    assert run_cli("run", str(tmp_path / "flow.yaml"), "--resume", cwd=tmp_path).returncode == 2
    assert not pwned.exists()


class _Touch:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_resume_runs_the_recorded_copy_not_a_file_named_in_run_json(tmp_path, write_workflow, faults):
    flow, run_dir = _failed_run(write_workflow, tmp_path)
    other = write_workflow(f"""
        name: trusting
        tasks:
          - {{id: evil, plugin: python, config: {{function: "faults:touch", args: ["{tmp_path / 'evil'}"]}}}}
    """, name="other.yaml")
    doc = json.loads((run_dir / "run.json").read_text())
    doc["workflow_file"] = str(other)
    (run_dir / "run.json").write_text(json.dumps(doc))
    flow.write_text(flow.read_text().replace('"faults:counted"', '"faults:raise_error"'))  # edited since
    again = run_cli("resume", str(run_dir), "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert not (tmp_path / "evil").exists()
    new = json.loads(again.stdout)
    assert new["reused"] == ["a"] and new["tasks"] == {"a": "succeeded", "b": "succeeded"}
    assert new["workflow_sha256"] == doc["workflow_sha256"]


def test_resume_refuses_a_copy_that_does_not_match_its_sha256(tmp_path, write_workflow, faults):
    _, run_dir = _failed_run(write_workflow, tmp_path)
    copy = run_dir / "workflow.yaml"
    copy.write_text(copy.read_text().replace('"faults:counted"', '"faults:touch"'))
    refused = run_cli("resume", str(run_dir), cwd=tmp_path)
    assert refused.returncode == 2
    assert "does not match the sha256 recorded in run.json" in refused.stderr


# -- file modes ------------------------------------------------------------------
def test_run_directory_is_owner_only_whatever_the_umask(tmp_path, write_workflow, faults):
    flow = write_workflow("""
        name: secret
        params: {api_token: none}
        tasks:
          - {id: a, plugin: python, config: {function: "faults:ok"}}
          - {id: b, plugin: python, config: {function: "faults:echo_context"}, depends_on: [a]}
    """)
    done = subprocess.run(["sh", "-c", 'umask 000 && exec "$0" -m opflow run flow.yaml --param api_token=s3cret',
                           sys.executable], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    run_dir = latest_run_dir(tmp_path / "logs")
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((run_dir / "tasks").stat().st_mode) == 0o700
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"run.json", "events.jsonl", "summary.txt", "workflow.yaml",
                                       "results.pickles", "a.json", "b.json"}
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: "0o600" for p in files}
    assert "s3cret" in (run_dir / "run.json").read_text()  # kept (for resume), but for the owner only


# -- symlinks ---------------------------------------------------------------------
def test_a_symlink_at_the_lock_path_is_refused_not_truncated(tmp_path, write_workflow, faults):
    from opflow.rundir.lock import WorkflowLock

    flow = write_workflow("""
        name: locked
        tasks:
          - {id: a, plugin: python, config: {function: "faults:ok"}}
    """)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    lock_path = WorkflowLock(tmp_path / "logs", flow, "locked").path
    lock_path.parent.mkdir(parents=True)
    lock_path.symlink_to(victim)
    refused = run_cli("run", str(flow), cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "is a symlink; opflow does not write through symlinks" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert victim.read_text() == "precious"
    assert [p for p in (tmp_path / "logs").iterdir() if not p.name.startswith(".")] == []


@pytest.mark.parametrize("name", ["results.pickles", "summary.txt", "tasks/.later.json.{pid}.{n}.tmp"])
def test_a_symlink_planted_in_the_run_dir_is_never_written_through(name, tmp_path, write_workflow, faults):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    flow = write_workflow(f"""
        name: planted
        tasks:
          - {{id: plant, plugin: python,
             config: {{function: "faults:plant_symlink", args: ["{tmp_path / 'logs'}", "{name}", "{victim}"]}}}}
          - {{id: producer, plugin: python, config: {{function: "faults:ok"}}, depends_on: [plant]}}
          - {{id: later, plugin: python, config: {{function: "faults:echo_context"}}, depends_on: [producer]}}
    """)
    done = run_cli("run", str(flow), cwd=tmp_path)
    assert victim.read_text() == "precious"
    assert "Traceback" not in done.stderr
    run_dir = latest_run_dir(tmp_path / "logs")
    if name == "results.pickles":  # the worker refuses to append its result there: the task fails, saying why
        assert done.returncode == 1
        plant = records(run_dir)["plant"]  # the first task whose result is kept
        assert plant["status"] == "failed" and "results.pickles: is a symlink" in plant["error"]["message"]
    elif name == "summary.txt":  # replaced by the real summary (a rename), the target untouched
        assert done.returncode == 0, done.stderr
        assert not (run_dir / "summary.txt").is_symlink() and "Workflow: planted" in (run_dir / "summary.txt").read_text()
    else:  # the record's temporary file is new (O_EXCL): the run says it cannot write its record
        assert done.returncode == 1
        assert "cannot write the run record" in done.stderr and "is a symlink" in done.stderr


# -- pruning ----------------------------------------------------------------------
def test_keep_runs_never_deletes_a_run_still_in_progress_even_with_no_lock(tmp_path, write_workflow, faults):
    marker, go = tmp_path / "first", tmp_path / "go"
    flow = write_workflow(f"""
        name: siblings
        tasks:
          - {{id: a, plugin: python, config: {{function: "faults:first_caller_waits", args: ["{marker}", "{go}"]}}}}
    """)
    first = subprocess.Popen([sys.executable, "-m", "opflow", "run", str(flow), "--no-lock", "--quiet"], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(marker.exists, 60, "the first run's task to start")
        running = latest_run_dir(tmp_path / "logs")
        for _ in range(2):
            sibling = run_cli("run", str(flow), "--no-lock", "--keep-runs", "1", "--quiet", cwd=tmp_path)
            assert sibling.returncode == 0, sibling.stderr
        assert running.is_dir() and (running / "run.json").is_file()  # spared: its coordinator is alive
        assert len(_run_dirs(tmp_path)) == 2  # the running one and the newest; the other sibling pruned
        go.touch()
        _, err = first.communicate(timeout=60)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert json.loads((running / "run.json").read_text())["status"] == "succeeded"
    assert run_cli("run", str(flow), "--keep-runs", "1", cwd=tmp_path).returncode == 0
    assert len(_run_dirs(tmp_path)) == 1  # once it ended, it is pruned like any other


def test_resume_refuses_a_run_still_in_progress(tmp_path, write_workflow, faults):
    marker, go = tmp_path / "first", tmp_path / "go"
    flow = write_workflow(f"""
        name: live
        tasks:
          - {{id: a, plugin: python, config: {{function: "faults:first_caller_waits", args: ["{marker}", "{go}"]}}}}
    """)
    live = subprocess.Popen([sys.executable, "-m", "opflow", "run", str(flow), "--quiet"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(marker.exists, 60, "the run's task to start")
        run_dir = latest_run_dir(tmp_path / "logs")
        from opflow.rundir.history import run_state

        assert run_state(run_dir) == "running"
        refused = run_cli("resume", str(run_dir), "--no-lock", cwd=tmp_path)
        assert refused.returncode == 2 and "that run is still in progress" in refused.stderr
        go.touch()
        live.communicate(timeout=60)
        assert live.returncode == 0
    finally:
        if live.poll() is None:
            live.kill()
            live.communicate()
    assert run_state(run_dir) == "succeeded"


@pytest.mark.parametrize("edit, refused", [({"host": "elsewhere.example"}, True), ({"pid": None}, False)],
                         ids=["running-on-another-host", "no-pid-recorded"])
def test_a_running_record_resume_cannot_judge(edit, refused, tmp_path, write_workflow, faults):
    _, run_dir = _failed_run(write_workflow, tmp_path)
    doc = json.loads((run_dir / "run.json").read_text())
    doc.update(status="running", **edit)
    (run_dir / "run.json").write_text(json.dumps(doc))
    again = run_cli("resume", str(run_dir), cwd=tmp_path)
    if refused:
        assert again.returncode == 2 and "on host elsewhere.example" in again.stderr
    else:  # a record from before opflow kept the pid: resumable, as before
        assert again.returncode == 0, again.stderr


def test_init_force_never_writes_through_a_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "workflow.yaml").symlink_to(victim)
    done = run_cli("init", "proj", "--force", cwd=tmp_path)
    assert done.returncode == 2 and "is a symlink" in done.stderr and "Traceback" not in done.stderr
    assert victim.read_text() == "precious"


def test_the_crash_benchmark_runs(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "resume_after_crash.py"), "--quick",
                           "--out", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "| --- |" in done.stdout and "Machine: " in done.stdout
    assert "2/2 trials: resume reran exactly the tasks that had not succeeded; 0 wrong results" in done.stdout


def test_pretty_json_is_written_piece_by_piece_as_json_dumps_would_write_it(tmp_path):
    # audit.write_json_atomic streams run.json (100,000 tasks: never the whole text in memory).
    from opflow.rundir.audit import write_json_atomic

    document = {"tasks": {f"t{i}": "succeeded" for i in range(1000)}, "nested": [1.5, None, {"é": True}]}
    target = tmp_path / "run.json"
    write_json_atomic(target, document)
    assert target.read_text(encoding="utf-8") == json.dumps(document, indent=2) + "\n"
    with pytest.raises(ValueError):  # NaN is refused midway: the file before stays, no temporary is left
        write_json_atomic(target, {"a": 1, "b": float("nan")})
    assert json.loads(target.read_text(encoding="utf-8")) == document
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_the_audit_trail_writes_a_record_encoded_on_arrival_and_fails_one_that_is_not_json(tmp_path, write_workflow):
    # AuditTrail.handle encodes task_finished at once (a backlog waits as text, not dicts).
    from opflow import api
    from opflow.rundir.audit import AuditTrail, create_run_dir
    from opflow.errors import OpflowError

    workflow, _ = api.load(write_workflow('name: w\ntasks:\n  - {id: a, plugin: shell, config: {command: "true"}}\n'
                                          '  - {id: b, plugin: shell, config: {command: "true"}}\n'))
    run_dir = create_run_dir(tmp_path / "logs", workflow.name)
    audit = AuditTrail(run_dir, workflow)
    aborted = []
    audit.abort = aborted.append
    audit.handle({"event": "run_started", "time": "t0", "workflow": "w", "workers": 1, "executor": "inline",
                  "scheduler": None, "params": {}, "tasks": ["a", "b"], "layers": [["a", "b"]], "started_at": "t0"})
    record = {"id": "a", "status": "succeeded", "result": {"n": 1}, "attempt_log": [], "config": {"command": "true"}}
    audit.handle({"event": "task_finished", "time": "t1", "record": record})
    audit.handle({"event": "task_finished", "time": "t2", "record": {"id": "b", "status": "succeeded",
                                                                     "result": float("nan")}})
    with pytest.raises(OpflowError, match="cannot write the run record"):
        audit.close()
    assert aborted and "Out of range float" in aborted[0]
    assert (run_dir / "tasks" / "a.json").read_text() == json.dumps(record) + "\n"
    assert not (run_dir / "tasks" / "b.json").exists()
    lines = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert lines[-1] == {"event": "task_finished", "time": "t1", "task_id": "a", "id": "a", "status": "succeeded",
                         "config": {"command": "true"}}
    assert json.loads((run_dir / "run.json").read_text())["tasks"] == {"a": "pending", "b": "pending"}


@pytest.mark.parametrize("plant", ["summary-symlink", "run-dir-swapped"])
def test_the_last_word_after_a_failed_write_goes_through_the_run_directory_descriptor(plant, tmp_path, write_workflow):
    # After a write fails (here a record that is not JSON; a full disk in test_full_disk.py), the
    # final run.json and summary.txt are written like every other file: in the run directory
    # opened at the start, never through a symlink planted at a name or in the run dir's place.
    from opflow import api
    from opflow.errors import OpflowError
    from opflow.rundir.audit import AuditTrail, create_run_dir

    workflow, _ = api.load(write_workflow('name: w\ntasks:\n  - {id: a, plugin: shell, config: {command: "true"}}\n'))
    run_dir = create_run_dir(tmp_path / "logs", workflow.name)
    audit = AuditTrail(run_dir, workflow)
    audit.handle({"event": "run_started", "time": "t0", "workflow": "w", "workers": 1, "executor": "inline",
                  "scheduler": None, "params": {}, "tasks": ["a"], "layers": [["a"]], "started_at": "t0"})
    audit.handle({"event": "task_finished", "time": "t1", "record": {"id": "a", "status": "succeeded",
                                                                     "result": float("nan")}})
    audit.wait_recorded_start()
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "summary.txt").write_text("precious")
    real = run_dir
    if plant == "summary-symlink":
        (run_dir / "summary.txt").symlink_to(victim / "summary.txt")
    else:
        real = run_dir.with_name("moved")
        run_dir.rename(real)
        run_dir.symlink_to(victim, target_is_directory=True)
    audit.handle({"event": "run_finished", "time": "t2", "status": "succeeded", "finished_at": "t2",
                  "duration_s": 1.0, "tasks": {"a": "succeeded"}, "exit_code": 0, "signal": None})
    with pytest.raises(OpflowError, match="cannot write the run record"):
        audit.close()
    assert (victim / "summary.txt").read_text() == "precious"
    assert sorted(p.name for p in victim.iterdir()) == ["summary.txt"]
    document = json.loads((real / "run.json").read_text())
    assert document["status"] == "failed" and "could not be written" in document["record_error"]
    summary = real / "summary.txt"
    assert not summary.is_symlink() and "Status:   failed" in summary.read_text()


# -- where a task's time went: run, wait for a worker, backoff (issue 25) -----------------
def test_the_record_keeps_run_wait_and_backoff_apart_and_the_console_shows_run_time(tmp_path, write_workflow, faults):
    # One worker: `flaky` fails at once, backs off 0.3-0.4 s and succeeds, but one of its
    # attempts queues behind `hog` (1.5 s) whichever of the two the pool takes first.
    write_workflow(f"""
        name: honest durations
        tasks:
          - id: flaky
            plugin: python
            retries: 1
            retry_delay: 0.4
            config: {{function: "faults:flaky", args: ["{tmp_path / 'flaky.marker'}"]}}
          - {{id: hog, plugin: shell, config: {{command: "sleep 1.5"}}}}
    """)
    proc = run_cli("run", "flow.yaml", "--workers", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    flaky = records(latest_run_dir(tmp_path / "logs"))["flaky"]
    assert flaky["attempts"] == 2
    assert flaky["run_s"] == pytest.approx(sum(a["duration_s"] for a in flaky["attempt_log"]), abs=1e-5)
    assert flaky["run_s"] < 0.5  # two calls of a Python function: no sleep in them
    assert 0.3 <= flaky["backoff_s"] < 1.2  # retry_delay 0.4, jitter 0.8-1.0
    assert flaky["wait_s"] >= 1.0  # behind hog's 1.5 s, before the first attempt or the retry
    assert flaky["wait_s"] == pytest.approx(sum(a["wait_s"] for a in flaky["attempt_log"]), abs=1e-5)
    # duration_s means what it always meant: first start in a worker to the last end.
    assert flaky["duration_s"] >= flaky["run_s"] + flaky["backoff_s"] - 0.01
    hog = records(latest_run_dir(tmp_path / "logs"))["hog"]
    assert hog["run_s"] >= 1.4 and hog["backoff_s"] == 0
    # The console's line gives the time it ran, not its waits.
    assert f"{'ok':<9} flaky  {flaky['run_s']:.2f}s" in proc.stdout + proc.stderr
    assert f"{'ok':<9} flaky  {flaky['duration_s']:.2f}s" not in proc.stdout + proc.stderr
    shown = run_cli("show", str(latest_run_dir(tmp_path / "logs")), "flaky", cwd=tmp_path)
    assert f"ran {flaky['run_s']:.2f}s, waited for a worker {flaky['wait_s']:.2f}s" in shown.stdout
