"""Plain helpers the tests share: run the CLI, read a run directory, wait with a bound, write files.

Fixtures live in conftest.py; everything here is an ordinary function or constant,
imported as `from helpers import ...` (pytest puts tests/ on sys.path for conftest.py).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

#: The shipped example plugin (the seed's, only its import line changed): tests use the very file users get.
GREET = (REPO / "workers" / "greet.py").read_text(encoding="utf-8")


# -- running opflow ----------------------------------------------------------------
def run_cli(*args: str, cwd: Path, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m opflow ARGS` as a real process; bounded in time."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "opflow", *args], cwd=cwd, capture_output=True, text=True,
        timeout=timeout, env=full_env,
    )


def invoke(*args, env=None):
    """The real CLI in this process (click's runner); an unexpected exception is raised, not swallowed."""
    from click.testing import CliRunner

    from opflow.cli.commands import main

    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def go(path, executor: str, tmp_path: Path, **options):
    """`opflow.api.run` of the workflow at `path` on `executor` with 2 workers, logs under tmp_path/logs."""
    from opflow.api import run

    return run(path, executor=executor, workers=2, log_dir=tmp_path / "logs", **options)


# -- reading a run directory -------------------------------------------------------
def run_dirs(log_dir: Path) -> list[Path]:
    """The run directories under a log dir, oldest first (not its hidden bookkeeping, such as .locks);
    none when the log dir was never made."""
    if not log_dir.exists():
        return []
    return sorted(p for p in log_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def latest_run_dir(log_dir: Path) -> Path:
    """The newest run directory under a log dir; fails the test when there is none."""
    runs = run_dirs(log_dir)
    assert runs, f"no run directory under {log_dir}"
    return runs[-1]


def run_json(run_dir: Path) -> dict:
    """The run's run.json, parsed."""
    return json.loads((run_dir / "run.json").read_text())


def records(run_dir: Path) -> dict:
    """task_id -> its tasks/<id>.json record."""
    return {p.stem: json.loads(p.read_text()) for p in (run_dir / "tasks").glob("*.json")}


# -- waiting, with a bound -----------------------------------------------------------
def wait_for(predicate, timeout=30.0, what="condition"):
    """Poll `predicate` until true; fail after `timeout` seconds (never wait unbounded)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def gone(pid: int) -> bool:
    """The process has exited (a zombie awaiting its parent counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler for `signum` (its SigCgt mask in /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
    except OSError:
        pass
    return False


def signal_when(proc: subprocess.Popen, ready, what: str, signum: int = signal.SIGINT, *,
                wait: float = 120, settle: float = 0.0, timeout: float = 60) -> str:
    """Once `ready()` holds, send `proc` `signum` and return its output; the process is reaped whatever happens."""
    try:
        wait_for(ready, wait, what)
        time.sleep(settle)
        proc.send_signal(signum)
        output, _ = proc.communicate(timeout=timeout)
        return output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- writing files -------------------------------------------------------------------
def write(folder: Path, name: str, text: str) -> Path:
    """A file `name` under `folder` (folders made), its text dedented."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def flow_file(folder: Path, tasks: str, name: str = "flow", file: str = "flow.yaml") -> Path:
    """folder/file: a workflow called `name` whose task list is `tasks` (YAML list items, at any indent)."""
    body = textwrap.indent(textwrap.dedent(tasks).strip("\n"), "  ")
    return write(folder, file, f"name: {name}\ntasks:\n{body}\n")


def dependency_order_problems(run_dir: Path) -> list[str]:
    """Each task_started in the journal that came before the task_finished of one of its
    depends_on (a foreach group: of every instance). The journal's order is the order the
    coordinator saw things; reused tasks have no start to check."""
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]
    depends_on = {e["task_id"]: e.get("depends_on") or [] for e in events if e["event"] == "task_finished"}
    finished: set[str] = set()
    problems = []

    def done(dep: str) -> bool:
        if dep in depends_on:
            return dep in finished
        instances = [t for t in depends_on if t.startswith(dep + "[")]
        return bool(instances) and all(t in finished for t in instances)

    for event in events:
        if event["event"] == "task_finished":
            finished.add(event["task_id"])
        elif event["event"] == "task_started":
            early = [d for d in depends_on.get(event["task_id"], []) if not done(d)]
            if early:
                problems.append(f"{event['task_id']} started before {', '.join(early)} finished")
    return problems


# -- a Dask cluster as a user starts one -------------------------------------------------
def _spawn(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    handle = open(log, "wb")
    try:
        return subprocess.Popen(args, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        handle.close()  # the child has its own copy


def check_unshare() -> None:
    """Fail clearly (never skip) where a private mount namespace cannot be made: the tests of a
    worker without the shared disk need root and `unshare -m` (CI has both)."""
    try:
        done = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs none /mnt && umount /mnt"],
                              capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise AssertionError("these tests need `unshare` (util-linux) to hide folders from a Dask worker") from None
    assert done.returncode == 0, ("these tests need root and `unshare -m` with tmpfs mounts, to hide folders "
                                  f"from a Dask worker: {done.stderr.strip()}")


class HandStartedCluster:
    """`dask scheduler` and one `dask worker` per entry of `workers` (its extra arguments), on
    127.0.0.1, each from its own folder under `tmp_path`; `hidden[n]`: folders worker n cannot
    see (an empty tmpfs over each, in a private mount namespace: no shared disk). Every process
    is stopped, with its tree, by pid. `add_worker` starts one more while it runs."""

    def __init__(self, tmp_path: Path, workers: list[list[str]], hidden: dict | None = None, dashboard: bool = False):
        self.tmp_path = tmp_path
        self.scheduler_file = tmp_path / "scheduler.json"
        self.procs: list[subprocess.Popen] = []
        self._workers, self._hidden, self._dashboard = workers, hidden or {}, dashboard
        self.address = ""

    def __enter__(self) -> HandStartedCluster:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        import distributed

        dashboard = ["--dashboard-address", "127.0.0.1:0"] if self._dashboard else ["--no-dashboard"]
        self.procs.append(_spawn([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", "0", *dashboard, "--scheduler-file", str(self.scheduler_file)],
                                 self.tmp_path, self.tmp_path / "scheduler.log"))
        wait_for(lambda: self.scheduler_file.exists() and self.scheduler_file.stat().st_size > 0
                 or self.procs[0].poll() is not None, 60, "the scheduler file")
        assert self.procs[0].poll() is None, (self.tmp_path / "scheduler.log").read_text()
        self.address = json.loads(self.scheduler_file.read_text())["address"]
        for extra in self._workers:
            self.add_worker(extra, self._hidden.get(len(self.procs) - 1, ()), wait=False)
        with distributed.Client(self.address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(len(self._workers), timeout=60)

    def add_worker(self, extra: list[str], hidden=(), wait: bool = True) -> None:
        import distributed

        n = len(self.procs) - 1
        folder = self.tmp_path / f"worker{n}"
        folder.mkdir(exist_ok=True)
        worker = [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(self.scheduler_file),
                  "--host", "127.0.0.1", "--nthreads", "1", "--no-dashboard", "--name", f"w{n}",
                  "--local-directory", str(folder), *extra]
        if hidden:  # unshare execs the shell, which execs the worker: one pid, ours to stop
            mounts = " && ".join(f"mount -t tmpfs -o size=1m opflow-hidden {os.fspath(h)!r}" for h in hidden)
            worker = ["unshare", "-m", "sh", "-c", f'{mounts} && exec "$@"', "sh", *worker]
        self.procs.append(_spawn(worker, folder, self.tmp_path / f"worker{n}.log"))
        if wait:
            with distributed.Client(self.address, timeout=30, set_as_default=False) as client:
                client.wait_for_workers(n + 1, timeout=60)

    def __exit__(self, *exc) -> None:
        from opflow.procs import kill_tree

        for proc in reversed(self.procs):  # workers first, then the scheduler; each with its whole tree
            kill_tree(proc.pid, grace=5.0)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
