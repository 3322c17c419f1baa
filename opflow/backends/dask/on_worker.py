"""What runs on a Dask worker: one attempt of a task, and the helpers the backend calls there."""
from __future__ import annotations

__all__ = ["Held", "PluginBundle", "Snapshot", "run_task", "pickle_request", "halt_run", "peek_outcome",
           "end_this_worker", "hold", "ParentWatch", "STOPPED_EXIT"]

import os
import pickle
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from opflow.attempt import ErrorKind, Outcome, TaskRequest, error_record
from opflow.plugins import PluginRef, add_copy
from opflow.procs import kill_own_children, start_parent_watch
from opflow.worker.execute import execute

try:
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPluginBase
except ImportError:  # the extra is not installed: check_available() says so
    _WorkerPluginBase = object

#: Exit status of a remote worker process told to end itself (its Nanny restarts it).
STOPPED_EXIT = 75
#: Largest pickled Outcome sent as a message (bytes): the scheduler keeps the last
#: 1,000 messages of a topic. A larger one (a long rendering) is read from the cluster.
OUTCOME_MESSAGE_LIMIT = 16 * 1024

# -- what travels to and lives on the workers ------------------------------------
@dataclass
class Held:
    """What a task leaves on its worker: its Outcome, and its pickled result for downstream tasks."""

    outcome: Outcome | None
    blob: bytes | None


@dataclass(frozen=True)
class PluginBundle:
    """The `*.py` files of one `workers/` folder, shipped to workers that lack them."""

    folder: str
    digest: str
    files: dict = field(hash=False)  # file name -> bytes


class Snapshot:
    """The store as one task on a worker sees it: its upstream blobs in, its own blob out."""

    def __init__(self, blobs: dict[str, bytes]):
        self._blobs = blobs
        self.published: bytes | None = None

    def snapshot(self, task_ids) -> dict[str, bytes]:
        return {t: self._blobs[t] for t in task_ids if t in self._blobs}

    def put(self, task_id: str, blob: bytes) -> None:
        self.published = blob


class PluginMissing(Exception):
    pass


def run_task(request_blob: bytes, topic: str, upstream: dict, bundle: PluginBundle | None, want_blob: bool,
             files: PluginBundle | None = None) -> Held:
    """Runs on a Dask worker: one attempt of one task. Never raises for the task's failure.

    `bundle`: the plugin's `workers/` files; `files`: the `.py` files beside the workflow
    (a python task's), for a worker that cannot see them. The request comes pickled (`pickle_request`): the scheduler passes bytes on
    as they are, where it would unpickle and pickle again a TaskRequest (its
    config and the workflow's params) for every task.
    """
    from distributed import get_worker

    request: TaskRequest = pickle.loads(request_blob)
    worker = get_worker()
    if topic in _halted and not request.ignore_halt:  # the run stopped (fail fast, interrupt) while it waited
        outcome = Outcome.not_started(request.token, pid=os.getpid())
        _tell_outcome(worker, topic, outcome)
        return Held(outcome, None)
    try:
        worker.log_event(topic, {"token": request.token, "pid": os.getpid(), "worker": worker.address})
    except Exception:  # a lost start message costs the timeout clock, never the task
        pass
    where = {"worker": worker.address, "host": socket.gethostname()}
    try:
        plugin = _locate_plugin(request.plugin, bundle, worker)
    except PluginMissing as exc:
        outcome = Outcome.failed(request.token, error_record(ErrorKind.PLUGIN_ERROR, str(exc)),
                                 pid=os.getpid(), where=where)
        _tell_outcome(worker, topic, outcome)
        return Held(outcome, None)
    local = Snapshot({task_id: held.blob for task_id, held in upstream.items()})
    # The coordinator's results folder is visible here with a LocalCluster or a
    # shared disk; otherwise the coordinator writes the file (see _collect).
    persist = request.persist_path
    persisted = bool(persist) and os.path.isdir(os.path.dirname(persist))
    # No shared disk: the task runs in the shipped copy of the workflow's folder (or
    # an empty one), and its output goes to a file here that travels back (`_log_here`).
    workflow_dir = _workflow_folder(request.workflow_dir, files, worker)
    log_here = _log_here(request, topic, worker)
    attempt = replace(request, plugin=plugin, store=local, publish=True, persist_path=persist if persisted else None,
                      workflow_dir=workflow_dir, log_path=log_here or request.log_path)
    outcome = execute(attempt, own_process=_runs_alone(worker))
    outcome.where = where
    outcome.extra = {**outcome.extra, "persisted": persisted}
    if log_here:
        outcome.extra["log_bytes"] = _take_log(log_here) if outcome.log else None
    if outcome.error is not None and outcome.error.get("type") in _SETUP_ERRORS:
        # A module or file missing on one machine: say which machine.
        outcome.error["message"] = f"{outcome.error.get('message', '')} (on dask worker {where['worker']}, host {where['host']})"
    keep = outcome.ok and (want_blob or (bool(persist) and not persisted))
    if request.halt_on_failure and not outcome.ok:
        _halted.add(topic)  # fail fast: this worker must not start the next queued task (the others hear it from halt_queued)
    _tell_outcome(worker, topic, outcome)
    return Held(outcome, local.published if keep else None)


