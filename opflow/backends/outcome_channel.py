"""Outcomes streamed from pool workers, one connection per worker (both sides of the protocol).

A pool work item that holds several tasks (a batch) returns only when its last
task ends; each task's outcome must reach the coordinator as the task ends. So
each pool worker connects once, at start, to a Unix socket the coordinator
listens on, and sends every batch member's `Outcome` down it as soon as the
task ends:

    worker ── connect() at start ─────────────▶ listener (abstract namespace: no file)
    worker ── send(outcome) per task ─────────▶ reader thread ─▶ on_outcome(outcome)
    worker dies ── EOF on its connection ─────▶ marked drained: nothing more can come from it

One connection per worker, not one queue shared by all: a worker killed in the
middle of a write (a timeout's kill, the OOM killer) cuts only its own
connection, never a lock or a stream the other workers need. The peer's uid is
checked on accept (SO_PEERCRED): another user on the machine cannot forge an
outcome, and a process of our own user that is not one of our workers cannot
either: a connection counts only once its first message is the channel's key (32
random bytes the pool workers get through their initializer, never a file). The
socket's name is no secret (abstract names are listed in /proc/net/unix, to every
process of the network namespace); until a connection shows the key, nothing it
sends is unpickled. After a worker dies, `wait_drained` tells when everything it sent has
been handed on, so the backend can then tell the tasks that ended from those
that never started.
"""
from __future__ import annotations

__all__ = ["OutcomeChannel", "connect", "send", "KEY_BYTES"]

import hmac
import os
import secrets
import socket
import struct
import threading
import time
from multiprocessing.connection import Connection, wait
from typing import Callable

KEY_BYTES = 32


class OutcomeChannel:
    """The coordinator's side: a listening socket and the thread that reads every worker."""

    def __init__(self, on_outcome: Callable[[object], None]):
        self._on_outcome = on_outcome
        self.address = f"\0opflow-outcomes-{os.getpid()}-{secrets.token_hex(8)}"
        self.key = secrets.token_bytes(KEY_BYTES)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.address)
        self._listener.listen(64)
        self._wake_r, self._wake_w = os.pipe()
        self._conns: dict[Connection, int] = {}  # connection -> the worker's pid
        self._unproven: dict[Connection, int] = {}  # accepted, key not read yet -> the peer's pid
        self._drained: set[int] = set()  # pids whose connection reached EOF
        self._sweeps = 0  # reader loop iterations: wait_drained waits for fresh ones
        self._changed = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._read, name="opflow-outcomes", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closing:
            for ready in wait([self._listener, self._wake_r, *self._unproven, *self._conns], timeout=None):
                if ready is self._wake_r:
                    os.read(self._wake_r, 4096)
                elif ready is self._listener:
                    self._accept()
                elif ready in self._unproven:
                    self._admit(ready)
                else:
                    self._drain(ready)
            with self._changed:
                self._sweeps += 1
                self._changed.notify_all()
        for conn in [*self._unproven, *self._conns]:
            conn.close()

    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except OSError:
            return
        pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        if uid != os.getuid():  # not one of our workers: another user's process
            sock.close()
            return
        self._unproven[Connection(sock.detach())] = pid

    def _admit(self, conn: Connection) -> None:
        """Read a new connection's first message: the key makes it a worker's; anything else closes it."""
        pid = self._unproven.pop(conn)
        try:
            proof = conn.recv_bytes(KEY_BYTES)  # raw bytes, never unpickled; longer is refused unread
        except Exception:  # EOF, too long, cut short
            proof = b""
        if hmac.compare_digest(proof, self.key):
            self._conns[conn] = pid
            return
        conn.close()
        with self._changed:  # a worker that died before proving itself has nothing more to send
            self._drained.add(pid)
            self._changed.notify_all()

    def _drain(self, conn: Connection) -> None:
        """Hand on every outcome waiting on `conn`; at EOF, mark its worker drained."""
        try:
            while True:
                outcome = conn.recv()
                try:
                    self._on_outcome(outcome)
                except Exception:  # a bug downstream must not stop the reading of every worker
                    pass
                if not conn.poll(0):
                    return
        except Exception:  # EOF, or a message cut short by the worker's death
            pass
        pid = self._conns.pop(conn)
        conn.close()
        with self._changed:
            self._drained.add(pid)
            self._changed.notify_all()

    def wait_drained(self, processes: dict, timeout: float | None = None, stop: threading.Event | None = None) -> bool:
        """Wait until nothing more can come from these worker processes (pid -> Process).

        True when each has exited and what it sent has been handed on (a worker
        that never connected has nothing to hand on once it has exited). Without
        a timeout it waits as long as a retiring worker's task runs; `stop` (set:
        the run ends now, its workers are being killed) or close() end the wait.
        """
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float:
            return 0.5 if deadline is None else min(0.5, deadline - time.monotonic())

        sentinels = [p.sentinel for p in processes.values() if p.exitcode is None]
        while sentinels:  # exited: its sentinel is readable (nothing is read from it here)
            if left() <= 0 or self._closing or (stop is not None and stop.is_set()):
                return False
            done = wait(sentinels, timeout=left())
            sentinels = [s for s in sentinels if s not in done]
        # A dead worker's connection may still sit in the listener's backlog:
        # two more sweeps of the reader accept it and read it to its EOF.
        with self._changed:
            start = self._sweeps
        while True:
            if not self._wake():
                return False  # closed: nothing more will be read
            with self._changed:
                open_pids = {*self._conns.values(), *self._unproven.values()}
                if self._sweeps >= start + 2 and not open_pids.intersection(processes):
                    return True
                if left() <= 0 or self._closing:
                    return False
                self._changed.wait(0.05)

    def _wake(self) -> bool:
        """Make the reader sweep once more; False once the channel is closed."""
        try:
            os.write(self._wake_w, b"x")
            return True
        except OSError:
            return False

    def close(self) -> None:
        self._closing = True
        self._wake()
        self._thread.join(timeout=5)
        self._listener.close()
        os.close(self._wake_r)
        os.close(self._wake_w)


# -- the worker's side ----------------------------------------------------------
_conn: Connection | None = None


def connect(address: str, key: bytes) -> None:
    """Connect this pool worker to the coordinator's channel (once, at the worker's start)."""
    global _conn
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        return  # outcomes then travel back with the work item (send() says False)
    _conn = Connection(sock.detach())
    try:
        _conn.send_bytes(key)  # first: the coordinator reads nothing else from a connection without it
    except OSError:
        _conn = None


def send(outcome) -> bool:
    """Send one outcome now; False when it could not go (it must travel another way)."""
    global _conn
    if _conn is None:
        return False
    try:
        _conn.send(outcome)
        return True
    except (OSError, ValueError):
        _conn = None
        return False
