"""The run directory's one owner: its names, making one, finding them, reading them back,
and whether the coordinator that writes one is alive.

    <log dir>/<YYYYmmddTHHMMSSZ>-<slug>[-f<file tag>][-<n>]/
        run.json  tasks/<id>.json  tasks/<id>.log  events.jsonl  summary.txt  workflow.yaml

`<slug>` is the workflow name as a folder name; `-f<file tag>` follows it where another
file with the same workflow name already runs under the log dir; `-<n>` (2, 3...) is the
n-th run of one second. The slug itself may end in -<digits> ("job 2"): a name is parsed
exactly only against a known workflow name, loosely (is it a run directory at all) otherwise.

Readers here never raise for a missing or unreadable file: they return None (or leave the
file out), and each caller says what that means to it; none waits on a FIFO (O_NONBLOCK,
a regular file only) or raises on a nesting bomb. `read_trusted_run_json` is the one
exception: resume trusts what it reads, so it refuses, with a reason, what it cannot trust.
The cache trusts earlier runs by the same rule (`trusted_runs_of_file`,
`read_trusted_task_record`), but what it cannot trust is only a miss: it leaves it out.

Is the coordinator alive (`coordinator_alive`), one rule for every reader (resume,
--keep-runs pruning, `opflow runs`, `opflow show`, `opflow report`):
  - no positive int `pid` in run.json (a record from before opflow kept it): cannot tell;
  - no `host`, or another host than this one: cannot tell (a pid means nothing elsewhere,
    and a guess would call a live run on another machine crashed);
  - no process with that pid, or a zombie (it exited; only its parent has not reaped it):
    dead;
  - a process whose start time is not the recorded `pid_create_time` (within 1 s): dead, the
    pid was reused by a later process; where no `pid_create_time` was recorded (psutil could
    not read it then), a process started more than 5 s after the run's `started_at` is a
    later one;
  - a process psutil cannot read (AccessDenied, or any other psutil error): cannot tell;
  - else alive.
"Cannot tell" (None) is never read as dead: such a run shows as its run.json says, is not
pruned, and resume refuses it.
"""
from __future__ import annotations

__all__ = ["RUN_JSON", "TASKS", "JOURNAL", "SUMMARY", "WORKFLOW_COPY", "slugify", "file_tag", "create_run_dir",
           "RunName", "parse_run_dir_name", "is_run_dir_name", "find_runs", "needs_file_tag", "runs_of_file",
           "trusted_runs_of_file", "read_trusted_task_record", "latest_run", "read_run_json", "read_trusted_run_json", "task_record_path", "load_task_record",
           "read_task_record", "read_task_records", "coordinator_alive", "effective_status", "run_state"]

import hashlib
import json
import os
import re
import socket
import stat
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from opflow.errors import UsageError
from opflow.rundir.files import DIR_MODE, check_private_dir, read_private

if TYPE_CHECKING:
    from opflow.workflow.spec import Workflow

RUN_JSON = "run.json"  # provenance + statuses; written at the start, rewritten at the end
TASKS = "tasks"  # tasks/<id>.json, one record per task; tasks/<id>.log, its output
JOURNAL = "events.jsonl"  # every event, appended and flushed as it happens
SUMMARY = "summary.txt"  # for people
WORKFLOW_COPY = "workflow.yaml"  # the workflow file as it was when the run started

PID_CREATE_SLACK_S = 1.0  # psutil's start times, read twice, differ by rounding only
STARTED_AT_SLACK_S = 5.0  # run.json's started_at is a wall clock reading, taken after the imports


# -- names -------------------------------------------------------------------------
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


def _name_pattern(slug: str) -> re.Pattern:
    """The one pattern of a run directory's name, around `slug` (a regex)."""
    return re.compile(r"(?P<stamp>\d{8}T\d{6}Z)-(?P<slug>" + slug + r")(?:-f(?P<tag>[0-9a-f]{6}))?(?:-(?P<n>\d+))?")


_ANY_NAME = _name_pattern(r".+?")


