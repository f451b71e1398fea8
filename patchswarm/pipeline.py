"""Solving one instance, and the batch runner.

environment image → context → N testing machines → N editing machines → selection → result.
`solve_attempt` is the work of one instance (patchswarm.lifecycle records it); `run_tasks` runs a batch
concurrently up to `workers`, here or on another executor; a failing instance is recorded and the batch goes on.
Everything is written to the run store as it happens, so rerunning the same command resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from agent.budget import BudgetExceeded
from agent.context.build import build_context
from agent.instance import Instance
from agent.llm import Providers
from agent.model import CallScope, ModelClient
from agent.trajectory import TrajectoryResult, run_trajectories
from agent.types import ContextBundle
from patchswarm import predictions
from patchswarm.adaptive import AdaptiveSampler, candidates_of
from patchswarm.config import PatchswarmConfig
from patchswarm.lifecycle import prediction_of, run_instance
from patchswarm.progress import Progress
from patchswarm.results import InstanceResult
from patchswarm.run_context import (
    RunContext,
    check_budget_prices,
    open_run,
    share_pool,
    stopping_sandboxes_on_interrupt,
)
from patchswarm.store import NamespacedStateStore, exclusive_run_dir
from patchswarm.tasks import Task
from patchswarm.workspace import Workspace, environment_of, open_workspace, selection_config
from sandbox import SandboxPool
from sandbox.errors import SandboxError
from selection import Candidate, GeneratedTest, SelectionResult, select_patch


class _StageReporting:
    """The instance's state store, read on the way through for the progress row's stage: a state machine
    saves under `traj/testing/i` or `traj/editing/i`, with an outcome once it has ended."""

    def __init__(self, inner: NamespacedStateStore, progress: Progress, instance_id: str, tests: int, edits: int):
        self.inner, self.progress, self.instance_id = inner, progress, instance_id
        self.counts = {"testing": tests, "editing": edits}
        self.ended: dict[str, set[str]] = {"testing": set(), "editing": set()}
        self.editing = False

    def load(self, key: str) -> dict[str, Any] | None:
        return self.inner.load(key)

    def save(self, key: str, state: dict[str, Any]) -> None:
        self.inner.save(key, state)
        parts = key.split("/")
        if len(parts) != 3 or parts[1] not in self.ended:
            return
        machine = parts[1]
        self.editing = self.editing or machine == "editing"
        if state.get("outcome"):
            self.ended[machine].add(parts[2])
        shown = "editing" if self.editing else "testing"
        self.progress.stage(self.instance_id, f"{shown} {len(self.ended[shown])}/{self.counts[shown]}")


@contextlib.asynccontextmanager
async def _warming(pool: SandboxPool, count: int):
    """Start `count` sandboxes in the background, so that creating them overlaps the context stage and the
    first model call instead of delaying every trajectory's first execution."""

    async def one() -> None:
        async with pool.lease():
            pass

    started = asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)  # failures resurface on use
    try:
        yield
    finally:
        await started


