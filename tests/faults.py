"""A catalogue of tiny task functions, each one way a task can behave or break.

Tests copy this file beside their workflow and name functions as "faults:NAME".
"""
import ctypes
import enum
import os
import signal
import sys
import threading
import time
from pathlib import Path


def ok(value=1):
    return {"value": value}


def echo_context(context):
    """Returns what the task saw: the ids in its context, and the params."""
    return {"seen": sorted(k for k in context if k != "params"), "params": context["params"]}


def add_upstream(context):
    return sum(v["value"] for k, v in context.items() if k != "params")


def raise_error(message="boom"):
    raise ValueError(message)


def raise_after(seconds, message="boom"):
    time.sleep(seconds)
    raise ValueError(message)


def call_sys_exit(code=3):
    sys.exit(code)


def os_exit(code=7):
    os._exit(code)


def sigkill_self():
    os.kill(os.getpid(), signal.SIGKILL)


def segfault():
    ctypes.string_at(0)


def unpicklable():
    return threading.Lock()


def hang():
    time.sleep(3600)


def ignore_sigterm_and_hang(pid_file):
    """Make this worker deaf to SIGTERM, say so (its pid in `pid_file`), and hang."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(3600)


def wait_for_file(path, timeout=30.0):
    """Block until `path` exists (another task creates it): proves overlap without sleeps."""
    deadline = time.monotonic() + timeout
    target = Path(path)
    while not target.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)
    return {"waited_for": str(path)}


def touch(path):
    Path(path).write_text("here")
    return {"touched": str(path)}


def fail_until(marker, failures=1):
    """Fail the first `failures` attempts (counted in a marker file), then succeed."""
    marker = Path(marker)
    count = int(marker.read_text()) if marker.exists() else 0
    marker.write_text(str(count + 1))
    if count < failures:
        raise RuntimeError(f"attempt {count + 1} fails on purpose")
    return {"attempts_seen": count + 1}


def flaky(marker, message="GET https://rates.example/api: 503 <Service Unavailable>"):
    """Each run's first attempt fails with a transient ConnectionError, its retry succeeds
    (the marker flips: every odd call fails), so a workflow run again retries again."""
    marker = Path(marker)
    if not marker.exists():
        marker.write_text("failed once")
        raise ConnectionError(message)
    marker.unlink()
    return {"healed": True}


def pid():
    return os.getpid()


def allocate(megabytes=300, hold=5.0):
    block = bytearray(megabytes * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(hold)
    return len(block)


class LocalError(BaseException):
    """Defined only here, beside the workflow: the coordinator cannot import it."""


def raise_local_base_exception():
    raise LocalError("from the user's own module")


class Color(str, enum.Enum):
    """A str subclass from the user's module."""

    RED = "red"


def local_enum_result():
    return {"color": Color.RED}


def counted(marker, value=1):
    """Count each run in `marker` (a file of one integer), return {"value": value}."""
    marker = Path(marker)
    marker.write_text(str((int(marker.read_text()) if marker.exists() else 0) + 1))
    return {"value": value}


def chained(marker_dir, value, delay=0.0, read=None, context=None):
    """Note each run (a line in marker_dir/<value>), wait `delay`, return value plus task `read`'s value."""
    with open(Path(marker_dir) / str(value), "a") as marks:
        marks.write("ran\n")
    time.sleep(delay)
    return {"value": value + (context[read]["value"] if read else 0)}


def plant_symlink(log_dir, name, target):
    """Put a symlink to `target` at `name` in the run's directory (the only one in
    log_dir); "{pid}" in `name` is the coordinator's pid, read from run.json, "{n}" 0 to 99."""
    import json

    run_dir = next(p for p in Path(log_dir).iterdir() if not p.name.startswith("."))
    pid = json.loads((run_dir / "run.json").read_text()).get("pid")  # on disk before any task starts
    for n in range(100) if "{n}" in name else [0]:  # "{n}": each of the next 100 temporary names
        link = run_dir / name.format(pid=pid, n=n)
        if link.exists():
            link.unlink()
        os.symlink(target, link)
    return str(link)


def first_caller_waits(marker, go, timeout=60.0):
    """The first run to call this (creating `marker`) blocks until `go` exists; later ones return."""
    try:
        Path(marker).open("x").close()
    except FileExistsError:
        return {"waited": False}
    wait_for_file(go, timeout)
    return {"waited": True}


def value_of(*names, context):
    """Returns the upstream results named, as the task read them."""
    return {name: context[name] for name in names}


def big_text(size=100_000):
    return "x" * size


def length_of(name, context):
    return len(context[name])


def touch_and_hang(path):
    Path(path).write_text("here")
    time.sleep(3600)


def crash_after_file(path, timeout=30.0):
    wait_for_file(path, timeout)
    os.kill(os.getpid(), signal.SIGKILL)
