"""Large results through shared memory: published once, mapped by readers, always released.

Each test gives the run its own shared-memory folder (a directory in /dev/shm,
through OPFLOW_SHM_DIR), so "nothing left" means that folder is empty, whatever
other runs on the machine do; the SIGKILL test watches the real /dev/shm too.
"""
from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from helpers import flow_file, gone, latest_run_dir, records, run_cli, signal_when, wait_for
from opflow.worker import shared_results
from opflow.rundir import results_log
from opflow.rundir.results_log import append_result, append_result_parts, read_results

pytestmark = pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs /dev/shm")

ROWS = 250_000  # x 4 float columns: an 8 MB frame, well above SHARED_MIN_BYTES

FRAMES_PY = f'''
import os, signal, time
from pathlib import Path

import numpy as np
import pandas as pd

ROWS = {ROWS}


def make():
    return pd.DataFrame(np.arange(ROWS * 4, dtype=float).reshape(ROWS, 4), columns=list("abcd"))


def make_mixed():
    """Large numeric buffers and a large in-band part (strings): its small part is not small."""
    frame = make()
    frame["name"] = ["row " + str(i) for i in range(ROWS)]
    return frame


def total(context):
    return float(context["make"]["a"].sum())


def scribble(context):
    """Write into the frame it received: its own copy changes, nobody else's."""
    frame = context["make"]
    frame.iloc[:, 0] = -1.0
    return float(frame["a"].sum())


def read_then_die(context):
    frame = context["make"]
    float(frame.to_numpy().sum())  # every page mapped and read
    os.kill(os.getpid(), signal.SIGKILL)


def read_then_wait(marker, context):
    frame = context["make"]
    float(frame["a"].sum())
    Path(marker).write_text(str(os.getpid()))
    time.sleep(300)


def die_while_publishing(folder, marker):
    """Returns a large frame, and is killed while it is being written into shared memory."""
    import threading

    def killer():
        while not os.listdir(folder):
            time.sleep(0.0002)
        Path(marker).write_text("")
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=killer, daemon=True).start()
    return make()


def wait_for_file(path):
    deadline = time.monotonic() + 120
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    return os.path.exists(path)


def total_and_mark(folder, marker, context):
    """A reader that says what lay in shared memory while it read, and that it is done."""
    value = float(context["make"]["a"].sum())
    seen = os.listdir(folder)
    Path(marker).write_text("")
    return dict(total=value, seen=seen)


def watch_release(folder, markers):
    """Runs beside make -> readers: once both readers are done, sees make's file go while the run goes on."""
    deadline = time.monotonic() + 100
    while not all(os.path.exists(m) for m in markers):
        if time.monotonic() > deadline:
            return "readers never finished"
        time.sleep(0.01)
    while os.listdir(folder):
        if time.monotonic() > deadline:
            return "still there"
        time.sleep(0.01)
    return "released"
'''


