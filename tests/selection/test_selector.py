"""The selector state machine on in-process sandboxes: turns, typed outcomes, resume, failures."""

from __future__ import annotations

import asyncio

import pytest

from agent.scripted import text_of
from agent.types import InMemoryStateStore
from selection.cache import OutcomeCache
from selection.candidates import distinct_patches
from selection.matrix import CachedJobRunner
from selection.selector import run_selector
from tests.selection.conftest import candidate

MEDIAN_TEST = ("import sys\nfrom mathlib import stats\nprint(stats.median([4, 1, 3, 2]))\n"
               "sys.exit(0 if stats.median([4, 1, 3, 2]) == 2.5 else 2)\n")


class Killed(BaseException):
    """Stands in for the process being killed: nothing in the machine may catch it."""


class KillingStore(InMemoryStateStore):
    def __init__(self, die_on_save: int) -> None:
        super().__init__()
        self.saves, self.die_on_save = 0, die_on_save

    def save(self, key, state) -> None:
        self.saves += 1
        if self.saves == self.die_on_save:
            raise Killed()
        super().save(key, state)


def finalists():
    return distinct_patches([candidate("breaker"), candidate("right")])


def choose_passing(messages):
    last = text_of(messages[-1]["content"])
    if "Your test was run" not in last:
        return f"<test>\n{MEDIAN_TEST}</test>"
    return "<choice>B</choice>" if "### Candidate B: exit 0" in last else "<choice>A</choice>"


def selector(model, pool, tmp_path, store=None, max_attempts=3, executor=None):
    executor = executor or CachedJobRunner(pool, OutcomeCache(None), pool.image_id())
    return asyncio.run(run_selector(model, None, executor, issue="median of an even list is wrong",
                                    finalists=finalists(), repo_dir=tmp_path, evidence={}, example_test=None,
                                    max_attempts=max_attempts, timeout=30, store=store))


def test_a_test_then_a_choice(scripted, model_client, pool, tmp_path):
    scripted.add("sel", choose_passing)
    outcome = selector(model_client, pool, tmp_path)
    assert outcome.outcome == "chosen" and outcome.chosen_key == finalists()[1].key
    assert "chose B on turn 2 after 1 test(s)" in outcome.reason
    run = outcome.test_runs[0]
    assert run.original.exit_code == 0 and run.by_patch[finalists()[1].key].exit_code == 0
    assert run.by_patch[finalists()[0].key].exit_code == 2  # the breaker breaks the even median
    assert outcome.calls == 2 and outcome.cost_usd > 0 and outcome.unknown_cost_calls == 0
    assert [m.role for m in outcome.transcript] == ["system", "user", "assistant", "user", "assistant"]
    assert "(2 replies left)" in outcome.transcript[3].content


def test_killed_after_the_test_ran_resumes_without_repeating_a_call_or_the_run(scripted, model_client, pool,
                                                                              tmp_path):
    scripted.add("sel", choose_passing)
    store = KillingStore(die_on_save=3)  # saves: after the reply, after the run, after the choice
    with pytest.raises(Killed):
        selector(model_client, pool, tmp_path, store=store)
    assert len(scripted.calls("sel")) == 2  # the choice was made, its state never saved
    store.die_on_save = 0
    created = pool.created
    resumed = selector(model_client, pool, tmp_path, store=store)
    assert resumed.outcome == "chosen" and resumed.chosen_key == finalists()[1].key
    assert len(resumed.test_runs) == 1 and pool.created == created
    # The choice call is asked again (its state was lost), but no test runs again.
    assert len(scripted.calls("sel")) == 3


def test_no_choice_with_no_reply_left_names_the_last_problem(scripted, model_client, pool, tmp_path):
    scripted.add("sel", ["Both look fine.", f"<test>\n{MEDIAN_TEST}</test>"])
    outcome = selector(model_client, pool, tmp_path, max_attempts=2)
    assert outcome.outcome == "no_choice" and outcome.chosen_key is None and not outcome.test_runs
    assert "no valid choice after 2 selector replies" in outcome.reason
    assert "a test on the last reply, where a <choice> was required" in outcome.reason
    assert "This is your last reply" in outcome.transcript[3].content


def test_a_failing_sandbox_is_a_crashed_selector_not_an_exception(scripted, model_client, pool, tmp_path):
    class BrokenJobRunner:
        async def run(self, jobs):
            raise RuntimeError("engine gone")

    scripted.add("sel", choose_passing)
    outcome = selector(model_client, pool, tmp_path, executor=BrokenJobRunner())
    assert outcome.outcome == "crashed" and "RuntimeError: engine gone" in outcome.reason
