"""The replay of scripts/bench_adaptive.py on small hand-made pools: what a stopping rule draws per instance,
and that the held-out measurement runs each instance with a rule tuned without it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from selection.scoring import EvidenceKinds
from selection.stopping import StoppingRule

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from adaptive_replay import (  # noqa: E402
    Pool,
    Replay,
    RuleRunner,
    Sample,
    best_fixed,
    choose,
    fixed_cost_at,
    fixed_curve,
    held_out,
    repository_folds,
    rule_grid,
    tune,
    tune_to_match,
)


def sample(i: int, *, resolved: bool, change: str, **evidence) -> Sample:
    return Sample(id=f"c{i}", key=f"{change}{i}", agreement=change, applies=True, resolved=resolved, **evidence)


def easy() -> Pool:
    # Every candidate reproduces the fix and behaves the same: decided on the second sample.
    fix = dict(changed=True, observed="fixed", probe_fixes=1, regressions=0, lines=2)
    return Pool("easy", [sample(i, resolved=True, change=f"p{i}", **fix) for i in range(6)])


def blind() -> Pool:
    # Nothing executed tells them apart (all behave like the original); one in six resolves, no agreement.
    return Pool("blind", [sample(i, resolved=i == 0, change=f"q{i}", regressions=0, lines=3 + i) for i in range(6)])


def test_the_evidence_rule_stops_early_on_easy_pools_and_the_uninformative_stop_caps_blind_ones():
    replay = Replay([easy(), blind()], seeds=20, kinds=EvidenceKinds())
    runner = RuleRunner(replay)
    rule = StoppingRule(rule="evidence", min_samples=2, max_samples=6, uninformative_after=3)
    stats = runner.run(rule)
    assert stats["per_instance"]["easy"] == {"consumed": 2.0, "accuracy": 1.0}
    assert stats["per_instance"]["blind"]["consumed"] == 3.0
    assert stats["reasons"] == {"decisive": 20, "uninformative": 20}
    # The margin rule waits for agreement the easy pool never shows (all changes differ): it draws all six.
    margin = runner.run(StoppingRule(rule="margin", min_samples=2, max_samples=6, uninformative_after=None))
    assert margin["per_instance"]["easy"]["consumed"] == 6.0
    fixed = fixed_curve(replay)
    assert [p["consumed"] for p in fixed] == [1, 2, 3, 4, 5, 6]
    # The blind pool's smallest patch is the resolving one: drawing all finds it, one draw seldom does.
    assert fixed[-1]["accuracy"] == 1.0 and fixed[0]["accuracy"] < 0.75
    assert fixed_cost_at(fixed, 1.0) == 6 and fixed_cost_at(fixed, 1.1) is None


def test_held_out_runs_every_instance_with_a_rule_tuned_on_the_others():
    pools = [easy(), blind(), Pool("easy2", easy().samples)]
    held = held_out(RuleRunner(Replay(pools, seeds=6, kinds=EvidenceKinds())), rule_grid()[:40])
    assert set(held["rules"]) == {"easy", "blind", "easy2"}
    assert held["runs"] == 3 * 3  # the odd orders of each instance


def test_the_match_objective_takes_the_cheapest_rule_that_reaches_the_best_fixed_accuracy():
    # Two blind pools: the best fixed N draws all six (the smallest patch resolves); a rule matches it only by
    # drawing all six of the blind pools, while 'half' must stay within half of that and gives up accuracy.
    pools = [easy(), blind(), Pool("blind2", blind().samples)]
    runner = RuleRunner(Replay(pools, seeds=10, kinds=EvidenceKinds()))
    grid = rule_grid()
    best = best_fixed(fixed_curve(runner.replay))
    matched = runner.run(tune_to_match(runner, grid, None, None))
    assert matched["accuracy"] >= best["accuracy"] - 1e-9
    cheaper = [runner.run(r) for r in grid]
    assert all(s["consumed"] >= matched["consumed"] - 1e-9 for s in cheaper if s["accuracy"] >= best["accuracy"] - 1e-9)
    halved = runner.run(tune(runner, grid, None, None))
    assert halved["consumed"] <= best["consumed"] / 2 + 1e-9 < matched["consumed"]
    held = held_out(runner, grid[:40], "match")
    assert held["objective"] == "match" and set(held["rules"]) == {"easy", "blind", "blind2"}


def test_leave_one_repository_out_tunes_on_the_other_repositories_only():
    pools = [Pool("a__x-1", easy().samples), Pool("a__x-2", blind().samples), Pool("b__y-1", easy().samples)]
    folds = repository_folds([p.instance_id for p in pools])
    assert folds == [("a__x", ["b__y-1"], ["a__x-1", "a__x-2"]), ("b__y", ["a__x-1", "a__x-2"], ["b__y-1"])]
    held = held_out(RuleRunner(Replay(pools, seeds=4, kinds=EvidenceKinds())), rule_grid()[:40], "half", folds)
    assert set(held["rules"]) == {"a__x", "b__y"} and held["runs"] == 3 * 2
    with pytest.raises(ValueError, match="measures instances it was tuned on"):
        held_out(RuleRunner(Replay(pools, seeds=2, kinds=EvidenceKinds())), rule_grid()[:5], "half",
                 [("bad", ["a__x-1"], ["a__x-1"])])


def test_the_replay_counts_agreement_by_system_as_selection_does():
    # Two runs of one system ('swefixer') submit the same wrong change; two other systems agree on the right
    # one. Counted by submissions it is a tie that the smaller wrong patch wins; by systems the right one leads.
    def of(cid: str, change: str, resolved: bool, lines: int) -> Sample:
        return Sample(id=cid, key=f"{cid}-key", agreement=change, applies=True, resolved=resolved, regressions=0,
                      lines=lines)

    pool = [of("swefixer_lite", "wrong", False, 2), of("swefixer_verified", "wrong", False, 2),
            of("aider_gpt4o", "right", True, 5), of("moatless_claude", "right", True, 5)]
    look = choose(pool, EvidenceKinds())
    assert look.chosen is not None and look.chosen.resolved
    assert look.summary.options[0].support == 2 and look.summary.options[1].support == 1


def test_the_unreproduced_reading_follows_the_pools_probes():
    # Two blind pools that differ only in what their probes show on the original. Regressions tell the samples
    # apart (not 'same_behaviour'), but only where the probes reproduce nothing is there no fix to recognise.
    def pool(name: str, reproducing: int | None) -> Pool:
        samples = [sample(i, resolved=i == 0, change=f"r{i}", regressions=i % 2, behaviour=f"b{i % 2}", lines=3 + i)
                   for i in range(6)]
        return Pool(name, samples, probe_steps_reproducing=reproducing)

    replay = Replay([pool("silent", 0), pool("shown", 2), pool("unknown", None)], seeds=10, kinds=EvidenceKinds())
    rule = StoppingRule(rule="evidence", min_samples=2, max_samples=6, uninformative_after=3,
                        uninformative_when="unreproduced")
    stats = RuleRunner(replay).run(rule)
    assert stats["per_instance"]["silent"]["consumed"] == 3.0 and stats["reasons"]["uninformative"] == 10
    assert stats["per_instance"]["shown"]["consumed"] == stats["per_instance"]["unknown"]["consumed"] == 6.0
    # A lone candidate runs no probe: the replay does not know what they show.
    assert choose(pool("silent", 0).samples[:1], EvidenceKinds()).summary.probe_steps_reproducing is None
    assert choose(pool("silent", 0).samples[:2], EvidenceKinds(), 0).summary.probe_steps_reproducing == 0
    # The tuning may choose either reading of 'uninformative'.
    assert {r.uninformative_when for r in rule_grid()} == {"same_behaviour", "unreproduced"}
