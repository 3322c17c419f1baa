"""The cache (dispatch/cache.py) through the real CLI: whose earlier runs it trusts, that an
earlier run it cannot trust or read never ends a later one, and that its key covers the
code a task runs and every file of its inputs."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from helpers import latest_run_dir, records, run_cli, run_dirs, write

OTHER_UID = 65534  # nobody: another user, whatever this machine calls them


def _run(here: Path, flow: Path, log_dir: Path) -> dict:
    """One run on the process pool through `python -m opflow`; it must succeed, in bounded time."""
    before = set(run_dirs(log_dir))
    result = run_cli("run", str(flow), "--log-dir", str(log_dir), "--workers", "1", cwd=here, timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    (made,) = set(run_dirs(log_dir)) - before  # this run's own (a planted one may sort after it)
    return records(made)


def _counting_flow(here: Path) -> tuple[Path, Path]:
    """A cached task `a` that counts its runs, and `b` reading its result (so a hit needs its pickle)."""
    counter = here / "a.count"
    flow = write(here, "flow.yaml", f"""
        name: cache trust
        tasks:
          - {{id: a, plugin: shell, cache: true, config: {{command: "echo real; echo x >> {counter}"}}}}
          - {{id: b, plugin: python, config: {{function: "json:dumps", args: ["b"]}}, depends_on: [a]}}
    """)
    return flow, counter


def _runs_of_a(counter: Path) -> int:
    return counter.read_text().count("x") if counter.exists() else 0


@pytest.fixture
def shared_logs(tmp_path) -> Path:
    """A log dir anyone may write, as /tmp is (1777)."""
    logs = tmp_path / "shared"
    logs.mkdir()
    os.chmod(logs, 0o1777)
    return logs


def _plant(run_dir: Path, result: str) -> Path:
    """The run dir renamed as if it were newer, its record of `a` saying `result`."""
    planted = run_dir.with_name("29991231T235959Z" + run_dir.name[len("20260101T000000Z"):])
    run_dir.rename(planted)
    record_path = planted / "tasks" / "a.json"
    record = json.loads(record_path.read_text())
    record["result"] = {**record["result"], "stdout": result + "\n"}
    record_path.write_text(json.dumps(record))
    return planted


# -- whose runs the cache trusts ------------------------------------------------------

@pytest.mark.parametrize("how", ["run dir of another uid", "run dir group-writable", "run dir world-writable",
                                 "record of another uid", "record group-writable", "record a symlink"])
def test_a_run_dir_planted_in_a_shared_log_dir_is_not_reused(here, shared_logs, how):
    flow, counter = _counting_flow(here)
    _run(here, flow, shared_logs)
    planted = _plant(latest_run_dir(shared_logs), "PLANTED")
    record = planted / "tasks" / "a.json"
    if how == "run dir of another uid":
        for path in [planted, *planted.rglob("*")]:
            os.chown(path, OTHER_UID, OTHER_UID, follow_symlinks=False)
    elif how == "run dir group-writable":
        os.chmod(planted, 0o770)
    elif how == "run dir world-writable":
        os.chmod(planted, 0o777)
    elif how == "record of another uid":
        os.chown(record, OTHER_UID, OTHER_UID)
    elif how == "record group-writable":
        os.chmod(record, 0o660)
    else:
        elsewhere = here / "a.json"
        shutil.move(record, elsewhere)
        record.symlink_to(elsewhere)

    tasks = _run(here, flow, shared_logs)

    assert _runs_of_a(counter) == 2  # it ran again
    assert tasks["a"]["status"] == "succeeded" and not tasks["a"]["reused"]
    assert tasks["a"]["result"]["stdout"] == "real\n"


def test_a_run_dir_of_ones_own_still_serves_the_cache(here, shared_logs):
    flow, counter = _counting_flow(here)
    _run(here, flow, shared_logs)
    tasks = _run(here, flow, shared_logs)
    assert _runs_of_a(counter) == 1 and tasks["a"]["reused"] and tasks["b"]["status"] == "succeeded"


# -- an earlier run the cache cannot trust or read is a miss, never the end of the run --

def _spoil(run_dir: Path, how: str, here: Path) -> None:
    results, record = run_dir / "results.pickles", run_dir / "tasks" / "a.json"
    if how == "results group-writable":
        os.chmod(results, 0o660)
    elif how == "results of another uid":
        os.chown(results, OTHER_UID, OTHER_UID)
    elif how == "run dir a symlink":
        target = here / "moved-away"
        run_dir.rename(target)
        run_dir.symlink_to(target, target_is_directory=True)
    elif how == "record a nesting bomb":
        record.write_text("[" * 200_000 + "]" * 200_000)
    elif how == "record a FIFO":
        record.unlink()
        os.mkfifo(record, 0o600)
    elif how == "run.json a nesting bomb":
        (run_dir / "run.json").write_text('{"a":' * 200_000 + "1" + "}" * 200_000)
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["results group-writable", "results of another uid", "run dir a symlink",
                                 "record a nesting bomb", "record a FIFO", "run.json a nesting bomb"])
def test_an_earlier_run_the_cache_cannot_trust_or_read_is_a_miss(here, tmp_path, how):
    flow, counter = _counting_flow(here)
    logs = tmp_path / "logs"
    _run(here, flow, logs)
    _spoil(latest_run_dir(logs), how, here)

    tasks = _run(here, flow, logs)
    assert _runs_of_a(counter) == 2
    assert tasks["a"]["status"] == "succeeded" and not tasks["a"]["reused"]
    assert tasks["b"]["status"] == "succeeded"
    tasks = _run(here, flow, logs)  # and every later run: the second is a good earlier run
    assert _runs_of_a(counter) == 2 and tasks["a"]["reused"]
    statuses = [json.loads((d / "run.json").read_text())["status"] for d in run_dirs(logs)[1:]
                if d.is_dir() and not d.is_symlink()]
    assert statuses and set(statuses) == {"succeeded"}


# -- the key covers the code a task runs and every file of its inputs -------------------

def _edit_keeping_size_and_mtime(path: Path, old: str, new: str) -> None:
    assert len(old) == len(new)
    before = path.stat()
    path.write_text(path.read_text().replace(old, new))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_editing_the_module_of_a_python_task_reruns_it(here, tmp_path):
    logs = tmp_path / "logs"
    module = write(here, "mytools.py", """
        def value():
            return "v1"
    """)
    flow = write(here, "flow.yaml", """
        name: cache code
        tasks:
          - {id: t, plugin: python, cache: true, config: {function: "mytools:value"}}
    """)
    assert _run(here, flow, logs)["t"]["result"] == "v1"
    assert _run(here, flow, logs)["t"]["reused"]  # unchanged: reused

    _edit_keeping_size_and_mtime(module, '"v1"', '"v2"')
    tasks = _run(here, flow, logs)
    assert not tasks["t"]["reused"] and tasks["t"]["result"] == "v2"


def test_a_changed_file_inside_an_inputs_directory_reruns_the_task(here, tmp_path):
    logs = tmp_path / "logs"
    data = here / "data" / "deep"
    data.mkdir(parents=True)
    (data / "a.csv").write_text("x,1\n")
    flow = write(here, "flow.yaml", """
        name: cache dir
        tasks:
          - {id: t, plugin: shell, cache: true, inputs: [data], config: {command: "cat data/deep/*.csv"}}
    """)
    assert _run(here, flow, logs)["t"]["result"]["stdout"] == "x,1\n"
    assert _run(here, flow, logs)["t"]["reused"]

    _edit_keeping_size_and_mtime(data / "a.csv", "x,1", "x,2")
    tasks = _run(here, flow, logs)
    assert not tasks["t"]["reused"] and tasks["t"]["result"]["stdout"] == "x,2\n"
    assert _run(here, flow, logs)["t"]["reused"]

    (data / "b.csv").write_text("y,3\n")  # a new file in the directory
    tasks = _run(here, flow, logs)
    assert not tasks["t"]["reused"]


def test_a_fifo_among_the_inputs_is_named_never_waited_on(here, tmp_path):
    logs = tmp_path / "logs"
    (here / "data").mkdir()
    (here / "data" / "a.csv").write_text("x,1\n")
    os.mkfifo(here / "data" / "pipe", 0o600)
    flow = write(here, "flow.yaml", """
        name: cache fifo
        tasks:
          - {id: t, plugin: shell, cache: true, inputs: ["data/*"], config: {command: "cat data/a.csv"}}
    """)
    assert _run(here, flow, logs)["t"]["result"]["stdout"] == "x,1\n"
    assert _run(here, flow, logs)["t"]["reused"]
