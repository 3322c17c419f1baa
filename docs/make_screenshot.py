"""Make docs/report.png: `opflow report` of the shipped example, in headless chromium.

    python docs/make_screenshot.py [--out docs/report.png] [--keep DIR]

Runs examples/city_report.yaml four times (every task really runs: --no-cache), its run
directories in a temporary log dir (never under examples/), then `opflow report` of the
four runs and a screenshot of the page:

- at 1 worker twice and at 2 workers: like runs, compared by median wall time;
- at 2 workers on threads with --param min_score=90: an unlike run, which the report flags
  and compares apart;
- each with --param outage=FILE, so fetch_rates fails its first call with a transient
  `ConnectionError ... 503` and its retry succeeds (the report lists the attempt and its
  error); `announce` and the one-row tasks take well under a pixel and are drawn at the
  minimum width.

Needs chromium (Debian: apt-get install -y chromium). --keep DIR keeps the log dir and the
HTML page there.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "city_report.yaml"
RUNS = [  # (workers, extra arguments)
    (1, []),
    (2, []),
    (1, []),
    (2, ["--executor", "thread", "--param", "min_score=90"]),
]


def opflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "opflow", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "report.png")
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs and the page in this folder")
    parser.add_argument("--size", default="1300,1400", help="the browser window, WIDTH,HEIGHT (default: %(default)s)")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("chromium is not installed (Debian: apt-get install -y chromium)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="opflow-screenshot-"))
    try:
        logs, outage = work / "logs", work / "outage"
        run_dirs = []
        for workers, extra in RUNS:
            proc = opflow("run", str(EXAMPLE), "--workers", str(workers), "--no-cache", "--log-dir", str(logs),
                          "--param", f"outage={outage}", "--quiet", "--json", *extra, cwd=REPO)
            if proc.returncode != 0:
                print(f"opflow run failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}", file=sys.stderr)
                return 1
            run_dirs.append(json.loads(proc.stdout)["run_dir"])
        page = work / "report.html"
        proc = opflow("report", *run_dirs, "-o", str(page), cwd=REPO)
        if proc.returncode != 0:
            print(f"opflow report failed:\n{proc.stderr}", file=sys.stderr)
            return 1
        shot = work / "report.png"
        env = {**os.environ, "HOME": str(work)}
        proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                               "--hide-scrollbars", f"--user-data-dir={work / 'profile'}",
                               f"--window-size={args.size}", f"--screenshot={shot}", page.as_uri()],
                              capture_output=True, text=True, timeout=120, env=env)
        if proc.returncode != 0 or not shot.is_file():
            print(f"chromium made no screenshot:\n{proc.stderr[-2000:]}", file=sys.stderr)
            return 1
        shutil.copy(shot, args.out)
        print(f"{args.out}: the report of {len(run_dirs)} runs of {EXAMPLE.relative_to(REPO)}")
        if args.keep:
            shutil.copytree(work, args.keep, dirs_exist_ok=True, ignore=shutil.ignore_patterns("profile"))
            print(f"runs and page kept in {args.keep}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
