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
