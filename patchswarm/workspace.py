"""An instance's workspace: its environment image, host checkout of the base tree, recording sandbox pool
and budget, and the selection settings for it. The solving pipeline and `select` both start here."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.budget import Budget
from patchswarm.environment_sources import Environment, source_for
from patchswarm.progress import Progress
from patchswarm.run_context import RunContext
from patchswarm.store import RunStore
from patchswarm.tasks import Task
from sandbox import RepoSource, SandboxPool
from sandbox.execution import ExecResult
from sandbox.port import SandboxPort
from sandbox.repos import checkout_tree, local_git_dir, resolve_commit
from selection import SelectionConfig


class RecordingPool(SandboxPool):
    """A pool whose sandboxes' runs are counted and logged to the run store (one event per execution)."""

    def __init__(self, *args, store: RunStore, progress: Progress, instance_id: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.store, self.progress, self.instance_id = store, progress, instance_id

    @contextlib.asynccontextmanager
    async def lease(self):
        async with super().lease() as sandbox:
            yield _RecordingSandbox(sandbox, self)


class _RecordingSandbox:
    """A leased sandbox whose every run is counted and logged as an `execution` event."""

    def __init__(self, sandbox: SandboxPort, pool: RecordingPool):
        self._sandbox, self._pool = sandbox, pool

    def run(self, command: str, **kwargs: Any) -> ExecResult:
        result = self._sandbox.run(command, **kwargs)
        self._pool.progress.executions += 1
        self._pool.store.event("execution", self._pool.instance_id, command=command[:500],
                               exit_code=result.exit_code, timed_out=result.timed_out,
                               duration_s=round(result.duration_s, 3), patched=bool(kwargs.get("patch")))
        return result


@dataclass(frozen=True)
class Workspace:
    """What one instance works in; close it to stop its sandboxes."""

    pool: RecordingPool
    repo_dir: Path
    budget: Budget

    def close(self) -> None:
        self.pool.close()


async def environment_of(run: RunContext, task: Task) -> Environment:
    """The instance's image, from the source for its kind of task (built or fetched in a thread)."""
    return await asyncio.to_thread(source_for(task, run.environments).environment, run.docker, task,
                                   run_id=run.sandbox_run_id, log_dir=run.run_dir / "logs",
                                   on_phase=lambda name: run.progress.stage(task.instance_id, name))


async def open_workspace(run: RunContext, task: Task, environment: Environment) -> Workspace:
    """An instance's host checkout of the base tree, sandbox pool (of `environment`'s image) and budget."""
    cfg = run.config
    repo_dir = await asyncio.to_thread(_checkout, RepoSource(location=task.repo, commit=task.commit),
                                       run.run_dir / "checkouts")
    pool = RecordingPool(run.manager, environment.tag, cfg.sandbox.pool_size, limits=cfg.sandbox.limits,
                         store=run.store, progress=run.progress, instance_id=task.instance_id,
                         **environment.sandbox_options)
    # What this instance spent before a resume counts against its limit; the run budget already holds
    # it (charged from the store's totals at start), so charge it before linking to the run budget.
    budget = Budget(cfg.budget.max_cost_per_instance_usd, f"instance {task.instance_id}")
    budget.charge(run.store.totals(task.instance_id).cost_usd)
    budget.parent = run.budget
    return Workspace(pool=pool, repo_dir=repo_dir, budget=budget)


def selection_config(run: RunContext, task: Task) -> SelectionConfig:
    """Selection settings for one instance: the run's execution cache, the task's own test command."""
    sel_cfg = run.config.selection
    if sel_cfg.cache_dir is None:
        sel_cfg = sel_cfg.model_copy(update={"cache_dir": run.run_dir / "exec-cache"})
    if task.test_cmd and not sel_cfg.regression_cmd:
        sel_cfg = sel_cfg.model_copy(update={"regression_cmd": task.test_cmd})
    if not (sel_cfg.regression_cmd or sel_cfg.regression_file_cmd):
        file_cmd = source_for(task, run.environments).regression_file_cmd(task)
        if file_cmd:
            sel_cfg = sel_cfg.model_copy(update={"regression_file_cmd": file_cmd})
    return sel_cfg


def _checkout(source: RepoSource, checkouts: Path) -> Path:
    git_dir = local_git_dir(source)
    sha = resolve_commit(git_dir, source.commit, source.location)
    return checkout_tree(git_dir, sha, checkouts / sha)