async def solve_attempt(run: RunContext, task: Task, epoch: int) -> InstanceResult:
    """One attempt at an instance, here: its result without totals (patchswarm.lifecycle adds them).
    An environment, sandbox or crash failure is the result's error (status failed), never raised."""
    result = InstanceResult(instance_id=task.instance_id, status="failed", issue=task.issue)
    workspace = None
    try:
        run.progress.stage(task.instance_id, "environment")
        environment = await environment_of(run, task)
        result.environment = environment.record
        workspace = await open_workspace(run, task, environment)
        # The instance's view of the shared client: its calls are keyed and attributed by this scope.
        model = run.model.scoped(CallScope(instance_id=task.instance_id, epoch=epoch))
        await _solve_into(run, model, task, result, epoch, workspace)
    except (SandboxError, ValueError, OSError) as exc:
        result.errors.append(f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - one instance's crash never stops the batch
        result.errors.append(f"crashed: {type(exc).__name__}: {exc}")
    finally:
        if workspace is not None:
            workspace.close()
    return result


async def _solve_into(run: RunContext, model: ModelClient, task: Task, result: InstanceResult, epoch: int,
                      workspace: Workspace) -> None:
    cfg = run.config
    pool, repo_dir, budget = workspace.pool, workspace.repo_dir, workspace.budget
    run.progress.stage(task.instance_id, "context")
    states = _StageReporting(NamespacedStateStore(run.store, f"{task.instance_id}:{run.config_hash}:{epoch}"),
                             run.progress, task.instance_id, cfg.trajectories.num_tests, cfg.trajectories.num_edits)
    warm = min(cfg.sandbox.pool_size, max(cfg.trajectories.num_tests, cfg.trajectories.num_edits))
    async with _warming(pool, warm):
        async def make_context() -> ContextBundle:
            try:
                bundle = await build_context(repo_dir, task.issue, model, cfg.context, budget=budget,
                                             store=states, key_prefix="context")
            except BudgetExceeded as exc:
                result.budget_stopped = True
                result.errors.append(str(exc))
                bundle = ContextBundle(notes=["context stage stopped by budget"])
            result.context_files = [{"path": f.path, "summary": f.summary, "tokens": f.tokens}
                                    for f in bundle.files]
            return bundle

        # Testing machines see only the issue, so they run while the context stage picks files.
        context = asyncio.ensure_future(make_context())
        trajectory_cfg = cfg.trajectories
        if cfg.budget.max_cost_per_trajectory_usd is not None:
            trajectory_cfg = trajectory_cfg.model_copy(
                update={"trajectory_budget_usd": cfg.budget.max_cost_per_trajectory_usd})
        running = max(trajectory_cfg.num_tests, trajectory_cfg.num_edits)
        run.progress.trajectories_running += running
        try:
            if trajectory_cfg.adaptive.enabled:
                trajectories = await _sample_adaptively(run, model, task, result, workspace, states, context,
                                                        trajectory_cfg)
            else:
                instance = Instance(model, pool, repo_dir, task.issue, states, budget)
                trajectories = await run_trajectories(instance, context=context, key="traj", config=trajectory_cfg)
        finally:
            run.progress.trajectories_running -= running
            await cancel_and_wait(context)
    result.trajectories = trajectories
    result.errors += [t.error for t in trajectories if t.error]
    candidates = [Candidate(id=f"t{t.index}", patch=t.editing.patch, source=f"trajectory {t.index}")
                  for t in trajectories if t.editing and t.editing.patch]
    run.progress.stage(task.instance_id, "matrix")
    selection = await select_patch(candidates, pool=pool, repo_dir=repo_dir, issue=task.issue,
                                   tests=tests_of(trajectories), model=model, budget=budget,
                                   config=selection_config(run, task), store=states)
    result.selection = selection
    result.selection_method, result.selection_reason = selection.method, selection.reason
    result.chosen_candidate, result.patch = selection.chosen_id, selection.patch or ""
    if selection.chosen_id:
        with contextlib.suppress(StopIteration):
            result.votes = selection.candidate(selection.chosen_id).votes
    result.budget_stopped = result.budget_stopped or budget.exceeded or any(
        (t.editing and t.editing.outcome == "budget_exhausted") or (t.testing and t.testing.outcome == "budget_exhausted")
        for t in trajectories)
    result.status = "solved" if result.patch.strip() else "no_patch"
    broken = [t.index for t in trajectories if t.infrastructure]
    if broken:  # chosen without those trajectories' evidence: not final, a rerun retries the instance
        result.status = "failed"
        result.errors.insert(0, f"infrastructure failure in trajectory {', '.join(map(str, broken))} "
                                "(sandbox or Docker engine); rerun the same command to retry")
    elif lost := selection.lost_evidence():  # the same for executions of the selection stage
        result.status = "failed"
        result.errors.insert(0, lost)


async def _sample_adaptively(run: RunContext, model: ModelClient, task: Task, result: InstanceResult, workspace: Workspace,
                             states: _StageReporting, context: Any, trajectory_cfg: Any) -> list[TrajectoryResult]:
    """Trajectories until the evidence is decisive (patchswarm.adaptive); each look at the evidence is
    an LLM-free selection whose cells are cached, so only the new candidates' and tests' cells run."""
    adaptive = trajectory_cfg.adaptive
    look = selection_config(run, task).model_copy(update={"selector_enabled": False})
    pool, repo_dir, budget = workspace.pool, workspace.repo_dir, workspace.budget

    async def run_round(count: int, extra: Any) -> list[TrajectoryResult]:
        grown = trajectory_cfg.model_copy(update={"num_tests": count, "num_edits": count})
        instance = Instance(model, pool, repo_dir, task.issue, states, budget)
        return await run_trajectories(instance, context=context, key="traj", config=grown, extra_attempts=extra)

    async def evaluate(trajectories: list[TrajectoryResult]) -> SelectionResult:
        return await select_patch(candidates_of(trajectories), pool=pool, repo_dir=repo_dir, issue=task.issue,
                                  tests=tests_of(trajectories), config=look)

    sampler = AdaptiveSampler(adaptive, instance_id=task.instance_id, budget=budget,
                              shares=run.shares if adaptive.share_budget else None)
    result.adaptive = sampler.record
    try:
        return await sampler.run(run_round, evaluate)
    finally:
        run.store.event("adaptive", task.instance_id, stop_reason=sampler.record.stop_reason,
                        samples=sampler.record.samples, extensions=sampler.record.extensions)


def tests_of(trajectories: list[TrajectoryResult]) -> list[GeneratedTest]:
    tests, seen = [], set()
    for t in trajectories:
        for code, origin in ((t.editing.test_code if t.editing else None, "editing"),
                             (t.testing.test_code if t.testing else None, "testing")):
            if code and code not in seen:
                seen.add(code)
                tests.append(GeneratedTest(id=f"{origin}{t.index}", code=code, source=f"{origin} trajectory {t.index}"))
    return tests


class BatchExecutor(Protocol):
    """Runs a batch's instances somewhere else (e.g. `ray_executor.RayExecutor`), each through
    `lifecycle.run_instance`, into `run`'s store and progress."""

    async def run_all(self, run: RunContext, tasks: list[Task], workers: int) -> list[InstanceResult]: ...


async def _run_all(run: RunContext, tasks: list[Task], workers: int,
                   executor: BatchExecutor | None = None) -> list[InstanceResult]:
    loop = asyncio.get_running_loop()
    # Sandboxes and Docker calls block; give them threads enough not to queue behind each other.
    loop.set_default_executor(ThreadPoolExecutor(max_workers=64, thread_name_prefix="patchswarm"))
    slots = asyncio.Semaphore(workers)

    async def work(task: Task, epoch: int) -> InstanceResult:
        return await solve_attempt(run, task, epoch)

    async def one(task: Task) -> InstanceResult:
        async with slots:
            return await run_instance(run, task, work)

    if executor is not None:
        return await stopping_sandboxes_on_interrupt(run, executor.run_all(run, tasks, workers))
    return list(await stopping_sandboxes_on_interrupt(run, asyncio.gather(*(one(t) for t in tasks))))


def run_tasks(tasks: list[Task], config: PatchswarmConfig, run_dir: Path, *, redo: bool = False,
              live: bool | None = None, executor: BatchExecutor | None = None,
              model_name: str | None = None, providers: Providers | None = None) -> list[InstanceResult]:
    """Solve `tasks` into `run_dir` (resuming what is there). Ctrl-C leaves no container behind.

    `executor` None solves on this machine; another executor (e.g. Ray) solves elsewhere into the same store.
    `providers`: model providers injected by prefix (the scripted model, agent.llm); litellm serves the rest.
    """
    check_budget_prices(config)  # before anything is made or paid
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    # The executor elsewhere makes its own shares, where its instances can reach them.
    shares = share_pool(config, len(tasks)) if executor is None else None
    with exclusive_run_dir(run_dir), \
            Progress(len(tasks), run_dir / "events.jsonl", live=live, max_cost_usd=config.budget.max_cost_usd) \
            as progress, \
            open_run(config, run_dir, progress, redo=redo, model_name=model_name, shares=shares,
                     providers=providers) as run:
        run.store.set_meta("status", "running")
        try:
            results = asyncio.run(_run_all(run, tasks, config.workers, executor))
            # One line per instance: earlier slices and reruns, then this command's results (skipped ones too).
            predictions.compact(run_dir / predictions.FILE_NAME, [prediction_of(run, r) for r in results])
            run.store.set_meta("status", "finished")
            return results
        except BaseException:
            run.store.set_meta("status", "interrupted")
            raise


async def cancel_and_wait(task: asyncio.Future) -> None:
    """Cancel `task` and wait for it to end, swallowing only its own cancellation: a Ctrl-C that cancels
    the caller meanwhile must go on up (swallowed, the instance went on to selection after the sandboxes
    were gone, and the process outlived its interrupt)."""
    if task.done():
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