#: Error types that say a task's code or files could not be found or loaded where it ran.
_SETUP_ERRORS = ("ConfigError", ErrorKind.PLUGIN_ERROR.value, "ModuleNotFoundError", "ImportError")
#: Most bytes of one attempt's output sent back from a worker without the run directory;
#: past it the tail is kept (memory bounded: an Outcome carries at most this much).
LOG_RETURN_LIMIT = 1024 * 1024


def _workflow_folder(workflow_dir: str, files: PluginBundle | None, worker) -> str:
    """The workflow's folder as this worker sees it: its own where it holds the shipped `.py`
    files, else the shipped copy (modules keep the original's names: add_copy); an empty
    folder where nothing was shipped and the folder is not here."""
    if files is None or not files.files:
        if os.path.isdir(workflow_dir):
            return workflow_dir
        folder = Path(worker.local_directory) / "opflow-files" / "empty"
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder)
    if all(os.path.isfile(os.path.join(workflow_dir, name)) for name in files.files):
        return workflow_dir  # a shared disk, or the same files put there by hand
    folder = _unpack(files, worker)
    add_copy(str(folder), workflow_dir)
    return str(folder)


def _log_here(request: TaskRequest, topic: str, worker) -> str | None:
    """Where this attempt's output goes when the run's tasks/ folder is not on this machine."""
    if not request.log_path or os.path.isdir(os.path.dirname(request.log_path)):
        return None
    folder = Path(worker.local_directory) / "opflow-logs" / topic
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / os.path.basename(request.log_path))


def _take_log(path: str) -> bytes:
    """The attempt's output, to travel back with its Outcome: all of it, or its head line and
    tail past LOG_RETURN_LIMIT (read from the file, never whole into memory). The file goes."""
    try:
        with open(path, "rb") as log:
            size = os.fstat(log.fileno()).st_size
            if size <= LOG_RETURN_LIMIT:
                return log.read()
            header = log.readline(4096)
            log.seek(size - LOG_RETURN_LIMIT)
            log.readline()  # from a line's start
            tail = log.read()
        cut = size - len(header) - len(tail)
        return header + f"[opflow: {cut} bytes of output cut here on the dask worker; the last lines follow]\n".encode() + tail
    except OSError:
        return b""
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


#: The runs (their topics) halted in this worker process: a task of theirs that has
#: not started answers "not started" instead (fail fast, an interrupt, --timeout).
_halted: set[str] = set()


def _runs_alone(worker) -> bool:
    """Does this task have its worker's process to itself (may it take over fds 1/2)?
    Only a worker of one thread, in a process of its own: a LocalCluster with
    processes=False runs workers in the coordinator's process."""
    import multiprocessing

    nthreads = getattr(worker.state, "nthreads", getattr(worker, "nthreads", 2))
    return nthreads == 1 and multiprocessing.parent_process() is not None


def halt_run(topic: str) -> None:
    """Runs on a worker (Client.run): start no more tasks of this run here."""
    _halted.add(topic)


