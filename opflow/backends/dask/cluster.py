"""Reaching a Dask cluster: check the extra, connect to a scheduler, or start a LocalCluster."""
from __future__ import annotations

__all__ = ["check_available", "check_workers", "cluster_security", "connect", "start_local_cluster", "cluster_pids", "ClusterSize",
           "MIN_DISTRIBUTED", "WORKER_WAIT"]

import importlib.util
import os
import threading

from opflow.errors import UsageError

MIN_DISTRIBUTED = (2024, 1)
#: Seconds to wait for a scheduler to answer, and for it to have a worker.
CONNECT_TIMEOUT = 30.0
WORKER_WAIT = 60.0
#: Seconds between readings of a cluster's size (ClusterSize).
SIZE_EVERY = 1.0

def check_available() -> None:
    """Raise `UsageError` (exit 2) unless a recent enough `distributed` is importable."""
    try:
        import distributed
    except ImportError:
        raise UsageError("--executor dask needs the 'distributed' package: pip install 'opflow-runner[dask]'") from None
    version = tuple(int(p) for p in distributed.__version__.split(".")[:2] if p.isdigit())
    if version < MIN_DISTRIBUTED:
        raise UsageError(f"--executor dask needs distributed>={MIN_DISTRIBUTED[0]}.{MIN_DISTRIBUTED[1]} "
                         f"(found {distributed.__version__}): pip install -U 'opflow-runner[dask]'")
    if importlib.util.find_spec("cryptography") is None:  # cluster_security: the LocalCluster's TLS
        raise UsageError("--executor dask needs the 'cryptography' package, to keep other users out of the "
                         "cluster: pip install 'opflow-runner[dask]'")


def connect(scheduler: str | None = None, scheduler_file: str | None = None):
    """A client of a running scheduler (its address, or the file it wrote), its workers checked."""
    from distributed import Client

    label = f"--scheduler {scheduler}" if scheduler else f"--scheduler-file {scheduler_file}"
    if scheduler_file and not os.path.isfile(scheduler_file):  # Client would wait for it to appear
        raise UsageError(f"{label}: no such file (dask scheduler --scheduler-file PATH writes it)")
    try:
        client = Client(scheduler, scheduler_file=scheduler_file, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError, KeyError) as exc:
        raise UsageError(f"{label}: cannot connect to a Dask scheduler there: {exc}") from None
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT)
    except Exception:
        client.close()
        raise UsageError(f"{label}: the scheduler has no workers "
                         f"(start some with: dask worker {scheduler or '--scheduler-file ' + scheduler_file} "
                         f"--nthreads 1)") from None
    try:
        check_workers(client, label)
    except UsageError:
        client.close()
        raise
    return client


def check_workers(client, label: str) -> None:
    """UsageError unless every worker imports opflow, of this coordinator's version."""
    try:
        versions = client.run(_opflow_version, on_error="return")
    except Exception as exc:  # the workers are reachable through the scheduler only: check nothing
        versions = {"?": exc}
    missing = sorted(addr for addr, v in versions.items() if isinstance(v, BaseException) and addr != "?")
    if missing:
        raise UsageError(f"{label}: opflow cannot be imported on worker(s) {', '.join(missing)}; "
                         f"install opflow (pip install 'opflow-runner[dask]') on every worker")
    from opflow._version import __version__

    # A worker's opflow runs each task's attempt: another version may record, capture or
    # stop it otherwise than this coordinator expects.
    other = {addr: v for addr, v in sorted(versions.items()) if isinstance(v, str) and v != __version__}
    if other:
        listed = ", ".join(f"{addr} ({version})" for addr, version in other.items())
        raise UsageError(f"{label}: worker(s) {listed} run another opflow than this one "
                         f"({__version__}): install opflow-runner=={__version__} on every worker")


def _opflow_version() -> str:
    from opflow._version import __version__

    return __version__


def cluster_security():
    """Mutual TLS with a key and certificate made for this run and held in memory.

    A LocalCluster listens on 127.0.0.1 ports that every local user can see in
    /proc/net/tcp; with Dask's default (no TLS, no authentication) any of them
    could connect a Client and run code as the user running opflow. Every
    connection to this cluster (scheduler, nannies, workers, our client) must
    present the run's certificate, which reaches the spawned workers through
    their start-up pipe, never a file of ours. (distributed writes it to a
    private temporary folder for a moment while it builds each SSL context.)
    """
    from distributed.security import Security

    try:
        return Security.temporary()
    except ImportError:
        raise UsageError("--executor dask without --scheduler needs the 'cryptography' package, to keep other "
                         "users out of the cluster it starts: pip install 'opflow-runner[dask]'") from None


def start_local_cluster(workers: int):
    """A LocalCluster on 127.0.0.1 that only this run can reach (TLS, `cluster_security`): one
    single-threaded worker process per pool slot, no dashboard.

    Spawned worker processes (distributed's default start method): the coordinator
    runs threads (the cluster's event loop), and forking a threaded process can
    copy a held lock into the child.
    """
    import logging

    from distributed import LocalCluster

    import dask

    security = cluster_security()

    # allowed-failures 0: a task whose worker dies is not run again by Dask
    # behind our back; opflow's own `retries` decide, as on the process pool.
    # worker-saturation 1.0: a worker is assigned only the task it runs, none
    # queued behind it, so a worker's death fails no bystander (Dask fails every
    # task assigned to a worker that dies).
    # No dashboard, and no fixed port: a Dask scheduler opens an HTTP server even
    # without a dashboard (on 8787, warning when another holds it); give it a free
    # port on 127.0.0.1 and no pages, and the workers none either.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.scheduler.worker-saturation": 1.0,
                          "distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                            protocol="tls://", security=security,
                            dashboard_address=None, worker_dashboard_address=None, silence_logs=logging.CRITICAL,
                            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})


def cluster_pids(cluster) -> list[int]:
    """The process ids of a LocalCluster's workers (their Nannies live in this process)."""
    pids = []
    for nanny in list(getattr(cluster, "workers", {}).values()):
        try:
            pid = nanny.pid
        except AttributeError:  # a worker without a Nanny runs in this process
            continue
        if pid:
            pids.append(pid)
    return pids


class ClusterSize:
    """The cluster's worker threads, read again every SIZE_EVERY seconds off the caller's
    thread: the coordinator's window follows them as workers join or leave (adaptive scaling)."""

    def __init__(self, client):
        self._client = client
        self._stop = threading.Event()
        self.threads = self._read() or 1
        self._thread = threading.Thread(target=self._watch, name="opflow-dask-size", daemon=True)
        self._thread.start()

    def _read(self) -> int | None:
        try:
            return int(self._client.scheduler_info(n_workers=0).get("total_threads", 0))
        except Exception:  # a scheduler gone quiet: keep the last figure
            return None

    def _watch(self) -> None:
        while not self._stop.wait(SIZE_EVERY):
            threads = self._read()
            if threads:
                self.threads = threads

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=SIZE_EVERY + CONNECT_TIMEOUT)
