"""The audit trail: a reporter that turns a run's events into its run directory.

    logs/<YYYYmmddTHHMMSSZ>-<slug>/
        events.jsonl      every event, appended and flushed as it happens
        tasks/<id>.json   one record per task, written when the task ends
        run.json          provenance + statuses; written at the start, rewritten at the end
        summary.txt       for people
        workflow.yaml     the workflow file as it ran
        results.pickles   pickled results other tasks read (owner-only), for `opflow resume`

Each JSON file is written to a temporary file and renamed into place, so a crash
at any instant leaves either the old or the new version, never half of one.

The run directory is the user's alone: 0700, every file in it 0600 (params may
hold tokens, results are pickles). Files are opened through a descriptor of the
run directory, never through a final symlink, new ones with O_EXCL (rundir/files.py).

Its names, and making one, are rundir/layout.py's; how a file is written (atomically,
never through a symlink), rundir/files.py's.

The files are written by one writer thread, in event order, so the coordinator's
loop never waits on the disk (a file write here costs about as much as a whole
task dispatch). The writer flushes the journal after every batch it drains: an
event reaches the OS within milliseconds of happening.
"""
from __future__ import annotations

__all__ = ["AuditTrail", "provenance",
           # where they now live, kept importable from here: rundir/layout.py, rundir/files.py
           "create_run_dir", "slugify", "file_tag", "write_json_atomic", "write_new_file"]

import json
import os
import platform
import queue
import socket
import sys
import threading
from pathlib import Path

from opflow._version import __version__
from opflow.rundir.reserve import SpaceReserve, reserve_size
from opflow.errors import OpflowError
from opflow.events import Reporter
from opflow.rundir.failure_text import detail_lines
from opflow.masking import Masker
from opflow.workflow.spec import Workflow, params_digest
from opflow.rundir.task_logs import remove_spools
from opflow.rundir.files import open_nofollow, write_bytes_atomic_in, write_json_atomic, write_lines_atomic, write_new_file
from opflow.rundir.layout import JOURNAL, RUN_JSON, SUMMARY, TASKS, create_run_dir, file_tag, slugify
from opflow.words import plural

#: opflow's own dependencies, and numpy under pandas: always recorded.
PROVENANCE_PACKAGES = ("PyYAML", "networkx", "psutil", "click", "pandas", "numpy")


def provenance(workflow: Workflow) -> dict:
    from importlib import metadata

    packages = {}
    for name in (*PROVENANCE_PACKAGES, *task_distributions(workflow), *workflow.provenance):
        if name in packages:
            continue
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "workflow_file": str(workflow.path),
        "workflow_sha256": workflow.sha256,
        "host": socket.gethostname(),
        # Who writes this record: with `host`, a reader can tell a "running" run whose
        # coordinator died (layout.coordinator_alive); the start time tells a reused pid apart.
        "pid": os.getpid(),
        "pid_create_time": _create_time(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "opflow_version": __version__,
        "packages": packages,
        "user": _user(),
        "cwd": os.getcwd(),
        "argv": sys.argv,
    }


def task_distributions(workflow: Workflow) -> list[str]:
    """The distributions that the modules `python` tasks name come from, best effort.

    A module named by `function: "module:attr"` maps to its distribution through
    `importlib.metadata.packages_distributions` (`sklearn` -> scikit-learn); a `.py`
    beside the workflow is no distribution, so what it imports at its top level
    (read, not run) is mapped instead. The standard library and names that map to
    no installed distribution are left out.
    """
    modules: list[str] = []
    named: set[str] = set()
    for task in workflow.tasks:
        function = task.config.get("function") if task.plugin == "python" and isinstance(task.config, dict) else None
        if not isinstance(function, str) or ":" not in function:
            continue
        top = function.split(":", 1)[0].split(".")[0]
        if top in named:
            continue
        named.add(top)
        beside = workflow.directory / f"{top}.py"
        # The worker imports a file beside the workflow first (plugins/python_call.py).
        modules.extend(_imported_modules(beside) if beside.is_file() else [top])
    modules = list(dict.fromkeys(modules))
    modules = [m for m in modules if m and m not in sys.stdlib_module_names and m != "opflow"]
    if not modules:
        return []
    from importlib import metadata

    try:
        owners = metadata.packages_distributions()
    except Exception:  # a broken installation's metadata: provenance is best effort, never a failed run
        return []
    found: list[str] = []
    for module in modules:
        for distribution in owners.get(module, ()):
            if distribution not in found:
                found.append(distribution)
    return found


