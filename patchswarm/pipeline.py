"""The per-instance pipeline and the batch runner.

environment image → context → N testing machines → N editing machines → selection → result.
Instances run concurrently up to `workers`; a failing instance is recorded and the batch goes on.
Everything is written to the run store as it happens, so rerunning the same command resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from agent.allocation import SharePool, Shares
from agent.budget import Budget, BudgetExceeded, BudgetUnenforceable
from agent.context.build import build_context
from agent.instance import Instance
from agent.llm import Providers
from agent.model import CallScope, ModelClient
from agent.pricing import price_fix, unpriced
from agent.text import storable_data
from agent.trajectory import TrajectoryResult, run_trajectories
from agent.types import ContextBundle, StateStore
from patchswarm import predictions
from patchswarm.adaptive import AdaptiveRecord, AdaptiveSampler, candidates_of
from patchswarm.config import PatchswarmConfig
from patchswarm.paths import safe_name
from patchswarm.progress import Progress
from patchswarm.store import (
    NamespacedStateStore,
    RunCallStore,
    RunStore,
    exclusive_run_dir,
)
from patchswarm.tasks import Task
from sandbox import EnvSpec, RepoSource, SandboxManager, SandboxPool, build_env_image
from sandbox.engine import docker_client
from sandbox.errors import SandboxError
from sandbox.execution import ExecResult
from sandbox.port import SandboxPort
from sandbox.repos import checkout_tree, local_git_dir, resolve_commit
from selection import Candidate, GeneratedTest, SelectionConfig, SelectionResult, select_patch

# solved / no_patch are results (final). error: the model calls failed (unknown model, bad key, provider
# down); failed: the instance crashed (environment, sandbox). Neither is final: rerunning retries them.
Status = Literal["solved", "no_patch", "error", "failed"]
FINAL_STATUSES = ("solved", "no_patch")
ERROR_STATUSES = ("error", "failed")
# Exit codes of solve/batch: 0 every instance has a result; 1 none has (or bad input); 3 some ended in error.
EXIT_ALL_ERRORS, EXIT_SOME_ERRORS = 1, 3


def exit_code_of(statuses: list[str]) -> int:
    errors = sum(status in ERROR_STATUSES for status in statuses)
    return 0 if not errors else EXIT_ALL_ERRORS if errors == len(statuses) else EXIT_SOME_ERRORS


class InstanceResult(BaseModel):
    """What one instance produced, with the evidence and what it cost."""

    instance_id: str
    status: Status
    issue: str = ""
    patch: str = ""
    selection_method: str | None = None
    selection_reason: str | None = None
    chosen_candidate: str | None = None
    votes: int | None = None
    budget_stopped: bool = Field(False, description="A budget stopped work; the patch is the best found so far.")
    cost_usd: float = 0.0
    unknown_cost_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_by_role: dict[str, float] = Field(default_factory=dict)
    wall_time_s: float = 0.0
    errors: list[str] = Field(default_factory=list)
    environment: dict[str, Any] = Field(default_factory=dict)
    context_files: list[dict[str, Any]] = Field(default_factory=list)
    trajectories: list[TrajectoryResult] = Field(default_factory=list)
    selection: SelectionResult | None = None
    adaptive: AdaptiveRecord | None = Field(None, description="How adaptive sampling went (trajectories.adaptive).")


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


class Runner:
    """Shared by every instance of a run: config, store, sandboxes, model client, budgets, progress."""

    def __init__(self, config: PatchswarmConfig, run_dir: Path, progress: Progress, *, redo: bool = False,
                 model_name: str | None = None, providers: Providers | None = None):
        self.config, self.run_dir, self.progress, self.redo = config, Path(run_dir), progress, redo
        # model_name_or_path of the predictions: what a leaderboard shows; the primary model unless named.
        self.model_name = model_name or config.models.roles.primary
        self.docker = docker_client()  # first: without an engine, fail before opening the store
        self.store = RunStore(self.run_dir)
        self.config_hash = config.result_hash()
        self.manager = SandboxManager(self.docker, run_id=f"{self.run_dir.name}-{uuid.uuid4().hex[:8]}")
        # Budgets are charged from the store's totals on resume, so replayed calls must not count again.
        self.model = ModelClient(config.models, store=RunCallStore(self.store, self.config_hash),
                                 recorder=_CountingRecorder(RunCallStore(self.store, self.config_hash), progress),
                                 charge_replays=False, providers=providers)
        self.budget = Budget(config.budget.max_cost_usd, "run")
        self.budget.charge(self.store.totals()["cost_usd"])  # a resumed run's budget counts what was spent
        self.shares: Shares | None = None  # the batch's budget shares, for adaptive sampling (share_tasks)
        self._record_meta()

    def _record_meta(self) -> None:
        versions = {}
        for package in ("patchswarm", "litellm", "docker", "swebench", "pydantic"):
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                versions[package] = importlib.metadata.version(package)
        self.store.set_meta("config", self.config.model_dump(mode="json"))
        self.store.set_meta("config_hash", self.config_hash)
        self.store.set_meta("versions", versions)
        self.store.set_meta("models", self.config.models.roles.model_dump())

    def close(self) -> None:
        self.manager.close_all()
        self.store.close()

    # -- one instance ----------------------------------------------------------------------------

    def finished(self, task: Task) -> InstanceResult | None:
        """The stored result when `task` is done and need not run again (also used by other executors)."""
        prior = self.store.instance_status(task.instance_id, self.config_hash)
        # A budget-stopped instance is not final: rerunning (e.g. with a larger --max-cost) continues it.
        if prior and prior[0] in FINAL_STATUSES and prior[1] and not prior[1].get("budget_stopped") \
                and not self.redo:
            return InstanceResult.model_validate(prior[1])
        return None

    async def solve(self, task: Task) -> InstanceResult:
        done = self.finished(task)
        if done is not None:
            self.progress.event("instance_skipped", task.instance_id, status=done.status)
            return done
        prior = self.store.instance_status(task.instance_id, self.config_hash)
        epoch = self.store.get_meta(f"epoch:{task.instance_id}", 0)
        if self.redo and prior:
            epoch += 1
            self.store.set_meta(f"epoch:{task.instance_id}", epoch)
        started = time.monotonic()
        self.store.mark_instance(task.instance_id, self.config_hash, "running")
        self.progress.event("instance_started", task.instance_id)
        attempt_started = time.time()
        result = InstanceResult(instance_id=task.instance_id, status="failed", issue=task.issue)
        pool = None
        try:
            pool = await self._solve_into(task, result, epoch)
        except (SandboxError, ValueError, OSError) as exc:
            result.errors.append(f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - one instance's crash never stops the batch
            result.errors.append(f"crashed: {type(exc).__name__}: {exc}")
        except BaseException:  # cancelled by Ctrl-C: the store must not claim it is still running
            self.store.mark_instance(task.instance_id, self.config_hash, "interrupted")
            raise
        finally:
            if pool is not None:
                pool.close()
        result.wall_time_s = round(time.monotonic() - started, 2)
        totals = self.store.totals(task.instance_id)
        result.cost_usd, result.unknown_cost_calls = totals["cost_usd"], totals["unknown_cost_calls"]
        result.input_tokens, result.output_tokens = totals["input_tokens"], totals["output_tokens"]
        result.cost_by_role = self.store.cost_by_role(task.instance_id)
        if result.status != "failed":
            self._mark_model_failure(result, attempt_started)
        self._save(result)
        kind = "instance_failed" if result.status in ERROR_STATUSES else "instance_done"
        self.progress.event(kind, task.instance_id, status=result.status, method=result.selection_method,
                            cost=round(result.cost_usd, 4), error=result.errors[0] if result.errors else None)
        return result

    def _mark_model_failure(self, result: InstanceResult, since: float) -> None:
        """An instance whose trajectories' model calls all failed (or every call did) is an error, not a result:
        no_patch would claim the model tried and found nothing, and make the rerun skip it."""
        outcomes = self.store.call_outcomes(result.instance_id, since)
        calls = sum(c for c, _, _ in outcomes.values())
        failed = sum(f for _, f, _ in outcomes.values())
        primary_calls, primary_failed, primary_error = outcomes.get("primary", (0, 0, None))
        if primary_calls and primary_failed == primary_calls:
            model, error = self.config.models.model_for("primary"), primary_error
            what = f"all {primary_calls} primary call(s) failed"
        elif calls and failed == calls:
            role = next(r for r, (c, f, _) in outcomes.items() if f)
            model, error = self.config.models.model_for(role), outcomes[role][2]  # type: ignore[arg-type]
            what = f"all {calls} model call(s) failed"
        else:
            return
        result.status = "error"
        result.errors.insert(0, f"{what} (model {model}): {(error or '').splitlines()[0][:300]}")

    async def _solve_into(self, task: Task, result: InstanceResult, epoch: int) -> SandboxPool:
        cfg = self.config
        self.progress.stage(task.instance_id, "environment")
        pool, repo_dir, budget = await self.prepare_instance(task, result)
        # The instance's view of the shared client: its calls are keyed and attributed by this scope.
        model = self.model.scoped(CallScope(instance_id=task.instance_id, epoch=epoch))
        self.progress.stage(task.instance_id, "context")
        states = _StageReporting(NamespacedStateStore(self.store, f"{task.instance_id}:{self.config_hash}:{epoch}"),
                                 self.progress, task.instance_id, cfg.trajectories.num_tests,
                                 cfg.trajectories.num_edits)
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
            self.progress.trajectories_running += max(trajectory_cfg.num_tests, trajectory_cfg.num_edits)
            try:
                if trajectory_cfg.adaptive.enabled:
                    trajectories = await self._sample_adaptively(task, result, pool, repo_dir, states, context,
                                                                 trajectory_cfg, budget, model)
                else:
                    instance = Instance(model, pool, repo_dir, task.issue, states, budget)
                    trajectories = await run_trajectories(instance, context=context, key="traj",
                                                          config=trajectory_cfg)
            finally:
                self.progress.trajectories_running -= max(trajectory_cfg.num_tests, trajectory_cfg.num_edits)
                if not context.done():
                    context.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await context
        result.trajectories = trajectories
        result.errors += [t.error for t in trajectories if t.error]
        candidates = [Candidate(id=f"t{t.index}", patch=t.editing.patch, source=f"trajectory {t.index}")
                      for t in trajectories if t.editing and t.editing.patch]
        tests = self._tests_of(trajectories)
        sel_cfg = self.selection_config(task)
        self.progress.stage(task.instance_id, "matrix")
        selection = await select_patch(candidates, pool=pool, repo_dir=repo_dir, issue=task.issue, tests=tests,
                                       model=model, budget=budget, config=sel_cfg, store=states)
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
        return pool

    async def _sample_adaptively(self, task: Task, result: InstanceResult, pool: SandboxPool, repo_dir: Path,
                                 states: StateStore, context: Any, trajectory_cfg: Any,
                                 budget: Budget, model: ModelClient) -> list[TrajectoryResult]:
        """Trajectories until the evidence is decisive (patchswarm.adaptive); each look at the evidence is
        an LLM-free selection whose cells are cached, so only the new candidates' and tests' cells run."""
        adaptive = trajectory_cfg.adaptive
        look = self.selection_config(task).model_copy(update={"selector_enabled": False})

        async def run_round(count: int, extra: Any) -> list[TrajectoryResult]:
            grown = trajectory_cfg.model_copy(update={"num_tests": count, "num_edits": count})
            instance = Instance(model, pool, repo_dir, task.issue, states, budget)
            return await run_trajectories(instance, context=context, key="traj", config=grown, extra_attempts=extra)

        async def evaluate(trajectories: list[TrajectoryResult]) -> SelectionResult:
            return await select_patch(candidates_of(trajectories), pool=pool, repo_dir=repo_dir, issue=task.issue,
                                      tests=self._tests_of(trajectories), config=look)

        sampler = AdaptiveSampler(adaptive, instance_id=task.instance_id, budget=budget,
                                  shares=self.shares if adaptive.share_budget else None)
        result.adaptive = sampler.record
        try:
            return await sampler.run(run_round, evaluate)
        finally:
            self.store.event("adaptive", task.instance_id, stop_reason=sampler.record.stop_reason,
                             samples=sampler.record.samples, extensions=sampler.record.extensions)

    async def prepare_instance(self, task: Task, result: InstanceResult) -> tuple[RecordingPool, Path, Budget]:
        """An instance's environment image, host checkout of the base tree, sandbox pool and budget."""
        cfg = self.config
        source = RepoSource(location=task.repo, commit=task.commit)
        image_tag, sandbox_options = await self._environment(task, source, result)
        repo_dir = await asyncio.to_thread(self._checkout, source)
        pool = RecordingPool(self.manager, image_tag, cfg.sandbox.pool_size, limits=cfg.sandbox.limits,
                             store=self.store, progress=self.progress, instance_id=task.instance_id,
                             **sandbox_options)
        # What this instance spent before a resume counts against its limit; the run budget already holds
        # it (charged from the store's totals at start), so charge it before linking to the run budget.
        budget = Budget(cfg.budget.max_cost_per_instance_usd, f"instance {task.instance_id}")
        budget.charge(self.store.totals(task.instance_id)["cost_usd"])
        budget.parent = self.budget
        return pool, repo_dir, budget

    def selection_config(self, task: Task) -> SelectionConfig:
        """Selection settings for one instance: the run's execution cache, the task's own test command."""
        sel_cfg = self.config.selection
        if sel_cfg.cache_dir is None:
            sel_cfg = sel_cfg.model_copy(update={"cache_dir": self.run_dir / "exec-cache"})
        if task.test_cmd and not sel_cfg.regression_cmd:
            sel_cfg = sel_cfg.model_copy(update={"regression_cmd": task.test_cmd})
        if task.swebench is not None and not (sel_cfg.regression_cmd or sel_cfg.regression_file_cmd):
            from patchswarm.swebench.tasks import spec_test_command

            sel_cfg = sel_cfg.model_copy(update={"regression_file_cmd": spec_test_command(task.swebench)})
        return sel_cfg

    async def _environment(self, task: Task, source: RepoSource, result: InstanceResult) -> tuple[str, dict]:
        """The image to run the task in, and how sandboxes of it must be started (user, workdir)."""
        log_dir = self.run_dir / "logs"
        if task.swebench is not None:
            from patchswarm.swebench.tasks import instance_environment

            image = await asyncio.to_thread(instance_environment, self.docker, task.swebench,
                                            run_id=self.manager.run_id, log_dir=log_dir,
                                            on_phase=lambda name: self.progress.stage(task.instance_id, name))
            result.environment = image.model_dump()
            return image.tag, {"user": image.user, "workdir": image.workdir}
        env = EnvSpec(base_image=task.base_image, python=task.python, setup=task.setup, test_cmd=task.test_cmd)
        image = await asyncio.to_thread(build_env_image, self.docker, source, env, run_id=self.manager.run_id,
                                        log_dir=log_dir)
        result.environment = image.model_dump()
        return image.tag, {}

    @staticmethod
    def _tests_of(trajectories: list[TrajectoryResult]) -> list[GeneratedTest]:
        tests, seen = [], set()
        for t in trajectories:
            for code, origin in ((t.editing.test_code if t.editing else None, "editing"),
                                 (t.testing.test_code if t.testing else None, "testing")):
                if code and code not in seen:
                    seen.add(code)
                    tests.append(GeneratedTest(id=f"{origin}{t.index}", code=code, source=f"{origin} trajectory {t.index}"))
        return tests

    def _checkout(self, source: RepoSource) -> Path:
        git_dir = local_git_dir(source)
        sha = resolve_commit(git_dir, source.commit, source.location)
        return checkout_tree(git_dir, sha, self.run_dir / "checkouts" / sha)

    def _save(self, result: InstanceResult) -> None:
        data = result.model_dump(mode="json")
        folder = f"instances/{safe_name(result.instance_id)}"
        self.store.write_file(f"{folder}/result.json", json.dumps(storable_data(data), indent=2))
        self.store.write_file(f"{folder}/patch.diff", result.patch)
        self.store.mark_instance(result.instance_id, self.config_hash, result.status, result=data,
                                 error="; ".join(result.errors) or None, cost_usd=result.cost_usd)
        # As each instance finishes, so an interrupted batch or a later slice keeps what was done.
        predictions.append(self.run_dir / predictions.FILE_NAME, [self.prediction(result)])

    def prediction(self, result: InstanceResult) -> dict[str, str]:
        return predictions.prediction(result.instance_id, result.patch, self.model_name)


