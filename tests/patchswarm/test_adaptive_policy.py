"""The serial-vs-parallel policy of adaptive sampling (pure: trajectory results and a selection result)."""

from __future__ import annotations

from agent.editing import EditingResult
from agent.trajectory import TrajectoryResult
from patchswarm.adaptive import AdaptiveConfig, choose_growth
from selection.models import CandidateReport, SelectionResult


def trajectory(index: int, outcome: str, original: int | None = 2, edited: int | None = 2) -> TrajectoryResult:
    editing = EditingResult(index=index, patch=f"--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+{index}\n", test_code="t",
                            outcome=outcome, edited_exit_code=edited, original_exit_code=original, messages=[])
    return TrajectoryResult(index=index, editing=editing)


def selection(*reports: CandidateReport) -> SelectionResult:
    return SelectionResult(chosen_id=None, method="vote", reason="-", candidates=list(reports))


def test_extend_the_trajectory_that_came_closest():
    trajectories = [trajectory(0, "attempts_exhausted", edited=1), trajectory(1, "attempts_exhausted"),
                    trajectory(2, "finished")]
    evidence = selection(CandidateReport(id="t0", status="ok", group="g1"),
                         CandidateReport(id="t1", status="ok", votes=1, group="g2"),
                         CandidateReport(id="t2", status="ok", group="g3"))
    growth, index, why = choose_growth(trajectories, evidence, AdaptiveConfig(), {})
    assert (growth, index) == ("extend", 1) and "passes 1 voting test" in why  # a vote beats a moved exit code
    growth, index, why = choose_growth(trajectories, evidence, AdaptiveConfig(), {1: 2})  # extended enough
    assert (growth, index) == ("extend", 0) and "exit 2 to 1" in why
    assert choose_growth(trajectories, evidence, AdaptiveConfig(policy="fresh"), {})[0] == "fresh"


def test_all_failing_the_same_way_starts_fresh():
    trajectories = [trajectory(0, "attempts_exhausted"), trajectory(1, "finished")]
    same = selection(CandidateReport(id="t0", status="ok", group="g1"), CandidateReport(id="t1", status="ok", group="g1"))
    growth, index, why = choose_growth(trajectories, same, AdaptiveConfig(), {})
    assert (growth, index) == ("fresh", None) and "fail the same way" in why
    # 'extend' extends whatever ran out of attempts, even without a sign of progress.
    assert choose_growth(trajectories, same, AdaptiveConfig(policy="extend"), {})[:2] == ("extend", 0)
    assert choose_growth([], selection(), AdaptiveConfig(), {})[2] == "no trajectory produced an edit that applies"


def test_the_sampler_stops_when_all_samples_fail_the_same_way_and_says_so():
    import asyncio

    from patchswarm.adaptive import AdaptiveSampler
    from selection.stopping import StoppingRule

    rule = StoppingRule(rule="evidence", min_samples=2, max_samples=8, uninformative_after=3)
    sampler = AdaptiveSampler(AdaptiveConfig(enabled=True, initial=2, stopping=rule), instance_id="i", budget=None)
    rounds: list[int] = []

    async def run_round(count, extra):
        rounds.append(count)
        return [trajectory(i, "finished") for i in range(count)]

    async def evaluate(trajectories):
        # Distinct changes, no vote, all behaving like the original and breaking nothing: one behaviour.
        return selection(*(CandidateReport(id=f"t{t.index}", status="ok", group="g1", rank=t.index + 1,
                                           regression_checked=True) for t in trajectories))

    asyncio.run(sampler.run(run_round, evaluate))
    record = sampler.record
    assert rounds == [2, 3] and record.samples == 3 and record.stop_reason == "uninformative"
    assert "fail the same way" in record.stop_detail
    assert [s.action for s in record.steps] == ["fresh", "stop"]
