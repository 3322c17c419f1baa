"""Where a task's output goes: `tasks/<id>.log`, streamed, one section per attempt.

Two ways to catch it, chosen by where the attempt runs:

- **fd level** (a process-pool worker, a Dask worker with one thread): file
  descriptors 1 and 2 of the worker process point at the log for the attempt
  (`dup2`), and are put back after it. Everything lands in the log: `print`,
  logging, C extensions, child processes that inherit the descriptors. A task
  that closes or replaces fds 0-2 does not hurt the next task on the worker:
  they are restored from copies (or `/dev/null`, if the task closed those too).
- **thread level** (thread and inline backends, which share the coordinator's
  process and descriptors): `sys.stdout`/`sys.stderr` become a proxy that sends
  each thread's writes to the log of the attempt that thread runs. Output that
  bypasses Python's streams (a child process started with inherited
  descriptors, C code writing to fd 1) cannot be told apart per thread, and
  reaches opflow's own stdout/stderr: the README says so.

Plugins that start processes of their own (the `shell` plugin) read the
child's pipes and write to `current_sink()`, which works the same in both modes.
Nothing is held in memory: bytes go to the file as they come.
"""
from __future__ import annotations

__all__ = ["capture", "current_sink", "repair_std_fds", "LogSink"]

import io
import os
import sys
import threading
import time
from contextlib import contextmanager

from opflow.masking import Masker, StreamMasker
from opflow.rundir.task_logs import LOG_TAIL_LINES, SPOOL_PREFIX, read_tail


_local = threading.local()
_router_lock = threading.Lock()
_router_users = 0
_saved_streams: tuple | None = None


