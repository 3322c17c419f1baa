"""The Dask backend, the coordinator's side (see the package docstring for the design)."""
from __future__ import annotations

__all__ = ["DaskBackend"]

import hashlib
import os
import pickle
import threading
import time
import traceback
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from opflow.attempt import ErrorKind, Outcome, TaskRequest, error_record
from opflow.errors import UsageError
from opflow.plugins import PluginRef
from opflow.procs import descendants, kill_trees
from opflow.masking import Masker
from opflow.rundir.results_log import append_result
from opflow.backends.base import DaskCluster, OnStart
from opflow.backends.dask.cluster import (WORKER_WAIT, ClusterSize, check_available, check_workers, cluster_pids, connect,
                                          start_local_cluster)
from opflow.backends.dask.cluster_spec import start_cluster
from opflow.backends.dask.on_worker import (
    Held,
    ParentWatch,
    PluginBundle,
    end_this_worker,
    halt_run,
    hold,
    peek_outcome,
    pickle_request,
    run_task,
)

#: Seconds a remote worker gets to end itself before its Nanny is asked to restart it.
REMOTE_STOP_WAIT = 10.0
#: Seconds close() waits for the client and the LocalCluster to shut down.
CLOSE_TIMEOUT = 20.0
#: Threads fetching outcomes from the cluster (Dask runs done-callbacks on one thread).
FETCH_THREADS = 4
#: Times a task is run again because a worker died before the task started on it.
MAX_RESUBMITS = 2
#: Finished tasks whose Dask futures are released together. Releasing one makes the
#: scheduler send its worker a message, and it sends a worker at most one batch
#: every 5 ms: freed one by one, those messages delayed the next task's start there
#: (1.55 batches a task to a worker, against 1.00 for plain futures held to the end).
RELEASE_BATCH = 64
#: A task's asks (TaskRequest.worker_resources) -> the worker resource names taken to mean them.
_RESOURCE_NAMES = {"cpus": ("cpus", "cpu"), "memory": ("memory", "mem")}

# -- the coordinator's side ----------------------------------------------------
class _ClusterStore:
    """task_id -> a Dask future of the task's `Held` result; the data stays on the cluster.

    `put` (used by resume, for results of an earlier run) scatters the blob to a worker.
    """

    def __init__(self, client):
        self._client = client
        self._held: dict = {}
        self._lock = threading.Lock()

    def hold(self, task_id: str, future) -> None:
        with self._lock:
            self._held[task_id] = future

    def futures(self, task_ids) -> dict:
        with self._lock:
            return {t: self._held[t] for t in task_ids if t in self._held}

    def put(self, task_id: str, blob: bytes) -> None:
        future = self._client.scatter(Held(None, blob), hash=False)
        self.hold(task_id, future)

    def clear(self) -> None:
        with self._lock:
            self._held.clear()

    def __reduce__(self):  # never travels: tasks get their upstream results as futures
        raise TypeError("the Dask store does not travel; tasks get their upstream results as futures")


@dataclass
class _Inflight:
    request: TaskRequest
    future: Future  # what submit returned: resolves to an Outcome
    held: object = None  # Dask future of run_task
    resubmits: int = 0  # times run again because a worker died under it before it started


