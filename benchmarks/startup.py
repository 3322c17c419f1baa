"""Start-up: `opflow validate` and a one-task shell `opflow run` as whole processes.

Each command is a fresh interpreter, timed from spawn to exit, alternating with
floors measured in the same run: `python -c pass`, `python -c "import
opflow.cli.commands"`, the libraries a run cannot do without (asyncio, PyYAML, click,
networkx for the layers), and a raw pool: a ProcessPoolExecutor with opflow's
start method running one `sh -c true` (the floor of "one task on a pool" as a
whole process). Then `python -X importtime` names the imports that cost most.
Goals (issue 8): a one-task run under 0.35 s wall; validate < 0.45 s.

Timed as an installed opflow runs: from cached bytecode. PYTHONDONTWRITEBYTECODE
is dropped for the timed commands and one untimed round writes the caches
(`__pycache__/`, git-ignored); else every process compiles the opflow modules it
imports from source each time (measured: 0.1 s of CPU in the coordinator, 0.05 s
in the forkserver, of a one-task run).

With `--baseline DIR` (another opflow checkout: `git worktree add` or `git archive`
of an older commit), its validate and run are timed in the same alternation, the
same console script importing opflow from DIR (PYTHONPATH): a before/after in one run.

    python benchmarks/startup.py [--reps 10] [--baseline DIR]
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402
from opflow.backends.mp_context import start_method  # noqa: E402

GOALS = {"opflow validate": 0.45, "opflow run (1 shell task)": 0.35}


def opflow_command() -> list[str]:
    """The installed console script, as a user types it; `python -m opflow` where there is none."""
    script = Path(sys.executable).with_name("opflow")
    if script.exists():
        return [str(script)]
    found = shutil.which("opflow")
    return [found] if found else [sys.executable, "-m", "opflow"]


def timed(command: list[str], cwd: Path, env: dict | None = None) -> dict:
    cpu_before = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=120, env=env)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')}")
    _reap_orphans()
    return {"wall": wall, "cpu": _children_cpu() - cpu_before}


def _become_subreaper() -> bool:
    """Adopt the commands' orphans (the forkserver, the resource tracker), so that
    their CPU time counts too: on a shared machine CPU seconds drift less than wall."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _reap_orphans() -> None:
    """Wait for the helpers a command left (they exit once it has), bounded."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.005)


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


RAW_POOL = """
import multiprocessing, subprocess
from concurrent.futures import ProcessPoolExecutor
with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context({method!r})) as pool:
    pool.submit(subprocess.run, ["sh", "-c", "true"], check=True).result()
"""

RUN_IMPORTS = "import opflow.cli.commands, opflow.api, opflow.worker.execute, opflow.backends.process"


def import_costs(top: int) -> list[list]:
    """The `top` costliest top-level packages (cumulative ms) of what `opflow run` imports.

    Timed in one interpreter (`-c`), since -X importtime would also time the pool's workers.
    """
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", RUN_IMPORTS],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    costs: dict[str, int] = {}
    total = 0
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self_us, cumulative, name = line.split(":", 1)[1].split("|")
        level = (len(name) - len(name.lstrip())) // 2
        name = name.strip()
        if level == 0:
            total += int(cumulative)
        if "." not in name and not name.startswith(("opflow", "__editable__")):
            costs[name] = max(costs.get(name, 0), int(cumulative))
    ranked = sorted(costs.items(), key=lambda item: -item[1])[:top]
    return [[name, round(us / 1000, 1)] for name, us in ranked] + [["(all imports)", round(total / 1000, 1)]]


def main(argv=None) -> int:
    parser = _bench.base_parser(__doc__.splitlines()[0], reps=10)
    parser.add_argument("--baseline", type=Path, default=None, metavar="DIR",
                        help="another opflow checkout, timed alongside (its opflow/ imported via PYTHONPATH)")
    args = parser.parse_args(argv)
    work = _bench.prepare(args)
    folder = work / "startup"
    folder.mkdir(exist_ok=True)
    flow = _bench.write_tasks_yaml(folder / "one.yaml", "bench startup",
                                   [{"id": "hello", "plugin": "shell", "config": {"command": "true"}}])
    opflow = opflow_command()
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import opflow.cli.commands'": [sys.executable, "-c", "import opflow.cli.commands"],
        "python -c 'import asyncio, yaml, click, networkx'": [sys.executable, "-c",
                                                             "import asyncio, yaml, click, networkx"],
        "raw pool (1 shell task)": [sys.executable, "-c", RAW_POOL.format(method=start_method())],
        "opflow validate": [*opflow, "validate", str(flow)],
        "opflow run (1 shell task)": [*opflow, "run", str(flow), "-q", "--log-dir", str(args.log_dir)],
    }
    cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    envs = {name: cached for name in commands}
    if args.baseline is not None:
        baseline = args.baseline.resolve()
        if not (baseline / "opflow" / "__init__.py").is_file():
            raise SystemExit(f"--baseline {baseline}: no opflow/ package there")
        for name in ("opflow validate", "opflow run (1 shell task)"):
            commands[f"{name}, baseline"] = commands[name]
            envs[f"{name}, baseline"] = {**cached, "PYTHONPATH": str(baseline)}
    adopted = _become_subreaper()
    _bench.say(f"start-up: {' '.join(opflow)}")
    env_cwd = folder  # no workers/ folder here: discovery scans nothing extra
    for name, command in commands.items():  # untimed: writes the bytecode caches
        timed(command, env_cwd, envs[name])
    results = _bench.alternate(args.reps, {name: (lambda c=c, e=envs[name]: timed(c, env_cwd, e))
                                           for name, c in commands.items()})
    if not args.keep_logs:
        for run_dir in args.log_dir.glob("*-bench-startup*"):
            shutil.rmtree(run_dir, ignore_errors=True)
    floor = _bench.med(results["python -c pass"])
    cpu_header = "cpu s, all its processes (median)" if adopted else "cpu s (median; helpers not counted)"
    headers = ["command", "wall s (median)", "wall min–max", "minus bare python s", cpu_header, "goal s", "verdict"]
    rows = []
    for name, samples in results.items():
        wall = _bench.med(samples)
        goal = GOALS.get(name.removesuffix(", baseline"))
        verdict = "" if goal is None else ("met" if wall < goal else "NOT met")
        rows.append([name, wall, _bench.spread([s["wall"] for s in samples]), round(wall - floor, 3),
                     _bench.med(samples, "cpu"), goal if goal is not None else "", verdict])
    _bench.print_machine()
    print(f"Start-up as whole processes ({' '.join(os.path.basename(p) for p in opflow)}), "
          f"medians of {args.reps} alternating reps\n")
    print(_bench.markdown_table(headers, rows))
    print(f"\nCostliest imports of `{RUN_IMPORTS}` (what `opflow run` loads; python -X importtime, "
          "one sample, cumulative ms):\n")
    print(_bench.markdown_table(["package", "ms"], import_costs(12)))
    _bench.write_csv(args.out / "startup.csv", headers, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
