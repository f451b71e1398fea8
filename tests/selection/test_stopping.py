"""The stopping rule of sequential sampling over evidence summaries (pure: no sandbox, no model)."""

from __future__ import annotations

from selection.models import Candidate, CandidateReport, ProbeReport, ReproTestReport, SelectionResult
from selection.stopping import EvidenceSummary, Option, StoppingRule, decide, hardness, summarize

RULE = StoppingRule(rule="margin", min_samples=2, max_samples=6, vote_margin=1, min_agreement=2, agreement_margin=1,
                    uninformative_after=None)


def summary(samples: int, *options: Option, voting: int = 2, confidence: float | None = None) -> EvidenceSummary:
    return EvidenceSummary(samples=samples, voting_tests=voting, options=list(options), confidence=confidence)


def test_a_passing_group_with_a_margin_and_no_regression_is_decisive():
    decision = decide(summary(3, Option(id="a", support=2, votes=2, regressions=0, group="g1"),
                              Option(id="b", support=1, votes=0, group="g2")), RULE)
    assert decision.stop and decision.reason == "decisive" and decision.hardness == "decided"


def test_not_before_min_samples():
    decision = decide(summary(1, Option(id="a", support=1, votes=2, regressions=0, group="g1")), RULE)
    assert not decision.stop and decision.hardness == "decided"


def test_split_votes_and_no_passing_candidate_go_on():
    split = decide(summary(3, Option(id="a", support=1, votes=2, group="g1"),
                           Option(id="b", support=1, votes=2, group="g2")), RULE)
    assert not split.stop and split.hardness == "split" and "split votes" in split.detail
    # Two changes in one behaviour group are no rivals: their votes do not split the decision.
    same = decide(summary(3, Option(id="a", support=1, votes=2, group="g1"),
                          Option(id="b", support=1, votes=2, group="g1")), RULE)
    assert same.stop and same.reason == "decisive"
    none = decide(summary(3, Option(id="a", support=3, votes=0, group="g1")), RULE)
    assert not none.stop and none.hardness == "no_passing"


def test_a_leader_that_breaks_existing_tests_is_not_decisive():
    decision = decide(summary(4, Option(id="a", support=3, votes=2, regressions=1, group="g1")), RULE)
    assert not decision.stop and decision.hardness == "no_passing"


def test_without_voting_tests_agreement_decides():
    agree = summary(3, Option(id="a", support=2, group="g1"), Option(id="b", support=1, group="g1"), voting=0)
    assert decide(agree, RULE).reason == "decisive"
    tie = summary(4, Option(id="a", support=2, group="g1"), Option(id="b", support=2, group="g1"), voting=0)
    assert decide(tie, RULE).hardness == "split"
    alone = summary(2, Option(id="a", support=1), Option(id="b", support=1), voting=0)
    assert not decide(alone, RULE).stop


def test_maximum_and_budget_stop_and_say_so():
    hard = summary(6, Option(id="a", support=1, votes=0, group="g1"))
    decision = decide(hard, RULE)
    assert decision.stop and decision.reason == "max_samples" and "no candidate passes" in decision.detail
    poor = decide(summary(3, Option(id="a", support=1, votes=0, group="g1")), RULE, affordable=False)
    assert poor.stop and poor.reason == "budget"
    # Decisive beats the budget: a finished decision is reported as such.
    done = decide(summary(2, Option(id="a", support=2, votes=1, regressions=0, group="g1")), RULE, affordable=False)
    assert done.reason == "decisive"


def test_confidence_rule_uses_the_threshold_and_falls_back_to_margin():
    rule = RULE.model_copy(update={"rule": "confidence", "confidence_threshold": 0.9})
    options = (Option(id="a", support=1, votes=1, group="g1"), Option(id="b", support=1, votes=1, group="g2"))
    assert decide(summary(3, *options, confidence=0.95), rule).reason == "decisive"
    assert not decide(summary(3, *options, confidence=0.5), rule).stop
    assert hardness(summary(3, *options), rule)[0] == "split"  # no confidence: margin