@dataclass(frozen=True)
class RunName:
    stamp: str  # UTC, YYYYmmddTHHMMSSZ
    tag: str | None  # the file tag, where the name has one
    n: int  # 1 for the first run of its second, then 2, 3...


def parse_run_dir_name(name: str, workflow_name: str) -> RunName | None:
    """The parts of `name` if it is a run directory's name of `workflow_name`, else None."""
    match = _name_pattern(re.escape(slugify(workflow_name))).fullmatch(name)
    if match is None:
        return None
    return RunName(match.group("stamp"), match.group("tag"), int(match.group("n") or 1))


def is_run_dir_name(name: str) -> bool:
    """Whether `name` is a run directory's name, of any workflow."""
    return _ANY_NAME.fullmatch(name) is not None


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
        (candidate / TASKS).mkdir(mode=DIR_MODE)
        return candidate
    raise RuntimeError(f"cannot create a run directory under {log_dir}")


# -- finding runs --------------------------------------------------------------------
def find_runs(log_dir: Path, workflow_name: str) -> list[Path]:
    """Run directories named for this workflow (and holding a run.json), oldest first."""
    if not log_dir.is_dir():
        return []
    runs = []
    for path in log_dir.iterdir():
        name = parse_run_dir_name(path.name, workflow_name)
        if name and (path / RUN_JSON).is_file():
            runs.append((name.stamp, name.n, path))
    return [path for _, _, path in sorted(runs)]


def needs_file_tag(log_dir: Path, workflow: Workflow) -> bool:
    """Whether this file's run dirs need the file tag to tell them apart.

    The first file to run under a workflow name in a log dir keeps the plain
    `<time>-<slug>` names; another file with the same name gets `-f<tag>` after
    the slug. One run.json is read: the oldest plain-named run's.
    """
    for run_dir in find_runs(log_dir, workflow.name):
        if parse_run_dir_name(run_dir.name, workflow.name).tag:
            continue
        doc = read_run_json(run_dir)
        if doc is None:
            continue
        return doc.get("workflow_file") != str(workflow.path)
    return False


def runs_of_file(log_dir: Path, workflow: Workflow) -> list[Path]:
    """Run directories of this very workflow file (its run.json says so), oldest first."""
    found = []
    for run_dir in find_runs(log_dir, workflow.name):
        doc = read_run_json(run_dir)
        if doc is not None and doc.get("workflow_file") == str(workflow.path):
            found.append(run_dir)
    return found


def latest_run(log_dir: Path, workflow: Workflow) -> Path | None:
    """The newest run directory of this same workflow file under log_dir."""
    runs = runs_of_file(log_dir, workflow)
    return runs[-1] if runs else None


