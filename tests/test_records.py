"""Trustworthy records (issue 9): the results log, resume after a crash, what resume
trusts, symlinks, file modes, pruning. Real CLI runs on real YAML in tmp_path."""
from __future__ import annotations

import json
import struct

import pytest

from conftest import latest_run_dir, records, run_cli

HEADER = struct.Struct("<4sHQI")  # results_log's record header


def _record_spans(data: bytes) -> list[tuple[str, int, int]]:
    """(task_id, start, end) of each record in a results log."""
    spans, offset = [], 0
    while offset < len(data):
        _, key_len, blob_len, _ = HEADER.unpack_from(data, offset)
        key = data[offset + HEADER.size: offset + HEADER.size + key_len].decode()
        end = offset + HEADER.size + key_len + blob_len
        spans.append((key, offset, end))
        offset = end
    return spans


def _counting_flow(write_workflow, tmp_path):
    """a, b, c each count their runs; `total` sums them; `gate` fails its first attempt."""
    return write_workflow(f"""
        name: counted
        tasks:
          - {{id: a, plugin: python, config: {{function: "faults:counted", args: ["{tmp_path / 'a.n'}", 1]}}}}
          - {{id: b, plugin: python, config: {{function: "faults:counted", args: ["{tmp_path / 'b.n'}", 10]}}}}
          - {{id: c, plugin: python, config: {{function: "faults:counted", args: ["{tmp_path / 'c.n'}", 100]}}}}
          - {{id: total, plugin: python, config: {{function: "faults:add_upstream"}}, depends_on: [a, b, c]}}
          - {{id: gate, plugin: python, config: {{function: "faults:fail_until", args: ["{tmp_path / 'gate.n'}", 1]}},
             depends_on: [a, b, c]}}
    """)


@pytest.mark.parametrize("damage", ["torn", "flipped"])
def test_a_damaged_results_record_is_detected_and_only_its_task_reruns(damage, tmp_path, write_workflow, faults):
    flow = _counting_flow(write_workflow, tmp_path)
    first = run_cli("run", str(flow), "--keep-going", "--workers", "2", cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    first_dir = latest_run_dir(tmp_path / "logs")
    log = first_dir / "results.pickles"
    data = log.read_bytes()
    spans = _record_spans(data)
    assert sorted(k for k, _, _ in spans) == ["a", "b", "c"]
    victim, start, end = spans[0]  # the first record: another follows it
    if damage == "torn":  # its last bytes never reached the disk; the next record follows at once
        data = data[:end - 5] + data[end:]
    else:  # one bit flipped in its blob
        middle = (start + HEADER.size + end) // 2
        data = data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:]
    log.write_bytes(data)

    again = run_cli("resume", str(first_dir), "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert sorted(doc["reused"]) == sorted({"a", "b", "c"} - {victim})
    assert any(f"task '{victim}': its result is missing" in c for c in doc["resume_changes"])
    counts = {t: int((tmp_path / f"{t}.n").read_text()) for t in "abc"}
    assert counts == {t: 2 if t == victim else 1 for t in "abc"}
    assert records(latest_run_dir(tmp_path / "logs"))["total"]["result"] == 111


def test_resume_after_a_coordinator_sigkill_reruns_exactly_what_had_not_succeeded(tmp_path):
    from crash_trial import run_trial

    trial = run_trial(tmp_path, n_tasks=40, kill_after=12, workers=2, delay=0.05)
    assert trial.killed
    assert trial.crashed_state == "crashed"  # run.json still says running; its pid is dead
    assert trial.resume_code == 0, trial.resume_stderr
    assert trial.rerun == trial.not_succeeded
    assert len(trial.not_succeeded) < 41  # what succeeded before the crash was reused
    assert trial.wrong_results == []