def test_summarize_merges_agreeing_candidates_and_counts_voting_tests():
    patch = "--- a/x.py\n+++ b/x.py\n@@ -1,1 +1,1 @@\n-a = 1\n+a = 2\n"
    other = "--- a/x.py\n+++ b/x.py\n@@ -1,1 +1,1 @@\n-a = 1\n+a = 3\n"
    candidates = [Candidate(id="t0", patch=patch), Candidate(id="t1", patch=patch + "\n"),
                  Candidate(id="t2", patch=other), Candidate(id="t3", patch="")]
    result = SelectionResult(chosen_id="t0", method="vote", reason="-", candidates=[
        CandidateReport(id="t0", status="ok", support=2, votes=1, regression_checked=True, group="g1", rank=1),
        CandidateReport(id="t1", status="ok", support=2, votes=1, duplicate_of="t0", group="g1"),
        CandidateReport(id="t2", status="ok", support=1, votes=0, regression_checked=True,
                        regressions=["test_x"], group="g2", rank=2),
        CandidateReport(id="t3", status="empty", support=1),
    ], tests=[ReproTestReport(id="x", status="voting", reason="-"),
              ReproTestReport(id="y", status="passes_on_original", reason="-")])
    got = summarize(result, candidates)
    assert got.samples == 4 and got.voting_tests == 1
    assert [(o.id, o.support, o.votes, o.regressions, o.group) for o in got.options] == [
        ("t0", 2, 1, 0, "g1"), ("t2", 1, 0, 1, "g2")]
    assert decide(got, RULE).reason == "decisive"


def test_evidence_rule_stops_on_a_reproduced_fix_that_a_second_candidate_shares():
    rule = RULE.model_copy(update={"rule": "evidence", "min_agreement": 10**6})
    strong = Option(id="a", support=1, regressions=0, group="g1", probe_fixes=1, behaviour_support=2)
    rival = Option(id="b", support=1, regressions=0, group="g2")
    decision = decide(summary(2, strong, rival, voting=0), rule)
    assert decision.stop and decision.reason == "decisive" and "fixes 1 issue-probe step" in decision.detail
    # Alone in its behaviour, breaking a test, or not checked: not decisive on execution evidence.
    for weaker in ({"behaviour_support": 1}, {"regressions": 1}, {"regressions": None}, {"probe_fixes": 0}):
        assert not decide(summary(2, strong.model_copy(update=weaker), rival, voting=0), rule).stop, weaker
    # The margin rule does not read execution evidence: it waits for agreement.
    assert not decide(summary(2, strong, rival, voting=0), RULE).stop
    # 'evidence' still stops on agreement, but only once the agreed change's tests are checked.
    agreed = Option(id="c", support=2, group="g3")
    assert decide(summary(3, agreed, rival, voting=0), RULE.model_copy(update={"rule": "evidence"})).hardness == "leaning"
    checked = agreed.model_copy(update={"regressions": 0})
    assert decide(summary(3, checked, rival, voting=0), RULE.model_copy(update={"rule": "evidence"})).stop


def test_all_failing_the_same_way_stops_after_the_configured_samples():
    rule = RULE.model_copy(update={"uninformative_after": 3})
    blind = (Option(id="a", support=1, regressions=0, group="g1"), Option(id="b", support=1, regressions=0, group="g1"))
    assert not decide(summary(2, *blind, voting=0), rule).stop
    decision = decide(summary(3, *blind, voting=0), rule)
    assert decision.stop and decision.reason == "uninformative" and "fail the same way" in decision.detail
    # Anything that tells them apart is information: a broken test, a probe that ends differently, a vote.
    for seen in ({"regressions": 1, "group": "g2"}, {"behaviour_support": 1}, {"votes": 1}):
        assert not decide(summary(3, blind[0], blind[1].model_copy(update=seen), voting=0), rule).stop, seen
    assert not decide(summary(5, *blind, voting=0), RULE).stop  # off by default
    # A test that reproduces the issue would recognise a fix: no passing candidate yet is a reason to go on.
    assert not decide(summary(3, *blind, voting=1), rule).stop


