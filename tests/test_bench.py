"""`opflow bench FILE --sizes ...` through the real CLI: the same work in every repetition
(no cache, no resume), --param passed to every run, the table, the machine line, the prediction."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import records, run_cli, write


def _flow(here: Path) -> Path:
    # A cached task: without --no-cache in every repetition it would be reused after the first.
    return write(here, "flow.yaml", """
        name: bench me
        params: {word: plain}
        tasks:
          - {id: a, plugin: shell, cache: true, config: {command: "echo ${params.word}"}}
          - {id: b, plugin: shell, cache: true, config: {command: "sleep 0.2"}, depends_on: [a]}
          - {id: c, plugin: shell, config: {command: "sleep 0.2"}}
    """)


def test_bench_runs_every_task_in_every_rep_with_the_params(tmp_path):
    flow = _flow(tmp_path)
    warm = run_cli("run", str(flow), "--log-dir", str(tmp_path / "logs"), "--param", "word=loud", cwd=tmp_path)
    assert warm.returncode == 0, warm.stderr  # a cache entry every rep could reuse
    result = run_cli("bench", str(flow), "--sizes", "1,2", "--reps", "2", "--param", "word=loud", "--json",
                     "--log-dir", str(tmp_path / "logs"), cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [(r["workers"], r["rep"]) for r in document["runs"]] == [(1, 1), (2, 1), (2, 2), (1, 2)]  # alternating
    for run in document["runs"]:
        assert run["reused"] == [] and run["status"] == "succeeded"
        recorded = records(Path(run["run_dir"]))
        assert not any(r["reused"] for r in recorded.values())
        assert recorded["a"]["result"]["stdout"] == "loud\n"  # --param reached every run
    rows = {r["workers"]: r for r in document["sizes"]}
    assert sorted(rows) == [1, 2] and rows[1]["runs"] == 2 and rows[1]["speedup"] == 1.0
    assert rows[2]["speedup"] == round(rows[1]["median_s"] / rows[2]["median_s"], 4)
    assert rows[2]["efficiency"] == pytest.approx(rows[2]["speedup"] / 2, abs=1e-4)  # from the unrounded speedup
    assert all(r["predicted_s"] > 0 for r in rows.values())
    assert document["prediction"]["from_run"] == document["runs"][0]["run_dir"]
    assert len(document["machine"]["load_average"]) == 3 and document["machine"]["cpus"] >= 1


def test_bench_prints_the_table_the_machine_and_writes_a_report(tmp_path):
    flow = _flow(tmp_path)
    report = tmp_path / "bench.html"
    result = run_cli("bench", str(flow), "--sizes", "1,2", "--reps", "1", "-o", str(report),
                     "--log-dir", str(tmp_path / "logs"), cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("machine: ") and "load average" in lines[0] and "CPUs" in lines[0]
    header = next(line for line in lines if line.split()[:1] == ["workers"])
    for column in ("median", "min–max", "speedup", "efficiency", "predicted", "error"):
        assert column in header
    assert any(line.split()[:2] == ["1", "1"] for line in lines) and any(line.split()[:2] == ["2", "1"] for line in lines)
    assert "No recommendation" in result.stdout  # one run per size is noise
    assert f"report: {report}" in result.stdout and "Runs compared" in report.read_text()
    assert "bench: 2 workers, rep 1/1: succeeded" in result.stderr


def test_bench_refuses_bad_sizes_and_a_bad_file(tmp_path):
    flow = _flow(tmp_path)
    bad = run_cli("bench", str(flow), "--sizes", "2,zero", "--log-dir", str(tmp_path / "logs"), cwd=tmp_path)
    assert bad.returncode == 2 and "--sizes" in bad.stderr and "Traceback" not in bad.stderr
    broken = write(tmp_path, "broken.yaml", "name: x\ntasks:\n  - {id: a, plugin: nope}\n")
    result = run_cli("bench", str(broken), "--sizes", "1", "--log-dir", str(tmp_path / "logs"), cwd=tmp_path)
    assert result.returncode == 2 and "broken.yaml" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").iterdir())


def test_the_wheel_ships_the_bench_and_the_prediction(tmp_path):
    """A user who installed with pip has the tool: the wheel holds bench, predict and explain
    (built from a copy of the source, so the build leaves nothing in the checkout)."""
    import shutil
    import subprocess
    import sys
    import zipfile

    from helpers import REPO

    source = tmp_path / "source"
    shutil.copytree(REPO / "opflow", source / "opflow", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"opflow/cli/bench.py", "opflow/workflow/predict.py", "opflow/dispatch/explain.py"} <= names
    help_text = run_cli("bench", "--help", cwd=tmp_path)
    assert help_text.returncode == 0 and "--sizes" in help_text.stdout and "--reps" in help_text.stdout


def test_bench_stops_at_ctrl_c_and_runs_nothing_more(tmp_path):
    import subprocess
    import sys

    from helpers import latest_run_dir, run_dirs, run_json, signal_when

    flow = write(tmp_path, "flow.yaml", """
        name: bench stop
        tasks:
          - {id: long, plugin: shell, config: {command: "touch started; sleep 60"}}
    """)
    proc = subprocess.Popen([sys.executable, "-m", "opflow", "bench", str(flow), "--sizes", "1,2", "--reps", "2",
                             "--log-dir", str(tmp_path / "logs")], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    output = signal_when(proc, lambda: (tmp_path / "started").exists(), "the first run's task to start")
    assert proc.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output
    assert len(run_dirs(tmp_path / "logs")) == 1  # the other sizes and reps never started
    assert run_json(latest_run_dir(tmp_path / "logs"))["status"] == "interrupted"
