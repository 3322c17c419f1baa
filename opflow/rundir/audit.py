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

The files are written by one writer thread, in event order, so the coordinator's
loop never waits on the disk (a file write here costs about as much as a whole
task dispatch). The writer flushes the journal after every batch it drains: an
event reaches the OS within milliseconds of happening.
"""
from __future__ import annotations

__all__ = ["AuditTrail", "create_run_dir", "write_json_atomic", "write_new_file", "slugify", "file_tag", "provenance"]

import hashlib
import itertools
import json
import os
import platform
import queue
import re
import socket
import sys
import threading
import time
import unicodedata
from datetime import datetime, timezone
from pathlib import Path

from opflow._version import __version__
from opflow.rundir.reserve import SpaceReserve, reserve_size
from opflow.errors import OpflowError
from opflow.events import Reporter
from opflow.rundir.failure_text import detail_lines
from opflow.workflow.spec import Workflow
from opflow.rundir.task_logs import remove_spools
from opflow.rundir.files import DIR_MODE, open_nofollow
from opflow.words import plural

PROVENANCE_PACKAGES = ("PyYAML", "networkx", "psutil", "click", "pandas")


def slugify(name: str) -> str:
    """A workflow name as a folder name: "Données — été 2026 / v2" -> "donnees-ete-2026-v2".

    Accents are taken off the letters that have them (NFKD, then the combining
    marks dropped); letters with no plain form (ß, 日本) are kept as they are.
    """
    bare = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    slug = re.sub(r"[\W_]+", "-", bare).strip("-").lower()
    return slug[:60].rstrip("-") or "workflow"


def file_tag(workflow_path: Path) -> str:
    """A short hash of the workflow file's absolute path: tells apart the runs of two
    files that share a workflow name in one log dir."""
    return hashlib.sha1(str(Path(workflow_path).resolve()).encode()).hexdigest()[:6]


def create_run_dir(log_dir: Path, workflow_name: str, now: float | None = None,
                   workflow_path: Path | None = None) -> Path:
    """Make a new, unique run directory: <UTC time>-<slug>, then -2, -3... on collision.

    With `workflow_path`, the slug is followed by `-f<file tag>` (another file
    with the same workflow name already runs under this log dir).

    `now` is the run's one clock reading: the same instant is its run.json `started_at`.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromtimestamp(now or time.time(), timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = f"{stamp}-{slugify(workflow_name)}"
    if workflow_path is not None:
        base += f"-f{file_tag(workflow_path)}"
    for n in range(1, 10_000):
        candidate = log_dir / (base if n == 1 else f"{base}-{n}")
        try:
            candidate.mkdir(mode=DIR_MODE)  # atomic: two runs can never share a directory
        except FileExistsError:
            continue
        os.chmod(candidate, DIR_MODE)  # whatever the umask: params and pickles are the user's alone
        (candidate / "tasks").mkdir(mode=DIR_MODE)
        return candidate
    raise RuntimeError(f"cannot create a run directory under {log_dir}")


def write_json_atomic(path: Path, document, *, pretty: bool = True, dir_fd: int | None = None) -> None:
    """Write JSON to a temporary file, then rename it into place.

    `pretty=False` for the per-task records: one-shot `json.dumps` without indent
    runs CPython's C encoder, several times faster than the indented one, and
    this runs once per task. With `dir_fd`, `path`'s name is taken in that directory.
    """
    if not pretty:
        write_text_atomic(path, json.dumps(document, allow_nan=False, default=str) + "\n", dir_fd=dir_fd)
        return
    # The indented text is written piece by piece: json.dumps would hold a list of
    # every piece and then the whole text (run.json of 100,000 tasks: ~30 MB at once).
    pieces = json.JSONEncoder(indent=2, allow_nan=False, default=str).iterencode(document)
    write_lines_atomic(path, itertools.chain(pieces, ("\n",)), dir_fd=dir_fd)


_tmp_serial = itertools.count()


def write_text_atomic(path: Path, text: str, *, dir_fd: int | None = None) -> None:
    """A new file (O_EXCL, 0600, never through a symlink) renamed over `path`: a symlink
    planted at `path` is replaced, never written through."""
    write_lines_atomic(path, (text,), dir_fd=dir_fd)