def test_unreproduced_stops_when_the_probes_show_nothing_on_the_original_and_no_sample_fixes_a_step():
    rule = RULE.model_copy(update={"uninformative_after": 3, "uninformative_when": "unreproduced"})
    # Two behaviours (one breaks a test): not 'same_behaviour', but nothing executed can recognise a fix.
    apart = (Option(id="a", support=1, regressions=0, group="g1"), Option(id="b", support=1, regressions=1, group="g2"))
    blind = summary(3, *apart, voting=0).model_copy(update={"probe_steps_reproducing": 0})
    decision = decide(blind, rule)
    assert decision.stop and decision.reason == "uninformative" and "reproduce nothing on the original" in decision.detail
    assert not decide(blind, RULE.model_copy(update={"uninformative_after": 3})).stop  # 'same_behaviour' goes on
    assert not decide(blind.model_copy(update={"samples": 2}), rule).stop  # not before uninformative_after
    # A probe that reproduces the issue could show a fix; unknown (no probe ran) is not 'nothing'.
    for steps in (1, None):
        assert not decide(blind.model_copy(update={"probe_steps_reproducing": steps}), rule).stop, steps
    # A sample that fixes a probe step or ends a probe or test differently from the original, one that passes
    # a voting test, or any voting test at all, is information.
    for seen in ({"probe_fixes": 1, "behaviour_support": 1}, {"behaviour_support": 1}, {"probe_fixes": 1},
                 {"votes": 1}):
        other = apart[1].model_copy(update=seen)
        assert not decide(blind.model_copy(update={"options": [apart[0], other]}), rule).stop, seen
    assert not decide(blind.model_copy(update={"voting_tests": 1}), rule).stop


def test_the_summary_reads_what_the_probes_reproduce_once_two_changes_were_probed():
    patch = "--- a/x.py\n+++ b/x.py\n@@ -1,1 +1,1 @@\n-a = 1\n+a = 2\n"
    other = patch.replace("a = 2", "a = 3")
    result = SelectionResult(chosen_id="t0", method="fallback", reason="-", probes=ProbeReport(probes=1, steps=2,
                             steps_stable=2, steps_reproducing=0),
                             candidates=[CandidateReport(id="t0", status="ok", rank=1),
                                         CandidateReport(id="t1", status="ok", rank=2)])
    got = summarize(result, [Candidate(id="t0", patch=patch), Candidate(id="t1", patch=other)])
    assert got.probe_steps_reproducing == 0
    # A lone distinct change: selection runs no probe, so what they would show is unknown.
    alone = result.model_copy(update={"candidates": result.candidates[:1]})
    assert summarize(alone, [Candidate(id="t0", patch=patch)]).probe_steps_reproducing is None


def test_the_selectors_choice_leads_the_summary():
    patch = "--- a/x.py\n+++ b/x.py\n@@ -1,1 +1,1 @@\n-a = 1\n+a = 2\n"
    other = patch.replace("a = 2", "a = 3")
    result = SelectionResult(chosen_id="t1", method="selector", reason="-", candidates=[
        CandidateReport(id="t0", status="ok", rank=1, probe_fixes=2, probe_breaks=1, behaviour_support=1),
        CandidateReport(id="t1", status="ok", rank=2)])
    got = summarize(result, [Candidate(id="t0", patch=patch), Candidate(id="t1", patch=other)])
    assert [o.id for o in got.options] == ["t1", "t0"] and got.options[1].probe_fixes == 1


def test_the_evidence_rule_stops_on_the_selections_own_confidence_when_the_leader_breaks_no_test():
    # No agreement and no probe-fix support: only selection's verdict ('medium'/'high' = 0.75) is decisive.
    rule = StoppingRule(uninformative_after=None)
    checked = summary(3, Option(id="a", support=1, regressions=0, group="g1"), Option(id="b", support=1, group="g2"),
                      voting=0, confidence=0.75)
    decision = decide(checked, rule)
    assert decision.stop and decision.reason == "decisive" and "selection confidence 0.75" in decision.detail
    # Below the threshold ('low' = 0.44), or a leader whose tests were not run, goes on.
    assert not decide(checked.model_copy(update={"confidence": 0.44}), rule).stop
    unchecked = checked.model_copy(update={"options": [Option(id="a", support=1, group="g1"),
                                                        Option(id="b", support=1, group="g2")]})
    assert not decide(unchecked, rule).stop
    # A threshold above the calibration's top (0.75) turns the reading off: the 'evidence' rule as before.
    assert not decide(checked, rule.model_copy(update={"confidence_threshold": 1.0})).stop