@pytest.fixture
def shm(monkeypatch) -> Path:
    """A private shared-memory folder for the run (OPFLOW_SHM_DIR), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="i12test-", dir="/dev/shm"))
    monkeypatch.setenv("OPFLOW_SHM_DIR", str(folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def frames(tmp_path) -> Path:
    path = tmp_path / "frames.py"
    path.write_text(FRAMES_PY, encoding="utf-8")
    return path


def _expected_sum() -> float:
    return float(np.arange(ROWS * 4, dtype=float).reshape(ROWS, 4)[:, 0].sum())


# -- the pieces ---------------------------------------------------------------
def test_publish_read_release(tmp_path, shm):
    frame = pd.DataFrame(np.random.default_rng(1).random((ROWS, 4)), columns=list("abcd"))
    stream, buffers = shared_results.dumps_out_of_band(frame)
    assert len(stream) < 4096 and sum(b.nbytes for b in buffers) == frame.to_numpy().nbytes
    ref, why_not = shared_results.publish(str(shm / "opflow-run-"), stream, buffers)
    assert why_not is None
    [path] = list(shm.iterdir())
    assert str(path) == ref.path and oct(path.stat().st_mode & 0o777) == "0o600"
    blob = pickle.dumps(ref)
    assert len(blob) < 4096  # what the store and the requests carry: the small part only

    read = shared_results.load_result(blob)
    pd.testing.assert_frame_equal(read, frame)
    block = read._mgr.blocks[0].values
    assert not block.flags.owndata  # points into the mapping: no copy was made

    shared_results.remove(ref.path)  # released: the name is gone...
    assert not path.exists()
    pd.testing.assert_frame_equal(read, frame)  # ...a reader that has it mapped keeps reading


def test_small_results_go_the_ordinary_way(shm):
    stream, buffers = shared_results.dumps_out_of_band({"a": list(range(100)), "b": np.zeros(10)})
    assert buffers == []
    assert pickle.loads(stream)["a"] == list(range(100))


def test_a_shared_result_is_kept_for_resume(tmp_path, shm, monkeypatch):
    frame = pd.DataFrame({"x": np.arange(300_000, dtype=float), "y": np.ones(300_000)})
    stream, buffers = shared_results.dumps_out_of_band(frame)
    log = str(tmp_path / "results.pickles")
    append_result(log, "small", pickle.dumps({"a": 1}))
    append_result_parts(log, "make", stream, buffers)  # a fallback, from the worker's buffers
    ref, _ = shared_results.publish(str(shm / "opflow-run-"), stream, buffers)
    monkeypatch.setattr(results_log, "COPY_CHUNK", 100_000)  # several chunks per buffer
    results_log.append_result_from_file(log, "shared", ref.stream, ref.path, ref.spans)  # the coordinator's copy
    with open(log, "ab") as handle:
        handle.write(b"OPR2\x01")  # a record torn by a crash: ignored
    kept = read_results(log)
    assert pickle.loads(kept["small"]) == {"a": 1}
    pd.testing.assert_frame_equal(pickle.loads(kept["make"]), frame)
    pd.testing.assert_frame_equal(pickle.loads(kept["shared"]), frame)


# -- real runs ------------------------------------------------------------------
def test_readers_share_one_copy_and_it_is_released_when_read(tmp_path, frames, shm):
    m1, m2 = tmp_path / "r1.done", tmp_path / "r2.done"
    flow = flow_file(tmp_path, f"""
  - {{id: watch, plugin: python, config: {{function: "frames:watch_release", args: ["{shm}", ["{m1}", "{m2}"]]}}}}
  - {{id: make, plugin: python, config: {{function: "frames:make"}}}}
  - {{id: r1, plugin: python, config: {{function: "frames:total_and_mark", args: ["{shm}", "{m1}"]}}, depends_on: [make]}}
  - {{id: r2, plugin: python, config: {{function: "frames:total_and_mark", args: ["{shm}", "{m2}"]}}, depends_on: [make]}}
""", name="frames")
    result = run_cli("run", str(flow), "--log-dir", "logs", "--workers", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    tasks = records(latest_run_dir(tmp_path / "logs"))
    assert tasks["make"]["resources"]["result_shared_bytes"] >= ROWS * 4 * 8
    assert tasks["r1"]["result"]["total"] == tasks["r2"]["result"]["total"] == _expected_sum()
    assert len(tasks["r1"]["result"]["seen"]) == 1  # one file, read by both
    assert tasks["r1"]["result"]["seen"] == tasks["r2"]["result"]["seen"]
    # Freed once r1 and r2 were done, while `watch` still ran: not at the end of the run.
    assert tasks["watch"]["result"] == "released"
    assert list(shm.iterdir()) == []


def test_a_shared_result_with_a_large_pickle_stream(tmp_path, frames, shm):
    # Its SharedRef (the stream) is over the 64 KiB that travel inline: it goes through the store.
    flow = flow_file(tmp_path, """
  - {id: make, plugin: python, config: {function: "frames:make_mixed"}}
  - {id: r1, plugin: python, config: {function: "frames:total"}, depends_on: [make]}
""", name="frames")
    result = run_cli("run", str(flow), "--log-dir", "logs", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = latest_run_dir(tmp_path / "logs")
    tasks = records(run_dir)
    assert tasks["make"]["resources"]["result_shared_bytes"] >= ROWS * 4 * 8
    assert tasks["r1"]["result"] == _expected_sum()
    kept = pickle.loads(read_results(str(run_dir / "results.pickles"))["make"])  # kept for resume
    assert list(kept.columns) == ["a", "b", "c", "d", "name"] and kept["name"].iloc[-1] == f"row {ROWS - 1}"
    assert list(shm.iterdir()) == []


def test_a_reader_that_writes_to_its_frame_changes_nobody_elses(tmp_path, frames, shm):
    flow = flow_file(tmp_path, """
  - {id: make, plugin: python, config: {function: "frames:make"}}
  - {id: writer, plugin: python, config: {function: "frames:scribble"}, depends_on: [make]}
  - {id: after, plugin: python, config: {function: "frames:total"}, depends_on: [make, writer]}