def share_pool(config: PatchswarmConfig, instances: int) -> SharePool | None:
    """The batch's budget shares when adaptive sampling shares a --max-cost (else None: no sharing)."""
    adaptive = config.trajectories.adaptive
    if not (adaptive.enabled and adaptive.share_budget) or config.budget.max_cost_usd is None or instances < 1:
        return None
    return SharePool(config.budget.max_cost_usd, instances, config.budget.max_cost_per_instance_usd)


class Executor(Protocol):
    """Solves a batch's instances elsewhere (e.g. `ray_executor.RayExecutor`) into `runner`'s store and progress."""

    async def run_all(self, runner: Runner, tasks: list[Task], workers: int) -> list[InstanceResult]: ...


async def _run_all(runner: Runner, tasks: list[Task], workers: int,
                   executor: Executor | None = None) -> list[InstanceResult]:
    loop = asyncio.get_running_loop()
    # Sandboxes and Docker calls block; give them threads enough not to queue behind each other.
    loop.set_default_executor(ThreadPoolExecutor(max_workers=64, thread_name_prefix="patchswarm"))
    slots = asyncio.Semaphore(workers)
    if executor is None:
        runner.shares = share_pool(runner.config, len(tasks))

    async def one(task: Task) -> InstanceResult:
        async with slots:
            return await runner.solve(task)

    try:
        if executor is not None:
            return await executor.run_all(runner, tasks, workers)
        return list(await asyncio.gather(*(one(t) for t in tasks)))
    except BaseException:
        # Ctrl-C / SIGTERM: remove the containers now. That also ends the sandbox commands that worker
        # threads are blocked on, which asyncio.run would otherwise wait for before returning.
        runner.manager.close_all()
        raise