class DaskBackend(DaskCluster):
    """Tasks on a Dask cluster: a running scheduler, or a LocalCluster we start and close."""


    def __init__(self, workers: int, on_start: OnStart | None = None, *, scheduler: str | None = None,
                 scheduler_file: str | None = None, cluster: str | None = None, adapt: str | None = None,
                 workers_given: bool = False):
        check_available()
        from distributed import Client

        self._on_start = on_start
        self._lock = threading.RLock()
        self._inflight: dict[int, _Inflight] = {}
        self._starts: dict[int, tuple[int, str]] = {}  # token -> (pid, worker address)
        self._told: dict[str, bytes] = {}  # Dask key -> the pickled Outcome its worker sent as it ended
        self._spent: list = []  # Dask futures of finished tasks, released RELEASE_BATCH at a time
        self._start_times: dict[int, float] = {}  # token -> when its start was heard of (timeout records)
        self._last_start: dict[str, int] = {}  # worker address -> the token that started there last
        self._ran_to_end: set[int] = set()  # tokens whose Dask task finished at least once
        self._stopping: dict[int, dict] = {}
        self._stopped: set[int] = set()  # resolved by stop(): kill them too if they start late
        self._closing = False
        self._halting = False
        self._closed = False
        self._run_id = uuid.uuid4().hex[:10]
        self._topic = f"opflow-started-{self._run_id}"
        self._bundles: dict[str, tuple[tuple, object]] = {}  # folder -> ((newest mtime, files), scattered bundle)
        self._cluster = None
        self.local = not (scheduler or scheduler_file or cluster)
        # Without --workers, the window follows the cluster's worker threads (ClusterSize).
        self._size: ClusterSize | None = None
        self._declared: tuple[float, set[str]] | None = None  # (when read, the workers' resource names)
        self._fetch = ThreadPoolExecutor(max_workers=FETCH_THREADS, thread_name_prefix="opflow-dask-fetch")
        try:
            if self.local:
                self._cluster = start_local_cluster(workers)
                self._client = Client(self._cluster, set_as_default=False)
            elif cluster:
                self._cluster, wait = start_cluster(cluster, adapt, workers if workers_given else None)
                self._client = Client(self._cluster, set_as_default=False)
                if wait:
                    try:
                        self._client.wait_for_workers(1, timeout=WORKER_WAIT)
                    except Exception:
                        raise UsageError(f"--cluster {cluster}: no worker joined within {WORKER_WAIT:.0f} s") from None
                check_workers(self._client, f"--cluster {cluster}")
            else:
                self._client = connect(scheduler, scheduler_file)
            self.scheduler_address = self._client.scheduler.address
            self._store = _ClusterStore(self._client)
            if self.local:
                self._client.register_plugin(ParentWatch(os.getpid()), name=ParentWatch.name)
            elif not workers_given:
                self._size = ClusterSize(self._client)
            self._client.subscribe_topic(self._topic, self._on_event)
        except BaseException:
            self._shutdown()
            raise

    # -- the backend interface ---------------------------------------------
    def seed(self, task_id: str, blob: bytes) -> None:
        self._store.put(task_id, blob)

    def describe(self) -> dict:
        workers = self._workers_info()
        threads = sum(w.get("nthreads", 1) for w in workers.values())
        facts = {"scheduler": self.scheduler_address,
                 "cluster": {"scheduler": self.scheduler_address, "dashboard": self._dashboard(),
                             "workers": len(workers), "threads": threads}}
        if self._size is not None:  # run.json's workers: the cluster's threads, not this machine's CPUs
            facts["workers"] = max(threads, 1)  # at least 1, as readers of run.json require (adaptive from 0: none yet)
        return facts

    def max_inflight(self, workers: int) -> int:
        # A cluster started elsewhere has its own size, whatever this machine's CPU count:
        # the window follows its worker threads (so adaptive scaling sees enough pending work).
        if self._size is None:
            return super().max_inflight(workers)
        return super().max_inflight(self._size.threads)

    def _resources_for(self, request: TaskRequest) -> dict | None:
        """The task's `cpus:` / `memory:` as the Dask resources its workers declare
        (`dask worker --resources "cpus=8 memory=32e9"`, any case; `cpu`, `mem` too), so the
        scheduler runs it only where that much is free and a worker is not oversubscribed.
        A resource no worker declares is not asked for: the task would never be placed."""
        if not request.worker_resources:
            return None
        declared = self._declared_resources()
        asks = {}
        for ask, amount in request.worker_resources.items():
            name = next((n for n in declared if n.lower() in _RESOURCE_NAMES[ask]), None)
            if name is not None:
                asks[name] = amount
        return asks or None

    def _declared_resources(self) -> set[str]:
        """The resource names the cluster's workers declare, read at most once a second."""
        now = time.monotonic()
        if self._declared is None or now - self._declared[0] > 1.0:
            names = {n for w in self._workers_info().values() for n in (w.get("resources") or {})}
            self._declared = (now, names)
        return self._declared[1]

    def _workers_info(self) -> dict:
        try:
            return self._client.scheduler_info().get("workers", {})
        except Exception:  # a scheduler gone quiet: no figures rather than no run
            return {}

    def _dashboard(self) -> str | None:
        """The scheduler's dashboard page, if it serves one (a scheduler always runs an HTTP
        server, with or without the dashboard's pages: ask the page itself)."""
        import urllib.request

        try:
            if not self._client.scheduler_info().get("services", {}).get("dashboard"):
                return None
            link = self._client.dashboard_link
            with urllib.request.urlopen(link, timeout=2) as page:  # the user's own scheduler
                return link if page.status == 200 else None
        except Exception:  # no page there (404), or no answer: no dashboard to point at
            return None

    def submit(self, request: TaskRequest) -> Future:
        future: Future = Future()
        entry = _Inflight(request, future)
        with self._lock:
            self._inflight[request.token] = entry
            closing = self._closing
        if closing:
            self._resolve_not_started(request.token)
            return future
        try:
            self._submit_to_cluster(entry)
        except Exception as exc:  # the cluster refused it (closed, a request that cannot be sent)
            self._resolve(request.token, error_record(
                type(exc).__name__, f"the dask backend could not submit the task: {exc}", traceback.format_exc()))
        return future

    def _submit_to_cluster(self, entry: _Inflight) -> None:
        request = entry.request
        key = f"opflow-{request.task_id}-{self._run_id}-{request.token}" + (f"r{entry.resubmits}" if entry.resubmits else "")
        upstream = self._store.futures(request.upstream)
        missing = [t for t in request.upstream if t not in upstream]
        # A trigger task (all_done, one_failed) runs after upstream tasks that failed or never
        # ran, which left no result: its context lacks them, as on the process pool. Any other
        # task is submitted only once all of its upstream succeeded.
        if missing and request.upstream_failed is None:
            raise RuntimeError(f"upstream results not on the cluster: {', '.join(missing)}")
        bundle = files = None
        if not self.local:  # a worker elsewhere may lack the user's files: ship them (each once per change)
            bundle = self._bundle_for(request.plugin)
            if request.plugin.source == "builtin" and request.plugin.name == "python":
                files = self._folder_bundle(request.workflow_dir)
        held = self._client.submit(run_task, pickle_request(request), self._topic, upstream, bundle,
                                   request.publish, files, key=key, pure=False, retries=0,
                                   resources=self._resources_for(request))
        with self._lock:
            entry.held = held
        held.add_done_callback(lambda f, t=request.token: self._on_done(t, f))

    def halt_queued(self) -> None:
        """Start no more of our tasks: each worker answers "not started" for those that had not."""
        with self._lock:
            if self._halting:
                return
            self._halting = True
        # Client.run waits for the workers: not on the caller's loop.
        threading.Thread(target=self._halt_workers, name="opflow-dask-halt", daemon=True).start()

    def _halt_workers(self) -> None:
        try:
            self._client.run(halt_run, self._topic, on_error="ignore")
        except Exception:  # closing, or the cluster is gone: nothing left to start anyway
            pass

    def stop(self, token: int, error: dict) -> None:
        with self._lock:
            entry = self._inflight.get(token)
            if entry is None:
                return
            self._stopping[token] = error
        # Cancelling and killing wait on the cluster: not on the caller's loop.
        threading.Thread(target=self._stop_now, args=(token,), name="opflow-dask-stop", daemon=True).start()

    def interrupt(self, grace: float = 2.0) -> None:
        """Stop all our running work: cancel every future, end the workers running our tasks."""
        error = error_record(ErrorKind.INTERRUPTED, "the run was interrupted; its dask worker was stopped")
        with self._lock:
            self._closing = True
            entries = dict(self._inflight)
            running = {t: self._starts[t] for t in entries if t in self._starts}
            for token in entries:  # ours to resolve: a cancelled future's callback must not call
                self._stopping.setdefault(token, error)  # a running task "never started" (_collect)
        self._cancel(entries.values())
        self._end_workers(list(running.values()), grace)
        for token in entries:
            if token in running:  # it ran until now: an attempt, killed while running
                self._resolve(token, error)
            else:
                self._resolve_not_started(token)

    def close(self, kill: bool = False) -> None:
        if self._closed:
            return
        if kill:
            self.interrupt(grace=0.5)
        with self._lock:
            self._closing = True
            leftover = dict(self._inflight)
        self._cancel(leftover.values())
        for token in leftover:
            self._resolve_not_started(token)
        self._shutdown()

    # -- starts and outcomes -----------------------------------------------
    def _on_event(self, event) -> None:
        """On the client's event loop: a task of ours started on a worker, or ended there."""
        _, message = event
        if "outcome" in message:  # read when its future is done (_on_done), in place of a gather
            with self._lock:
                if message["token"] in self._inflight:
                    self._told[message["key"]] = message["outcome"]
            return
        token, pid, address = message["token"], message["pid"], message["worker"]
        with self._lock:
            known = token in self._inflight and token not in self._stopping
            late = token in self._stopped
            if known:
                self._starts[token] = (pid, address)
                self._start_times[token] = time.time()
                self._last_start[address] = token
        if late:  # stopped while its start message was on the way: it must not run on
            threading.Thread(target=self._end_workers, args=([(pid, address)],), daemon=True).start()
        elif known and self._on_start is not None:
            self._on_start(token, pid)

    def _on_done(self, token: int, dask_future) -> None:
        """On Dask's callback thread: the task's future is done (finished, erred, cancelled)."""
        with self._lock:
            told = self._told.pop(dask_future.key, None)
            if dask_future.status == "finished":
                # It ran to its end: whatever happens to its worker later (a crash that
                # loses the result), it is not to blame for it.
                self._ran_to_end.add(token)
            else:
                told = None  # it did not end as its message said (its worker died since): ask Dask
            entry = self._inflight.get(token)
        if told is not None and entry is not None:
            outcome = pickle.loads(told)
            # The usual case, settled here without a round trip; a result whose file
            # the coordinator must write (a worker that cannot see it) is fetched.
            if not (outcome.ok and entry.request.persist_path and not outcome.extra.get("persisted")):
                self._collect(token, dask_future, Held(outcome, None))
                return
        self._fetch.submit(self._collect, token, dask_future)

    def _collect(self, token: int, dask_future, told: Held | None = None) -> None:
        """Turn a finished Dask future into the task's Outcome (on a fetch thread, when it waits on the cluster)."""
        with self._lock:
            entry = self._inflight.get(token)
            stopped = self._stopping.get(token)
        if entry is None or stopped is not None:
            return  # stop() resolves it
        if dask_future.cancelled():
            self._resolve_not_started(token)
            return
        request = entry.request
        try:
            held = told or (self._peek(token, dask_future) if request.publish else dask_future.result())
            outcome = held.outcome
            _keep_log(request.log_path, outcome)
            if outcome.ok and request.persist_path and not outcome.extra.get("persisted"):
                # The worker could not see our results folder: keep the file here.
                if held.blob is None:
                    held = dask_future.result()
                if not Masker(request.secrets).found_in(held.blob):  # (as worker/execute.py: no secret on disk)
                    append_result(request.persist_path, request.task_id, held.blob)
            if outcome.ok and request.publish:
                self._store.hold(request.task_id, entry.held)
        except Exception as exc:
            if type(exc).__name__ == "KilledWorker" and self._resubmit_innocent(token):
                return
            with self._lock:
                start = self._starts.get(token)
            self._resolve(token, _describe_failure(exc, start))
            return
        self._finish(token, outcome)

    def _peek(self, token: int, dask_future) -> Held:
        """The Outcome of a held result, read where it lies; the blob stays there.

        `Client.run` calls `peek_outcome` on the worker's event loop, not in its
        task thread, so it does not wait behind a task running there. If the
        worker is gone, gathering the whole result makes Dask recompute it.
        """
        with self._lock:
            start = self._starts.get(token)
        key = dask_future.key
        addresses = [start[1]] if start else []
        for attempt in range(2):
            if not addresses or attempt:
                addresses = list(self._client.who_has([dask_future]).get(key, ()))[:1]
            if not addresses:
                break
            answer = self._client.run(peek_outcome, key, workers=addresses, on_error="return").get(addresses[0])
            if isinstance(answer, Outcome):
                return Held(answer, None)
        return dask_future.result()

    def _resubmit_innocent(self, token: int) -> bool:
        """A worker died with this task queued on it, before it started: run it again, same attempt.

        Only the task that started last on the dead worker is to blame (one thread
        per worker); one that finished there earlier lost only its result. A start
        message can be lost when a task kills its worker at once, so a task is
        resubmitted at most MAX_RESUBMITS times.
        """
        with self._lock:
            entry = self._inflight.get(token)
            if entry is None or token in self._stopping or self._closing:
                return False
            start = self._starts.get(token)
            ran_to_end = token in self._ran_to_end
            if start is not None and self._last_start.get(start[1]) == token and not ran_to_end:
                return False  # the task that was running when its worker died: the culprit
            # Not started, or it ran to its end on that worker before another task
            # started there: its result died with the worker, through no fault of its own.
            self._starts.pop(token, None)
            if entry.resubmits >= MAX_RESUBMITS and not ran_to_end:
                return False
            entry.resubmits += 1
        try:
            self._submit_to_cluster(entry)
        except Exception:  # the cluster is going away: fall back to recording the crash
            return False
        return True

    def _finish(self, token: int, outcome: Outcome) -> None:
        spent = None
        with self._lock:
            entry = self._inflight.pop(token, None)
            self._starts.pop(token, None)
            self._start_times.pop(token, None)
            self._stopping.pop(token, None)
            self._ran_to_end.discard(token)  # read only while in flight (_resubmit_innocent)
            if entry is not None and entry.held is not None and not _keeps_blob(entry.request, outcome):
                self._spent.append(entry.held)
                if len(self._spent) >= RELEASE_BATCH:
                    spent, self._spent = self._spent, []
        if entry is not None and not entry.future.done():
            entry.future.set_result(outcome)
        del spent  # the last references: Dask frees these results on the workers now, together

    def _resolve(self, token: int, error: dict) -> None:
        """End a task in flight that has no outcome of its own: failed with `error`."""
        self._finish(token, Outcome.failed(token, error, **self._start_facts(token)))

    def _resolve_not_started(self, token: int) -> None:
        """End a task in flight that never started: the coordinator decides what next."""
        self._finish(token, Outcome.not_started(token, **self._start_facts(token)))

    def _start_facts(self, token: int) -> dict:
        # A stopped task (timeout) ran from its start until now: its record says so.
        with self._lock:
            start = self._starts.get(token)
            started_at = self._start_times.pop(token, None)
        return {"started_at": started_at, "pid": start[0] if start else 0,
                "where": {"worker": start[1]} if start else {}}

    # -- stopping ----------------------------------------------------------
    def _stop_now(self, token: int) -> None:
        with self._lock:
            entry = self._inflight.get(token)
            error = self._stopping.get(token)
            if entry is None or error is None:
                return
            self._stopped.add(token)
            start = self._starts.get(token)
        self._cancel([entry])  # first, so Dask does not run it again elsewhere
        if start is not None:
            self._end_workers([start])
        with self._lock:
            self._stopping.pop(token, None)
        self._resolve(token, error)

    def _cancel(self, entries) -> None:
        futures = [e.held for e in entries if e.held is not None]
        if not futures:
            return
        try:
            self._client.cancel(futures, force=True)
        except Exception:  # the client is already gone: nothing left to cancel
            pass

    def _end_workers(self, starts: list[tuple[int, str]], grace: float = 2.0) -> None:
        """End the worker processes that run these tasks (see the module docstring)."""
        if not starts:
            return
        if self.local:
            ours = descendants()
            kill_trees([pid for pid, _ in starts if pid in ours], grace)
            return
        addresses = sorted({address for _, address in starts})
        answered = threading.Event()

        def ask():
            try:
                self._client.run(end_this_worker, workers=addresses, on_error="ignore")
                answered.set()
            except Exception:  # the worker died already, or could not be reached
                pass

        threading.Thread(target=ask, name="opflow-dask-end", daemon=True).start()
        if not answered.wait(REMOTE_STOP_WAIT):
            try:
                self._client.restart_workers(addresses, timeout=REMOTE_STOP_WAIT, raise_for_error=False)
            except Exception:  # a worker without a Nanny cannot be restarted; see the docs
                pass

    # -- plugin files ------------------------------------------------------
    def _bundle_for(self, ref: PluginRef):
        """A scattered copy of the plugin's `workers/` folder, for remote workers (None: not a file plugin)."""
        if ref.source != "file":
            return None
        return self._folder_bundle(os.path.dirname(ref.target.rpartition(":")[0]))

    def _folder_bundle(self, folder: str):
        """A scattered copy of every `*.py` in `folder` (together: one may import another),
        made again only when one of them changed."""
        paths = sorted(Path(folder).glob("*.py"))
        newest = max((p.stat().st_mtime for p in paths), default=0.0)
        with self._lock:
            cached = self._bundles.get(folder)
        if cached is not None and cached[0] == (newest, len(paths)):
            return cached[1]
        files = {p.name: p.read_bytes() for p in paths}
        digest = hashlib.sha256(b"".join(n.encode() + b"\0" + files[n] for n in sorted(files))).hexdigest()[:16]
        # A task that returns the files, not a scatter: a scatter waits for a worker, and an
        # adaptive cluster has none before there is work.
        bundle = self._client.submit(hold, PluginBundle(folder, digest, files), key=f"files-{digest}-{self._run_id}")
        with self._lock:
            self._bundles[folder] = ((newest, len(paths)), bundle)
        return bundle

    # -- lifetime ----------------------------------------------------------
    def _shutdown(self) -> None:
        self._closed = True
        if getattr(self, "_size", None) is not None:
            self._size.close()
        client = getattr(self, "_client", None)
        if client is not None:
            if getattr(self, "_store", None) is not None:
                self._store.clear()
            with self._lock:
                self._bundles.clear()
                self._told.clear()
                self._spent.clear()
            try:
                client.unsubscribe_topic(self._topic)
            except Exception:  # never subscribed (failed start) or already disconnected
                pass
            try:
                client.close(timeout=CLOSE_TIMEOUT)
            except Exception:  # a scheduler that went away: nothing to close politely
                pass
        if self._cluster is not None:
            pids = cluster_pids(self._cluster)
            try:
                self._cluster.close(timeout=CLOSE_TIMEOUT)
            except Exception:  # a worker that would not close: its process is killed below
                pass
            # A worker whose task ignored the polite close (a thread cannot be
            # stopped) is killed with its children, so nothing outlives the run.
            ours = descendants()
            kill_trees([pid for pid in pids if pid in ours], grace=0.5)
            self._cluster = None
        self._fetch.shutdown(wait=False)