def pickle_request(request: TaskRequest) -> bytes:
    """A request as run_task takes it; the backend's store never travels (tasks get futures)."""
    return pickle.dumps(replace(request, store=None) if request.store is not None else request,
                        pickle.HIGHEST_PROTOCOL)


def _tell_outcome(worker, topic: str, outcome: Outcome) -> None:
    """Send the Outcome to the coordinator on the topic its start went by.

    It rides the worker's stream to the scheduler just ahead of the task's
    "finished" message, and on to the client ahead of the future's completion, so
    the backend reads it without a gather round trip (client, scheduler, worker
    and back) per task. Not sent (larger than OUTCOME_MESSAGE_LIMIT) or lost,
    the backend reads the Outcome from the cluster.
    """
    try:
        blob = pickle.dumps(outcome, pickle.HIGHEST_PROTOCOL)
        if len(blob) <= OUTCOME_MESSAGE_LIMIT:
            worker.log_event(topic, {"token": outcome.token, "key": worker.get_current_task(), "outcome": blob})
    except Exception:  # the backend falls back to gathering the result
        pass


def peek_outcome(key: str, dask_worker) -> Outcome | None:
    """Runs on a worker's event loop (Client.run): the Outcome part of a result it holds."""
    held = dask_worker.data.get(key) if hasattr(dask_worker.data, "get") else dask_worker.data[key]
    return held.outcome if isinstance(held, Held) else None


def _locate_plugin(ref: PluginRef, bundle: PluginBundle | None, worker) -> PluginRef:
    """The plugin's file on this worker: at its own path, or the shipped copy."""
    if ref.source != "file":
        return ref
    location, _, class_name = ref.target.rpartition(":")
    if os.path.isfile(location):
        return ref
    name = os.path.basename(location)
    where = f"dask worker {worker.address} (host {socket.gethostname()})"
    if bundle is None or name not in bundle.files:
        raise PluginMissing(
            f"plugin {ref.name!r}: its file {location} does not exist on {where}, and no copy was shipped; "
            f"put the workers/ folder at the same path on every worker, or use a scheduler address "
            f"(--scheduler), which ships workers/*.py to the workers"
        )
    return replace(ref, target=f"{_unpack(bundle, worker) / name}:{class_name}")


def _unpack(bundle: PluginBundle, worker) -> Path:
    """The shipped files in this worker's local directory, written once per content digest."""
    folder = Path(worker.local_directory) / "opflow-plugins" / bundle.digest
    if not folder.is_dir():
        staging = folder.with_name(f"{bundle.digest}.tmp{os.getpid()}.{threading.get_ident()}")
        staging.mkdir(parents=True, exist_ok=True)
        for file_name, content in bundle.files.items():
            (staging / file_name).parent.mkdir(parents=True, exist_ok=True)
            (staging / file_name).write_bytes(content)
        try:
            os.rename(staging, folder)
        except OSError:  # another task of this worker got there first: theirs is the same content
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def hold(value):
    """Runs on a worker: a value sent once for many tasks (PluginBundle), held there as a result."""
    return value


def end_this_worker() -> int:
    """Runs in a remote worker process (Client.run): kill the task's children, then exit.

    The exit happens on a thread, a moment later, so the reply still goes out;
    the worker's Nanny sees the process end and starts a fresh one.
    """

    def die():
        time.sleep(0.2)
        kill_own_children()
        os._exit(STOPPED_EXIT)

    threading.Thread(target=die, name="opflow-stop", daemon=True).start()
    return os.getpid()


class ParentWatch(_WorkerPluginBase):
    """Worker plugin for LocalCluster workers: die with the coordinator, ignore Ctrl-C.

    Ctrl-C reaches the whole terminal process group; only the coordinator decides
    what an interrupt means (as for the process pool's workers).
    """

    name = "opflow-parent-watch"

    def __init__(self, coordinator_pid: int):
        self.coordinator_pid = coordinator_pid

    def setup(self, worker) -> None:
        try:
            start_parent_watch(self.coordinator_pid)
        except ValueError:  # signal handlers only on the main thread: the watch is a nicety
            pass

    def teardown(self, worker) -> None:
        pass
