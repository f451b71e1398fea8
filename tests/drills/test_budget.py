"""Drills of issue 14 item 4: `--max-cost` overran several times over when trajectories fanned out, and a
model with no known price escaped a budget silently."""

from __future__ import annotations

import asyncio
import json

from agent.budget import Budget, BudgetExceeded
from agent.model import ModelClient, PriceOverride
from agent.pricing import worst_case_usd
from agent.scripted import Reply
from tests.conftest import providers, scripted_settings
from tests.patchswarm.test_cli import SCRIPTED_ROLES, error_line, invoke

PRICE = PriceOverride(input_per_mtok=1000.0, output_per_mtok=1000.0)  # $0.001 a token: visible sums
MESSAGES = [{"role": "user", "content": "write the next edit"}]
MAX_TOKENS = 150
WORKERS = 12


def test_fanned_out_calls_overrun_by_at_most_one_calls_worst_case(scripted):
    reply = Reply("x" * 400, delay_s=0.05)  # 100 output tokens: about $0.1 a call
    scripted.add("main", lambda messages: reply)
    settings = scripted_settings(price_overrides={"scripted/main": PRICE}, max_concurrency=WORKERS)
    client = ModelClient(settings, providers=providers(scripted))
    run = Budget(0.5, "run")

    async def trajectory(number: int) -> None:
        budget = run.child(None, f"instance {number % 3}").child(None, f"trajectory {number}")
        while True:
            try:
                await client.complete("primary", MESSAGES, budget=budget, max_tokens=MAX_TOKENS)
            except BudgetExceeded:
                return

    async def fan_out() -> None:
        await asyncio.gather(*(trajectory(n) for n in range(WORKERS)))

    asyncio.run(fan_out())
    worst = worst_case_usd("scripted/main", MESSAGES, MAX_TOKENS, settings.price_overrides)
    assert run.spent_usd >= 0.5 - 0.11  # the budget was used, not refused early
    assert run.spent_usd <= 0.5 + worst, f"spent ${run.spent_usd:.3f} of $0.50 (one call's worst: ${worst:.3f})"


def test_a_cancelled_call_releases_what_it_reserved(scripted):
    scripted.add("main", [Reply("slow", delay_s=30), "fast"])
    client = ModelClient(scripted_settings(price_overrides={"scripted/main": PRICE}), providers=providers(scripted))
    budget = Budget(1.0, "run")

    async def cancel_then_call() -> str:
        slow = asyncio.create_task(client.complete("primary", MESSAGES, budget=budget, max_tokens=900))
        await asyncio.sleep(0.2)
        slow.cancel()
        # This call's worst case fits only once the cancelled call's reservation is gone.
        return (await asyncio.wait_for(client.complete("primary", MESSAGES, budget=budget, max_tokens=900), 10)).text

    assert asyncio.run(cancel_then_call()) == "fast"


def test_a_budget_with_an_unpriced_model_is_refused_naming_it(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"repo": ".", "commit": "HEAD", "issue": "x"}) + "\n")
    run_dir = tmp_path / "run"
    result = invoke("batch", "--tasks", str(tasks), "--run-dir", str(run_dir), "--max-cost", "1.5", *SCRIPTED_ROLES)
    assert result.exit_code == 1
    line = error_line(result)
    assert "budget.max_cost_usd=1.5 cannot be enforced" in line and "scripted/calc" in line
    assert "models.price_overrides" in line
    assert not run_dir.exists()
