"""`--cluster` and `--adapt`: a Dask cluster started for the run (SSH, a batch scheduler, any class).

    ssh:HOST,HOST...                 distributed's SSHCluster: the first host runs the scheduler
    jobqueue:slurm|pbs|sge|lsf|htcondor   dask-jobqueue, configured in dask's own config files
    FILE.yaml                        {class: module.Class, kwargs: {...}, adapt: {minimum, maximum}}

Parsing is cheap (no Dask import): api.py refuses a bad `--adapt` before anything
starts. `start_cluster` imports the cluster's package only when the run asks for it.
"""
from __future__ import annotations

__all__ = ["parse_adapt", "start_cluster", "JOBQUEUE_KINDS"]

import importlib
import logging
import shutil
from pathlib import Path

from opflow.errors import UsageError

#: dask-jobqueue's class and its batch command, by the name --cluster jobqueue:NAME takes.
JOBQUEUE_KINDS = {"slurm": ("SLURMCluster", "sbatch"), "pbs": ("PBSCluster", "qsub"), "sge": ("SGECluster", "qsub"),
                  "lsf": ("LSFCluster", "bsub"), "htcondor": ("HTCondorCluster", "condor_submit")}
_SPEC_KEYS = ("class", "kwargs", "adapt")


def parse_adapt(text: str) -> tuple[int, int]:
    """'MIN:MAX' -> (MIN, MAX); UsageError (exit 2) otherwise."""
    low, sep, high = str(text).partition(":")
    if sep and low.strip().isdigit() and high.strip().isdigit() and int(low) <= int(high) and int(high) > 0:
        return int(low), int(high)
    raise UsageError(f"--adapt {text}: write MIN:MAX, two whole numbers with MIN <= MAX and MAX > 0 (e.g. 0:20)")


def start_cluster(spec: str, adapt: str | None, workers: int | None):
    """Start the cluster `spec` names; scale it (`adapt`, else `workers`, else the spec's adapt).
    Returns it and whether to wait for a worker (not for one adaptive from 0: none joins
    before there is work). The caller owns the cluster: it closes it after the run."""
    if spec.startswith("ssh:"):
        hosts = [h.strip() for h in spec[len("ssh:"):].split(",") if h.strip()]
        if len(hosts) < 2:
            raise UsageError(f"--cluster {spec}: name the scheduler's host and at least one worker's "
                             f"(ssh:HOST,HOST...; the same host twice runs both there)")
        make, kwargs, spec_adapt = _need("distributed.deploy.ssh", "SSHCluster", "asyncssh", "ssh"), \
            {"hosts": hosts, "worker_options": {"nthreads": 1}}, None
    elif spec.startswith("jobqueue:"):
        kind = spec[len("jobqueue:"):]
        if kind not in JOBQUEUE_KINDS:
            raise UsageError(f"--cluster {spec}: choose jobqueue:{', jobqueue:'.join(JOBQUEUE_KINDS)}")
        class_name, command = JOBQUEUE_KINDS[kind]
        make = _need("dask_jobqueue", class_name, "dask_jobqueue", "jobqueue")
        if shutil.which(command) is None:
            raise UsageError(f"--cluster {spec}: the batch command {command!r} is not on PATH "
                             f"(run opflow on a machine that submits {kind} jobs)")
        if adapt is None and not workers:
            raise UsageError(f"--cluster {spec}: say how many workers to start: --adapt MIN:MAX or --workers N")
        kwargs, spec_adapt = {}, None
    else:
        make, kwargs, spec_adapt = _read_spec(spec)
    # SSHCluster relays every line its remote processes log at INFO: only their warnings here.
    logging.getLogger("distributed.deploy.ssh").setLevel(logging.WARNING)
    try:
        cluster = make(**kwargs)
    except UsageError:
        raise
    except Exception as exc:  # the user's cluster, the user's settings: one line, exit 2
        raise UsageError(f"--cluster {spec}: the cluster did not start: {type(exc).__name__}: {exc}") from None
    low = None  # the fewest workers it keeps: None, not adaptive
    try:
        if adapt is not None:
            low, high = parse_adapt(adapt)
            cluster.adapt(minimum=low, maximum=high)
        elif workers:
            cluster.scale(workers)
        elif spec_adapt is not None:
            cluster.adapt(**spec_adapt)
            low = spec_adapt.get("minimum", 0)
    except BaseException:
        cluster.close()
        raise
    return cluster, low != 0


def _need(module: str, attribute: str, package_module: str, extra: str):
    """The cluster class, or exit 2 with the pip command for its extra."""
    try:
        importlib.import_module(package_module)
        return getattr(importlib.import_module(module), attribute)
    except ImportError:
        raise UsageError(f"--cluster needs the {package_module.replace('_', '-')!r} package: "
                         f"pip install 'opflow-runner[{extra}]'") from None


def _read_spec(path_text: str):
    """A FILE.yaml spec: the class to start, its keyword arguments, its adaptive bounds."""
    import yaml

    path = Path(path_text)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--cluster {path_text}: not ssh:HOSTS, jobqueue:KIND nor a readable spec file "
                         f"({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise UsageError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("class"), str) or "." not in doc["class"]:
        raise UsageError(f"{path}: a cluster spec needs `class: module.Class` (e.g. dask_jobqueue.SLURMCluster)")
    unknown = sorted(set(doc) - set(_SPEC_KEYS))
    if unknown:
        raise UsageError(f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(_SPEC_KEYS)})")
    kwargs, adapt = doc.get("kwargs") or {}, doc.get("adapt")
    if not isinstance(kwargs, dict):
        raise UsageError(f"{path}: `kwargs` must be a mapping of the class's keyword arguments")
    if adapt is not None and (not isinstance(adapt, dict) or set(adapt) - {"minimum", "maximum"}):
        raise UsageError(f"{path}: `adapt` takes minimum and maximum (e.g. {{minimum: 0, maximum: 20}})")
    module, _, attribute = doc["class"].rpartition(".")
    try:
        make = getattr(importlib.import_module(module), attribute)
    except ImportError:
        top = module.split(".")[0]
        raise UsageError(f"{path}: class {doc['class']}: no module {module!r} here: "
                         f"pip install {top.replace('_', '-')}") from None
    except AttributeError:
        raise UsageError(f"{path}: class {doc['class']}: {module} has no {attribute!r}") from None
    return make, kwargs, adapt