def write_lines_atomic(path: Path, pieces, *, dir_fd: int | None = None) -> None:
    """`write_text_atomic` of the text the strings `pieces` make up, written as they come."""
    if dir_fd is not None:
        path = Path(path.name)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{next(_tmp_serial)}.tmp")  # one per write, any thread
    fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, dir_fd=dir_fd)
    try:
        try:
            _write_all(fd, pieces)
        finally:
            os.close(fd)
        os.replace(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise


def _write_all(fd: int, pieces, chunk: int = 1 << 16) -> None:
    """The UTF-8 of `pieces` to `fd` with os.write, 64 KB at a time. A task's record
    is one system call: a file object would add three (fstat, isatty, and a
    flush), and each system call hands the GIL to the coordinator's loop and
    waits to get it back (up to 5 ms): the writer fell thousands of records behind."""
    buffered: list[str] = []
    size = 0
    for piece in pieces:
        buffered.append(piece)
        size += len(piece)
        if size >= chunk:
            _write_bytes(fd, "".join(buffered).encode("utf-8"))
            buffered, size = [], 0
    if buffered:
        _write_bytes(fd, "".join(buffered).encode("utf-8"))


def _write_bytes(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_new_file(path: Path, data: bytes) -> None:
    """Create `path` (O_EXCL, 0600, never through a symlink) holding `data`."""
    with open(open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as handle:
        handle.write(data)


def provenance(workflow: Workflow) -> dict:
    from importlib import metadata

    packages = {}
    for name in PROVENANCE_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "workflow_file": str(workflow.path),
        "workflow_sha256": workflow.sha256,
        "host": socket.gethostname(),
        # Who writes this record: with `host`, a reader can tell a "running" run whose
        # coordinator died (history.run_state); the start time tells a reused pid apart.
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
        self.extra = extra or {}
        # Descriptors of the run directory and its tasks/: every file is opened in them,
        # so a run dir renamed or replaced by a symlink mid-run is never written through.
        self._dir_fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        self._tasks_fd = os.open("tasks", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 dir_fd=self._dir_fd)
        self._events = open(open_nofollow("events.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL,
                                          dir_fd=self._dir_fd), "a", encoding="utf-8")
        self._tasks_dir = run_dir / "tasks"
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
            self._provenance = provenance(self.workflow)
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
        try:
            write_json_atomic(self.run_dir / "run.json", self._run)
            (self.run_dir / "summary.txt").write_text(self._summary_text(), encoding="utf-8")
        except OSError:
            pass  # not even the reserve sufficed: close() reports the first failure

    def _write(self, event, kind: str) -> None:
        if kind == "task_finished":
            if type(event) is _Unwritable:
                raise event.error
            self._records[event.task_id] = event.brief
            write_text_atomic(self._tasks_dir / f"{event.task_id}.json", event.record_text, dir_fd=self._tasks_fd)
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
                **(self._provenance or provenance(self.workflow)),
                "params": event["params"],
                "workers": event["workers"],
                "executor": event["executor"],
                **({"scheduler": event["scheduler"]} if event.get("scheduler") else {}),
                "run_dir": str(self.run_dir.resolve()),
                **self.extra,
            }
            write_json_atomic(self.run_dir / "run.json", dict(self._run, tasks=dict.fromkeys(event["tasks"], "pending")),
                              dir_fd=self._dir_fd)
            self._events.flush()
        elif kind == "run_finished":
            self._run.update(
                status=event["status"], finished_at=event["finished_at"], duration_s=event["duration_s"],
                tasks=event["tasks"], exit_code=event["exit_code"], signal=event["signal"],
                problems=self._problems(),
            )
            self._events.flush()
            write_json_atomic(self.run_dir / "run.json", self._run, dir_fd=self._dir_fd)
            write_lines_atomic(self.run_dir / "summary.txt", (line + "\n" for line in self._summary_lines()),
                               dir_fd=self._dir_fd)

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

    def _summary_text(self) -> str:
        return "".join(line + "\n" for line in self._summary_lines())

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
