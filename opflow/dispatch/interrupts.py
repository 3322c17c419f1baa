"""SIGINT/SIGTERM from the first instant of `opflow run` to its last, and cancellation.

Three phases, one rule each:
- before a run is being prepared (imports, option parsing) and after it ended
  (printing the outcome): nothing to clean up, so exit at once with 128 + signal;
- while `api.run_async` prepares a run (parsing, lock, run directory, pool and
  Manager start-up): the signal cancels that coroutine, which leaves no half a
  record (a run directory either says `interrupted` or is not there);
- while tasks run, the coordinator's own handlers take over (graceful first,
  hard second) and put these back when the run is over.

Only the CLI installs the handlers (`install`), as its very first act; a
library caller's signals are its own. `attach` is called by every run_async and
does nothing for them but remember the task.

Also here: `call_off_loop`, a daemon thread for blocking work an event loop must
not wait on, and `await_despite_cancel`, for clean-up that must finish.
"""
from __future__ import annotations

__all__ = ["install", "attach", "received", "call_off_loop", "await_despite_cancel"]

import contextlib
import os
import signal
import sys
import threading

_installed = False
_attached: list = []  # [(loop, task)] of the run being prepared or run, innermost last
_received: list[int] = []  # signals seen while attached


def install() -> None:
    """Route SIGINT and SIGTERM through `_handle` (the CLI calls this first thing)."""
    global _installed
    _installed = True
    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)


def received() -> int | None:
    """The first signal that cancelled a run, if one did."""
    return _received[0] if _received else None


@contextlib.contextmanager
def attach():
    """While the block runs, a signal (under the CLI's handlers) cancels the current task."""
    import asyncio

    entry = (asyncio.get_running_loop(), asyncio.current_task())
    if not _attached:
        _received.clear()  # a new run (in a long-lived process): an old signal is not its
    _attached.append(entry)
    try:
        yield
    finally:
        _attached.remove(entry)


def _handle(signum, frame) -> None:
    if _attached and not _received:
        # The first signal while a run is prepared or running outside the
        # coordinator's handlers: cancel it; it records what it must and returns.
        _received.append(signum)
        loop, task = _attached[-1]
        try:
            loop.call_soon_threadsafe(task.cancel)
            return
        except RuntimeError:  # the loop is closed: nothing left to stop
            pass
    _exit_now(signum)


def _exit_now(signum: int) -> None:
    try:
        sys.stderr.write(f"opflow: {signal.Signals(signum).name}: exiting\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # stderr is gone: the exit code still says it
    if _received:
        # A second signal while a run was stopping: do not leave its children behind.
        with contextlib.suppress(Exception):
            from opflow.procs import kill_own_children

            kill_own_children(grace=0.0)
    os._exit(128 + signum)


async def call_off_loop(function, *args):
    """Run a blocking call in a daemon thread; the loop stays free meanwhile.

    Not the loop's default executor: a cancelled caller (Ctrl-C while a large
    file is parsed) must not have to wait for the call to end, and asyncio.run
    waits for that executor's threads on the way out.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def work():
        try:
            result = function(*args)
        except BaseException as exc:  # handed to the awaiting coroutine, raised there
            _settle(loop, future, None, exc)
        else:
            _settle(loop, future, result, None)

    threading.Thread(target=work, name=f"opflow-{getattr(function, '__name__', 'call')}", daemon=True).start()
    return await future


def _settle(loop, future, result, exc) -> None:
    def settle():
        if future.done():  # the caller was cancelled and gave up on it
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop is closed: no one is waiting any more
        loop.call_soon_threadsafe(settle)


async def await_despite_cancel(future, on_cancel=None) -> bool:
    """Await `future` to its end even if the awaiting task is cancelled meanwhile.

    Calls `on_cancel()` at each cancellation (say, to stop the work sooner) and
    returns whether there was one; the caller re-raises CancelledError once its
    record is written.
    """
    import asyncio

    cancelled = False
    while True:
        try:
            await asyncio.shield(future)
            return cancelled
        except asyncio.CancelledError:
            if future.cancelled():
                raise
            cancelled = True
            if on_cancel is not None:
                on_cancel()