def _keep_log(log_path: str | None, outcome: Outcome) -> None:
    """A worker without the run directory sent the attempt's output back: into tasks/<id>.log."""
    data = outcome.extra.pop("log_bytes", None)
    if not data or not log_path:
        return
    try:
        fd = os.open(log_path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":  # end an earlier attempt's last line
                os.write(fd, b"\n")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        outcome.log = True
    except OSError:  # the run directory is gone or full: the output is lost, not the task
        outcome.log = False


def _keeps_blob(request: TaskRequest, outcome: Outcome) -> bool:
    """Whether a task's held result stays needed (read downstream: the store holds it), or
    may be large (a result its worker could not write to our results folder): not batched."""
    return outcome.ok and (request.publish or (bool(request.persist_path) and not outcome.extra.get("persisted")))


def _describe_failure(exc: BaseException, start: tuple[int, str] | None = None) -> dict:
    """An error record for a task Dask could not run to an Outcome."""
    kind = type(exc).__name__
    if kind == "KilledWorker":
        last = getattr(getattr(exc, "last_worker", None), "address", None) or (start[1] if start else "?")
        tries = getattr(exc, "allowed_failures", 0) + 1
        pid = f", pid {start[0]}" if start else ""
        return error_record(
            ErrorKind.WORKER_CRASHED,
            f"its dask worker process died while running it ({last}{pid}"
            f"{f'; the last of {tries} workers Dask tried' if tries > 1 else ''}): "
            f"likely out of memory, a crash in native code, or os._exit",
            str(exc),
        )
    if kind in ("ModuleNotFoundError", "ImportError"):
        return error_record(kind, f"a dask worker could not load the task: {exc} "
                                  f"(install opflow and the plugin's packages on every worker)", traceback.format_exc())
    return error_record(kind, f"the dask backend could not run the task: {exc}", traceback.format_exc())
