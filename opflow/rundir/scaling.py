"""Speedup and efficiency of one workload at several pool sizes, from repeated wall times.

The one rule `opflow report`'s comparison and the console table of
benchmarks/pool_sizes.py use: at each size, the median wall time of its runs; the
speedup at a size is the median at the smallest size measured (1 worker, in a sweep)
divided by the median there; efficiency is that speedup per worker added
(speedup / (workers / smallest size)). One run is one sample: medians, never a single
run, are what a speedup is measured against.
"""
from __future__ import annotations

__all__ = ["SizeFigures", "pool_scaling", "median"]

import statistics
from dataclasses import dataclass
from typing import Mapping, Sequence


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


@dataclass(frozen=True)
class SizeFigures:
    workers: int
    runs: int  # how many wall times the figures are of
    median_s: float
    min_s: float
    max_s: float
    speedup: float  # median at the smallest size / median at this one
    efficiency: float  # speedup / (workers / the smallest size)


def pool_scaling(walls: Mapping[int, Sequence[float]]) -> dict[int, SizeFigures]:
    """`{pool size: wall times}` -> `{pool size: SizeFigures}`, smallest size first.
    Sizes without a wall time are left out; so is every figure when none has one."""
    sizes = sorted(n for n, times in walls.items() if times)
    if not sizes:
        return {}
    base_size = sizes[0]
    base = median(walls[base_size])
    figures = {}
    for n in sizes:
        mid = median(walls[n])
        speedup = base / mid if mid > 0 else float("inf")
        figures[n] = SizeFigures(workers=n, runs=len(walls[n]), median_s=mid, min_s=min(walls[n]),
                                 max_s=max(walls[n]), speedup=speedup, efficiency=speedup / (n / base_size))
    return figures