def _imported_modules(path: Path) -> list[str]:
    """The top-level names a module file imports (absolute imports, anywhere in it), in order."""
    import ast

    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):  # the task fails on its own; provenance says nothing
        return []
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module.split(".")[0])
    return list(dict.fromkeys(names))


def _create_time() -> float | None:
    try:
        import psutil

        return psutil.Process().create_time()
    except Exception:  # psutil cannot read it here: the pid alone must do
        return None


def _user() -> str | None:
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # no user name in this environment (containers): not worth failing for
        return None


class _Brief:
    """What summary.txt and run.json's problems need of a task's record, no more:
    a run of 100,000 tasks keeps 100,000 of these (~80 bytes each), not their records."""

    __slots__ = ("status", "duration_s", "attempts", "reused", "error", "reason")

    def __init__(self, status, duration_s, attempts, reused, error=None, reason=None):
        self.status, self.duration_s, self.attempts, self.reused = status, duration_s, attempts, reused
        self.error, self.reason = error, reason


_NO_BRIEF = _Brief(None, None, 0, None)


class _Finished:
    """A task_finished event as the writer needs it: tasks/<id>.json's text, the
    events.jsonl line (the record less its result and attempt log), the brief."""

    __slots__ = ("task_id", "brief", "record_text", "line")
    kind = "task_finished"

    def __init__(self, event: dict):
        record = event["record"]
        self.task_id = record["id"]
        # What summary.txt and run.json's problems need, no more: a run of
        # 100,000 tasks keeps 100,000 of these, not their full records.
        failed = record["status"] != "succeeded"
        self.brief = _Brief(record["status"], record.get("duration_s"), record.get("attempts", 0), record.get("reused"),
                            record.get("error") if failed else None, record.get("reason") if failed else None)
        self.record_text = json.dumps(record, allow_nan=False, default=str) + "\n"
        slim = {k: v for k, v in record.items() if k not in ("result", "attempt_log")}
        self.line = json.dumps({"event": "task_finished", "time": event["time"], "task_id": record["id"], **slim},
                               allow_nan=False, default=str) + "\n"


class _Unwritable:
    """A task_finished event whose record is not JSON: the writer fails the record there."""

    __slots__ = ("error",)
    kind = "task_finished"

    def __init__(self, error: Exception):
        self.error = error


