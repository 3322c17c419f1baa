"""The shared context: task results as pickled snapshots, behind a Manager.

Data flow: a worker pickles its task's result once (`publish`); a downstream task
reads the pickled results of exactly its transitive upstream tasks in one round
trip (`snapshot`) and unpickles its own private copy. So a task can never see a
result it does not depend on, nor change one another task sees.

For the process backend the store lives in a `multiprocessing` Manager server,
started lazily: a run whose tasks publish nothing for others (no edges) starts
none. The thread and inline backends use the same store class in-process, so
the semantics do not depend on the backend.
"""
from __future__ import annotations

__all__ = ["ContextStore", "StoreAddress", "ManagedStore", "connect_store", "build_context"]

import os
import pickle
import threading
from dataclasses import dataclass
from multiprocessing.managers import BaseManager
from typing import Iterable

from .errors import OpflowError
from .guard import GUARD_MESSAGE, REFUSED_EXIT

PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL


class ContextStore:
    """task_id -> pickled result. Thread-safe; the Manager serves one of these."""

    def __init__(self):
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, task_id: str, blob: bytes) -> None:
        with self._lock:
            self._blobs[task_id] = blob

    def snapshot(self, task_ids: Iterable[str]) -> dict[str, bytes]:
        with self._lock:
            return {t: self._blobs[t] for t in task_ids if t in self._blobs}


class _StoreManager(BaseManager):
    pass


_StoreManager.register("ContextStore", ContextStore)


def _manager_init(coordinator_pid: int) -> None:  # pragma: no cover - runs in the Manager process
    from .procs import start_parent_watch

    start_parent_watch(coordinator_pid)


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

    def address(self) -> StoreAddress:
        with self._lock:
            if self._manager is None:
                manager = _StoreManager(ctx=self._mp_context)
                try:
                    manager.start(_manager_init, (os.getpid(),))
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
        proxy = AutoProxy(token, "pickle", authkey=address.authkey, exposed=("put", "snapshot"), incref=False)
        _connections[key] = proxy
    return proxy


def build_context(blobs: dict[str, bytes], params: dict) -> dict:
    """Unpickle a snapshot into the dict a plugin receives."""
    context = {task_id: pickle.loads(blob) for task_id, blob in blobs.items()}
    context["params"] = pickle.loads(pickle.dumps(params, PICKLE_PROTOCOL)) if params else {}
    return context