""", name="frames")
    result = run_cli("run", str(flow), "--log-dir", "logs", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    tasks = records(latest_run_dir(tmp_path / "logs"))
    assert tasks["writer"]["result"] == -float(ROWS)  # its write took (a private copy of the pages)
    assert tasks["after"]["result"] == _expected_sum()  # read after the write, and unchanged
    assert list(shm.iterdir()) == []


def test_a_worker_that_dies_in_the_middle_of_a_read(tmp_path, frames, shm):
    flow = flow_file(tmp_path, """
  - {id: make, plugin: python, config: {function: "frames:make"}}
  - {id: dies, plugin: python, config: {function: "frames:read_then_die"}, depends_on: [make]}
  - {id: reads, plugin: python, config: {function: "frames:total"}, depends_on: [make]}
""", name="frames")
    result = run_cli("run", str(flow), "--log-dir", "logs", "--keep-going", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    tasks = records(latest_run_dir(tmp_path / "logs"))
    assert tasks["dies"]["error"]["type"] == "WorkerCrashed"
    assert tasks["reads"]["status"] == "succeeded" and tasks["reads"]["result"] == _expected_sum()
    assert list(shm.iterdir()) == []


def test_a_worker_that_dies_while_publishing_leaves_nothing(tmp_path, frames, shm):
    killed, done = tmp_path / "killed", tmp_path / "done"
    flow = flow_file(tmp_path, f"""
  - {{id: dies, plugin: python, config: {{function: "frames:die_while_publishing", args: ["{shm}", "{killed}"]}}}}
  - {{id: reader, plugin: python, config: {{function: "frames:total"}}, depends_on: [dies]}}
  - {{id: hold, plugin: python, config: {{function: "frames:wait_for_file", args: ["{done}"]}}}}
""", name="frames")
    proc = subprocess.Popen([sys.executable, "-m", "opflow", "run", str(flow), "--log-dir", str(tmp_path / "logs"),
                             "--keep-going"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(killed.exists, 120, "the producer to be killed while writing")
        # Its unfinished file goes when the pool sees the death, not at the end of the run.
        wait_for(lambda: not list(shm.iterdir()), 60, "the dead worker's file to be removed")
        assert proc.poll() is None  # `hold` keeps the run going
        done.write_text("")
        output, _ = proc.communicate(timeout=120)
    finally:
        done.write_text("")
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, output
    tasks = records(latest_run_dir(tmp_path / "logs"))
    assert tasks["dies"]["error"]["type"] == "WorkerCrashed"
    assert tasks["reader"]["status"] == "skipped" and tasks["hold"]["status"] == "succeeded"


def test_a_result_too_large_for_shared_memory_goes_through_the_store(tmp_path, frames, shm):
    flow = flow_file(tmp_path, """
  - {id: make, plugin: python, config: {function: "frames:make"}}
  - {id: r1, plugin: python, config: {function: "frames:total"}, depends_on: [make]}
""", name="frames")
    watcher = subprocess.Popen([sys.executable, "-c", (
        "import os, sys, time\n"
        "seen = False\n"
        "while not os.path.exists(sys.argv[2]):\n"
        "    seen = seen or bool(os.listdir(sys.argv[1])); time.sleep(0.005)\n"
        "print(seen)\n"), str(shm), str(tmp_path / "done")], stdout=subprocess.PIPE, text=True)
    try:
        result = run_cli("run", str(flow), "--log-dir", "logs", cwd=tmp_path, env={"OPFLOW_SHM_LIMIT": "1000000"})
    finally:
        (tmp_path / "done").write_text("")
        seen, _ = watcher.communicate(timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    tasks = records(latest_run_dir(tmp_path / "logs"))
    note = tasks["make"]["resources"]["result_note"]
    assert "sent through the context store" in note and "more than the free shared memory" in note
    assert "result_shared_bytes" not in tasks["make"]["resources"]
    assert tasks["r1"]["result"] == _expected_sum()
    assert seen.strip() == "False"  # nothing was ever written there


def _start(flow: Path, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "opflow", "run", str(flow), "--log-dir", str(cwd / "logs")],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})


def _waiting_reader_flow(tmp_path, marker: Path) -> Path:
    return flow_file(tmp_path, f"""
  - {{id: make, plugin: python, config: {{function: "frames:make"}}}}
  - {{id: holds, plugin: python, config: {{function: "frames:read_then_wait", args: ["{marker}"]}}, depends_on: [make]}}
