"""One instance's lifecycle, the same for every executor and command:

    run_instance:    finished? → next epoch → mark running → instance_started → work → totals
                     → model failure? → save → instance_done | instance_failed
    select_instance: instance_started → work → selection event and file → instance_done

`work(task, epoch)` does a solved instance's work wherever it runs (here: `pipeline.solve_attempt`; on a
Ray node, streamed back into this store) and returns the result without totals; its calls are in the store
by then, so totals, the model-failure check and the saved files come from the store, the same way for all.
`select` chooses among outside candidates, which its config does not name: it records each choice but never
skips an instance as finished (the same config with other candidates must choose again).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

from agent.allocation import Shares
from agent.text import storable_data
from patchswarm import predictions
from patchswarm.paths import safe_name
from patchswarm.results import ERROR_STATUSES, FINAL_STATUSES, InstanceResult
from patchswarm.run_context import RunContext
from patchswarm.tasks import Task
from selection import SelectionResult

Work = Callable[[Task, int], Awaitable[InstanceResult]]


def finished(run: RunContext, task: Task) -> InstanceResult | None:
    """The stored result when `task` is done and need not run again."""
    prior = run.store.instance_status(task.instance_id, run.config_hash)
    # A budget-stopped instance is not final: rerunning (e.g. with a larger --max-cost) continues it.
    if prior and prior[0] in FINAL_STATUSES and prior[1] and not prior[1].get("budget_stopped") and not run.redo:
        return InstanceResult.model_validate(prior[1])
    return None


def next_epoch(run: RunContext, task: Task) -> int:
    """The instance's epoch: bumped by --redo of an instance that ran before, so its calls are made again."""
    key = f"epoch:{task.instance_id}"
    epoch = run.store.get_meta(key, 0)
    if run.redo and run.store.instance_status(task.instance_id, run.config_hash):
        epoch += 1
        run.store.set_meta(key, epoch)
    return epoch


async def release_share(shares: Shares | None, result: InstanceResult) -> None:
    """The instance is over: the unspent part of its budget share goes to the batch's pool. The sampler
    releases its own when it ends; this covers instances it never reached (finished in an earlier run,
    crashed before sampling), whose shares would otherwise be lost to the rest of the batch. Releasing
    twice is a no-op; a Ray actor's handle blocks, so it runs in a thread."""
    if shares is not None:
        await asyncio.to_thread(shares.release, result.instance_id, result.cost_usd)


async def run_instance(run: RunContext, task: Task, work: Work, *, shares: Shares | None = None) -> InstanceResult:
    """`shares`: the batch's budget shares when they live elsewhere (a Ray actor); default the run's."""
    shares = shares if shares is not None else run.shares
    done = finished(run, task)
    if done is not None:
        run.progress.event("instance_skipped", task.instance_id, status=done.status)
        await release_share(shares, done)
        return done
    epoch = next_epoch(run, task)
    started, calls_before = time.monotonic(), run.store.last_rowid("call_log")
    run.store.mark_instance(task.instance_id, run.config_hash, "running")
    run.progress.event("instance_started", task.instance_id)
    try:
        result = await work(task, epoch)
    except Exception as exc:  # noqa: BLE001 - one instance's crash never stops the batch
        result = InstanceResult(instance_id=task.instance_id, status="failed", issue=task.issue,
                                errors=[f"crashed: {type(exc).__name__}: {exc}"])
    except BaseException:  # cancelled by Ctrl-C: the store must not claim it is still running
        run.store.mark_instance(task.instance_id, run.config_hash, "interrupted")
        raise
    result.wall_time_s = round(time.monotonic() - started, 2)
    totals = run.store.totals(task.instance_id)
    result.cost_usd, result.unknown_cost_calls = totals.cost_usd, totals.unknown_cost_calls
    result.input_tokens, result.output_tokens = totals.input_tokens, totals.output_tokens
    result.cost_by_role = run.store.cost_by_role(task.instance_id)
    if result.status != "failed":
        _mark_model_failure(run, result, calls_before)
    save_result(run, result)
    await release_share(shares, result)
    kind = "instance_failed" if result.status in ERROR_STATUSES else "instance_done"
    run.progress.event(kind, task.instance_id, status=result.status, method=result.selection_method,
                       cost=round(result.cost_usd, 4), error=result.errors[0] if result.errors else None)
    return result


def _mark_model_failure(run: RunContext, result: InstanceResult, calls_before: int) -> None:
    """An instance whose trajectories' model calls all failed (or every call did) is an error, not a result:
    no_patch would claim the model tried and found nothing, and make the rerun skip it."""
    outcomes = run.store.call_outcomes(result.instance_id, after_id=calls_before)
    calls = sum(c for c, _, _ in outcomes.values())
    failed = sum(f for _, f, _ in outcomes.values())
    primary_calls, primary_failed, primary_error = outcomes.get("primary", (0, 0, None))
    if primary_calls and primary_failed == primary_calls:
        model, error = run.config.models.model_for("primary"), primary_error
        what = f"all {primary_calls} primary call(s) failed"
    elif calls and failed == calls:
        role = next(r for r, (c, f, _) in outcomes.items() if f)
        model, error = run.config.models.model_for(role), outcomes[role][2]  # type: ignore[arg-type]
        what = f"all {calls} model call(s) failed"
    else:
        return
    result.status = "error"
    result.errors.insert(0, f"{what} (model {model}): {(error or '').splitlines()[0][:300]}")


def save_result(run: RunContext, result: InstanceResult) -> None:
    """Result files, the instances row and the prediction line: what a finished instance leaves."""
    data = result.model_dump(mode="json")
    folder = f"instances/{safe_name(result.instance_id)}"
    run.store.write_file(f"{folder}/result.json", json.dumps(storable_data(data), indent=2))
    run.store.write_file(f"{folder}/patch.diff", result.patch)
    run.store.mark_instance(result.instance_id, run.config_hash, result.status, result=data,
                            error="; ".join(result.errors) or None, cost_usd=result.cost_usd)
    # As each instance finishes, so an interrupted batch or a later slice keeps what was done.
    predictions.append(run.run_dir / predictions.FILE_NAME, [prediction_of(run, result)])


def prediction_of(run: RunContext, result: InstanceResult) -> dict[str, str]:
    return predictions.prediction(result.instance_id, result.patch, run.model_name)


async def select_instance(run: RunContext, task: Task,
                          work: Callable[[Task], Awaitable[SelectionResult]]) -> SelectionResult:
    """One instance of `select`; its failure (an environment that does not build, a lost engine) is this
    instance's `error` result, and the other instances go on."""
    run.progress.event("instance_started", task.instance_id)
    try:
        result = await work(task)
    except Exception as exc:  # noqa: BLE001 - one instance's failure must not end the run
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        result = SelectionResult(chosen_id=None, method="error", reason=f"{type(exc).__name__}: {text}",
                                 confidence_reason="selection did not run")
    if lost := result.lost_evidence():  # chosen without some evidence the infrastructure lost: not a result
        result = result.model_copy(update={
            "chosen_id": None, "patch": "", "method": "error", "confidence": 0.0, "confidence_level": "none",
            "reason": lost})
    run.store.event("selection", task.instance_id, method=result.method, reason=result.reason,
                    chosen=result.chosen_id)
    run.store.write_file(f"selection/{safe_name(task.instance_id)}.json", result.model_dump_json(indent=2))
    run.progress.event("instance_done", task.instance_id, method=result.method, chosen=result.chosen_id)
    return result
