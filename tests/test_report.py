"""`opflow report`: one self-contained HTML file, checked in a real headless
browser (Debian's chromium; skipped where it is not installed).

docs/report.png is made from the shipped example by docs/make_screenshot.py, not here.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import struct
import subprocess
import textwrap
import zlib
from pathlib import Path

import pytest

from helpers import REPO, latest_run_dir, records, run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

FLOW = """
name: report demo
params: {region: eu}
tasks:
  - id: fx_rates
    plugin: python
    retries: 1
    retry_delay: 0.1
    config: {function: "faults:flaky", args: ["MARKER"]}
  - id: noop
    plugin: python
    config: {function: "faults:ok"}
  - id: extract
    plugin: shell
    config: {command: "sleep 0.3; echo extracted"}
  - id: clean_a
    plugin: shell
    depends_on: [extract]
    config: {command: "sleep 0.4"}
  - id: clean_b
    plugin: shell
    depends_on: [extract]
    config: {command: "sleep 0.2"}
  - id: clean_c
    plugin: shell
    depends_on: [extract]
    config: {command: "sleep 0.2"}
  - id: load_warehouse
    plugin: shell
    depends_on: [clean_a, clean_b]
    config: {command: "echo 'connection refused: warehouse:5432' >&2; exit 2"}
  - id: publish
    plugin: shell
    depends_on: [clean_c]
    config: {command: "sleep 0.1"}
