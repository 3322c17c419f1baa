"""The command line: click commands, output, exit codes. Imported only by the entry points
(__main__.py for `python -m opflow`, cli/launch.py for the `opflow` console script).

Exit codes: 0 all tasks succeeded; 1 a task failed; 2 invalid workflow or usage;
3 another run of the workflow holds the lock (0 with --if-running skip); 130 SIGINT; 143 SIGTERM.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

import click

from opflow import knobs
from opflow._version import __version__
from opflow.dispatch import interrupts
from opflow.backends import EXECUTORS
from opflow.errors import OpflowError, RunSkipped, UsageError, WorkflowError
from opflow.rundir.lock import IF_RUNNING
from opflow.workflow.limits import MAX_WORKERS
from opflow.words import plural, wrap_list



def _fail(error: OpflowError) -> None:
    for line in str(error).splitlines():
        click.echo(f"opflow: error: {line}" if not isinstance(error, WorkflowError) else line, err=True)
    if isinstance(error, WorkflowError):
        count = len(error.problems)
        click.echo(f"opflow: {count} problem{'s' if count != 1 else ''} found; nothing was run", err=True)
    sys.exit(error.exit_code)


#: The distribution's name on PyPI (`opflow` there is an unrelated project's).
DISTRIBUTION = "opflow-runner"


def version_line() -> str:
    """`--version`, as `pip --version` says it: distribution, version, where, which Python."""
    package = Path(__file__).resolve().parents[1]  # opflow/, this file being opflow/cli/commands.py
    python = ".".join(map(str, sys.version_info[:3]))
    return f"{DISTRIBUTION} {__version__} from {package} (python {python})"


def _print_version(ctx, param, value) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(version_line())
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the distribution, its version, where it is installed and the Python, then exit.")
def main() -> None:
    """Run YAML workflows of tasks on a process pool, with an audit trail."""


def _run_options(command):
    """The options `run` and `resume` share."""
    options = [
        click.option("--workers", "-w", "-j", type=click.IntRange(min=0, max=MAX_WORKERS), default=None,
                     help="Pool size; 0: the CPUs this process may use (default: $OPFLOW_WORKERS, else 0)."),
        click.option("--executor", type=click.Choice(EXECUTORS), default=None,
                     help="Where tasks run: process pool (default), thread pool, inline in the coordinator "
                          "(debugging), or a Dask cluster (pip install 'opflow-runner[dask]'). Default: $OPFLOW_EXECUTOR."),
        click.option("--timeout", "run_timeout", type=_Duration(), default=None, metavar="DURATION",
                     help="Stop the whole run after this long (90, 90s, 5m, 1h): running tasks are killed, "
                          "the rest cancelled; exit 1."),
        click.option("--no-cache", is_flag=True, help="Run every task, even one whose cached result could be reused."),
        click.option("--scheduler", metavar="ADDRESS", default=None,
                     help="With --executor dask: a running scheduler (tcp://host:8786); default: a LocalCluster."),
        click.option("--keep-going", is_flag=True, help="After a failure, still run every task whose upstream succeeded."),
        click.option("--lock/--no-lock", default=True, show_default=True,
                     help="Refuse to start while another run of this workflow (same log dir) is in progress."),
        click.option("--if-running", type=click.Choice(IF_RUNNING), default="fail", show_default=True,
                     help="While another run of this workflow holds the lock: fail (exit 3), skip (exit 0, "
                          "one line) or wait for it to end."),
        click.option("--ping", metavar="URL", default=None,
                     help="Dead-man's switch (healthchecks.io style): GET URL/start, then URL or URL/fail; "
                          "best effort, 10 s timeout."),
        click.option("--metrics-file", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="PATH",
                     help="At the end, write the run's metrics there in the Prometheus text format (atomic)."),
        click.option("--keep-runs", type=click.IntRange(min=1), default=None, metavar="N",
                     help="After the run, delete all but the newest N run directories of this workflow."),
        click.option("--json", "as_json", is_flag=True, help="Print only run.json on stdout; progress goes to stderr."),
        click.option("--quiet", "-q", is_flag=True, help="Print only failures."),
        click.option("--color/--no-color", "colour", default=None,
                     help="Colour the console output, or not (default: $NO_COLOR, $FORCE_COLOR, else on a terminal)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


class _Duration(click.ParamType):
    name = "duration"

    def convert(self, value, param, ctx):
        from opflow.words import parse_duration

        if isinstance(value, (int, float)):
            return float(value)
        seconds = parse_duration(value)
        if seconds is None or seconds <= 0:
            self.fail(f"{value!r} is not a duration > 0 (write 90, 90s, 5m or 1h)", param, ctx)
        return seconds


def _execute(start, *, as_json: bool, quiet: bool, colour: bool | None = None, **kwargs) -> None:
    """Run with console progress, print the outcome, exit with the run's code.

    `kwargs` are the flags given (None: not given), by the names of opflow.options.Options:
    `start` (opflow.run or opflow.resume) fills in the rest."""
    import asyncio  # here, not at the top: only run and resume need it

    from opflow.cli.progress import ConsoleProgress
    from opflow.cli.startup_gc import release_at_start

    interrupts.install()  # already, under the console script; again for CliRunner and python -m
    try:
        knobs.check()  # every OPFLOW_* value this run reads, before anything starts
        kwargs = {**kwargs, **_defaults_from_environment(kwargs)}
    except OpflowError as error:
        _fail(error)
    document_fd = _stdout_for_document_only() if as_json else None
    stream = sys.stderr if as_json else sys.stdout
    progress = ConsoleProgress(stream, tty=stream.isatty() and knobs.read("TERM") != "dumb", quiet=quiet, colour=colour)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        result = start(reporters=[progress, release_at_start()], **kwargs)
    except RunSkipped as skipped:  # --if-running skip: not an error; one line, exit 0
        if as_json:  # stdout holds a document whatever happens: here, no run's
            document = {"file": str(kwargs.get("path") or kwargs.get("run_dir")), "status": "skipped",
                        "message": str(skipped)}
            _write_document(document_fd, (json.dumps(document, indent=2) + "\n").encode("utf-8"))
        click.echo(f"opflow: {skipped}", err=True)
        sys.exit(skipped.exit_code)
    except OpflowError as error:
        if as_json:  # stdout holds a document whatever happens: here, validate --json's
            problems = json.dumps(_problems_document(kwargs.get("path") or kwargs.get("run_dir"), error), indent=2)
            _write_document(document_fd, (problems + "\n").encode("utf-8"))
        _fail(error)
    except (Exception, asyncio.CancelledError) as error:
        # A signal while the run was being prepared (or finishing) cancels it, or
        # breaks what was starting (a Dask worker that got the SIGTERM too): it
        # left no run directory or a complete one; the exit code says why.
        signum = interrupts.received()
        if not isinstance(error, asyncio.CancelledError) and signum is None:
            raise  # our bug: a traceback
        signum = signum or signal.SIGINT
        click.echo(f"opflow: {signal.Signals(signum).name}: interrupted; nothing more was run", err=True)
        sys.exit(128 + signum)
    if as_json:
        from opflow.rundir.layout import RUN_JSON

        document = (result.run_dir / RUN_JSON).read_bytes()  # exactly as written, not parsed and printed again
        _write_document(document_fd, document)
    elif not quiet:
        click.echo(f"record: {result.run_dir}")
    elif result.exit_code != 0:
        click.echo(f"record: {result.run_dir}", err=True)
    sys.exit(result.exit_code)


def _write_document(document_fd: int | None, document: bytes) -> None:
    """--json: the one document on stdout (`document_fd`: see _stdout_for_document_only)."""
    if document_fd is None:
        click.echo(document.decode("utf-8"), nl=False)
    else:
        with os.fdopen(document_fd, "wb") as out:
            out.write(document)


def _problems_document(file, error: OpflowError) -> dict:
    """What `validate --json` (and `run --json`) print for a workflow that cannot run."""
    problems = [{"path": p.path, "line": p.line, "task_id": p.task_id, "message": p.message}
                for p in getattr(error, "problems", [])] or [{"message": str(error)}]
    return {"file": str(file), "ok": False, "problems": problems}


def _defaults_from_environment(given: dict) -> dict:
    """OPFLOW_WORKERS, OPFLOW_EXECUTOR and OPFLOW_LOG_DIR, for those flags of the command
    not given (knobs.py)."""
    defaults = {}
    if "log_dir" in given and given["log_dir"] is None:
        defaults["log_dir"] = knobs.read("OPFLOW_LOG_DIR")
    if given.get("workers") is None:
        defaults["workers"] = knobs.read("OPFLOW_WORKERS")
        if defaults["workers"] is not None and defaults["workers"] > MAX_WORKERS:
            raise knobs.KnobError(f"OPFLOW_WORKERS={defaults['workers']}: at most {MAX_WORKERS}")
    if given.get("executor") is None:
        defaults["executor"] = knobs.read("OPFLOW_EXECUTOR")
        if defaults["executor"] is not None and defaults["executor"] not in EXECUTORS:
            raise knobs.KnobError(f"OPFLOW_EXECUTOR={defaults['executor']!r}: not one of {', '.join(EXECUTORS)}")
    return {name: value for name, value in defaults.items() if value is not None}


def _log_dir(given: Path | None) -> Path:
    """--log-dir as given, else $OPFLOW_LOG_DIR, else ./logs (the commands that read runs)."""
    if given is not None:
        return given
    from_environment = knobs.read("OPFLOW_LOG_DIR")
    return Path(from_environment) if from_environment is not None else Path("logs")


def _stdout_for_document_only() -> int | None:
    """With --json, stdout holds only run.json: point fd 1 at stderr for the run.

    Tasks write to fd 1 (a plugin's print, in a worker process that inherits it),
    so swapping `sys.stdout` alone would not do. Returns a descriptor on the
    original stdout, for the document (None when stdout is not a real file, as
    under click's test runner: then tasks' output cannot reach it anyway).
    """
    try:
        if sys.stdout.fileno() != 1:
            return None
    except (AttributeError, OSError, ValueError):
        return None
    sys.stdout.flush()
    original = os.dup(1)
    os.dup2(2, 1)
    return original


#: The environment variable that gives each option a default (knobs.py); such a default beats the config file.
_FROM_ENVIRONMENT = {"workers": "OPFLOW_WORKERS", "executor": "OPFLOW_EXECUTOR", "log_dir": "OPFLOW_LOG_DIR"}


def _config_file_options(command):
    """`--config PATH` and `--no-config` for `run`: the options not given on the command line
    (nor by the environment) take their value from the config file (cli/config_file.py)."""
    import functools

    @functools.wraps(command)
    def with_config_file(*args, config, no_config, **kwargs):
        from click.core import ParameterSource

        from opflow.cli.config_file import find_config, read_config

        ctx = click.get_current_context()
        if config is not None and no_config:
            _fail(UsageError("--config and --no-config: give one or the other"))
        path = None if no_config else (config or find_config(kwargs["file"]))
        if path is not None:
            try:
                wanted = {name for name in kwargs if ctx.get_parameter_source(name) is not ParameterSource.COMMANDLINE
                          and not (name in _FROM_ENVIRONMENT and knobs.read(_FROM_ENVIRONMENT[name]) is not None)}
                kwargs.update(read_config(Path(path), ctx, wanted))
            except OpflowError as error:
                _fail(error)
        return command(*args, **kwargs)

    with_config_file = click.option(
        "--no-config", is_flag=True, help="Read no config file (opflow.toml, [tool.opflow]).")(with_config_file)
    return click.option(
        "--config", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None, metavar="PATH",
        help="Defaults for these options from this TOML file (default: opflow.toml, else pyproject.toml's "
             "[tool.opflow], beside FILE).")(with_config_file)


EXIT_CODES_HELP = """\b
Exit codes:
  0    every task succeeded
  1    a task failed (or was skipped or cancelled because of a failure)
  2    invalid workflow or usage: nothing ran
  3    another run of this workflow holds the lock: nothing ran (--if-running skip: 0)
  130  interrupted by Ctrl-C (SIGINT)
  143  terminated by SIGTERM"""


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Each run makes a new directory under this one (default: $OPFLOW_LOG_DIR, else ./logs).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Override a declared workflow param (repeatable). VALUE is read as a YAML scalar: 5 is a number, "
                   "true a boolean; it must match the type of the param's default (a string param keeps 007 as "
                   "written).")
@click.option("--resume", is_flag=True,
              help="Rerun only what did not succeed in the latest run of this workflow under --log-dir.")
@_run_options
@_config_file_options
def run(file, log_dir, params, resume, workers, executor, run_timeout, no_cache, scheduler, keep_going, lock,
        if_running, ping, metrics_file, keep_runs, as_json, quiet, colour):
    """Run the workflow in FILE.

    Defaults for these options may be kept in opflow.toml, or in [tool.opflow] of
    pyproject.toml, beside FILE (keys: the long option names): see docs/cli.md.
    """
    from opflow.api import run as run_workflow
    from opflow.workflow.params import parse_cli_params

    try:
        overrides = parse_cli_params(params)
    except OpflowError as error:
        _fail(error)
    _execute(run_workflow, as_json=as_json, quiet=quiet, path=file, log_dir=log_dir, params=overrides or None,
             resume=resume, workers=workers, executor=executor, scheduler=scheduler,
             keep_going=keep_going, lock=lock, keep_runs=keep_runs, timeout=run_timeout, cache=not no_cache,
             if_running=if_running, ping=ping, metrics_file=metrics_file, colour=colour)


@main.command(epilog=EXIT_CODES_HELP, short_help="Rerun what did not succeed in RUN_DIR, reusing the rest.")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@_run_options
def resume(run_dir, workers, executor, run_timeout, no_cache, scheduler, keep_going, lock, if_running, ping,
           metrics_file, keep_runs, as_json, quiet, colour):
    """Rerun what did not succeed in RUN_DIR, reusing the results of what did.

    Runs that run's workflow (the copy kept in RUN_DIR, checked against its
    sha256) with its params. Refuses a RUN_DIR that others may write. A recorded
    result is reused only if the task, its upstream tasks and the params are
    unchanged; what changed is listed in the new run's run.json (resume_changes).
    """
    from opflow.api import resume as resume_run

    _execute(resume_run, as_json=as_json, quiet=quiet, run_dir=run_dir, workers=workers, executor=executor,
             scheduler=scheduler, keep_going=keep_going, lock=lock, keep_runs=keep_runs, timeout=run_timeout,
             cache=not no_cache, if_running=if_running, ping=ping, metrics_file=metrics_file, colour=colour)


def _echo_json(document) -> None:
    click.echo(json.dumps(document, indent=2, default=str))


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document (problems too, still exit 2).")
def validate(file, as_json):
    """Check FILE; run nothing. Exit 0 when valid, 2 with every problem otherwise."""
    from opflow.workflow.loading import load
    from opflow.workflow.plan import build_plan

    try:
        workflow, _ = load(file)
    except OpflowError as error:
        if as_json:
            _echo_json(_problems_document(file, error))
            sys.exit(error.exit_code)
        _fail(error)
    layers = build_plan(workflow).layers
    if as_json:
        _echo_json({"file": str(file), "ok": True, "workflow": workflow.name, "tasks": len(workflow.tasks),
                    "layers": len(layers)})
        return
    click.echo(f"{file}: ok: workflow '{workflow.name}', {plural(len(workflow.tasks), 'task')} "
               f"in {plural(len(layers), 'layer')}")


@main.command(short_help="Print FILE's layers and critical path; --explain, --predict.")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the earlier runs are (durations, cache, resume; default: $OPFLOW_LOG_DIR, else ./logs).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Override a declared workflow param (repeatable), as `opflow run --param` does.")
@click.option("--explain", is_flag=True,
              help="For each task: would a run now reuse it (cache, or --resume) or run it, and why.")
@click.option("--resume", is_flag=True, help="With --explain: explain `opflow run --resume` (the latest run).")
@click.option("--no-cache", is_flag=True, help="With --explain: explain `opflow run --no-cache`.")
@click.option("--predict", "predict_sizes", default=None, metavar="N,N,...",
              help="The wall time each pool size would take (1,2,4,8), simulated from the latest run's durations.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document: layers and critical path.")
def plan(file, log_dir, params, explain, resume, no_cache, predict_sizes, as_json):
    """Print the topological layers of FILE (tasks in one layer can run at once).

    --explain says, for each task, whether a run now would reuse it or run it and why;
    --predict the wall time of each pool size, from the latest run's task durations.
    """
    from opflow.rundir.history import last_durations
    from opflow.workflow.loading import load
    from opflow.workflow.params import parse_cli_params
    from opflow.workflow.plan import build_plan

    try:
        log_dir = _log_dir(log_dir)
        if (resume or no_cache) and not explain:
            raise UsageError(f"{'--resume' if resume else '--no-cache'} goes with --explain")
        if explain and predict_sizes is not None:
            raise UsageError("--explain and --predict: give one or the other")
        sizes = _pool_sizes(predict_sizes, "--predict") if predict_sizes is not None else None
        workflow, plugins = load(file, parse_cli_params(params) or None)
        if explain:
            return _print_explanations(workflow, plugins, log_dir, resume, not no_cache, as_json)
        if sizes is not None:
            return _print_prediction(workflow, log_dir, sizes, as_json)
    except OpflowError as error:
        _fail(error)
    the_plan = build_plan(workflow)
    if as_json:
        durations = last_durations(log_dir, workflow)
        critical = None
        if durations:
            path, total = the_plan.critical_path(durations)
            critical = {"tasks": list(path), "seconds": round(total, 6)}
        _echo_json({"workflow": workflow.name, "tasks": len(workflow.tasks),
                    "layers": [list(layer) for layer in the_plan.layers], "critical_path": critical})
        return
    click.echo(f"workflow '{workflow.name}': {plural(len(workflow.tasks), 'task')}")
    # A layer of hundreds of tasks is wrapped to the terminal, not one endless line.
    width = shutil.get_terminal_size().columns
    for n, layer in enumerate(the_plan.layers, 1):
        for line in wrap_list(f"layer {n}: ", list(layer), width):
            click.echo(line)
    durations = last_durations(log_dir, workflow)
    if durations:
        path, total = the_plan.critical_path(durations)
        click.echo(f"critical path (last run's durations): {' -> '.join(path)} ({total:.2f}s)")


def _print_explanations(workflow, plugins, log_dir: Path, resume: bool, cache: bool, as_json: bool) -> None:
    from opflow.dispatch.explain import explain

    verdicts = explain(workflow, plugins, log_dir, resume=resume, cache=cache)
    if as_json:
        _echo_json({"workflow": workflow.name, "resume": resume, "cache": cache,
                    "tasks": [{"task_id": v.task_id, "verdict": "reuse" if v.reuse else "run", "reason": v.reason}
                              for v in verdicts]})
        return
    reused = sum(v.reuse for v in verdicts)
    click.echo(f"workflow '{workflow.name}': {len(verdicts) - reused} to run, {reused} to reuse"
               + (" (--resume of the latest run)" if resume else ""))
    width = max((len(v.task_id) for v in verdicts), default=0)
    for v in verdicts:
        click.echo(f"  {'reuse' if v.reuse else 'run':<5}  {v.task_id:<{width}}  {v.reason}")


def _pool_sizes(text: str, option: str) -> list[int]:
    """`1,2,4,8` -> [1, 2, 4, 8] (sorted, once each), or a UsageError naming the option."""
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        sizes = []
    if not sizes or sizes[0] < 1 or sizes[-1] > MAX_WORKERS:
        raise UsageError(f"{option} {text!r}: give pool sizes from 1 to {MAX_WORKERS}, comma-separated (1,2,4,8)")
    return sizes


def _print_prediction(workflow, log_dir: Path, sizes: list[int], as_json: bool) -> None:
    from opflow.cli.bench import prediction_document, prediction_lines
    from opflow.rundir.history import last_run_times

    times = last_run_times(log_dir, workflow)
    if times is None:
        raise UsageError(f"--predict: no earlier run of '{workflow.name}' ({workflow.path}) under {log_dir} "
                         "to take durations from; run it once first")
    document = prediction_document(workflow, times, sizes)
    if as_json:
        _echo_json(document)
        return
    for line in prediction_lines(document):
        click.echo(line)


@main.command(short_help="Time FILE at several pool sizes, beside the predicted times.")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--sizes", default=None, metavar="N,N,...",
              help="Pool sizes to time (default: 1, 2, 4, ... up to the CPUs this process may use).")
@click.option("--reps", type=click.IntRange(min=1, max=100), default=3, show_default=True,
              help="Runs at each size; the median is what counts.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Override a declared workflow param (repeatable), passed to every run.")
@click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the runs go (default: $OPFLOW_LOG_DIR, else ./logs).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write `opflow report` of every run to this HTML file.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document; progress goes to stderr.")
def bench(file, sizes, reps, params, log_dir, output, as_json):
    """Run FILE --reps times at each pool size, every task really running each time
    (no cache, no resume), and print the median wall time, spread, speedup and
    efficiency of each size beside the times `opflow plan --predict` gives."""
    import asyncio

    from opflow.cli.bench import bench_lines, machine_info, run_bench
    from opflow.workflow.params import parse_cli_params

    interrupts.install()
    try:
        knobs.check()
        log_dir = _log_dir(log_dir)
        if sizes is None:
            usable = machine_info()["usable_cpus"] or 1
            sizes = ",".join(str(2 ** k) for k in range(usable.bit_length()) if 2 ** k <= usable)
        sizes = _pool_sizes(sizes, "--sizes")
        document = run_bench(file, sizes, reps, params=parse_cli_params(params) or None, log_dir=log_dir,
                             say=lambda line: click.echo(f"bench: {line}", err=True))
        if document.get("interrupted"):
            click.echo("opflow: bench interrupted; nothing more was run", err=True)
            sys.exit(document["exit_code"])
        if output is not None:
            from opflow.rundir.report import write_report

            document["report"] = str(write_report([r["run_dir"] for r in document["runs"]], output))
    except OpflowError as error:
        _fail(error)
    except asyncio.CancelledError:  # a signal while a run was starting or ending: as `run` says it
        signum = interrupts.received() or signal.SIGINT
        click.echo(f"opflow: {signal.Signals(signum).name}: bench interrupted; nothing more was run", err=True)
        sys.exit(128 + signum)
    if as_json:
        _echo_json(document)
    else:
        for line in bench_lines(document):
            click.echo(line)
        if output is not None:
            click.echo(f"report: {document['report']}")
    sys.exit(1 if document["failed_runs"] else 0)


@main.command(short_help="List plugins: built-ins, entry points, workers/*.py.")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of plugins.")
def plugins(file, as_json):
    """List available plugins: built-ins, entry points, and workers/*.py (here, or beside FILE)."""
    from opflow.plugins import discover_plugins, worker_dirs

    if file is not None and not file.is_file():
        _fail(UsageError(f"{file}: no such file" if not file.exists() else f"{file}: not a workflow file"))
    refs, warnings = discover_plugins(worker_dirs(file.resolve().parent if file else None), describe=True)
    if as_json:
        _echo_json([{"name": name, "description": refs[name].description, "source": refs[name].source,
                     "target": refs[name].target} for name in sorted(refs)])
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
        return
    width = max(len(n) for n in refs)
    for name in sorted(refs):
        ref = refs[name]
        where = ref.source if ref.source != "file" else f"file {ref.target.rpartition(':')[0]}"
        click.echo(f"{name:<{width}}  {ref.description or '(no description)'}  [{where}]")
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)


@main.command(short_help="Print a JSON Schema of the workflow format.")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
def schema(file):
    """Print a JSON Schema (draft 2020-12) of the workflow format, plugin configs included.

    Plugins from workers/ beside FILE (or in the current folder) are included too.
    """
    from opflow.workflow.schema import workflow_schema

    click.echo(json.dumps(workflow_schema(file.resolve().parent if file else None), indent=2))


@main.command(short_help="Write a runnable example workflow and its CSV into DIRECTORY.")
@click.argument("directory", required=False, default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def init(directory, force):
    """Write a runnable example workflow (and its sample CSV) into DIRECTORY."""
    from opflow.cli.scaffold import write_example

    try:
        written = write_example(directory, force=force)
    except FileExistsError as exc:
        existing = exc.args[0]
        verb = "already exists" if len(existing) == 1 else "already exist"
        _fail(UsageError(f"{', '.join(str(p) for p in existing)} {verb}; use --force to overwrite"))
    except OpflowError as error:  # a symlink where a file goes
        _fail(error)
    except OSError as exc:
        _fail(UsageError(f"{directory}: cannot write there: {exc.strerror or exc}"))
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(f"next: opflow run {written[0]}")


@main.command(short_help="List past runs, newest first, crashed ones marked.")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the runs are (default: $OPFLOW_LOG_DIR, else ./logs).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def runs(file, log_dir, as_json):
    """List past runs (of FILE, if given), newest first: run dir, workflow, status,
    started, duration, task counts. A run whose coordinator died shows as crashed.
    A run whose run.json cannot be read is left out and named on stderr."""
    from opflow.rundir.runs import format_row, list_runs

    try:
        log_dir = _log_dir(log_dir)
    except OpflowError as error:
        _fail(error)
    skipped: list[str] = []
    rows = list_runs(log_dir, file, skipped)
    for why in skipped:
        click.echo(f"opflow: skipped {why}", err=True)
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo(f"no runs under {log_dir}" + (f" of {file}" if file else ""))
    for row in rows:
        click.echo(format_row(row))


@main.command(short_help="Show a run's summary, or one task's record and log.")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("task_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print run.json (or the task's record, with log_tail).")
def show(run_dir, task_id, as_json):
    """Show a run's summary, or one task's record with the end of its log and its result."""
    from opflow.rundir.runs import format_run, format_task, read_run, read_task

    try:
        if task_id is None:
            doc = read_run(run_dir)
            if as_json:
                _echo_json(doc)
            else:
                click.echo(format_run(run_dir, doc), nl=False)
            return
        record = read_task(run_dir, task_id)
    except OpflowError as error:
        _fail(error)
    if as_json:
        _echo_json(record)
    else:
        click.echo(format_task(record), nl=False)


@main.command(short_help="Write one HTML report of RUN_DIRS (several: compared).")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the HTML (default: report.html in the first run directory).")
def report(run_dirs, output):
    """Write one self-contained HTML report of RUN_DIRS (several runs are compared):
    timeline per worker, task graph, per-task wall/CPU/memory, failures."""
    from opflow.rundir.report import write_report

    try:
        path = write_report(list(run_dirs), output)
    except OpflowError as error:
        _fail(error)
    click.echo(f"report: {path}")


@main.command(short_help="Write RUN_DIR as a trace for Perfetto or chrome://tracing.")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "fmt", default="chrome-trace", show_default=True, metavar="FORMAT",
              help="The trace format (rundir/trace.py checks it): chrome-trace, Chrome's Trace Event JSON, "
                   "which Perfetto reads too.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write it (default: trace.json in RUN_DIR).")
def export(run_dir, fmt, output):
    """Write the run in RUN_DIR as a trace (ui.perfetto.dev, chrome://tracing): a track per
    worker process, a slice per attempt (failed ones red), queue waits and backoffs as slices."""
    from opflow.rundir.trace import write_trace

    try:
        path = write_trace(run_dir, output, fmt)
    except OpflowError as error:
        _fail(error)
    click.echo(f"trace: {path}")


@main.command(short_help="Print the completion script for bash, zsh or fish.")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell):
    """Print the shell completion script for SHELL (bash, zsh or fish).

    \b
    bash:  eval "$(opflow completion bash)"     in ~/.bashrc
    zsh:   eval "$(opflow completion zsh)"      in ~/.zshrc
    fish:  opflow completion fish > ~/.config/fish/completions/opflow.fish
    """
    from click.shell_completion import get_completion_class

    prog_name = "opflow"  # the console script: completion calls it, not `python -m opflow`
    complete_var = f"_{prog_name.upper()}_COMPLETE"  # click's own name for it
    completer = get_completion_class(shell)(main, {}, prog_name, complete_var)
    click.echo(completer.source())


def entry(prog_name: str | None = None) -> None:
    """Console-script entry point: Ctrl-C outside a run still exits 130, quietly."""
    try:
        main(prog_name=prog_name)
    except KeyboardInterrupt:
        click.echo("opflow: interrupted", err=True)
        sys.exit(130)
    except SystemExit as done:
        _exit_without_teardown(done)
        raise


def _exit_without_teardown(done: SystemExit) -> None:
    """Leave the process at once, the command's work done: the interpreter's own
    teardown frees every module a run imported (networkx alone is thousands of
    objects), which took 50-150 ms of a one-task run and frees nothing the OS
    does not. Everything that teardown does that matters still happens here:
    atexit handlers run, stdout and stderr are flushed. Returns (the caller exits
    normally) whenever that could change the outcome: a non-daemon thread still
    running (the interpreter would wait for it), an exit status that is not a
    number, or output that cannot be flushed (a closed pipe, reported as usual).
    """
    import atexit
    import threading

    code = done.code
    if code is not None and not isinstance(code, int):
        return  # a message: the interpreter prints it
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.current_thread()):
        return
    # atexit has no public "run them now"; _run_exitfuncs is what the interpreter calls.
    atexit._run_exitfuncs()  # noqa: SLF001
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(code or 0)
