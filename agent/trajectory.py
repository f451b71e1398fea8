"""N parallel trajectories of one instance: N testing machines, then N editing machines seeded by their tests.

Within each phase the first machine's first model call runs alone when the model has a provider prompt
cache (it writes the cache of the shared prefix; see ModelSettings.warm_prefix_cache), then every
machine runs concurrently: model calls under the client's concurrency
limit, sandbox runs under the pool's. A machine that fails ends with outcome "model_error" or
"crashed" and its error text; the others carry on. Calling `run_trajectories` again with the same
state store and call store resumes: finished machines return their stored results, the others continue
from their last saved step without repeating a completed model call.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from pydantic import Field

from agent.actions import INFRASTRUCTURE, ConversationMachine
from agent.budget import Budget, Spend
from agent.editing import EditingMachine, EditingResult
from agent.instance import Instance, TrajectoryConfig
from agent.model import warm_then_fan_out
from agent.testing import TestingMachine, TestingResult
from agent.types import EXIT_ISSUE_PRESENT, ContextBundle
from sandbox.errors import SandboxError


class TrajectoryResult(Spend):
    index: int
    testing: TestingResult | None = Field(None, description="Testing machine `index` (None beyond num_tests).")
    editing: EditingResult | None = Field(None, description="Editing machine `index` (None beyond num_edits).")
    seed_test_index: int | None = Field(None, description="Index of the testing result that seeded the editing machine.")
    error: str | None = Field(None, description="Why a machine of this trajectory failed (model_error / crashed).")
    infrastructure: bool = Field(False, description="A machine failed for the sandbox or engine (not the model or the "
                                                    "repository): its outcome is unknown, never a result.")


def choose_seeds(results: list[TestingResult], count: int) -> list[TestingResult | None]:
    """Round-robin over approved tests; with none approved, the single best test available.

    Best: reproduces (exits 2 on the original repository), then any test at all, then the lowest index.
    """
    approved = [r for r in results if r.approved and r.test_code]
    if not approved:
        written = [r for r in results if r.test_code]
        written.sort(key=lambda r: (r.original_exit_code != EXIT_ISSUE_PRESENT, r.index))
        approved = written[:1]
    return [approved[i % len(approved)] if approved else None for i in range(count)]


async def _fan_out(machines: Sequence[ConversationMachine[Any]], warm: bool) -> list:
    """Run all machines; never raises for one machine. With `warm`, machine 0's first call runs alone
    first so the others read the provider's cache of the shared prefix."""
    if not machines:
        return []
    if not warm:
        return list(await asyncio.gather(*(m.run() for m in machines), return_exceptions=True))
    results = await warm_then_fan_out(machines[0].warm, [m.run for m in machines])
    return results[1:]


def _failure(result: TestingResult | EditingResult | BaseException | None, phase: str) -> str | None:
    if isinstance(result, BaseException):
        return f"{phase}: {type(result).__name__}: {result}"
    if result is not None and result.outcome in ("model_error", "crashed"):
        return f"{phase}: {result.error}"
    return None


def _infrastructure(result: object) -> bool:
    """The machine failed for the sandbox or engine (raised, or crashed and said so), not the model or repo."""
    if isinstance(result, SandboxError | OSError):
        return True
    error = getattr(result, "error", None) if getattr(result, "outcome", None) == "crashed" else None
    return isinstance(error, str) and error.startswith(INFRASTRUCTURE)


async def run_trajectories(
    instance: Instance, *, context: ContextBundle | str | Awaitable[ContextBundle | str], key: str,
    config: TrajectoryConfig | None = None, extra_attempts: Mapping[int, int] | None = None,
) -> list[TrajectoryResult]:
    """Run the trajectories of one instance; one result per index, in index order.

    `key` prefixes the machines' keys in the instance's store; each trajectory's budget is a child of
    the instance's. `context` may still be in the making (an awaitable): testing machines never see
    code, so they run while it is built.
    `extra_attempts` gives editing machine i that many attempts more (adaptive sampling extends one
    trajectory that ran out of attempts: it continues its conversation).
    """
    config = config or TrajectoryConfig()
    count = max(config.num_tests, config.num_edits)
    budgets = [_trajectory_budget(instance.budget, config, i) for i in range(count)]
    testers = [TestingMachine(instance, key=f"{key}/testing/{i}", index=i, budget=budgets[i], config=config)
               for i in range(config.num_tests)]
    warm = instance.model.should_warm_cache("primary")
    tested = await _fan_out(testers, warm)
    if inspect.isawaitable(context):
        context = await context
    seeds = choose_seeds([r for r in tested if isinstance(r, TestingResult)], config.num_edits)
    editors = [
        EditingMachine(instance, context=context, seed=seeds[i], key=f"{key}/editing/{i}", index=i,
                       budget=budgets[i], config=config, extra_attempts=(extra_attempts or {}).get(i, 0))
        for i in range(config.num_edits)
    ]
    edited = await _fan_out(editors, warm)
    results = []
    for i in range(count):
        testing = tested[i] if i < len(tested) else None
        editing = edited[i] if i < len(edited) else None
        machines: list[ConversationMachine[Any]] = [m[i] for m in (testers, editors) if i < len(m)]
        seed = seeds[i] if i < len(seeds) else None
        error = _failure(testing, "testing") or _failure(editing, "editing")
        results.append(TrajectoryResult(
            index=i,
            testing=testing if isinstance(testing, TestingResult) else None,
            editing=editing if isinstance(editing, EditingResult) else None,
            seed_test_index=seed.index if seed is not None else None,
            **dict(Spend.total(m.state for m in machines)),
            error=error,
            # OSError: an engine that went away mid-request (requests' ConnectionError is one), a host fault.
            infrastructure=any(_infrastructure(r) for r in (testing, editing)),
        ))
    return results


def _trajectory_budget(parent: Budget | None, config: TrajectoryConfig, index: int) -> Budget | None:
    name = f"trajectory-{index}"
    if parent is not None:
        return parent.child(config.trajectory_budget_usd, name)
    return None if config.trajectory_budget_usd is None else Budget(config.trajectory_budget_usd, name)
