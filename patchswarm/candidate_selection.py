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
from patchswarm.lifecycle import select_instance
from patchswarm.progress import Progress
from patchswarm.run_context import RunContext, check_budget_prices, open_run, stopping_sandboxes_on_interrupt
from patchswarm.store import NamespacedStateStore
from patchswarm.tasks import Task
from patchswarm.workspace import environment_of, open_workspace, selection_config
from selection import Candidate, GeneratedTest, SelectionResult, select_patch, write_predictions


async def _select_in_environment(run: RunContext, task: Task, candidates: list[Candidate],
                                 generate: bool) -> SelectionResult:
    environment = await environment_of(run, task)
    run.progress.stage(task.instance_id, "checkout")
    workspace = await open_workspace(run, task, environment)
    pool, repo_dir, budget = workspace.pool, workspace.repo_dir, workspace.budget
    states = NamespacedStateStore(run.store, f"select:{task.instance_id}:{run.config_hash}")
    model = run.model.scoped(CallScope(instance_id=task.instance_id))  # keys and attributes its calls

    async def generate_tests() -> list[GeneratedTest]:
        # Testing machines only: they see the issue, never the candidates.
        config = run.config.trajectories.model_copy(update={"num_edits": 0})
        instance = Instance(model, pool, repo_dir, task.issue, states, budget)
        results = await run_trajectories(instance, context="", key="tests", config=config)
        return [GeneratedTest(id=f"generated{r.index}", code=r.testing.test_code, source=f"testing machine {r.index}")
                for r in results if r.testing and r.testing.test_code]

    try:
        return await select_patch(candidates, pool=pool, repo_dir=repo_dir, issue=task.issue, model=model,
                                  budget=budget, config=selection_config(run, task), store=states,
                                  generate_tests=generate_tests if generate else None,
                                  on_stage=lambda name: run.progress.stage(task.instance_id, name))
    finally:
        workspace.close()


def select_candidates(tasks: list[Task], candidates: dict[str, list[Candidate]], config: PatchswarmConfig,
                      run_dir: Path, out: Path, *, generate_tests: bool = True, live: bool | None = None,
                      model_name: str = "patchswarm-select",
                      providers: Providers | None = None) -> dict[str, SelectionResult]:
    """Select per instance; writes one prediction file with the provenance of each choice."""
    check_budget_prices(config)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    chosen_tasks = [t for t in tasks if t.instance_id in candidates]
    with Progress(len(chosen_tasks), run_dir / "events.jsonl", live=live) as progress, \
            open_run(config, run_dir, progress, providers=providers) as run:
        async def all_of() -> list[SelectionResult]:
            slots = asyncio.Semaphore(config.workers)

            async def work(task: Task) -> SelectionResult:
                return await _select_in_environment(run, task, candidates[task.instance_id], generate_tests)

            async def one(task: Task) -> SelectionResult:
                async with slots:
                    return await select_instance(run, task, work)

            return list(await stopping_sandboxes_on_interrupt(run, asyncio.gather(*(one(t) for t in chosen_tasks))))

        results = dict(zip([t.instance_id for t in chosen_tasks], asyncio.run(all_of()), strict=True))
    write_predictions(out, results, model_name)
    return results
