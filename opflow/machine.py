"""The machine as this process sees it: the CPUs it may use and the memory it may take.

    cpus_available()   -> (n, "affinity" | "cgroup cpu.max" | "cgroup cpu.cfs_quota_us")
    memory_available() -> (bytes, "cgroup memory.max" | "cgroup memory.limit_in_bytes" | "MemAvailable")

`os.cpu_count()` counts the machine's CPUs, not this process's: under `taskset -c 0`, or
in a container given `--cpus 2` of a 64-core host, it is wrong, and a pool that size
thrashes or runs out of memory. The affinity mask is what the scheduler lets us run on;
a cgroup quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`) caps it further,
rounded up. The memory budget is the cgroup's limit, else the kernel's MemAvailable,
less MEMORY_MARGIN of it (room for opflow itself, the page cache, the unexpected).

`root` ("/" in use) lets tests hand a fake /proc and /sys tree.
"""
from __future__ import annotations

__all__ = ["cpus_available", "memory_available", "MEMORY_MARGIN"]

import math
import os
from pathlib import Path

#: The share of the machine's memory (cgroup limit or MemAvailable) kept out of the budget.
MEMORY_MARGIN = 0.10
_UNLIMITED = 2**60  # a cgroup v1 "no limit" is 9223372036854771712: anything past this is none


def cpus_available(root: str = "/") -> tuple[int, str]:
    """The CPUs this process may use, and where that number came from."""
    try:
        count, source = len(os.sched_getaffinity(0)), "affinity"
    except (AttributeError, OSError):  # not Linux
        count, source = os.cpu_count() or 1, "cpu_count"
    quota = _cpu_quota(Path(root))
    if quota is not None and quota[0] < count:
        count, source = quota
    return max(1, count), source


def memory_available(root: str = "/") -> tuple[int | None, str]:
    """The memory budget in bytes (the margin taken off), and where it came from."""
    limit = _memory_limit(Path(root))
    if limit is None:
        limit = _mem_available(Path(root))
        if limit is None:
            return None, "unknown"
        source = "MemAvailable"
    else:
        limit, source = limit
    return int(limit * (1 - MEMORY_MARGIN)), source


def _cgroups(root: Path) -> dict[str, str]:
    """controller -> this process's cgroup path ("" for the v2 unified hierarchy)."""
    found = {}
    try:
        text = (root / "proc/self/cgroup").read_text()
    except OSError:
        return found
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for name in controllers.split(",") if controllers else [""]:
            found[name] = path
    return found


def _candidates(root: Path, mount: str, path: str) -> list[Path]:
    """The process's cgroup folder and each folder above it to the mount (a container often
    sees its own cgroup at the mount's top while /proc/self/cgroup names the host's path):
    the tightest limit on the way up is the one that applies."""
    base = root / "sys/fs/cgroup" / mount if mount else root / "sys/fs/cgroup"
    parts = [p for p in path.strip("/").split("/") if p]
    folders = [base.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]
    return [f for f in folders if f.is_dir()]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cpu_quota(root: Path) -> tuple[int, str] | None:
    groups = _cgroups(root)
    best = None
    if "" in groups:
        for folder in _candidates(root, "", groups[""]):
            text = _read(folder / "cpu.max")
            if text and not text.startswith("max"):
                quota, _, period = text.partition(" ")
                best = _tighter(best, _ratio(quota, period or "100000"), "cgroup cpu.max")
    for name in ("cpu", "cpu,cpuacct"):
        if name in groups:
            for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
                for folder in _candidates(root, mount, groups[name]):
                    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
                    if quota and period and not quota.startswith("-"):
                        best = _tighter(best, _ratio(quota, period), "cgroup cpu.cfs_quota_us")
    return best


def _ratio(quota: str, period: str) -> int | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return max(1, math.ceil(q / p)) if q > 0 and p > 0 else None


def _tighter(best, value, source):
    if value is None or (best is not None and best[0] <= value):
        return best
    return value, source


def _memory_limit(root: Path) -> tuple[int, str] | None:
    groups = _cgroups(root)
    best = None
    if "" in groups:
        for folder in _candidates(root, "", groups[""]):
            best = _tighter(best, _bytes(_read(folder / "memory.max")), "cgroup memory.max")
    if "memory" in groups:
        for folder in _candidates(root, "memory", groups["memory"]):
            best = _tighter(best, _bytes(_read(folder / "memory.limit_in_bytes")), "cgroup memory.limit_in_bytes")
    return best


def _bytes(text: str | None) -> int | None:
    if not text or not text.isdigit():
        return None  # absent, or "max"
    value = int(text)
    return value if 0 < value < _UNLIMITED else None


def _mem_available(root: Path) -> int | None:
    text = _read(root / "proc/meminfo") or ""
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                return int(fields[1]) * 1024
    return None