def run_tasks(tasks: list[Task], config: PatchswarmConfig, run_dir: Path, *, redo: bool = False,
              live: bool | None = None, executor: Executor | None = None,
              model_name: str | None = None, providers: Providers | None = None) -> list[InstanceResult]:
    """Solve `tasks` into `run_dir` (resuming what is there). Ctrl-C leaves no container behind.

    `executor` None solves on this machine; another executor (e.g. Ray) solves elsewhere into the same store.
    `providers`: model providers injected by prefix (the scripted model, agent.llm); litellm serves the rest.
    """
    check_budget_prices(config)  # before anything is made or paid
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_run_dir(run_dir), Progress(len(tasks), run_dir / "events.jsonl", live=live, max_cost_usd=config.budget.max_cost_usd) as progress:
        runner = Runner(config, run_dir, progress, redo=redo, model_name=model_name, providers=providers)
        runner.store.set_meta("status", "running")
        try:
            results = asyncio.run(_run_all(runner, tasks, config.workers, executor))
            # One line per instance: earlier slices and reruns, then this command's results (skipped ones too).
            predictions.compact(run_dir / predictions.FILE_NAME, [runner.prediction(r) for r in results])
            runner.store.set_meta("status", "finished")
            return results
        except BaseException:
            runner.store.set_meta("status", "interrupted")
            raise
        finally:
            runner.close()
