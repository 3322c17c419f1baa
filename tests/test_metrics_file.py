"""--metrics-file PATH (contract v3, issue 24): the run's metrics in the Prometheus text format, written
atomically at the end of every run (success, failure, interrupt), read back with prometheus_client's
own parser, through the real CLI."""
from __future__ import annotations

import signal
import subprocess
import sys

from prometheus_client.parser import text_string_to_metric_families

from helpers import latest_run_dir, run_cli, run_json, signal_when

#: A name that needs the format's escapes in a label value (a double quote and a backslash).
NAME = 'nightly "etl" \\ job'
FLOW = f"""
    name: '{NAME}'
    params: {{fail: "no"}}
    tasks:
      - {{id: first, plugin: shell, config: {{command: "echo one"}}}}
      - id: second
        plugin: shell
        depends_on: [first]
        config: {{command: 'test ${{params.fail}} = no'}}
"""
HELD = f"""
    name: '{NAME}'
    tasks:
      - {{id: quick, plugin: shell, config: {{command: "echo one"}}}}
      - id: held
        plugin: python
        depends_on: [quick]
        config: {{function: "faults:touch_and_hang", args: [started]}}
      - {{id: after, plugin: shell, depends_on: [held], config: {{command: "echo never"}}}}
"""


def _samples(path) -> dict:
    """(metric name, frozenset of its labels but workflow) -> value; every sample's workflow label checked."""
    families = list(text_string_to_metric_families(path.read_text()))
    out = {}
    for family in families:
        assert family.type == "gauge" and family.documentation, family.name  # HELP and TYPE lines
        for sample in family.samples:
            labels = dict(sample.labels)
            assert labels.pop("workflow") == NAME  # escaped in the file, the same value read back
            out[(sample.name, frozenset(labels.items()))] = sample.value
    return out


def _one(samples: dict, name: str, **labels):
    return samples[(name, frozenset(labels.items()))]


def test_a_successful_run_writes_its_metrics(tmp_path, write_workflow):
    flow = write_workflow(FLOW)
    metrics = tmp_path / "textfile" / "nightly.prom"
    metrics.parent.mkdir()
    result = run_cli("run", str(flow), "--quiet", "--metrics-file", str(metrics), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = run_json(latest_run_dir(tmp_path / "logs"))
    samples = _samples(metrics)
    assert _one(samples, "opflow_run_success") == 1
    assert abs(_one(samples, "opflow_run_duration_seconds") - doc["duration_s"]) < 1e-6
    from datetime import datetime

    finished = datetime.fromisoformat(doc["finished_at"]).timestamp()
    assert abs(_one(samples, "opflow_run_last_success_timestamp_seconds") - finished) < 1e-3
    assert _one(samples, "opflow_tasks", status="succeeded") == 2
    assert _one(samples, "opflow_tasks", status="failed") == 0
    assert _one(samples, "opflow_task_duration_seconds", task="second") > 0
    assert doc["metrics_file"] == {"path": str(metrics)}
    assert [p.name for p in metrics.parent.iterdir()] == ["nightly.prom"]  # no temporary file left
    assert metrics.stat().st_mode & 0o044  # the collector (another user) can read it


def test_a_failed_run_keeps_the_last_success_and_says_it_failed(tmp_path, write_workflow):
    flow = write_workflow(FLOW)
    metrics = tmp_path / "nightly.prom"
    assert run_cli("run", str(flow), "--quiet", "--metrics-file", str(metrics), cwd=tmp_path).returncode == 0
    last_success = _one(_samples(metrics), "opflow_run_last_success_timestamp_seconds")
    failed = run_cli("run", str(flow), "--quiet", "--param", "fail=yes", "--metrics-file", str(metrics), cwd=tmp_path)
    assert failed.returncode == 1
    samples = _samples(metrics)
    assert _one(samples, "opflow_run_success") == 0
    assert _one(samples, "opflow_run_last_success_timestamp_seconds") == last_success  # not reset by the failure
    assert _one(samples, "opflow_tasks", status="failed") == 1
    assert _one(samples, "opflow_tasks", status="succeeded") == 1
    assert _one(samples, "opflow_run_finished_timestamp_seconds") > last_success


def test_a_first_run_that_fails_has_no_last_success(tmp_path, write_workflow):
    flow = write_workflow(FLOW)
    metrics = tmp_path / "nightly.prom"
    failed = run_cli("run", str(flow), "--quiet", "--param", "fail=yes", "--metrics-file", str(metrics), cwd=tmp_path)
    assert failed.returncode == 1
    samples = _samples(metrics)
    assert _one(samples, "opflow_run_success") == 0
    assert not [key for key in samples if key[0] == "opflow_run_last_success_timestamp_seconds"]


def test_an_interrupted_run_writes_its_metrics(tmp_path, write_workflow, faults):
    flow = write_workflow(HELD)
    metrics = tmp_path / "nightly.prom"
    proc = subprocess.Popen([sys.executable, "-m", "opflow", "run", str(flow), "--metrics-file", str(metrics)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = signal_when(proc, lambda: (tmp_path / "started").exists(), "the held task to start", signal.SIGINT)
    assert proc.returncode == 130, output
    samples = _samples(metrics)
    assert _one(samples, "opflow_run_success") == 0
    assert _one(samples, "opflow_run_exit_code") == 130
    assert _one(samples, "opflow_tasks", status="succeeded") == 1
    assert _one(samples, "opflow_tasks", status="cancelled") == 2
    assert ("opflow_task_duration_seconds", frozenset({("task", "quick")})) in samples


def test_a_metrics_file_in_a_missing_folder_is_refused_before_the_run(tmp_path, write_workflow):
    flow = write_workflow(FLOW)
    result = run_cli("run", str(flow), "--metrics-file", str(tmp_path / "nowhere" / "x.prom"), cwd=tmp_path)
    assert result.returncode == 2
    assert "--metrics-file" in result.stderr and "nowhere" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "logs").exists()