# -- reading -------------------------------------------------------------------------
def _load_object(path: Path) -> dict | None:
    try:
        # O_NONBLOCK and a regular file only: a FIFO at the name is skipped, never waited on.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with open(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            doc = json.loads(handle.read().decode("utf-8"))
    # Missing, unreadable, not JSON, or nested past the parser's depth (a nesting bomb):
    # the caller says what that means.
    except (OSError, ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def read_run_json(run_dir: Path) -> dict | None:
    """run.json as written, or None where there is none or it is not a JSON object."""
    return _load_object(Path(run_dir) / RUN_JSON)


def read_trusted_run_json(run_dir: Path) -> dict:
    """run.json of a run directory resume may trust: this user's, writable by no one else
    (else UnsafePathError); a UsageError saying why where there is none or it is unreadable."""
    run_dir = Path(run_dir)
    check_private_dir(run_dir)
    run_json = run_dir / RUN_JSON
    try:
        doc = json.loads(read_private(run_json).decode("utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{run_dir}: not a run directory (no run.json)") from None
    except ValueError as exc:
        raise UsageError(f"{run_json}: unreadable: {exc}") from None
    except RecursionError:
        raise UsageError(f"{run_json}: unreadable: nested too deep") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{run_json}: unreadable: not a JSON object")
    return doc


def trusted_runs_of_file(log_dir: Path, workflow: Workflow) -> list[Path]:
    """`runs_of_file`, only the run directories resume would trust (`read_trusted_run_json`:
    real directories, this user's, writable by no one else), oldest first. What the cache reuses:
    a run dir another user planted in a shared log dir, or one opflow cannot read, is left out."""
    found = []
    for run_dir in find_runs(log_dir, workflow.name):
        try:
            doc = read_trusted_run_json(run_dir)
        except (UsageError, OSError):  # UnsafePathError is a UsageError: not trusted, so not a source
            continue
        if doc.get("workflow_file") == str(workflow.path):
            found.append(run_dir)
    return found


#: The largest task record the cache reads back: renderings are bounded (worker/render.py), far below it.
MAX_TRUSTED_RECORD_BYTES = 256 * 1024 * 1024


def read_trusted_task_record(run_dir: Path, task_id: str) -> dict | None:
    """tasks/<task_id>.json of a run dir already trusted (`trusted_runs_of_file`), read as resume reads:
    not through a symlink, a regular file of this user's that no one else may write, never
    blocking (a FIFO is refused). None where it is missing, untrusted, too large or not a JSON object."""
    try:
        doc = json.loads(read_private(task_record_path(run_dir, task_id), MAX_TRUSTED_RECORD_BYTES).decode("utf-8"))
    except (UsageError, OSError, ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def task_record_path(run_dir: Path, task_id: str) -> Path:
    return Path(run_dir) / TASKS / f"{task_id}.json"


def load_task_record(run_dir: Path, task_id: str) -> dict:
    """tasks/<task_id>.json; OSError or ValueError where it is missing or not JSON."""
    return json.loads(task_record_path(run_dir, task_id).read_text(encoding="utf-8"))


def read_task_record(run_dir: Path, task_id: str) -> dict | None:
    """tasks/<task_id>.json, or None where there is none (the task never finished, or a
    crash came first) or it is not a JSON object."""
    return _load_object(task_record_path(run_dir, task_id))


def read_task_records(run_dir: Path, task_ids: Iterable[str] | None = None) -> dict[str, dict]:
    """task_id -> its record, for each of `task_ids` that has a readable one (by default,
    every record in tasks/, keyed by the `id` it holds)."""
    if task_ids is not None:
        found = {}
        for task_id in task_ids:
            record = read_task_record(run_dir, task_id)
            if record is not None:
                found[task_id] = record
        return found
    found = {}
    for path in sorted((Path(run_dir) / TASKS).glob("*.json")):
        record = _load_object(path)
        if record is not None and "id" in record:
            found[record["id"]] = record
    return found


# -- is the coordinator alive ----------------------------------------------------------
def coordinator_alive(doc: dict) -> bool | None:
    """Is the coordinator that wrote this run.json still running? True, False, or None:
    cannot tell. The rule is in this module's docstring."""
    pid = doc.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    if doc.get("host") != socket.gethostname():
        return None
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        created = process.create_time()
    except psutil.NoSuchProcess:  # ZombieProcess is one too: gone, or exited and unreaped
        return False
    except psutil.Error:  # the pid is taken but cannot be read (AccessDenied): cannot tell whose
        return None
    recorded = doc.get("pid_create_time")
    if isinstance(recorded, (int, float)) and not isinstance(recorded, bool):
        return abs(created - recorded) <= PID_CREATE_SLACK_S
    started = _epoch(doc.get("started_at"))
    return not (started is not None and created > started + STARTED_AT_SLACK_S)


def effective_status(doc: dict) -> str:
    """run.json's status, or 'crashed' for a 'running' run whose coordinator is dead."""
    status = doc.get("status") or "unknown"
    if status == "running" and coordinator_alive(doc) is False:
        return "crashed"
    return status


def run_state(run_dir: Path) -> str:
    """A run directory's status: `effective_status` of its run.json; 'unknown' without one."""
    doc = read_run_json(run_dir)
    return "unknown" if doc is None else effective_status(doc)


def _epoch(iso) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp() if iso else None
    except (TypeError, ValueError):
        return None