class AuditTrail(Reporter):
    """Writes the run directory from events. Owns its files; knows nothing of the coordinator."""

    def __init__(self, run_dir: Path, workflow: Workflow, extra: dict | None = None):
        self.run_dir = run_dir
        self.workflow = workflow
        # Events come masked (the coordinator's emit); what this writes of its own is masked here.
        self._masker = Masker(workflow.secrets)
        self.extra = self._masker.mask(extra or {})
        # Descriptors of the run directory and its tasks/: every file is opened in them,
        # so a run dir renamed or replaced by a symlink mid-run is never written through.
        self._dir_fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        self._tasks_fd = os.open(TASKS, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 dir_fd=self._dir_fd)
        self._events = open(open_nofollow(JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL,
                                          dir_fd=self._dir_fd), "a", encoding="utf-8")
        self._run: dict = {}
        self._records: dict[str, _Brief] = {}  # task_id -> the parts of its record the summary shows
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._failure: BaseException | None = None
        self._run_json_written = threading.Event()
        self._reserve = SpaceReserve(run_dir, reserve_size(len(workflow.tasks)))
        self._provenance: dict | None = None  # the writer's first act
        self._writer = threading.Thread(target=self._write_loop, name="opflow-audit-writer", daemon=True)
        self._writer.start()

    def handle(self, event: dict) -> None:
        # Called on the coordinator's thread: hand over, return at once. The
        # coordinator never touches an event again after emitting it.
        if event["event"] == "task_finished":
            # Encoded here: the writer, held back by the disk, may be thousands of
            # records behind, and each waits as ~1.5 KB of text, not ~5 KB of dicts.
            # (The same work the writer would do, under the same GIL.)
            try:
                event = _Finished(event)
            except (ValueError, TypeError) as exc:  # not JSON: the writer fails the record, in its turn
                event = _Unwritable(exc)
        self._queue.put(event)

    def backlog(self) -> int:
        return self._queue.qsize()

    def wait_recorded_start(self) -> None:
        # run.json (with the coordinator's pid, for resume and `opflow runs`) is on
        # disk before the first task can start.
        self._run_json_written.wait(timeout=60)

    def close(self) -> None:
        self._queue.put(None)
        self._writer.join()
        if not self._events.closed:
            try:
                self._events.close()
            except OSError as exc:  # its last buffered lines found no room
                self._failure = self._failure or exc
        self._reserve.release()
        remove_spools(self._tasks_fd)  # workers' scratch files for output (worker/output.py)
        for fd in (self._tasks_fd, self._dir_fd):
            try:
                os.close(fd)
            except OSError:  # closed by an earlier close()
                pass
        if self._failure is not None:
            raise OpflowError(f"cannot write the run record in {self.run_dir}: {self._failure}") from self._failure

    # -- the writer thread ---------------------------------------------------
    def _write_loop(self) -> None:
        # Provenance (package versions, platform, psutil) takes 10-50 ms: read now,
        # while the backend starts, not between the pool being ready and the first task.
        try:
            self._provenance = self._masker.mask(provenance(self.workflow))  # argv: --param token=***
        except Exception:  # read again where run.json is written, and reported there as before
            self._provenance = None
        while True:
            batch = [self._queue.get()]
            while True:  # drain what is there, then flush once
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for event in batch:
                if event is None:
                    self._flush()
                    return
                kind = event["event"] if type(event) is dict else event.kind
                if self._failure is None:
                    try:
                        self._write(event, kind)
                    except (OSError, ValueError, TypeError, OpflowError) as exc:
                        self._fail(exc)  # reported by close(); keep draining so the run can end
                elif kind == "run_finished":
                    self._write_last_word(event)
                if kind == "run_started":
                    self._run_json_written.set()  # written, or failed trying: the coordinator goes on
            self._flush()

    def _flush(self) -> None:
        if self._failure is None and not self._events.closed:
            try:
                self._events.flush()
            except OSError as exc:
                self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        """The record cannot be written (disk full): free the reserve, stop the run."""
        self._failure = exc
        self._reserve.release()
        if self.abort is not None:
            self.abort(f"the run record cannot be written in {self.run_dir}: {exc}")

    def _write_last_word(self, event: dict) -> None:
        """After a failed write: the final run.json, status failed and why, into the freed reserve."""
        if not self._run:
            return
        self._run.update(
            status="failed", finished_at=event["finished_at"], duration_s=event["duration_s"],
            tasks=event["tasks"], exit_code=1, signal=event["signal"], problems=self._problems(),
            record_error=f"the run record could not be written: {self._failure}; the run was stopped, and "
                         "tasks/ and events.jsonl may be incomplete",
        )
        try:  # through the run directory's descriptor, like every other write: never a planted symlink
            write_json_atomic(self.run_dir / RUN_JSON, self._run, dir_fd=self._dir_fd)
            write_lines_atomic(self.run_dir / SUMMARY, self._summary_text_lines(), dir_fd=self._dir_fd)
        except (OSError, OpflowError):
            pass  # not even the reserve sufficed (or a temp name was planted): close() reports the first failure

    def _write(self, event, kind: str) -> None:
        if kind == "task_finished":
            if type(event) is _Unwritable:
                raise event.error
            self._records[event.task_id] = event.brief
            write_bytes_atomic_in(self._tasks_fd, f"{event.task_id}.json", event.record_text.encode("utf-8"))
            self._events.write(event.line)
            return
        self._append(event)
        if kind == "run_started":
            self._run = {
                "workflow": self.workflow.name,
                "status": "running",
                "started_at": event["started_at"],
                "finished_at": None,
                "duration_s": None,
                "tasks": None,  # each "pending" at the start; not kept through the run (100,000 of them)
                **(self._provenance or self._masker.mask(provenance(self.workflow))),
                "params": event["params"],
                # Names only; resume compares values by params_sha256 (secrets by their digest).
                **({"secret_params": list(self.workflow.secret_params)} if self.workflow.secret_params else {}),
                **({"env_file": self.workflow.env_file} if self.workflow.env_file else {}),
                "params_sha256": params_digest(self.workflow),
                "workers": event["workers"],
                "executor": event["executor"],
                **({"scheduler": event["scheduler"]} if event.get("scheduler") else {}),
                **({"cluster": event["cluster"]} if event.get("cluster") else {}),
                "run_dir": str(self.run_dir.resolve()),
                **self.extra,
            }
            write_json_atomic(self.run_dir / RUN_JSON, dict(self._run, tasks=dict.fromkeys(event["tasks"], "pending")),
                              dir_fd=self._dir_fd)
            self._events.flush()
        elif kind == "run_finished":
            self._run.update(
                status=event["status"], finished_at=event["finished_at"], duration_s=event["duration_s"],
                tasks=event["tasks"], exit_code=event["exit_code"], signal=event["signal"],
                problems=self._problems(),
            )
            # What reporters before this one add to the record at the end (--ping, --metrics-file).
            self._run.update(event.get("extra") or {})
            self._events.flush()
            write_json_atomic(self.run_dir / RUN_JSON, self._run, dir_fd=self._dir_fd)
            write_lines_atomic(self.run_dir / SUMMARY, self._summary_text_lines(), dir_fd=self._dir_fd)

    def _append(self, event: dict) -> None:
        self._events.write(json.dumps(event, allow_nan=False, default=str) + "\n")

    def _problems(self) -> dict:
        """task_id -> why it did not succeed: loud skips, as the record's readers need."""
        problems = {}
        for task_id, record in self._records.items():
            if record.status == "succeeded":
                continue
            error = record.error
            why = f"{error['type']}: {error['message']}" if error else record.reason or ""
            problems[task_id] = {"status": record.status, "why": why}
        return problems

    def _summary_text_lines(self):
        return (line + "\n" for line in self._summary_lines())

    def _summary_lines(self):
        """summary.txt, a line at a time (100,000 tasks: written as they come, never all held)."""
        run = self._run
        yield from [
            f"Workflow: {run['workflow']}",
            f"Status:   {run['status']}" + (f" ({run['signal']})" if run.get("signal") else ""),
            f"Started:  {run['started_at']}",
            f"Finished: {run['finished_at']}  ({run['duration_s']:.2f}s)",
            f"Executor: {run['executor']}, {plural(run['workers'], 'worker')}",
            f"File:     {run['workflow_file']} (sha256 {run['workflow_sha256'][:12]})",
            "",
        ]
        counts: dict[str, int] = {}
        for status in run["tasks"].values():
            counts[status] = counts.get(status, 0) + 1
        yield "Tasks: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        yield ""
        width = max((len(t) for t in run["tasks"]), default=4)
        for task_id, status in run["tasks"].items():
            record = self._records.get(task_id, _NO_BRIEF)
            duration = record.duration_s
            took = f"{duration:8.2f}s" if duration is not None else " " * 9
            attempts = record.attempts
            line = f"  {status:<9} {task_id:<{width}} {took}"
            if attempts > 1:
                line += f"  ({plural(attempts, 'attempt')})"
            if record.reused:
                line += "  (reused)"
            yield line
            problem = run.get("problems", {}).get(task_id)
            if problem and problem["why"]:
                first_line = problem["why"].splitlines()[0]
                yield f"            {' ' * width} why: {first_line}"
                for detail in detail_lines(record.error):  # the end of its stderr or traceback
                    yield f"            {' ' * width}    | {detail}"