"""


@pytest.fixture
def runs(tmp_path, faults):
    """The demo at 1, 2 and 4 workers: one failure, a retried task (fx_rates: a transient
    ConnectionError 503, then a success) and a task that takes well under a millisecond."""
    (tmp_path / "flow.yaml").write_text(textwrap.dedent(FLOW).replace("MARKER", str(tmp_path / "fx.marker")))
    dirs = []
    for workers in (1, 2, 4):
        proc = run_cli("run", "flow.yaml", "--workers", str(workers), "--keep-going", cwd=tmp_path)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        dirs.append(latest_run_dir(tmp_path / "logs"))
    return dirs


def test_report_is_one_self_contained_file_that_compares_runs(runs, tmp_path):
    proc = run_cli("report", *map(str, runs), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = runs[0] / "report.html"  # the default place
    assert str(out) in proc.stdout
    text = out.read_text()
    assert "<script" not in text.lower()
    fetched = re.findall(r"""(?:src|href)\s*=\s*["'](?!#)([^"']+)|url\(|@import""", text)
    assert not fetched, fetched  # nothing to fetch: only in-page links
    for task_id in ("extract", "clean_a", "load_warehouse", "publish"):
        assert task_id in text
    assert "Runs compared" in text and "speedup" in text and "efficiency" in text
    assert text.count('class="bar"') >= 3 * 6  # a timeline bar per attempt, in each run (twice: stacked too)
    assert "connection refused: warehouse:5432" in text  # the failure's stderr tail
    assert "Critical path" in text and "extract → clean_a → load_warehouse" in text
    custom = tmp_path / "out.html"
    assert run_cli("report", str(runs[0]), "-o", str(custom), cwd=tmp_path).returncode == 0
    assert custom.is_file() and "Runs compared" not in custom.read_text()  # one run: nothing to compare
    bad = run_cli("report", str(tmp_path), cwd=tmp_path)
    assert bad.returncode == 2 and "not a run directory" in bad.stderr and "Traceback" not in bad.stderr


MIN_BAR = 4  # px: the narrowest attempt the timeline draws (report.py's MIN_BAR)
SERVICE_ERROR = "ConnectionError: GET https://rates.example/api: 503 &lt;Service Unavailable&gt;"


def _bar_widths(page: str, task_id: str) -> list[float]:
    """The widths of the timeline bars of `task_id`'s attempts (their <title> names them)."""
    return [float(w) for w in re.findall(
        r'<rect class="bar"[^>]*?width="([\d.]+)"[^>]*><title>' + re.escape(task_id) + r' \(attempt', page)]


@pytest.fixture
def unlike_run(runs, tmp_path):
    """The demo once more, on threads and with another param: unlike the runs of `runs`."""
    proc = run_cli("run", "flow.yaml", "--workers", "1", "--executor", "thread", "--param", "region=us",
                   "--keep-going", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return latest_run_dir(tmp_path / "logs")


def test_the_report_shows_retried_and_short_attempts_and_what_the_run_ran_on(runs, tmp_path):
    import socket

    out = tmp_path / "one.html"
    assert run_cli("report", str(runs[0]), "-o", str(out), cwd=tmp_path).returncode == 0
    page = out.read_text()
    # The retried task's transient error is in the page, escaped (the console said it; so does the page).
    assert SERVICE_ERROR in page and "<Service Unavailable>" not in page
    # Its failed first attempt is a red bar, at least MIN_BAR wide; so is the task that took microseconds.
    fx = records(runs[0])["fx_rates"]
    assert [a["error"] is not None for a in fx["attempt_log"]] == [True, False]
    assert re.search(r'<rect class="bar"[^>]*fill="#c8453c"[^>]*><title>fx_rates \(attempt 1', page)
    noop = records(runs[0])["noop"]["attempt_log"][0]["duration_s"]
    wall = json.loads((runs[0] / "run.json").read_text())["duration_s"]
    assert noop * 1000 / wall < MIN_BAR  # narrower than MIN_BAR at its true width (1000 px span the run)
    assert _bar_widths(page, "noop") == [MIN_BAR]  # (the unfixed code drew it 1 px wide)
    assert min(_bar_widths(page, "fx_rates")) >= MIN_BAR
    assert re.search(r"<td class=\"mono\">noop</td>.*?drawn 4px wide", page)  # and listed
    # The header: params, host, Python, opflow and package versions, from run.json.
    doc = json.loads((runs[0] / "run.json").read_text())
    head = page[:page.index("<section")]
    assert "region=eu" in head and socket.gethostname() in head and doc["python"] in head
    assert doc["opflow_version"] in head
    assert f"networkx {doc['packages']['networkx']}" in head


def test_a_comparison_flags_unlike_runs_and_measures_speedup_against_medians(runs, unlike_run, tmp_path):
    out = tmp_path / "mixed.html"
    assert run_cli("report", *map(str, runs), str(unlike_run), "-o", str(out), cwd=tmp_path).returncode == 0
    page = out.read_text()
    assert "Unlike runs" in page and "differ in executor, params" in page
    assert "Group 1 of 2: executor process; params region=eu" in page
    assert "Group 2 of 2: executor thread; params region=us" in page
    head = page[:page.index("Runs compared")]
    assert "params</th><td class=\"mono\"><b class=\"unlike\">differs between runs</b>" in head

    # Like runs: three at 1 worker (2 s, 3 s, 10 s), one at 2 (1.5 s). The speedup is against
    # the median at 1 worker (3 s), as benchmarks/pool_sizes.py's console table computes it.
    like = []
    for n, (source, wall) in enumerate([(runs[0], 2.0), (runs[0], 3.0), (runs[0], 10.0), (runs[1], 1.5)]):
        copy = tmp_path / "like" / f"{source.name}-{n}"
        shutil.copytree(source, copy)
        doc = json.loads((copy / "run.json").read_text())
        doc["duration_s"] = wall
        (copy / "run.json").write_text(json.dumps(doc))
        like.append(copy)
    out = tmp_path / "like.html"
    proc = run_cli("report", *map(str, like), "-o", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert "Unlike runs" not in page and "Group 1" not in page
    sizes = re.findall(r'<tr><td class="n">(\d+)</td><td class="n">(\d+)</td><td class="n">([\d.]+)</td>'
                       r'<td class="n">([\d.–]+)</td><td class="n">([\d.]+)×</td><td class="n">(\d+)%</td></tr>', page)
    assert sizes == [("1", "3", "3.00", "2.00–10.00", "1.00", "100"), ("2", "1", "1.50", "1.50–1.50", "2.00", "100")]
    per_run = re.findall(r'</span></td><td class="n">([\d.]+)</td><td class="n">([\d.]+)×</td>', page)
    assert per_run == [("2.00", "1.50"), ("3.00", "1.00"), ("10.00", "0.30"), ("1.50", "2.00")]
    # One rule: the benchmark's console table and the report call the same function.
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import pool_sizes
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    from opflow.rundir.scaling import pool_scaling

    assert pool_sizes.pool_scaling is pool_scaling
    assert pool_scaling({1: [2.0, 3.0, 10.0], 2: [1.5]})[2].speedup == pytest.approx(2.0)


def _png_pixels_vary(path: Path) -> int:
    """How many distinct byte values the PNG's decoded rows hold (1-2: a blank page)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(idat)))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_the_report_renders_in_a_headless_browser(runs, unlike_run, tmp_path):
    # Three like runs and an unlike one (threads, another param); each with a retried task
    # (its error text in the page) and a task shorter than a pixel (drawn MIN_BAR wide).
    out = tmp_path / "report.html"
    assert run_cli("report", *map(str, runs), str(unlike_run), "-o", str(out), cwd=tmp_path).returncode == 0
    profile = tmp_path / "chromium-profile"
    env = {**os.environ, "HOME": str(tmp_path)}
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
              f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run(common + ["--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120, env=env)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for task_id in ("extract", "clean_a", "load_warehouse", "publish", "fx_rates", "noop"):
        assert task_id in dom.stdout
    assert dom.stdout.count("<svg") >= 6
    assert SERVICE_ERROR in dom.stdout  # the retried attempt's error, as the browser parsed the page
    assert "Unlike runs" in dom.stdout and "Group 2 of 2" in dom.stdout
    widths = _bar_widths(dom.stdout, "noop")
    assert len(widths) == 2 * 4 and min(widths) >= MIN_BAR  # each run's timeline, and stacked
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line
               or "Failed to load resource" in line]
    assert not console, console
    shot = tmp_path / "report.png"
    screenshot = subprocess.run(common + ["--window-size=1300,1100", f"--screenshot={shot}", out.as_uri()],
                                capture_output=True, text=True, timeout=120, env=env)
    assert screenshot.returncode == 0 and shot.is_file(), screenshot.stderr[-2000:]
    assert shot.stat().st_size > 20_000
    assert _png_pixels_vary(shot) > 20  # text, bars and colours: not a blank page


RESUMED = """
name: resumed critical
tasks:
  - id: slow
    plugin: shell
    config: {command: "sleep 1.0"}
  - id: flaky
    plugin: shell
    config: {command: "test -e fixed"}
  - id: after_flaky
    plugin: shell
    depends_on: [flaky]
    config: {command: "true"}
  - id: late_fail
    plugin: shell
    config: {command: "sleep 0.5; exit 3"}
"""


def _report_critical_path(html_text: str) -> tuple[list[str], float]:
    match = re.search(r'Critical path \(([\d.]+)s of run time[^<]*<span class="mono">([^<]*)</span>', html_text)
    assert match, "the report names no critical path"
    return match.group(2).split(" → "), float(match.group(1))


def test_plan_and_report_name_one_critical_path_for_a_resumed_run(tmp_path):
    # In the resumed run `slow` is reused (1 s, in the first run), `late_fail` fails again
    # after 0.5 s, `flaky` now passes at once. One rule weighs them for both commands: the
    # time this run spent, so the reused task weighs nothing and the failed one its 0.5 s.
    (tmp_path / "flow.yaml").write_text(textwrap.dedent(RESUMED))
    assert run_cli("run", "flow.yaml", "--keep-going", cwd=tmp_path).returncode == 1
    first = latest_run_dir(tmp_path / "logs")
    (tmp_path / "fixed").write_text("")
    resumed = run_cli("resume", str(first), "--keep-going", cwd=tmp_path)
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    second = latest_run_dir(tmp_path / "logs")
    assert json.loads((second / "run.json").read_text())["reused"] == ["slow"]

    plan = json.loads(run_cli("plan", "flow.yaml", "--json", cwd=tmp_path).stdout)["critical_path"]
    report = run_cli("report", str(second), "-o", str(tmp_path / "r.html"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    path, seconds = _report_critical_path((tmp_path / "r.html").read_text())
    assert plan["tasks"] == path == ["late_fail"]
    assert plan["seconds"] == pytest.approx(seconds, abs=0.01)
    text = run_cli("plan", "flow.yaml", cwd=tmp_path).stdout
    assert "critical path (last run's durations): late_fail (" in text


def test_the_weight_rule():
    from opflow.rundir.history import task_weights

    records = {"ran": {"status": "succeeded", "duration_s": 2.0}, "broke": {"status": "failed", "duration_s": 1.5},
               "reused": {"status": "succeeded", "duration_s": 9.0, "reused": True},
               "skipped": {"status": "skipped", "duration_s": None}, "odd": {"status": "failed"}}
    assert task_weights(records) == {"ran": 2.0, "broke": 1.5}  # records from before run_s: duration_s
    # run_s where the record has it: the attempts' time, not the waits and backoff in duration_s.
    records = {"flaky": {"status": "succeeded", "duration_s": 7.95, "run_s": 0.002, "wait_s": 5.9, "backoff_s": 2.0},
               "never": {"status": "cancelled", "duration_s": None, "run_s": None}}
    assert task_weights(records) == {"flaky": 0.002}


# -- a hostile folder or run directory: the report writes as the run dir writes -----------
@pytest.fixture
def failed_run(tmp_path):
    """One run of one failing task that printed a line to its log."""
    (tmp_path / "one.yaml").write_text('name: one\ntasks:\n  - id: a\n    plugin: shell\n'
                                       '    config: {command: "echo visible-log-line; exit 3"}\n')
    assert run_cli("run", "one.yaml", cwd=tmp_path).returncode == 1
    return latest_run_dir(tmp_path / "logs")


@pytest.mark.parametrize("where", ["beside -o", "in the run dir"])
def test_the_report_never_writes_through_a_symlink_at_a_temporary_name(where, failed_run, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "shared" / "compare.html" if where == "beside -o" else failed_run / "report.html"
    out.parent.mkdir(exist_ok=True)
    (out.parent / f".{out.name}.tmp").symlink_to(victim)  # the name the unfixed report wrote to
    args = ["-o", str(out)] if where == "beside -o" else []
    proc = run_cli("report", str(failed_run), *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert victim.read_text() == "precious"
    assert "visible-log-line" in out.read_text()
    assert sorted(p.name for p in out.parent.iterdir() if out.name in p.name) == [f".{out.name}.tmp", out.name]


def test_the_report_is_owner_only_whatever_the_umask(failed_run, tmp_path):
    old = os.umask(0o022)
    try:
        assert run_cli("report", str(failed_run), cwd=tmp_path).returncode == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((failed_run / "report.html").stat().st_mode) == 0o600


def test_a_task_log_that_links_out_of_the_run_dir_is_never_copied(failed_run, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-LINE\n")
    log = failed_run / "tasks" / "a.log"
    log.unlink()
    log.symlink_to(secret)
    proc = run_cli("report", str(failed_run), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    page = (failed_run / "report.html").read_text()
    assert "TOP-SECRET-LINE" not in page and ">a</b>" in page  # the failure is there, without the log
    shown = run_cli("show", str(failed_run), "a", cwd=tmp_path)
    assert shown.returncode == 0 and "TOP-SECRET-LINE" not in shown.stdout


def test_no_field_of_run_json_reaches_the_page_unescaped(failed_run, tmp_path):
    doc = json.loads((failed_run / "run.json").read_text())
    doc["workers"] = "<script>alert(1)</script>"
    (failed_run / "run.json").write_text(json.dumps(doc))
    proc = run_cli("report", str(failed_run), cwd=tmp_path)
    assert proc.returncode == 2 and "workers" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (failed_run / "report.html").exists()
    doc["workers"] = 2
    doc["executor"] = doc["workflow"] = doc["started_at"] = "<script>alert(1)</script>"
    (failed_run / "run.json").write_text(json.dumps(doc))
    proc = run_cli("report", str(failed_run), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "<script" not in (failed_run / "report.html").read_text().lower()
