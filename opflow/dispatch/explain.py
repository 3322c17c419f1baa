"""`opflow plan FILE --explain`: for each task, whether a run now would reuse it or run it, and why.

Nothing here decides reuse: the verdicts are the run's own rules, fed what a run would
feed them, in dependency order. `--resume`: rundir/history.py's `plan_resume`; a
`cache: true` task: cache.py's `CacheStore.lookup` (its reason for a miss is the one a
run records as `cache_miss`). What a plan cannot know is the new result of an upstream
task that runs: one not cached is taken to return what it returned last (most tasks do;
the reason says so), a cached one that runs because something changed leaves its
downstream tasks' verdict "run", with the reason.
"""
from __future__ import annotations

__all__ = ["Explanation", "explain"]

from dataclasses import dataclass
from pathlib import Path

from opflow.dispatch.cache import open_cache, task_cache_document
from opflow.rundir.history import plan_resume, resume_source
from opflow.workflow.plan import build_plan

NOT_CACHED = "not cached (no cache: true): it runs every time"
NO_CACHE = "--no-cache: every task runs"


@dataclass(frozen=True)
class Explanation:
    task_id: str
    reuse: bool
    reason: str


def explain(workflow, plugins: dict, log_dir: Path, *, resume: bool | str | Path = False,
            cache: bool = True) -> list[Explanation]:
    """What `opflow run` (with `--resume`, `--no-cache` as given) would do with each task now, in file order."""
    plan = plan_resume(resume_source(Path(log_dir), workflow, resume), workflow) if resume else None
    store = open_cache(Path(log_dir), workflow) if cache and any(t.cache for t in workflow.tasks) else None
    by_id = {t.id: t for t in workflow.tasks}
    children = {t.id: False for t in workflow.tasks}
    for task in workflow.tasks:
        for upstream in task.depends_on:
            children[upstream] = True
    digests: dict[str, str | None] = {}  # what the coordinator would see as each result's digest
    assumed: dict[str, Path] = {}  # upstream tasks taken to return what they did in that run
    verdicts: dict[str, Explanation] = {}
    for layer in build_plan(workflow).layers:
        for task_id in layer:
            task = by_id[task_id]
            if plan is not None and task_id in plan.reuse:
                digests[task_id] = ""  # as the coordinator has it: a resumed task's outcome holds no digest
                verdicts[task_id] = Explanation(task_id, True, plan.why[task_id])
                continue
            before = f"{plan.why[task_id]}; " if plan is not None else ""
            if not task.cache or store is None:
                last = store.last_digest(task_id) if store is not None else None
                digests[task_id] = last[0] if last else None
                if last:
                    assumed[task_id] = last[1]
                verdicts[task_id] = Explanation(task_id, False, before + (NOT_CACHED if cache else NO_CACHE))
                continue
            upstream = [(d, digests.get(d)) for d in task.depends_on]
            document = task_cache_document(task, plugins[task.plugin], workflow, upstream)
            verdict = store.lookup(task_id, document, need_blob=children[task_id])
            if verdict.hit is not None:
                digests[task_id] = verdict.hit.digest
                guesses = [f"'{d}' returns what it did in {assumed[d]}" for d in task.depends_on if d in assumed]
                reason = verdict.reason + (f" (if {' and '.join(guesses)})" if guesses else "")
                verdicts[task_id] = Explanation(task_id, True, reason)
            else:
                digests[task_id] = None
                verdicts[task_id] = Explanation(task_id, False, before + verdict.reason)
    return [verdicts[t.id] for t in workflow.tasks]
