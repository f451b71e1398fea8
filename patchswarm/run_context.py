"""The run context: what every instance of one run shares, made once and never reassigned.

`open_run` makes it (engine, store, sandbox manager, model client, run budget) and closes it; executors,
commands and nodes pass it on instead of sharing a mutable runner. What differs on a Ray node (the shared
budget tally, the batch's budget shares, its own sandbox label) is given to `open_run`, not patched in.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import uuid
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from agent.allocation import SharePool, Shares
from agent.budget import Budget, BudgetUnenforceable, TallyPort
from agent.llm import Providers
from agent.model import ModelClient
from agent.pricing import price_fix, unpriced
from patchswarm.config import PatchswarmConfig
from patchswarm.environment_sources import EnvironmentSource, default_sources
from patchswarm.progress import Progress
from patchswarm.store import RunCallStore, RunStore
from sandbox import SandboxManager
from sandbox.engine import docker_client

# The run store's meta key of the label (`patchswarm.run=<id>`) on every container of the run: `clean --run`
# reads it, and a resumed run keeps it, so one id names a run's containers across its processes.
SANDBOX_RUN_ID = "sandbox_run_id"
T = TypeVar("T")


@dataclass(frozen=True)
class RunContext:
    """Shared by every instance of a run: config, store, sandboxes, model client, budgets, progress."""

    config: PatchswarmConfig
    config_hash: str
    run_dir: Path
    store: RunStore
    progress: Progress
    docker: Any  # docker.DockerClient
    manager: SandboxManager
    model: ModelClient
    budget: Budget  # the run's: every instance's budget is its child
    environments: tuple[EnvironmentSource, ...]
    redo: bool = False
    model_name: str = ""  # model_name_or_path of the predictions
    shares: Shares | None = None  # the batch's budget shares, for adaptive sampling (share_budget)

    @property
    def sandbox_run_id(self) -> str:
        return self.manager.run_id


async def stopping_sandboxes_on_interrupt(run: RunContext, work: Awaitable[T]) -> T:
    """`work`, but Ctrl-C / SIGTERM (which reach it as a cancellation) first remove the run's containers.

    That ends the sandbox commands and image builds that worker threads are blocked on; asyncio.run
    waits for those threads before it returns, so without this an interrupted run exits only when they
    finish on their own (a setup or test command: minutes)."""
    try:
        return await work
    except BaseException:
        run.manager.close_all()
        raise


class _CountingRecorder:
    """The run store's call recorder that also shows each call on the progress row of its instance."""

    def __init__(self, inner: RunCallStore, progress: Progress):
        self.inner, self.progress = inner, progress

    def record(self, record) -> None:
        self.inner.record(record)
        instance_id = record.instance_id
        self.progress.call(instance_id, record.cost_usd)
        if record.role == "selector":
            self.progress.stage(instance_id, "selector")


def sandbox_run_id_of(store: RunStore, run_dir: Path) -> str:
    """The run's sandbox label id: the one its store records, else a new one, recorded."""
    recorded = store.get_meta(SANDBOX_RUN_ID)
    if recorded:
        return str(recorded)
    run_id = f"{run_dir.name}-{uuid.uuid4().hex[:8]}"
    store.set_meta(SANDBOX_RUN_ID, run_id)
    return run_id


@contextlib.contextmanager
def open_run(config: PatchswarmConfig, run_dir: Path, progress: Progress, *, redo: bool = False,
             model_name: str | None = None, shares: Shares | None = None, tally: TallyPort | None = None,
             sandbox_run_id: str | None = None, providers: Providers | None = None) -> Iterator[RunContext]:
    """A run's context, closed (every container of the run removed, the store closed) on the way out.

    `tally`: the run budget's shared tally (a Ray actor); None counts here, charged with what the store says
    was spent. `sandbox_run_id`: a label of the caller's (a node's); None uses the one the store records.
    `providers`: model providers injected by prefix (the scripted model, agent.llm); litellm serves the rest.
    """
    run_dir = Path(run_dir)
    docker = docker_client()  # first: without an engine, fail before opening the store
    store = RunStore(run_dir)
    try:
        config_hash = config.result_hash()
        manager = SandboxManager(docker, run_id=sandbox_run_id or sandbox_run_id_of(store, run_dir))
    except BaseException:
        store.close()
        raise
    try:
        # Budgets are charged from the store's totals on resume, so replayed calls must not count again.
        model = ModelClient(config.models, store=RunCallStore(store, config_hash),
                            recorder=_CountingRecorder(RunCallStore(store, config_hash), progress),
                            charge_replays=False, providers=providers)
        budget = Budget(config.budget.max_cost_usd, "run", tally=tally)
        if tally is None:
            budget.charge(store.totals().cost_usd)  # a resumed run's budget counts what was spent
        run = RunContext(config=config, config_hash=config_hash, run_dir=run_dir, store=store, progress=progress,
                         docker=docker, manager=manager, model=model, budget=budget,
                         environments=default_sources(), redo=redo,
                         # what a leaderboard shows; the primary model unless named.
                         model_name=model_name or config.models.roles.primary, shares=shares)
        _record_meta(run)
        yield run
    finally:
        manager.close_all()
        store.close()


def _record_meta(run: RunContext) -> None:
    versions = {}
    for package in ("patchswarm", "litellm", "docker", "swebench", "pydantic"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    run.store.set_meta("config", run.config.model_dump(mode="json"))
    run.store.set_meta("config_hash", run.config_hash)
    run.store.set_meta("versions", versions)
    run.store.set_meta("models", run.config.models.roles.model_dump())


def check_budget_prices(config: PatchswarmConfig) -> None:
    """A budget is only as good as its prices: refuse one that calls of an unpriced model would escape."""
    limits = {"budget.max_cost_usd": config.budget.max_cost_usd,
              "budget.max_cost_per_instance_usd": config.budget.max_cost_per_instance_usd,
              "budget.max_cost_per_trajectory_usd": config.budget.max_cost_per_trajectory_usd}
    set_limits = [f"{key}={value}" for key, value in limits.items() if value is not None]
    if not set_limits:
        return
    models = config.models
    roles = {role: models.model_for(role) for role in ("relevance", "primary", "selector")}
    missing = unpriced(list(roles.values()), models.price_overrides)
    if missing:
        model = missing[0]
        used_by = ", ".join(role for role, name in roles.items() if name == model)
        raise BudgetUnenforceable(
            f"{set_limits[0]} cannot be enforced: model {model} ({used_by}) has no known price; "
            f"set it with {price_fix(model)}")


def share_pool(config: PatchswarmConfig, instances: int) -> SharePool | None:
    """The batch's budget shares when adaptive sampling shares a --max-cost (else None: no sharing)."""
    adaptive = config.trajectories.adaptive
    if not (adaptive.enabled and adaptive.share_budget) or config.budget.max_cost_usd is None or instances < 1:
        return None
    return SharePool(config.budget.max_cost_usd, instances, config.budget.max_cost_per_instance_usd)
