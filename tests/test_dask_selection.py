"""Parity: --only with reused upstream results, --force, retry_on and matrix keep the same
records on the Dask backend as on the process pool."""
from __future__ import annotations

import pytest

pytest.importorskip("distributed", reason="the dask extra is not installed: pip install 'opflow[dask]'")

from helpers import latest_run_dir, records, run_cli, run_json, write  # noqa: E402

STEPS = """
    from pathlib import Path


    def load():
        return (Path(__file__).parent / "source.txt").read_text().strip()


    def fit(model, context):
        return f"{context['load']}:{model}"


    def flaky(marker):
        marker = Path(marker)
        if not marker.exists():
            marker.write_text("")
            raise ConnectionRefusedError("first try")
        return "ok"
"""

FLOW = """
    name: parity
    tasks:
      - {id: load, plugin: python, config: {function: "steps:load"}}
      - id: fit
        plugin: python
        tags: [model]
        depends_on: [load]
        matrix: {model: [tree, linear, knn], exclude: [{model: knn}]}
        config: {function: "steps:fit", args: ["${matrix.model}"]}
      - {id: flaky, plugin: python, retries: 2, retry_on: [ConnectionError],
         config: {function: "steps:flaky", args: ["flaky.marker"]}}
"""


def summary(tmp_path, executor: str) -> list:
    """What the records say, run by run, less what differs by machine (times, pids, paths)."""
    folder = tmp_path / executor
    write(folder, "steps.py", STEPS)
    write(folder, "source.txt", "first\n")
    write(folder, "flow.yaml", FLOW)
    seen = []
    for args in ([], ["--only", "tag:model"], ["--only", "fit[model=tree]", "--force", "fit[model=tree]"]):
        done = run_cli("run", "flow.yaml", "--executor", executor, "--workers", "2", *args, cwd=folder, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        run_dir = latest_run_dir(folder / "logs")
        seen.append((run_json(run_dir).get("selection", {}).get("resolved"),
                     {task_id: (r["status"], r["attempts"], r["result"], r["reused"], r["forced"])
                      for task_id, r in sorted(records(run_dir).items())}))
        (folder / "source.txt").write_text("later\n")  # a rerun of load would show
    return seen


def test_selection_matrix_and_retry_on_keep_the_same_records_on_dask(tmp_path):
    on_pool, on_dask = summary(tmp_path, "process"), summary(tmp_path, "dask")
    assert on_dask == on_pool
    first, only, forced = on_pool
    assert first[1]["flaky"] == ("succeeded", 2, "ok", False, False)
    assert only[0] == ["fit[model=tree]", "fit[model=linear]"]
    assert only[1]["fit[model=linear]"] == ("succeeded", 1, "first:linear", False, False)
    assert only[1]["load"][3] is True and "flaky" not in only[1]
    assert forced[1]["fit[model=tree]"] == ("succeeded", 1, "first:tree", False, True)
