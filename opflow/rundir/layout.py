"""The run directory's one owner: its names, making one, finding them, reading them back,
and whether the coordinator that writes one is alive.

    <log dir>/<YYYYmmddTHHMMSSZ>-<slug>[-f<file tag>][-<n>]/
        run.json  tasks/<id>.json  tasks/<id>.log  events.jsonl  summary.txt  workflow.yaml

`<slug>` is the workflow name as a folder name; `-f<file tag>` follows it where another
file with the same workflow name already runs under the log dir; `-<n>` (2, 3...) is the
n-th run of one second. The slug itself may end in -<digits> ("job 2"): a name is parsed
exactly only against a known workflow name, loosely (is it a run directory at all) otherwise.

Reading is checked here, for every reader (`runs`, `show`, `report`, resume, the cache, pruning):
a file of the run directory is opened without following a symlink (the run directory's own
folders too: `tasks/` as a symlink is refused) and without blocking (O_NONBLOCK: a FIFO is
refused, never waited on); only a regular file of at most `MAX_RECORD_BYTES` is read. run.json
and a task record must be a JSON object nested at most `MAX_DEPTH` deep (no NaN), whose fields
the readers use have the types they use (`_RUN_FIELDS`, `_RECORD_FIELDS`). What fails is a
`RecordError`: one line naming the file and what is wrong.

The `read_*` readers never raise for a missing, unreadable or malformed file: they return None
(or leave the file out), and each caller says what that means to it. The `load_*` readers raise
FileNotFoundError where there is none and RecordError where it is bad: for a run the user named.
`read_trusted_run_json` is for resume, which trusts what it reads: it also refuses, with a
reason, what is not this user's own.
The cache trusts earlier runs by resume's rule (`trusted_runs_of_file`,
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
           "trusted_runs_of_file", "read_trusted_task_record", "latest_run", "RecordError", "MAX_RECORD_BYTES", "read_run_file", "load_run_json", "read_run_json",
           "read_trusted_run_json", "task_record_path", "load_task_record", "read_task_record", "load_task_records",
           "read_task_records", "read_log_tail", "read_summary", "coordinator_alive", "effective_status", "run_state",
           "iso_epoch"]

import errno
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
from opflow.rundir.files import DIR_MODE, check_private_dir, check_private_fd
from opflow.rundir.task_logs import read_tail

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
    # After the highest suffix taken in this second, never a freed one: a name reused after
    # --keep-runs deleted it would sort before an older run's, and pruning keeps the newest by name.
    taken = [re.fullmatch(re.escape(base) + r"(?:-(\d+))?", entry.name) for entry in os.scandir(log_dir)]
    first = 1 + max((int(m.group(1) or 1) for m in taken if m), default=0)
    for n in range(first, first + 10_000):
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
MAX_RECORD_BYTES = 64 << 20  # run.json of 100,000 tasks is ~30 MB; a task record, its result rendered
MAX_DEPTH = 100  # containers in containers: a result rendered as JSON is a few deep; printing recurses


class RecordError(UsageError, ValueError):
    """A file of a run directory that is there but cannot be read as what it should be
    (a symlink, a FIFO, too large, not JSON, the wrong shape): `<path>: what is wrong`.
    A ValueError too, as a file that is not JSON always was to the readers."""


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def _open_run_file(run_dir: Path, relative: str) -> int:
    """A descriptor on run_dir/relative ("run.json", "tasks/a.log"): no symlink followed below
    run_dir (the directory named itself is the user's choice), no blocking open, a regular
    file only. FileNotFoundError where there is none; RecordError for anything else."""
    folder, _, name = relative.rpartition("/")
    dir_fd = _open_folder(run_dir, folder)
    try:
        return _open_regular(Path(run_dir) / relative, name, dir_fd)
    finally:
        os.close(dir_fd)


def _open_folder(run_dir: Path, folder: str) -> int:
    """A descriptor on run_dir/folder ("" for run_dir itself, "tasks"), each folder below
    run_dir opened without following a symlink."""
    parts = folder.split("/") if folder else []
    if any(part in ("", ".", "..") for part in parts):
        raise RecordError(f"{Path(run_dir) / folder}: not a folder of the run directory")
    try:
        dir_fd = os.open(run_dir, _DIR_FLAGS)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise RecordError(f"{run_dir}: cannot read it: {exc.strerror or exc}") from None
    for n, part in enumerate(parts):
        where = Path(run_dir).joinpath(*parts[:n + 1])
        try:
            fd = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
        except FileNotFoundError:
            raise
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise RecordError(f"{where}: is a symlink or not a folder; "
                                  "opflow reads only the run directory's own files") from None
            raise RecordError(f"{where}: cannot read it: {exc.strerror or exc}") from None
        finally:
            os.close(dir_fd)
        dir_fd = fd
    return dir_fd


def _open_regular(path: Path, name: str, dir_fd: int) -> int:
    """`name` in the folder `dir_fd`, as `_open_run_file` opens it; `path` names it in errors."""
    if name in ("", ".", "..") or "/" in name:
        raise RecordError(f"{path}: not a name in the run directory")
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RecordError(f"{path}: is a symlink; opflow reads only the run directory's own files") from None
        raise RecordError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RecordError(f"{path}: not a regular file; opflow reads only regular files")
    return fd


def read_run_file(run_dir: Path, relative: str, limit: int = MAX_RECORD_BYTES, *, private: bool = False) -> bytes:
    """The bytes of run_dir/relative, checked as `_open_run_file` checks, at most `limit` of
    them (RecordError for a larger file: it is never read). With `private`, the file must
    also be this user's that no one else may write (else UnsafePathError)."""
    return _read_capped(Path(run_dir) / relative, _open_run_file(run_dir, relative), limit, private=private)


def _read_capped(path: Path, fd: int, limit: int = MAX_RECORD_BYTES, *, private: bool = False) -> bytes:
    with open(fd, "rb") as handle:
        if private:
            check_private_fd(handle.fileno(), path)
        size = os.fstat(handle.fileno()).st_size
        data = b""
        if size <= limit:
            data = handle.read(size + 1)  # not read(limit + 1): that allocates the whole 64 MiB first
            if len(data) > size:  # it grew since: read on, up to the limit
                data += handle.read(limit + 1 - len(data))
        if size > limit or len(data) > limit:
            raise RecordError(f"{path}: larger than {limit >> 20} MiB ({size} bytes); not read")
    return data


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _parse_object(path: Path, data: bytes) -> dict:
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError:
        raise RecordError(f"{path}: nested too deeply to read") from None
    except ValueError as exc:
        raise RecordError(f"{path}: not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise RecordError(f"{path}: not a JSON object")
    _check_depth(path, doc)
    return doc


def _check_depth(path: Path, doc) -> None:
    """No container nested deeper than MAX_DEPTH (printing and rendering it recurse)."""
    level = [doc]
    for _ in range(MAX_DEPTH):
        level = [child for item in level for child in (item.values() if isinstance(item, dict) else item)
                 if isinstance(child, (dict, list))]
        if not level:
            return
    raise RecordError(f"{path}: nested more than {MAX_DEPTH} deep")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _statuses(value) -> bool:
    return isinstance(value, dict) and all(isinstance(item, str) for item in value.values())


def _numbers_or_none(value) -> bool:
    return isinstance(value, dict) and all(item is None or _number(item) for item in value.values())


def _attempts(value) -> bool:
    return isinstance(value, list) and all(
        isinstance(a, dict) and not _field_problems(a, _ATTEMPT_FIELDS) for a in value)


_TEXT = (lambda v: isinstance(v, str), "a string")
_NUMBER = (_number, "a number")
_COUNT = (lambda v: _whole(v) and v >= 0, "a whole number >= 0")
_OBJECT = (lambda v: isinstance(v, dict), "an object")

# The fields of run.json the readers use, and what each must be where it is not null.
_RUN_FIELDS = {
    "workflow": _TEXT, "status": _TEXT, "started_at": _TEXT, "finished_at": _TEXT, "duration_s": _NUMBER,
    "tasks": (_statuses, "an object of task id -> status"), "workflow_file": _TEXT, "executor": _TEXT,
    "workers": (lambda v: _whole(v) and v >= 1, "a whole number >= 1"), "resumed_from": _TEXT,
    "params": _OBJECT, "problems": _OBJECT, "reused": (_strings, "a list of task ids"),
}
_ATTEMPT_FIELDS = {"attempt": _COUNT, "queued_at": _TEXT, "started_at": _TEXT, "finished_at": _TEXT,
                   "duration_s": _NUMBER, "wait_s": _NUMBER, "pid": _COUNT, "error": _OBJECT}
# ... and of a task record.
_RECORD_FIELDS = {
    "id": _TEXT, "plugin": _TEXT, "status": _TEXT, "attempts": _COUNT, "started_at": _TEXT, "finished_at": _TEXT,
    "duration_s": _NUMBER, "run_s": _NUMBER, "wait_s": _NUMBER, "backoff_s": _NUMBER,
    "error": _OBJECT, "reason": _TEXT, "log": _TEXT,
    "reused": (lambda v: isinstance(v, bool), "true or false"), "depends_on": (_strings, "a list of task ids"),
    "resources": (_numbers_or_none, "an object of numbers"),
    "attempt_log": (_attempts, "a list of attempts (attempt, started_at, finished_at, pid, error)"),
}


def _field_problems(doc: dict, fields: dict) -> list[str]:
    return [f"{name}: not {what}" for name, (check, what) in fields.items()
            if doc.get(name) is not None and not check(doc[name])]


def _checked(path: Path, doc: dict, fields: dict) -> dict:
    problems = _field_problems(doc, fields)
    if problems:
        raise RecordError(f"{path}: " + "; ".join(problems))
    return doc


def load_run_json(run_dir: Path) -> dict:
    """run.json, checked (this module's docstring): FileNotFoundError where there is none,
    RecordError where it is bad."""
    path = Path(run_dir) / RUN_JSON
    return _checked(path, _parse_object(path, read_run_file(run_dir, RUN_JSON)), _RUN_FIELDS)


def read_run_json(run_dir: Path) -> dict | None:
    """run.json as written, or None where there is none or it is bad (`load_run_json` says why)."""
    try:
        return load_run_json(run_dir)
    except (OSError, RecordError):  # missing, unreadable or malformed: the caller says what that means
        return None


def read_trusted_run_json(run_dir: Path) -> dict:
    """run.json of a run directory resume may trust: this user's, writable by no one else
    (else UnsafePathError); a UsageError saying why where there is none or it is unreadable."""
    run_dir = Path(run_dir)
    check_private_dir(run_dir)
    run_json = run_dir / RUN_JSON
    try:
        data = read_run_file(run_dir, RUN_JSON, private=True)
    except FileNotFoundError:
        raise UsageError(f"{run_dir}: not a run directory (no run.json)") from None
    except OSError as exc:
        raise UsageError(f"{run_json}: unreadable: {exc.strerror or exc}") from None
    return _checked(run_json, _parse_object(run_json, data), _RUN_FIELDS)


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


def read_trusted_task_record(run_dir: Path, task_id: str) -> dict | None:
    """tasks/<task_id>.json of a run dir already trusted (`trusted_runs_of_file`), read as resume reads:
    checked as every record is (this module's docstring), and a file of this user's that no one else
    may write. None where it is missing, untrusted or bad: for the cache, a miss."""
    try:
        name = _record_name(task_id)
        path = Path(run_dir) / name
        return _checked(path, _parse_object(path, read_run_file(run_dir, name, private=True)), _RECORD_FIELDS)
    except (UsageError, OSError, ValueError):  # RecordError is a ValueError
        return None


def task_record_path(run_dir: Path, task_id: str) -> Path:
    return Path(run_dir) / TASKS / f"{task_id}.json"


def _record_name(task_id: str) -> str:
    if "/" in task_id or task_id in ("", ".", ".."):
        raise FileNotFoundError(task_id)  # not a task id: no record can have that name
    return f"{TASKS}/{task_id}.json"


def _load_record(run_dir: Path, name: str) -> dict:
    path = Path(run_dir) / name
    return _checked(path, _parse_object(path, read_run_file(run_dir, name)), _RECORD_FIELDS)


def load_task_record(run_dir: Path, task_id: str) -> dict:
    """tasks/<task_id>.json, checked: FileNotFoundError where there is none, RecordError
    (a ValueError) where it is bad."""
    return _load_record(run_dir, _record_name(task_id))


def read_task_record(run_dir: Path, task_id: str) -> dict | None:
    """tasks/<task_id>.json, or None where there is none (the task never finished, or a
    crash came first) or it is bad."""
    try:
        return load_task_record(run_dir, task_id)
    except (OSError, RecordError):
        return None


def _each_record(run_dir: Path, strict: bool):
    """(path, record) for each good record in tasks/, read through one descriptor of tasks/;
    a bad one raises RecordError where `strict`, else is left out."""
    try:
        dir_fd = _open_folder(run_dir, TASKS)
    except FileNotFoundError:
        return  # no tasks/: no records
    except RecordError:
        if strict:
            raise
        return
    try:
        try:
            names = sorted(name for name in os.listdir(dir_fd) if name.endswith(".json") and not name.startswith("."))
        except OSError as exc:
            if strict:
                raise RecordError(f"{Path(run_dir) / TASKS}: cannot read it: {exc.strerror or exc}") from None
            return
        folder = Path(run_dir) / TASKS
        for name in names:
            path = folder / name
            try:
                record = _checked(path, _parse_object(path, _read_capped(path, _open_regular(path, name, dir_fd))),
                                  _RECORD_FIELDS)
            except FileNotFoundError:  # gone since listed
                continue
            except RecordError:
                if strict:
                    raise
                continue
            except OSError as exc:
                if strict:
                    raise RecordError(f"{path}: cannot read it: {exc.strerror or exc}") from None
                continue
            yield path, record
    finally:
        os.close(dir_fd)


def load_task_records(run_dir: Path) -> dict[str, dict]:
    """Every record in tasks/, keyed by the `id` it holds: RecordError for the first bad one."""
    return {record["id"]: record for _, record in _each_record(run_dir, strict=True) if "id" in record}


def read_task_records(run_dir: Path, task_ids: Iterable[str] | None = None) -> dict[str, dict]:
    """task_id -> its record, for each of `task_ids` that has a readable one (by default,
    every good record in tasks/, keyed by the `id` it holds)."""
    if task_ids is not None:
        found = {}
        for task_id in task_ids:
            record = read_task_record(run_dir, task_id)
            if record is not None:
                found[task_id] = record
        return found
    return {record["id"]: record for _, record in _each_record(run_dir, strict=False) if "id" in record}


def read_log_tail(run_dir: Path, task_id: str, lines: int) -> str | None:
    """The end of tasks/<task_id>.log, or None where there is none, or it is a symlink, a
    FIFO or anything but the run directory's own regular file."""
    try:
        name = _record_name(task_id)[: -len(".json")] + ".log"
        return read_tail(_open_run_file(run_dir, name), lines)
    except (OSError, RecordError):
        return None


def read_summary(run_dir: Path) -> str | None:
    """summary.txt, or None where there is none or it is not the run directory's own regular file."""
    try:
        return read_run_file(run_dir, SUMMARY).decode("utf-8", errors="replace")
    except (OSError, RecordError):
        return None


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
    started = iso_epoch(doc.get("started_at"))
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


def iso_epoch(iso) -> float | None:
    """The epoch seconds of a recorded ISO 8601 time (None for none, or one that does not parse)."""
    try:
        return datetime.fromisoformat(iso).timestamp() if iso else None
    except (TypeError, ValueError):
        return None
