"""The run's options (opflow/options.py): one dataclass, the same from `opflow.run` and the CLI."""
from __future__ import annotations

import dataclasses
import inspect

import pytest

from helpers import invoke, write
from opflow import api
from opflow.dispatch import coordinator
from opflow.events import RunStatus
from opflow.options import Options

FLOW = """
    name: opts
    params: {who: world}
    tasks:
      - {id: a, plugin: shell, config: {command: "echo ${params.who}"}}
"""


@pytest.fixture
def handed(monkeypatch):
    """The RunOptions each run hands the coordinator (which then runs nothing)."""
    seen = []

    async def fake_run_async(workflow, plugins, options, reporters):
        seen.append(options)
        return coordinator.RunSummary(RunStatus.SUCCEEDED, {})

    monkeypatch.setattr(coordinator, "run_async", fake_run_async)
    return seen


FLAGS = [
    ([], {}),
    (["--workers", "3", "--executor", "thread", "--param", "who=there", "--keep-going", "--no-lock",
      "--keep-runs", "2", "--timeout", "90", "--no-cache", "--log-dir", "elsewhere"],
     {"workers": 3, "executor": "thread", "params": {"who": "there"}, "keep_going": True, "lock": False,
      "keep_runs": 2, "timeout": 90.0, "cache": False, "log_dir": "elsewhere"}),
    (["--executor", "inline", "--workers", "4", "--timeout", "5m"], {"executor": "inline", "workers": 4, "timeout": 300.0}),
]


@pytest.mark.parametrize("flags, keywords", FLAGS)
def test_opflow_run_and_the_cli_hand_the_coordinator_the_same_options(here, handed, flags, keywords):
    flow = write(here, "flow.yaml", FLOW)
    result = invoke("run", flow, "--quiet", *flags)
    assert result.exit_code == 0, result.output
    api.run(flow, **keywords)
    from_cli, from_api = handed
    assert isinstance(from_cli, coordinator.RunOptions) and isinstance(from_cli, Options)
    assert from_cli.as_dict() == from_api.as_dict()
    assert {k: getattr(from_api, k) for k in keywords if k not in ("log_dir", "workers")} == \
        {k: v for k, v in keywords.items() if k not in ("log_dir", "workers")}
    assert from_api.log_dir == here / keywords.get("log_dir", "logs")  # made absolute, for workers elsewhere


def test_the_environment_gives_the_cli_the_same_options_as_its_flags(here, handed):
    flow = write(here, "flow.yaml", FLOW)
    assert invoke("run", flow, "--quiet", "--workers", "2", "--executor", "thread", "--log-dir", "x").exit_code == 0
    env = {"OPFLOW_WORKERS": "2", "OPFLOW_EXECUTOR": "thread", "OPFLOW_LOG_DIR": "x"}
    assert invoke("run", flow, "--quiet", env=env).exit_code == 0
    assert invoke("run", flow, "--quiet", "--workers", "2", "--executor", "thread", "--log-dir", "x",
                  env={"OPFLOW_WORKERS": "5", "OPFLOW_EXECUTOR": "inline", "OPFLOW_LOG_DIR": "y"}).exit_code == 0
    flags, environment, both = handed
    assert flags.as_dict() == environment.as_dict() == both.as_dict()  # a flag wins over its variable


def test_the_inline_backend_is_handed_its_true_concurrency(here, handed):
    flow = write(here, "flow.yaml", FLOW)
    api.run(flow, executor="inline", workers=4)
    assert handed[0].workers == 1


@pytest.mark.parametrize("function", [api.run, api.run_async])
def test_run_and_run_async_take_every_option_by_keyword_with_its_default(function):
    parameters = inspect.signature(function).parameters
    options = {f.name: f.default for f in dataclasses.fields(Options)}
    keywords = {name: p.default for name, p in parameters.items()
                if p.kind is p.KEYWORD_ONLY and name != "reporters" and not name.startswith("_")}
    assert keywords == options
    assert all(parameters[name].annotation == f.type for name, f in ((f.name, f) for f in dataclasses.fields(Options)))


def test_the_docstring_of_run_explains_every_option():
    described = {line.split()[0] for line in inspect.getdoc(api.run).splitlines() if line.startswith("  ")}
    assert [name for name in Options.names() if name not in described] == []


def test_the_coordinators_run_options_declare_no_option_again():
    assert issubclass(coordinator.RunOptions, Options)
    own = coordinator.RunOptions.__dict__.get("__annotations__", {})  # the subclass's own fields only
    assert [name for name in Options.names() if name in own] == []
    assert own  # what api.py prepares for a run: the check reads the right thing
