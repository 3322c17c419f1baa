"""Process hygiene: kill whole process trees, and die with the coordinator.

Everything opflow starts, it reaps. Two tools for that live here, shared by the
worker processes and the executors:
- `kill_tree`: SIGTERM a process and all its descendants (and the process groups
  of shell commands), wait a short grace, SIGKILL what is left.
- `start_parent_watch`: a daemon thread in every helper process (pool worker,
  Manager server) that notices the coordinator is gone, even after a SIGKILL that
  gave it no chance to clean up, and takes the helper and its children down.
"""
from __future__ import annotations

__all__ = ["kill_tree", "kill_trees", "descendants", "kill_own_children", "track_child_group", "untrack_child_group", "start_parent_watch", "describe_exit"]

import os
import signal
import threading
import time

import psutil

GRACE_SECONDS = 2.0
HURRY_POLL_SECONDS = 0.05
PARENT_POLL_SECONDS = 0.5

# Process groups of shell commands started by this process (their leaders' pids).
_child_groups: set[int] = set()


def track_child_group(pgid: int) -> None:
    _child_groups.add(pgid)


def untrack_child_group(pgid: int) -> None:
    _child_groups.discard(pgid)


def has_child_groups() -> bool:
    return bool(_child_groups)


def kill_tree(pid: int, *, include_self: bool = True, grace: float = GRACE_SECONDS,
              hurry: threading.Event | None = None) -> list[int]:
    """Terminate `pid` and every descendant; returns the pids that were signalled.

    Descendants are collected before any signal, because a child whose parent
    dies is re-parented and can no longer be found from it. Setting `hurry`
    ends the grace at once (a second Ctrl-C): what is left gets SIGKILL now.
    """
    try:
        root = psutil.Process(pid)
        procs = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    if include_self:
        procs.append(root)
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    groups = _groups_led_by(procs)
    alive = _wait_for_exit(procs, grace, hurry)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    # A shell that ignores SIGTERM starts its next command after the first one
    # died: a process listed nowhere above, but in the shell's own group.
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    psutil.wait_procs(alive, timeout=grace)
    return [p.pid for p in procs]


def _groups_led_by(procs: list[psutil.Process]) -> set[int]:
    """The process groups whose leaders are among `procs` (a shell task's session), never our own."""
    own = os.getpgid(0)
    groups = set()
    for proc in procs:
        try:
            if os.getpgid(proc.pid) == proc.pid != own:
                groups.add(proc.pid)
        except (ProcessLookupError, PermissionError):
            pass
    return groups


def _wait_for_exit(procs: list[psutil.Process], grace: float, hurry: threading.Event | None) -> list[psutil.Process]:
    """Wait up to `grace` seconds (less if `hurry` is set) for `procs` to end; returns the living."""
    deadline = time.monotonic() + grace
    alive = procs
    while alive and not (hurry is not None and hurry.is_set()):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        alive = psutil.wait_procs(alive, timeout=min(HURRY_POLL_SECONDS, left))[1]
    return alive


def kill_own_children(grace: float = 0.5) -> None:
    """Kill this process's children and the shell process groups it started."""
    for pgid in list(_child_groups):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    kill_tree(os.getpid(), include_self=False, grace=grace)


#: Called before a helper process dies by its parent watch or SIGTERM (removes
#: what it was writing in shared memory); set by start_parent_watch.
_cleanup = None


def _run_cleanup() -> None:
    if _cleanup is not None:
        try:
            _cleanup()
        except Exception:
            pass


def _terminate_handler(signum, frame):  # pragma: no cover - runs in helper processes
    # A pool worker asked to stop (timeout, interrupt, broken pool) takes the
    # commands it started with it, then dies of the same signal.
    _run_cleanup()
    kill_own_children()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def start_parent_watch(coordinator_pid: int, cleanup=None) -> None:
    """In a helper process: exit (children first) once the coordinator is gone.

    `cleanup`, if given, runs first (then, and on SIGTERM): what the process
    must not leave behind (shared memory).

    Also makes SIGTERM kill this process's children, and SIGINT ignored: Ctrl-C
    reaches the whole terminal process group, and only the coordinator decides
    what an interrupt means.
    """
    global _cleanup
    _cleanup = cleanup
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _terminate_handler)
    parent_at_start = os.getppid()
    try:
        coordinator = psutil.Process(coordinator_pid)
    except psutil.NoSuchProcess:
        os._exit(1)

    def watch():  # pragma: no cover - exercised by the SIGKILL-coordinator test
        # The parent pid alone is not enough: a forkserver child's parent is the
        # forkserver, which outlives the coordinator while any worker holds its
        # "alive" pipe. So also watch the coordinator itself, counting a zombie
        # (killed, not yet reaped by its own parent) as dead.
        while True:
            if os.getppid() != parent_at_start or not _alive(coordinator):
                _run_cleanup()
                kill_own_children()
                os._exit(1)
            threading.Event().wait(PARENT_POLL_SECONDS)

    threading.Thread(target=watch, name="opflow-parent-watch", daemon=True).start()


def _alive(process: psutil.Process) -> bool:
    try:
        # is_running() also compares the start time, so a reused pid is not mistaken for it.
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def describe_exit(exitcode: int | None) -> str:
    """How a worker process ended, in words a person can act on."""
    if exitcode is None:
        return "its worker process died (exit status unknown)"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = {
            "SIGKILL": " (likely out of memory, or killed by hand)",
            "SIGSEGV": " (a segmentation fault in native code)",
            "SIGABRT": " (an abort in native code)",
            "SIGBUS": " (a bus error in native code)",
        }.get(name, "")
        return f"its worker process was killed by {name}{hint}"
    return f"its worker process exited abruptly with status {exitcode}"


def kill_trees(pids: list[int], grace: float, hurry: threading.Event | None = None) -> None:
    """Kill several process trees at once, so their grace periods overlap."""
    threads = [threading.Thread(target=kill_tree, args=(pid,), kwargs={"grace": grace, "hurry": hurry})
               for pid in pids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def descendants() -> set[int]:
    """The pids of every process below this one."""
    try:
        return {p.pid for p in psutil.Process().children(recursive=True)}
    except psutil.Error:
        return set()
