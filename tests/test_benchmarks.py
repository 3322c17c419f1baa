"""The benchmark scripts run end to end at tiny sizes and print their tables.

No timing is asserted (speed lives in benchmarks/, never in asserts): each script
runs as a real process with --quick, writing only under tmp_path.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run_script(name: str, tmp_path: Path, *extra: str) -> str:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), "--quick", "--out", str(out), "--log-dir", str(out / "logs"), *extra],
        cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| --- |" in proc.stdout, proc.stdout  # a markdown table
    assert "Machine: " in proc.stdout
    return proc.stdout


def test_overhead(tmp_path):
    """The headline: the whole process per task against the raw pool's script, each goal's row."""
    stdout = run_script("overhead.py", tmp_path)
    for measure in ("W1 per task (", "W2 per hop (", "W2L per hop (", "W5 per task (", "1-task run, whole process"):
        assert f"| {measure}" in stdout, stdout
    assert "load average before" in stdout
    assert (tmp_path / "out" / "overhead_whole.csv").is_file()


def test_pool_sizes(tmp_path):
    stdout = run_script("pool_sizes.py", tmp_path)
    assert "| cpu | opflow | 2 |" in stdout and "| cpu | raw | 2 |" in stdout
    assert "| metrics | opflow | 1 |" in stdout
    assert "Recommended pool size" in stdout
    assert "Chart: " in stdout
    assert (tmp_path / "out" / "pool_sizes.csv").is_file()


def test_data_transfer(tmp_path):
    stdout = run_script("data_transfer.py", tmp_path)
    for variant in ("opflow, shared memory", "opflow, store (OPFLOW_SHM_LIMIT=0)", "raw pool, frame as argument",
                    "one process, 4 describes in turn"):
        assert f"| {variant} |" in stdout
    assert "- hand-off through shared memory / one process:" in stdout
    assert "A reader's memory growth" in stdout
    assert "- 1 GB frame: peak total RSS" in stdout


def test_startup(tmp_path):
    stdout = run_script("startup.py", tmp_path, "--reps", "1")
    assert "| opflow validate |" in stdout
    assert "| opflow run (1 shell task) |" in stdout


def test_scale(tmp_path):
    stdout = run_script("scale.py", tmp_path, "--sizes", "20,40", "--executors", "inline,process")
    assert "| inline | 20 |" in stdout and "| process | 40 |" in stdout
    assert "coordinator time per task 40/20" in stdout


def test_dask_overhead(tmp_path):
    pytest.importorskip("distributed")
    stdout = run_script("dask_overhead.py", tmp_path)
    for variant in ("raw", "dask", "process"):
        assert f"| {variant} |" in stdout
    assert "ratio dask/raw: span " in stdout
    assert (tmp_path / "out" / "dask_overhead.csv").is_file()
    # tmp_path is also TMPDIR here (conftest), where Dask workers keep their scratch space.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "dask-scratch-space") == ["out"]


@pytest.mark.parametrize("name", ["overhead.py", "pool_sizes.py", "data_transfer.py", "startup.py", "scale.py"])
def test_writes_only_under_out(tmp_path, name):
    """Nothing lands in the current folder: only the --out tree (logs pruned unless --keep-logs)."""
    extra = ("--reps", "1") if name == "startup.py" else ("--sizes", "10,20") if name == "scale.py" else ()
    if name == "overhead.py":
        extra = ("--only", "W1", "--no-reference")
    if name == "pool_sizes.py":
        extra = ("--only", "cpu")
    run_script(name, tmp_path, *extra)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # Run directories are pruned; opflow's own lock folder (.locks) may stay.
    assert [p.name for p in (tmp_path / "out" / "logs").iterdir() if not p.name.startswith(".")] == []
