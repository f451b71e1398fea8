"""Rules learned from real candidate pools (benchmarks/selection_real/README.md), on the stats fixture:
tests every system breaks are the issue's change, messages the issue asks for are not debug output, and
scratch files never count as a fix."""

from __future__ import annotations

import asyncio

from selection import Candidate, SelectionConfig, select_patch
from selection.regression import intended_changes
from tests.selection.conftest import CASES

RULES = CASES / "evidence_rules"
NO_SELECTOR = SelectionConfig(selector_enabled=False)


def rule_candidate(name: str, candidate_id: str) -> Candidate:
    return Candidate(id=candidate_id, patch=(RULES / f"{name}.diff").read_text(), source=f"fixture:{name}")


def select(pool, repo, issue: str, candidates: list[Candidate]):
    return asyncio.run(select_patch(candidates, pool=pool, repo_dir=repo, issue=issue, config=NO_SELECTOR))


def test_a_test_every_system_breaks_is_the_issues_change_not_a_regression(pool, stats_repo):
    """pylint-6506: the existing tests pin the behaviour the issue changes, so every real fix "breaks" them
    and only a candidate that changes nothing breaks none. When some candidate of every system breaks a
    test, its break does not count; the probe (2.5 → 2) then decides."""
    repo, _ = stats_repo
    issue = (RULES / "lower_middle.md").read_text()
    fixes = [rule_candidate("lower_middle", "acme_run1"), rule_candidate("lower_middle_min", "beta_agent"),
             rule_candidate("lower_middle_index", "gamma-v2")]
    noop = rule_candidate("docstring_only", "acme_run2")
    result = select(pool, repo, issue, [noop, *fixes])
    assert result.chosen_id in {"acme_run1", "beta_agent", "gamma-v2"}
    assert result.candidate("acme_run1").regressions == ["tests.teststats.MedianTest.test_median_even"]
    assert any("broken by every system checked" in note and "test_median_even" in note for note in result.notes)
    assert result.confidence_level != "high"  # a choice that discounts tests is never high

    # One system (acme) whose every candidate leaves the test passing: the break is evidence again
    # (sympy-14817: 7 of 8 systems broke a test the right patches keep passing).
    result = select(pool, repo, issue, [noop, *fixes[1:]])
    assert result.chosen_id == "acme_run2"
    assert not any("broken by every system" in note for note in result.notes)


def test_intended_changes_needs_every_system_and_three_of_them():
    systems = {"p1": {"a"}, "p2": {"b"}, "p3": {"c"}, "p4": {"a"}}
    broken = {"p1": ["t1", "t2"], "p2": ["t1"], "p3": ["t1", "t2"], "p4": []}
    assert intended_changes(broken, systems) == {"t1"}
    assert intended_changes({"p1": ["t1"], "p2": ["t1"]}, systems) == set()  # two systems are too few
