"""The shared context: task results as pickled snapshots, behind a Manager.

Data flow: a worker pickles its task's result once. A small pickle travels back
with the task's outcome, and the backend hands it on inside the requests of the
tasks that read it; a large one is published once into the store, and never
passes through the coordinator. A downstream task gets a `TaskContext`: a
read-only mapping of exactly its transitive upstream tasks (plus params) that
fetches and unpickles a result only when the task reads it, each read its own
private copy. So a task can never see a result it does not depend on, nor change
one another task sees, and it pays only for the results it reads.

For the process backend the store lives in a `multiprocessing` Manager server,
started lazily: a run whose tasks publish nothing for others (no edges) starts
none. The thread and inline backends use the same store class in-process, so
the semantics do not depend on the backend.
"""
from __future__ import annotations

__all__ = ["ContextStore", "StoreAddress", "ManagedStore", "connect_store", "TaskContext"]

import os
import pickle
import threading
from dataclasses import dataclass
from multiprocessing.managers import BaseManager
from collections.abc import Mapping
from typing import Callable, Iterable

from opflow.errors import OpflowError
from opflow.worker.guard import GUARD_MESSAGE, REFUSED_EXIT
from opflow.worker.shared_results import load_result

PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL


class ContextStore:
    """task_id -> pickled result. Thread-safe; the Manager serves one of these."""

    def __init__(self):
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, task_id: str, blob: bytes) -> None:
        with self._lock:
            self._blobs[task_id] = blob

    def put_many(self, blobs: dict[str, bytes]) -> None:
        with self._lock:
            self._blobs.update(blobs)

    def snapshot(self, task_ids: Iterable[str]) -> dict[str, bytes]:
        with self._lock:
            return {t: self._blobs[t] for t in task_ids if t in self._blobs}


class _StoreManager(BaseManager):
    pass


_StoreManager.register("ContextStore", ContextStore)


def _manager_init(coordinator_pid: int, shared_prefix: str | None = None) -> None:  # pragma: no cover - runs in the Manager process
    from opflow.procs import start_parent_watch

    start_parent_watch(coordinator_pid, _orphan_sweep(shared_prefix) if shared_prefix else None)


def _orphan_sweep(prefix: str):
    """The coordinator died without cleaning up: remove the run's shared results.

    Twice, a little apart: a worker that was writing one when the coordinator
    died stops (its own parent watch) within a poll or two.
    """
    def cleanup():  # pragma: no cover - runs in the Manager process
        import time

        from opflow.procs import PARENT_POLL_SECONDS
        from opflow.worker.shared_results import sweep

        sweep(prefix)
        time.sleep(3 * PARENT_POLL_SECONDS)
        sweep(prefix)

    return cleanup


@dataclass(frozen=True)
class StoreAddress:
    """What a worker needs to reach the Manager-held store: small and picklable."""

    address: object
    authkey: bytes
    token_id: str


class ManagedStore:
    """Owns the Manager process and the store in it; started on first use."""

    def __init__(self, mp_context):
        self._mp_context = mp_context
        self._manager: _StoreManager | None = None
        self._proxy = None
        self._lock = threading.Lock()
        #: The run's shared-memory prefix: the Manager sweeps it if the coordinator dies.
        self.shared_prefix: str | None = None

    def address(self) -> StoreAddress:
        with self._lock:
            if self._manager is None:
                manager = _StoreManager(ctx=self._mp_context)
                try:
                    manager.start(_manager_init, (os.getpid(), self.shared_prefix))
                except (EOFError, OSError) as exc:  # the Manager process died while starting
                    if _refused(manager):
                        raise OpflowError(GUARD_MESSAGE) from None
                    raise OpflowError(
                        f"the context store (a multiprocessing Manager process) did not start ({exc!r}); "
                        "if a script calls opflow.run(), is the call under `if __name__ == \"__main__\":`?"
                    ) from None
                self._manager = manager
                self._proxy = manager.ContextStore()
            token = self._proxy._token
            return StoreAddress(token.address, bytes(self._manager._authkey), token.id)

    @property
    def proxy(self):
        """The coordinator's own proxy to the store (None until `address()` starts it)."""
        return self._proxy

    def close(self) -> None:
        with self._lock:
            manager, self._manager, self._proxy = self._manager, None, None
        if manager is not None:
            manager.shutdown()
            process = getattr(manager, "_process", None)
            if process is not None:  # its pipe to us is freed now, not when a cycle is collected
                process.close()