class LogSink:
    """One attempt's section of a task log: a raw descriptor, appended to; with the
    run's secrets masked as the bytes stream by (opflow/masking.py)."""

    def __init__(self, fd: int, path: str, start: int, secrets: tuple = ()):
        self.fd = fd
        self.path = path
        self.start = start  # offset where this attempt's output begins
        self.kept = True  # after the attempt: is there a tasks/<id>.log (a silent spooled attempt leaves none)?
        self._lock = threading.Lock()
        self._masker = StreamMasker(secrets, self._write) if secrets else None

    @property
    def masking(self) -> bool:
        return self._masker is not None

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._masker is not None:
                self._masker.feed(data)
            else:
                self._write(data)

    def finish(self) -> None:
        """The attempt is over: what the masker held back (no secret's start after all) goes out."""
        with self._lock:
            if self._masker is not None:
                self._masker.close()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except OSError:
                return  # the task closed our descriptor, or the disk is full: output is lost, not the task
            view = view[written:]

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines this attempt wrote (read back from the file)."""
        try:
            return read_tail(self.path, lines, since=self.start)
        except OSError:
            return ""


def current_sink() -> LogSink | None:
    """The log of the attempt this thread runs, or None outside an attempt."""
    return getattr(_local, "sink", None)


@contextmanager
def capture(log_path: str | None, attempt: int, *, fd_level: bool, secrets: tuple = ()):
    """Send this attempt's output to `log_path` (appended, after a header line).

    Yields the `LogSink`, or None when there is no log (no run directory, or it
    cannot be opened here: a remote Dask worker without the shared disk).
    `secrets`: values written `***` in the log. With any, fds 1/2 (and the thread
    level's streams) go through the masker: a pipe read by a thread, at fd level.
    """
    secrets = Masker(secrets).values
    if not log_path:
        yield None
        return
    spool = None
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    header = f"=== attempt {attempt} · started {stamp} · pid {os.getpid()} ===\n".encode()
    if fd_level and attempt == 1 and not os.path.exists(log_path):
        # A first attempt in a worker of its own: write into the worker's spool,
        # which becomes tasks/<id>.log only once the task has written something.
        try:
            spool = _spool_in(os.path.dirname(log_path))
            fd, start = spool.begin(log_path, header)
        except OSError:  # no tasks/ folder here (a worker without the run directory): no log, as below
            yield None
            return
    else:
        try:
            fd = os.open(log_path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0),
                         0o600)
        except OSError:
            yield None
            return
        try:
            separator = b""
            if attempt > 1:  # end an earlier attempt's last line
                size = os.fstat(fd).st_size
                separator = b"\n" if size and os.pread(fd, 1, size - 1) != b"\n" else b""
            os.write(fd, separator + header)
            start = os.lseek(fd, 0, os.SEEK_CUR)  # O_APPEND: the end, where this attempt's output begins
        except OSError:
            start = 0
    sink = LogSink(fd, log_path, start, secrets)
    _local.sink = sink
    try:
        if fd_level:
            _local.fd_level = True
            with (_fds_piped(sink) if secrets else _fds_redirected(fd)):
                yield sink
        else:
            with _thread_redirected(fd, sink if secrets else None):
                yield sink
    finally:
        sink.finish()
        _local.sink = None
        _local.fd_level = False
        if spool is not None:
            sink.kept = spool.end()
        else:
            try:
                os.close(fd)
            except OSError:
                pass  # the task closed it already


# -- the spool: a log file only for tasks that write ---------------------------
class _Spool:
    """One worker's scratch file in a run's tasks/ folder, reused by every first attempt.

    Creating a file per task costs far more than the task's other syscalls: it
    changes the tasks/ directory, which the audit trail changes for every task
    too. Most tasks print nothing. So an attempt writes into this file; once it
    has written anything (checked at the monitor's ticks, every 0.1 s, and at its
    end), the file is renamed to tasks/<id>.log, where it goes on growing, and
    the next attempt gets a new spool. A silent task leaves no log and costs no
    change of the directory. The audit trail removes spools left at the run's end.
    """

    def __init__(self, folder: str):
        self.folder = folder
        self.path = os.path.join(folder, f"{SPOOL_PREFIX}{os.getpid()}-{threading.get_ident()}")
        self.fd = -1
        self._lock = threading.Lock()
        self._target: str | None = None
        self._header = 0
        self._promoted_fd = -1  # the renamed spool's descriptor, closed when its attempt ends

    def begin(self, log_path: str, header: bytes) -> tuple[int, int]:
        with self._lock:
            if not self._usable():
                self._create()
            os.ftruncate(self.fd, 0)
            os.lseek(self.fd, 0, os.SEEK_SET)
            os.write(self.fd, header)
            self._target, self._header = log_path, len(header)
            return self.fd, len(header)

    def promote_if_written(self) -> None:
        """Rename the spool to the task's log if the attempt has written anything."""
        with self._lock:
            if self._target is None:
                return
            try:
                written = os.fstat(self.fd).st_size > self._header
            except OSError:
                return
            if written:
                try:
                    os.rename(self.path, self._target)
                except OSError:
                    return  # the run directory is gone or read-only: the output stays unread
                self._target = None
                self._promoted_fd, self.fd = self.fd, -1  # the task writes on there; the next attempt gets a new spool

    def end(self) -> bool:
        """The attempt is over; returns whether its output became tasks/<id>.log."""
        self.promote_if_written()
        with self._lock:
            self._target = None
            promoted, self._promoted_fd = self._promoted_fd, -1
        if promoted >= 0:
            try:
                os.close(promoted)
            except OSError:
                pass  # the task closed it already
        return promoted >= 0

    def _usable(self) -> bool:
        if self.fd < 0:
            return False
        try:
            return os.fstat(self.fd).st_nlink > 0  # still named: not removed (only we rename it)
        except OSError:
            return False

    def _create(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
        self.fd = os.open(self.path, flags, 0o600)


_spools: dict[tuple[int, str], _Spool] = {}  # (pid, tasks folder) -> this process's spool there


def _spool_in(folder: str) -> _Spool:
    key = (os.getpid(), folder)
    spool = _spools.get(key)
    if spool is None:
        spool = _spools[key] = _Spool(folder)
        from opflow.worker.monitor import add_tick_action

        add_tick_action(spool.promote_if_written)
    return spool


# -- fd level -----------------------------------------------------------------
def repair_std_fds() -> None:
    """After the task's code, before the worker's own: fill any of fds 0-2 the
    task closed, so that the next file or socket the worker opens does not take
    its number (and get overwritten when the streams are restored)."""
    sink = current_sink()
    if sink is None or not getattr(_local, "fd_level", False):
        return
    for n in (0, 1, 2):
        try:
            os.fstat(n)
            continue
        except OSError:
            pass
        try:
            os.fstat(sink.fd)
            source = sink.fd if n else None
        except OSError:
            source = None
        try:
            if source is None:
                null = os.open(os.devnull, os.O_RDWR)
                if null != n:
                    os.dup2(null, n)
                    os.close(null)
            else:
                os.dup2(source, n)
        except OSError:
            pass


@contextmanager
def _fds_redirected(fd: int):
    for stream in (sys.stdout, sys.stderr):
        _flush(stream)
    saved = [_dup(n) for n in (0, 1, 2)]
    old_streams = (sys.stdout, sys.stderr)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    # Line-buffered streams over fds 1/2: a print is in the file when it returns.
    out, err = _std_streams()
    sys.stdout, sys.stderr = out, err
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr, out, err):
            _flush(stream)
        sys.stdout, sys.stderr = old_streams
        for n, copy in enumerate(saved):
            _restore(n, copy)


#: After an attempt, how long the pipe of a masked log waits for its last bytes: a process
#: the task left running may hold fd 1 open (the reaper kills it; keep_children keeps it).
PIPE_DRAIN_S = 1.0


@contextmanager
def _fds_piped(sink: LogSink):
    """`_fds_redirected` through a pipe whose reader masks: fds 1/2 write to the pipe,
    a thread of this worker hands what it reads to the sink."""
    read_fd, write_fd = os.pipe()  # (not inherited: only fds 1/2 are, once dup2'd onto it)
    stop = threading.Event()
    pump = threading.Thread(target=_pump, args=(read_fd, sink, stop), name="opflow-log-pump", daemon=True)
    pump.start()
    try:
        with _fds_redirected(write_fd):
            yield
    finally:
        os.close(write_fd)  # fds 1/2 are restored: with no process left holding it, the reader sees the end
        pump.join(PIPE_DRAIN_S)
        stop.set()
        pump.join()
        os.close(read_fd)


def _pump(read_fd: int, sink: LogSink, stop: threading.Event) -> None:
    import select

    while True:
        ready, _, _ = select.select([read_fd], [], [], 0.05)
        if not ready:
            if stop.is_set():
                return
            continue
        try:
            chunk = os.read(read_fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        sink.write(chunk)


def _dup(n: int) -> int | None:
    try:
        return os.dup(n)
    except OSError:
        return None  # closed already (a worker's stdin may be)


def _restore(n: int, copy: int | None) -> None:
    """Put fd `n` back as it was before the attempt; /dev/null if the copy is gone too."""
    try:
        if copy is None:
            raise OSError
        os.dup2(copy, n)
        os.close(copy)
        return
    except OSError:
        pass
    try:
        null = os.open(os.devnull, os.O_RDWR)
        if null != n:
            os.dup2(null, n)
            os.close(null)
    except OSError:
        pass  # nothing more we can do; the next attempt dup2()s over it anyway


_cached_streams: list = []  # [pid, stdout, stderr]: made once per worker process, reused by every attempt


def _std_streams():
    if not _cached_streams or _cached_streams[0] != os.getpid() or _cached_streams[1].closed or _cached_streams[2].closed:
        _cached_streams[:] = [os.getpid(), _text_stream(1), _text_stream(2)]
    return _cached_streams[1], _cached_streams[2]


def _text_stream(fd: int):
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                            line_buffering=True)


def _flush(stream) -> None:
    try:
        stream.flush()
    except Exception:  # a stream the task closed or broke: its output is lost, not the worker
        pass


# -- thread level ---------------------------------------------------------------
class _ThreadRouter(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: each thread's writes go to its attempt's log."""

    def __init__(self, fallback):
        self._fallback = fallback

    def _target(self):
        return getattr(_local, "stream", None) or self._fallback

    def write(self, text):
        return self._target().write(text)

    def writelines(self, lines):
        self._target().writelines(lines)

    def flush(self):
        _flush(self._target())

    def fileno(self):
        return self._target().fileno()

    def isatty(self):
        return self._target().isatty()

    def writable(self):
        return True

    def close(self):
        pass  # a task closing "its" stdout must not close opflow's, or another thread's log

    @property
    def encoding(self):
        return getattr(self._target(), "encoding", "utf-8")

    @property
    def errors(self):
        return getattr(self._target(), "errors", "strict")

    @property
    def buffer(self):
        return self._target().buffer

    def __getattr__(self, name):
        return getattr(self._target(), name)


class _SinkWriter(io.RawIOBase):
    """A raw stream into a LogSink (its masker): the thread level's stream where there are secrets."""

    def __init__(self, sink: LogSink):
        super().__init__()
        self._sink = sink

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._sink.write(bytes(data))
        return len(data)


@contextmanager
def _thread_redirected(fd: int, sink: LogSink | None = None):
    global _router_users, _saved_streams
    if sink is None:
        stream = _text_stream(fd)
    else:
        stream = io.TextIOWrapper(io.BufferedWriter(_SinkWriter(sink)), encoding="utf-8", errors="backslashreplace",
                                  line_buffering=True)
    with _router_lock:
        if _router_users == 0:
            _saved_streams = (sys.stdout, sys.stderr)
            sys.stdout, sys.stderr = _ThreadRouter(sys.stdout), _ThreadRouter(sys.stderr)
        _router_users += 1
    _local.stream = stream
    try:
        yield
    finally:
        _local.stream = None
        _flush(stream)
        with _router_lock:
            _router_users -= 1
            if _router_users == 0 and _saved_streams is not None:
                # Put back what was there, unless someone replaced the routers meanwhile.
                if isinstance(sys.stdout, _ThreadRouter):
                    sys.stdout = _saved_streams[0]
                if isinstance(sys.stderr, _ThreadRouter):
                    sys.stderr = _saved_streams[1]
                _saved_streams = None
