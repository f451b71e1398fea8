"""`patchswarm select`: choose among candidate patches from any source (prediction files, patch dirs).

Each instance gets its environment and checkout as in the pipeline; reproduction tests are generated with
the testing state machine when the instance has a choice to make; then the test matrix, votes, regression
check and selector pick one patch. No correctness labels are needed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.instance import Instance
from agent.llm import Providers
from agent.model import CallScope
from agent.trajectory import run_trajectories
from patchswarm.config import PatchswarmConfig
from patchswarm.paths import safe_name
from patchswarm.pipeline import InstanceResult, Runner, check_budget_prices
from patchswarm.progress import Progress
from patchswarm.store import NamespacedStateStore
from patchswarm.tasks import Task
from selection import Candidate, GeneratedTest, SelectionResult, select_patch, write_predictions


async def _select_one(runner: Runner, task: Task, candidates: list[Candidate], generate: bool) -> SelectionResult:
    """One instance's selection; its failure (an environment that does not build, a lost engine) is this
    instance's `error` result, and the other instances go on."""
    runner.progress.event("instance_started", task.instance_id)
    try:
        result = await _select_in_environment(runner, task, candidates, generate)
    except Exception as exc:  # noqa: BLE001 - one instance's failure must not end the run
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        result = SelectionResult(chosen_id=None, method="error", reason=f"{type(exc).__name__}: {text}",
                                 confidence_reason="selection did not run")
    runner.store.event("selection", task.instance_id, method=result.method, reason=result.reason,
                       chosen=result.chosen_id)
    runner.store.write_file(f"selection/{safe_name(task.instance_id)}.json", result.model_dump_json(indent=2))
    runner.progress.event("instance_done", task.instance_id, method=result.method, chosen=result.chosen_id)
    return result


async def _select_in_environment(runner: Runner, task: Task, candidates: list[Candidate],
                                 generate: bool) -> SelectionResult:
    cfg = runner.config
    scratch = InstanceResult(instance_id=task.instance_id, status="failed")
    pool, repo_dir, budget = await runner.prepare_instance(task, scratch)
    states = NamespacedStateStore(runner.store, f"select:{task.instance_id}:{runner.config_hash}")
    model = runner.model.scoped(CallScope(instance_id=task.instance_id))  # keys and attributes its calls

    async def generate_tests() -> list[GeneratedTest]:
        # Testing machines only: they see the issue, never the candidates.
        config = cfg.trajectories.model_copy(update={"num_edits": 0})
        instance = Instance(model, pool, repo_dir, task.issue, states, budget)
        results = await run_trajectories(instance, context="", key="tests", config=config)
        return [GeneratedTest(id=f"generated{r.index}", code=r.testing.test_code, source=f"testing machine {r.index}")
                for r in results if r.testing and r.testing.test_code]

    try:
        result = await select_patch(candidates, pool=pool, repo_dir=repo_dir, issue=task.issue, model=model,
                                    budget=budget, config=runner.selection_config(task), store=states,
                                    generate_tests=generate_tests if generate else None)
    finally:
        pool.close()
    return result


def select_candidates(tasks: list[Task], candidates: dict[str, list[Candidate]], config: PatchswarmConfig,
                      run_dir: Path, out: Path, *, generate_tests: bool = True, live: bool | None = None,
                      model_name: str = "patchswarm-select",
                      providers: Providers | None = None) -> dict[str, SelectionResult]:
    """Select per instance; writes one prediction file with the provenance of each choice."""
    check_budget_prices(config)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    chosen_tasks = [t for t in tasks if t.instance_id in candidates]
    with Progress(len(chosen_tasks), run_dir / "events.jsonl", live=live) as progress:
        runner = Runner(config, run_dir, progress, providers=providers)
        try:
            async def all_of() -> list[SelectionResult]:
                slots = asyncio.Semaphore(config.workers)

                async def one(task: Task) -> SelectionResult:
                    async with slots:
                        return await _select_one(runner, task, candidates[task.instance_id], generate_tests)

                return list(await asyncio.gather(*(one(t) for t in chosen_tasks)))

            results = dict(zip([t.instance_id for t in chosen_tasks], asyncio.run(all_of()), strict=True))
        finally:
            runner.close()
    write_predictions(out, results, model_name)
    return results
