"""Task key `outputs:` through the real CLI: hashes recorded after a success, a missing
output fails the task (retries apply, dependents skipped), and a cached task is reused only
while its recorded outputs are there with those hashes (else it reruns, saying why)."""
from __future__ import annotations

import hashlib
import json

from helpers import latest_run_dir, records, run_cli, run_json, write


def _run(here, flow, code=0) -> dict:
    result = run_cli("run", str(flow), "--workers", "1", cwd=here)
    assert result.returncode == code, result.stdout + result.stderr
    return records(latest_run_dir(here / "logs"))


def _cached_flow(here):
    count = here / "a.count"
    return write(here, "flow.yaml", f"""
        name: outputs
        tasks:
          - id: a
            plugin: shell
            cache: true
            outputs: [out/a.csv]
            config: {{command: "mkdir -p out; echo x >> {count}; printf 'n\\\\n1\\\\n' > out/a.csv"}}
          - {{id: b, plugin: shell, depends_on: [a], config: {{command: "cat out/a.csv"}}}}
    """), count


def test_outputs_are_hashed_and_a_cached_task_reruns_when_one_is_deleted_or_changed(here):
    flow, count = _cached_flow(here)
    first = _run(here, flow)
    written = (here / "out" / "a.csv").read_bytes()
    assert first["a"]["outputs"] == {"out/a.csv": hashlib.sha256(written).hexdigest()}
    assert _run(here, flow)["a"]["reused"] is True  # unchanged: reused
    assert count.read_text().count("x") == 1
    (here / "out" / "a.csv").unlink()
    explained = run_cli("plan", str(flow), "--explain", "--json", cwd=here)
    assert explained.returncode == 0, explained.stderr
    verdicts = {v["task_id"]: v for v in json.loads(explained.stdout)["tasks"]}
    assert verdicts["a"]["verdict"] == "run" and "output out/a.csv is missing" in verdicts["a"]["reason"]
    deleted = _run(here, flow)["a"]
    assert deleted["reused"] is False and deleted["cache_miss"] == "output out/a.csv is missing"
    assert count.read_text().count("x") == 2 and (here / "out" / "a.csv").exists()
    (here / "out" / "a.csv").write_text("someone else's\n")
    changed = _run(here, flow)["a"]
    assert changed["reused"] is False and changed["cache_miss"] == "output out/a.csv changed"
    assert count.read_text().count("x") == 3 and (here / "out" / "a.csv").read_bytes() == written
    again = _run(here, flow)["a"]
    assert again["reused"] is True and again["outputs"] == first["a"]["outputs"]


def test_resume_reruns_a_task_whose_output_is_gone_and_what_depends_on_it(here):
    made = here / "a.count"
    flow = write(here, "flow.yaml", f"""
        name: resume outputs
        tasks:
          - {{id: a, plugin: shell, outputs: [a.txt], config: {{command: "echo x >> {made}; echo a > a.txt"}}}}
          - {{id: b, plugin: shell, depends_on: [a], config: {{command: "cat a.txt"}}}}
          - {{id: c, plugin: shell, depends_on: [b], config: {{command: "test -e go"}}}}
    """)
    _run(here, flow, code=1)  # c fails: a and b may be reused
    (here / "go").touch()
    (here / "a.txt").unlink()
    result = run_cli("run", str(flow), "--resume", cwd=here)
    assert result.returncode == 0, result.stdout + result.stderr
    doc = run_json(latest_run_dir(here / "logs"))
    assert doc["reused"] == [] and "task 'a': output a.txt is missing" in doc["resume_changes"]
    assert made.read_text().count("x") == 2
    (here / "fail").touch()
    flow.write_text(flow.read_text().replace("test -e go", "test ! -e fail"))
    _run(here, flow, code=1)
    (here / "fail").unlink()
    result = run_cli("run", str(flow), "--resume", cwd=here)  # outputs unchanged: a and b reused
    assert result.returncode == 0, result.stdout + result.stderr
    assert run_json(latest_run_dir(here / "logs"))["reused"] == ["a", "b"]


def test_a_missing_output_fails_the_task_retries_apply_and_its_dependents_are_skipped(here):
    flow = write(here, "flow.yaml", """
        name: missing output
        tasks:
          - {id: a, plugin: shell, retries: 1, outputs: [out/never.csv, "out/*.txt"], config: {command: "true"}}
          - {id: b, plugin: shell, depends_on: [a], config: {command: "true"}}
          - {id: c, plugin: shell, outputs: ["got/*.txt"], config: {command: "mkdir -p got; echo 1 > got/x.txt; echo 2 > got/y.txt"}}
    """)
    result = run_cli("run", str(flow), "--keep-going", "--workers", "1", cwd=here)
    assert result.returncode == 1, result.stdout + result.stderr
    tasks = records(latest_run_dir(here / "logs"))
    a = tasks["a"]
    assert a["status"] == "failed" and a["attempts"] == 2 and a["outputs"] is None
    assert a["error"]["type"] == "MissingOutput"
    assert a["error"]["message"].startswith(
        f"declared output out/never.csv was not written (looked for {here / 'out' / 'never.csv'})")
    assert "out/*.txt" in a["error"]["message"]
    assert tasks["b"]["status"] == "skipped"
    assert set(tasks["c"]["outputs"]) == {"got/x.txt", "got/y.txt"}
    assert "MissingOutput" in run_json(latest_run_dir(here / "logs"))["problems"]["a"]["why"]
    assert "out/never.csv" in result.stdout + result.stderr


def test_bad_outputs_are_validate_errors_at_their_line(here):
    flow = write(here, "flow.yaml", """
        name: bad outputs
        tasks:
          - id: a
            plugin: shell
            outputs: {a: b}
            config: {command: "true"}
          - id: b
            plugin: shell
            output: [x.csv]
            config: {command: "true"}
          - id: c
            plugin: shell
            outputs: [ok.csv, 3]
            config: {command: "true"}
    """)
    result = run_cli("validate", str(flow), cwd=here)
    assert result.returncode == 2
    assert "flow.yaml:5: task 'a': 'outputs' must be a list of paths or globs" in result.stderr
    assert "flow.yaml:9: task 'b': unknown key 'output' (did you mean 'outputs'?)" in result.stderr
    assert "flow.yaml:13: task 'c': 'outputs' must be a list of paths or globs" in result.stderr
