"""`opflow plan FILE --explain` through the real CLI: for each task, whether a run now would
reuse it or run it, and why; and that a real run then does what it said (its records)."""
from __future__ import annotations

import json
from pathlib import Path

from helpers import latest_run_dir, records, run_cli, write


def _project(here: Path) -> Path:
    """Four cached tasks, each with one thing to change: an input file, the .py a python task
    names, a config value, and a task downstream of that config; and one task not cached."""
    write(here, "data.csv", "a,b\n1,2\n")
    write(here, "steps.py", "def double(x):\n    return 2 * x\n")
    return _flow(here, "one")


def _flow(here: Path, word: str) -> Path:
    return write(here, "flow.yaml", f"""
        name: explain
        tasks:
          - {{id: load, plugin: shell, cache: true, inputs: [data.csv], config: {{command: "cat data.csv"}}}}
          - {{id: calc, plugin: python, cache: true, config: {{function: "steps:double", args: [2]}}}}
          - {{id: up, plugin: shell, cache: true, config: {{command: "echo {word}"}}}}
          - {{id: down, plugin: shell, cache: true, depends_on: [up], config: {{command: "echo down"}}}}
          - {{id: plain, plugin: shell, config: {{command: "echo plain"}}}}
    """)


def _explain(here: Path, flow: Path, *extra: str) -> dict:
    result = run_cli("plan", str(flow), "--explain", "--json", "--log-dir", str(here / "logs"), *extra, cwd=here)
    assert result.returncode == 0, result.stdout + result.stderr
    return {t["task_id"]: t for t in json.loads(result.stdout)["tasks"]}


def _run(here: Path, flow: Path, *extra: str) -> dict:
    result = run_cli("run", str(flow), "--log-dir", str(here / "logs"), "--workers", "2", *extra, cwd=here)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return records(latest_run_dir(here / "logs"))


def test_explain_before_any_run_says_no_earlier_result(tmp_path):
    flow = _project(tmp_path)
    verdicts = _explain(tmp_path, flow)
    assert {t: v["verdict"] for t, v in verdicts.items()} == dict.fromkeys(["load", "calc", "up", "down", "plain"], "run")
    assert "no earlier result" in verdicts["load"]["reason"]
    assert "cache" in verdicts["plain"]["reason"]  # not a cache: true task: it always runs
    text = run_cli("plan", str(flow), "--explain", "--log-dir", str(tmp_path / "logs"), cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "load" in text.stdout and "no earlier result" in text.stdout


def test_explain_names_each_change_and_the_run_does_what_it_said(tmp_path):
    flow = _project(tmp_path)
    _run(tmp_path, flow)
    unchanged = _explain(tmp_path, flow)
    assert {t: v["verdict"] for t, v in unchanged.items()} == {
        "load": "reuse", "calc": "reuse", "up": "reuse", "down": "reuse", "plain": "run"}
    assert {v["verdict"] for v in _explain(tmp_path, flow, "--no-cache").values()} == {"run"}

    write(tmp_path, "data.csv", "a,b\n1,3\n")  # an input file
    write(tmp_path, "steps.py", "def double(x):\n    return x + x\n")  # the .py calc names
    _flow(tmp_path, "two")  # up's config; down is downstream of it
    verdicts = _explain(tmp_path, flow)
    assert {t: v["verdict"] for t, v in verdicts.items()} == dict.fromkeys(["load", "calc", "up", "down", "plain"], "run")
    assert "input data.csv changed" in verdicts["load"]["reason"]
    assert "steps.py" in verdicts["calc"]["reason"] and "code" in verdicts["calc"]["reason"]
    assert "config changed (command)" in verdicts["up"]["reason"]
    assert "upstream 'up'" in verdicts["down"]["reason"]

    after = _run(tmp_path, flow)
    assert {t: r["reused"] for t, r in after.items()} == dict.fromkeys(["load", "calc", "up", "down", "plain"], False)
    # The same words at run time: one rule decides, and says why (cache.py).
    for task_id in ("load", "calc", "up"):
        assert after[task_id]["cache_miss"] == verdicts[task_id]["reason"], task_id
    # down's new upstream result was not known before the run; now it is, and it differs.
    assert after["down"]["cache_miss"] == "upstream 'up' returned another result"

    again = _explain(tmp_path, flow)
    assert {t: v["verdict"] for t, v in again.items()} == {
        "load": "reuse", "calc": "reuse", "up": "reuse", "down": "reuse", "plain": "run"}
    final = _run(tmp_path, flow)
    assert {t: r["reused"] for t, r in final.items()} == {
        "load": True, "calc": True, "up": True, "down": True, "plain": False}


def test_explain_resume_says_what_resume_reuses(tmp_path):
    write(tmp_path, "gate.txt", "fail\n")
    flow = write(tmp_path, "flow.yaml", """
        name: explain resume
        params: {n: 1}
        tasks:
          - {id: first, plugin: shell, config: {command: "echo first"}}
          - {id: gate, plugin: shell, config: {command: "grep -q ok gate.txt"}, depends_on: [first]}
          - {id: after, plugin: shell, config: {command: "echo after"}, depends_on: [gate]}
          - {id: other, plugin: shell, config: {command: "echo ${params.n}"}}
    """)
    _run(tmp_path, flow, "--keep-going")
    verdicts = _explain(tmp_path, flow, "--resume")
    assert {t: v["verdict"] for t, v in verdicts.items()} == {
        "first": "reuse", "gate": "run", "after": "run", "other": "reuse"}
    assert "failed" in verdicts["gate"]["reason"]
    assert "skipped" in verdicts["after"]["reason"]
    params_changed = _explain(tmp_path, flow, "--resume", "--param", "n=2")
    assert {v["verdict"] for v in params_changed.values()} == {"run"}
    assert "params changed" in params_changed["first"]["reason"]

    write(tmp_path, "gate.txt", "ok\n")
    resumed = _run(tmp_path, flow, "--resume")
    assert {t: r["reused"] for t, r in resumed.items()} == {
        t: v["verdict"] == "reuse" for t, v in verdicts.items()}


def test_explain_refuses_resume_without_a_run_and_mixed_options(tmp_path):
    flow = _project(tmp_path)
    both = run_cli("plan", str(flow), "--explain", "--predict", "1,2", cwd=tmp_path)
    assert both.returncode == 2 and "one or the other" in both.stderr
    alone = run_cli("plan", str(flow), "--resume", cwd=tmp_path)
    assert alone.returncode == 2 and "goes with --explain" in alone.stderr
    result = run_cli("plan", str(flow), "--explain", "--resume", "--log-dir", str(tmp_path / "logs"), cwd=tmp_path)
    assert result.returncode == 2
    assert "no earlier run" in result.stderr and "Traceback" not in result.stderr


def test_explain_takes_an_uncached_upstream_to_return_what_it_did(tmp_path):
    flow = write(tmp_path, "flow.yaml", """
        name: explain assumed
        tasks:
          - {id: fetch, plugin: shell, config: {command: "echo same"}}
          - {id: heavy, plugin: shell, cache: true, depends_on: [fetch], config: {command: "echo heavy"}}
    """)
    _run(tmp_path, flow)
    verdicts = _explain(tmp_path, flow)
    assert (verdicts["fetch"]["verdict"], verdicts["heavy"]["verdict"]) == ("run", "reuse")
    assert "if 'fetch' returns what it did" in verdicts["heavy"]["reason"]
    after = _run(tmp_path, flow)
    assert (after["fetch"]["reused"], after["heavy"]["reused"]) == (False, True)