""", name="frames")


def _ours(folder: Path, pid: int) -> list[str]:
    return [n for n in os.listdir(folder) if n.startswith(f"opflow-{pid}-")]


@pytest.mark.parametrize("real_shm", [True, False], ids=["dev-shm", "own-folder"])
def test_coordinator_sigkill_leaves_nothing_in_shared_memory(real_shm, tmp_path, frames, monkeypatch):
    folder = Path("/dev/shm")
    if not real_shm:
        folder = Path(tempfile.mkdtemp(prefix="i12test-", dir="/dev/shm"))
    monkeypatch.setenv("OPFLOW_SHM_DIR", str(folder))
    marker = tmp_path / "reading.pid"
    proc = _start(_waiting_reader_flow(tmp_path, marker), tmp_path)
    try:
        wait_for(lambda: marker.exists() and marker.read_text(), 120, "the reader to hold the frame")
        assert _ours(folder, proc.pid), "the frame should be in shared memory while it is read"
        helpers = psutil.Process(proc.pid).children(recursive=True)
        proc.kill()
        proc.communicate(timeout=10)
        wait_for(lambda: all(gone(p.pid) for p in helpers), 30, "the workers and the Manager to exit")
        wait_for(lambda: not _ours(folder, proc.pid), 30, "the run's shared memory to be removed")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if not real_shm:
            shutil.rmtree(folder, ignore_errors=True)


def test_sigint_leaves_nothing_in_shared_memory(tmp_path, frames, shm):
    marker = tmp_path / "reading.pid"
    proc = _start(_waiting_reader_flow(tmp_path, marker), tmp_path)
    output = signal_when(proc, lambda: marker.exists() and marker.read_text() and list(shm.iterdir()),
                         "the reader to hold the frame")
    assert proc.returncode == 130, output
    assert list(shm.iterdir()) == []  # removed before the coordinator exited


def test_a_stale_run_is_swept_by_the_next(tmp_path, frames, shm):
    # A file of a coordinator that no longer exists (a pid that is gone), and one of a live one.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = shm / f"opflow-{dead.pid}-abcd1234-{dead.pid}-1"
    alive = shm / f"opflow-{os.getpid()}-abcd1234-{os.getpid()}-1"
    stale.write_bytes(b"x")
    alive.write_bytes(b"x")
    flow = flow_file(tmp_path, """
  - {id: make, plugin: python, config: {function: "frames:make"}}
  - {id: r1, plugin: python, config: {function: "frames:total"}, depends_on: [make]}
""", name="frames")
    result = run_cli("run", str(flow), "--log-dir", "logs", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(shm.iterdir()) == [alive]


def test_resume_reads_a_result_that_was_shared(tmp_path, frames, faults, shm):
    count = tmp_path / "r.count"
    flow = flow_file(tmp_path, f"""
  - {{id: make, plugin: python, config: {{function: "frames:make"}}}}
  - {{id: gate, plugin: python, config: {{function: "faults:fail_until", args: ["{count}", 1]}}, depends_on: [make]}}
  - {{id: r1, plugin: python, config: {{function: "frames:total"}}, depends_on: [gate]}}
""", name="frames")
    first = run_cli("run", str(flow), "--log-dir", "logs", cwd=tmp_path)
    assert first.returncode == 1
    second = run_cli("resume", str(latest_run_dir(tmp_path / "logs")), cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    tasks = records(latest_run_dir(tmp_path / "logs"))
    assert tasks["make"]["reused"] and tasks["r1"]["result"] == _expected_sum()
    assert list(shm.iterdir()) == []