def _refused(manager) -> bool:
    """Whether the Manager's process exited refusing the script's unguarded opflow.run() (guard.py)."""
    process = getattr(manager, "_process", None)
    if process is not None:
        process.join(timeout=5)
    return process is not None and process.exitcode == REFUSED_EXIT


_connections: dict[tuple, object] = {}


def connect_store(address: StoreAddress):
    """A proxy to the Manager-held store, cached per process and address.

    Built from the token directly, without `incref`: the coordinator's own proxy
    keeps the store alive, and skipping the incref saves a round trip per worker.
    """
    from multiprocessing.managers import AutoProxy, Token

    key = (address.address, address.token_id)
    proxy = _connections.get(key)
    if proxy is None:
        token = Token("ContextStore", address.address, address.token_id)
        proxy = AutoProxy(token, "pickle", authkey=address.authkey, exposed=("put", "put_many", "snapshot"), incref=False)
        _connections[key] = proxy
    return proxy


class TaskContext(Mapping):
    """What a plugin receives as `context`: its upstream results and the params.

    `context[task_id]` unpickles that task's result on first use (fetching it
    from the store if it did not travel with the request) and keeps it for the
    task's later reads; a task that reads one of its 500 ancestors pays for one.
    Iterating, `len` and `in` name every readable key without fetching anything.

    Beyond upstream results and params: `context["<id>"]` for a foreach task
    `<id>` this task depends on is the list of its instances' results, in order
    (`groups`); a task with `trigger: all_done` or `one_failed` finds which
    upstream tasks did not succeed, and why, in `context["upstream_failed"]`.

    What the task may know of itself (contract v3) are attributes, never keys:
    `context.task_id`, `context.attempt` (1 for the first) and `context.run_dir`
    (the run directory, absolute; None where the run keeps none).
    """

    def __init__(self, upstream: Iterable[str], inline: dict[str, bytes] | None,
                 fetch: Callable[[str], bytes | None], params: dict,
                 groups: Iterable[tuple[str, Iterable[str]]] = (), upstream_failed: dict | None = None,
                 *, task_id: str | None = None, attempt: int = 1, run_dir: str | None = None):
        self.task_id = task_id
        self.attempt = attempt
        self.run_dir = run_dir
        self._upstream = frozenset(upstream)
        self._inline = inline or {}
        self._fetch = fetch
        self._params = params
        self._groups = {group_id: tuple(members) for group_id, members in groups}
        self._values: dict = {}
        if upstream_failed is not None:
            self._values["upstream_failed"] = upstream_failed

    def __getitem__(self, key):
        try:
            return self._values[key]
        except KeyError:
            pass
        if key == "params":
            value = pickle.loads(pickle.dumps(self._params, PICKLE_PROTOCOL)) if self._params else {}
        elif key in self._groups:
            value = [self.get(member) for member in self._groups[key]]
        elif key in self._upstream:
            blob = self._inline.get(key)
            if blob is None:
                blob = self._fetch(key)
            if blob is None:
                raise KeyError(key)  # an upstream task that left no result (resumed, never read before)
            value = load_result(blob)  # a large one: mapped from shared memory
        else:
            raise KeyError(key)
        self._values[key] = value
        return value

    def _names(self) -> set:
        return {*self._upstream, *self._groups, "params", *(["upstream_failed"] if "upstream_failed" in self._values else [])}

    def __contains__(self, key) -> bool:
        return key in self._upstream or key in self._groups or key == "params" or key in self._values

    def __iter__(self):
        yield from sorted(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __repr__(self) -> str:
        return f"TaskContext({sorted(self)!r})"
