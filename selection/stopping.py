"""When to stop sampling: a stopping rule over a summary of the selection evidence so far.

Sequential sampling (`trajectories.adaptive`, and the real-pool simulation of `scripts/bench_adaptive.py`)
draws candidates one at a time; after each it summarises the selection's evidence (`summarize`) and asks
`decide` whether the choice is already decisive. Pure functions over plain models: no sandbox, no model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from selection.candidates import agreement_key
from selection.models import Candidate, CandidateReport, SelectionResult

StopReason = Literal["decisive", "uninformative", "max_samples", "budget"]
Hardness = Literal["decided", "no_candidate", "no_passing", "split", "leaning"]
UninformativeWhen = Literal["same_behaviour", "unreproduced"]


class StoppingRule(BaseModel):
    """When the evidence counts as decisive; thresholds are config (`trajectories.adaptive.stopping`)."""

    model_config = ConfigDict(extra="forbid")  # a typo in the config must not pass silently

    rule: Literal["margin", "confidence", "evidence"] = Field(
        "evidence", description="'margin': votes (or, with no voting test, agreement) lead by a margin and the "
                              "leader breaks no existing test; 'confidence': the selection's confidence reaches "
                              "the threshold (falls back to 'margin' when the evidence has none); 'evidence': "
                              "'margin', or the leader's execution evidence is strong (it fixes issue-probe steps "
                              "or passes voting tests, breaks no checked test, and min_behaviour_support "
                              "candidates behave exactly like it), or the selection's confidence reaches the "
                              "threshold and the leader breaks no test.")
    min_samples: int = Field(2, ge=1, description="Never stop on fewer samples than this.")
    max_samples: int = Field(8, ge=1, description="Always stop at this many samples.")
    min_votes: int = Field(1, ge=0, description="Voting tests the leading group must pass.")
    vote_margin: int = Field(1, ge=0, description="Votes by which the leading group beats every other behaviour group.")
    min_agreement: int = Field(2, ge=1, description="Without voting tests: samples proposing the leader's change.")
    agreement_margin: int = Field(1, ge=0, description="Without voting tests: the leader's agreement minus the next change's.")
    # 0.75 is what selection's calibration gives 'medium' and 'high' (selection.scoring.CALIBRATION): the
    # execution shows the issue fixed and separates the choice from its rivals. The old 0.8 was never reached.
    confidence_threshold: float = Field(0.75, ge=0, le=1, description="Selection confidence that decides ('confidence', "
                                                                      "'evidence').")
    min_behaviour_support: int = Field(2, ge=1, description="'evidence': candidates (the leader included) that "
                                                            "behave exactly like a leader that fixes the issue.")
    uninformative_after: int | None = Field(3, ge=1, description="Stop after this many samples when all "
                                            "fail the same way: none passes a voting test or changes how a probe "
                                            "or test ends, and all break the same existing tests (nothing "
                                            "executed tells them apart); None: never. What counts as "
                                            "uninformative: `uninformative_when`.")
    # 'unreproduced' (2026-12-07, benchmarks/adaptive/README.md): on the replayed real pools the one-behaviour
    # test stops early exactly where the issue probes DO reproduce the issue and later samples re-rank by
    # regressions and size (sympy-17022, -18621, -14817), while the pools it should give up on early are the
    # ones whose probes show nothing on the original (sphinx-7975, sympy-18532).
    uninformative_when: UninformativeWhen = Field(
        "same_behaviour", description="'same_behaviour': all samples fail the same way (the stop described at "
        "uninformative_after); 'unreproduced': the issue probes reproduce nothing on the original (no step raises "
        "or shows the reported output, or the issue has no probe), no sample passes a voting test or changes how "
        "a probe or test ends, so no execution can recognise a fix however many samples come (the existing "
        "tests they break may differ).")


class Option(BaseModel):
    """One distinct change among the samples (candidates that agree up to whitespace and context)."""

    id: str = Field(description="Its best-ranked candidate.")
    support: int = Field(description="Samples proposing this change.")
    votes: int = 0
    regressions: int | None = Field(None, description="Existing tests it breaks; None: not checked.")
    group: str | None = Field(None, description="Behaviour group of its best-ranked candidate.")
    probe_fixes: int = Field(0, description="Issue-probe steps failing on the original that it fixes, minus those it breaks.")
    behaviour_support: int = Field(0, description="Candidates behaving exactly like it (0: like the original).")


class EvidenceSummary(BaseModel):
    """What the stopping rule reads: the ranked options (first = the current choice) and their support."""

    samples: int = Field(description="Samples drawn so far (every candidate, also empty or broken ones).")
    voting_tests: int = 0
    options: list[Option] = Field(default_factory=list, description="Best first, as selection ranked them.")
    confidence: float | None = None
    probe_steps_reproducing: int | None = Field(None, description="Issue-probe steps that show the issue on the "
                                                "original (0 also when the issue has no probe); None: unknown "
                                                "(selection ran no probe, as for a lone candidate).")


class StopDecision(BaseModel):
    stop: bool
    reason: StopReason | None = Field(None, description="Why sampling stopped; None while it goes on.")
    hardness: Hardness
    detail: str


def summarize(result: SelectionResult, candidates: Sequence[Candidate], *, samples: int | None = None,
              confidence: float | None = None) -> EvidenceSummary:
    """The summary of one selection over `candidates` (the samples so far); the confidence is the
    selection's own when it reports one and none is given ('none' = abstain counts as 0)."""
    level = getattr(result, "confidence_level", None)
    if confidence is None and level is not None:
        confidence = 0.0 if level == "none" else float(getattr(result, "confidence", 0.0))
    patches = {c.id: c.patch for c in candidates}
    change_of = {r.id: agreement_key(patches.get(r.id, "")) for r in result.candidates if r.status == "ok"}
    voting = sum(1 for t in result.tests if t.status == "voting")
    summary = summary_of_reports(result.candidates, change_of, chosen_id=result.chosen_id, voting_tests=voting,
                                 samples=len(candidates) if samples is None else samples, confidence=confidence)
    # Selection runs no probe for a lone distinct change: then what the probes show is unknown.
    if len(set(change_of.values())) >= 2:
        summary.probe_steps_reproducing = result.probes.steps_reproducing
    return summary


def summary_of_reports(reports: Sequence[CandidateReport], change_of: Mapping[str, str], *, chosen_id: str | None,
                       voting_tests: int, samples: int, confidence: float | None) -> EvidenceSummary:
    """The summary from selection's candidate reports; `change_of` maps a candidate to its change
    (agreement key). The chosen candidate's change comes first (the selector may overrule the rank)."""
    by_id = {r.id: r for r in reports}
    ranked = sorted((r for r in reports if r.rank is not None), key=lambda r: (r.id != chosen_id, r.rank or 0))
    options: dict[str, Option] = {}
    for report in ranked:
        key = change_of.get(report.id)
        if key is None or key in options:
            continue
        members = [by_id[i] for i, k in change_of.items() if k == key and i in by_id]
        checked = [len(m.regressions) for m in members if m.regression_checked]
        options[key] = Option(id=report.id, support=report.support, votes=max(m.votes for m in members),
                              regressions=min(checked) if checked else None, group=report.group,
                              probe_fixes=report.probe_fixes - report.probe_breaks,
                              behaviour_support=report.behaviour_support)
    return EvidenceSummary(samples=samples, voting_tests=voting_tests, options=list(options.values()),
                           confidence=confidence)


def _strong(leader: Option, rule: StoppingRule) -> str | None:
    """Why the leader's execution evidence alone is decisive, or None."""
    if leader.regressions != 0 or leader.behaviour_support < rule.min_behaviour_support:
        return None
    if leader.probe_fixes <= 0 and leader.votes < max(rule.min_votes, 1):
        return None
    shown = f"fixes {leader.probe_fixes} issue-probe step(s)" if leader.probe_fixes > 0 else \
        f"passes {leader.votes} voting test(s)"
    return (f"{leader.id} {shown}, breaks no checked test, and {leader.behaviour_support} candidates "
            f"behave exactly like it")


def hardness(summary: EvidenceSummary, rule: StoppingRule) -> tuple[Hardness, str]:
    """How far the evidence is from a decision, with the reason in words."""
    if not summary.options:
        return "no_candidate", "no candidate that applies yet"
    leader, others = summary.options[0], summary.options[1:]
    if leader.regressions:
        return "no_passing", f"the leader {leader.id} breaks {leader.regressions} existing test(s)"
    if rule.rule == "evidence" and (strong := _strong(leader, rule)):
        return "decided", strong
    if rule.rule == "evidence" and leader.regressions == 0 and (summary.confidence or 0.0) >= rule.confidence_threshold:
        # Selection's own verdict: the execution shows the issue fixed and nothing else behaves as well.
        return "decided", f"selection confidence {summary.confidence:.2f} >= {rule.confidence_threshold:.2f}"
    if rule.rule == "confidence" and summary.confidence is not None:
        if summary.confidence >= rule.confidence_threshold:
            return "decided", f"confidence {summary.confidence:.2f} >= {rule.confidence_threshold:.2f}"
        return "leaning", f"confidence {summary.confidence:.2f} < {rule.confidence_threshold:.2f}"
    if summary.voting_tests:
        if leader.votes < max(rule.min_votes, 1):
            return "no_passing", f"no candidate passes a voting test yet (of {summary.voting_tests})"
        rival = max((o.votes for o in others if o.group != leader.group), default=0)
        if leader.votes - rival < rule.vote_margin:
            return "split", f"split votes: {leader.id} {leader.votes} vs {rival} of {summary.voting_tests}"
        return "decided", (f"{leader.id} passes {leader.votes} of {summary.voting_tests} voting tests, "
                           f"{leader.votes - rival} more than any other behaviour")
    rival = max((o.support for o in others), default=0)
    if leader.support < rule.min_agreement:
        return ("leaning" if not others else "split"), (
            f"no voting test; {leader.id} proposed by {leader.support} sample(s), {rule.min_agreement} needed")
    if leader.support - rival < rule.agreement_margin:
        return "split", f"no voting test; agreement {leader.support} vs {rival}"
    if rule.rule == "evidence" and leader.regressions is None and len(summary.options) > 1:
        return "leaning", f"{leader.support} samples agree on {leader.id}, but its tests are not checked yet"
    return "decided", f"no voting test; {leader.support} samples agree on {leader.id}, next change {rival}"


def uninformative(summary: EvidenceSummary, when: UninformativeWhen = "same_behaviour") -> bool:
    """Nothing executed would recognise a fix, so more samples of the same kind rarely improve the choice:
    there is no voting test (a test reproducing the issue would show a fix, so sampling on is worth it) and no
    sample behaves differently from the original on a probe or test. Then, 'same_behaviour': all break the same
    existing tests (usually none), so only agreement and size rank them; 'unreproduced': the issue probes show
    nothing on the original and no sample fixes a probe step, so no later sample could be told a fix by
    execution either (the regressions they break may differ and still rank them)."""
    if summary.voting_tests or any(o.votes > 0 or o.behaviour_support > 0 for o in summary.options):
        return False
    if when == "unreproduced":
        return summary.probe_steps_reproducing == 0 and not any(o.probe_fixes > 0 for o in summary.options)
    return len({o.group for o in summary.options}) <= 1


def decide(summary: EvidenceSummary, rule: StoppingRule, *, affordable: bool = True) -> StopDecision:
    """Stop when decisive (after `min_samples`), when the evidence stays uninformative, at `max_samples`, or
    when another sample is not affordable."""
    level, detail = hardness(summary, rule)
    if level == "decided" and summary.samples >= rule.min_samples:
        return StopDecision(stop=True, reason="decisive", hardness=level, detail=detail)
    if rule.uninformative_after is not None and summary.samples >= rule.uninformative_after \
            and uninformative(summary, rule.uninformative_when):
        why = (f"{summary.samples} samples all fail the same way (one behaviour, like the original's)"
               if rule.uninformative_when == "same_behaviour" else
               f"the issue probes reproduce nothing on the original and none of {summary.samples} samples "
               f"changes how a probe or test ends")
        return StopDecision(stop=True, reason="uninformative", hardness=level, detail=f"{why}; {detail}")
    if summary.samples >= rule.max_samples:
        return StopDecision(stop=True, reason="max_samples", hardness=level,
                            detail=f"{summary.samples} samples drawn (the maximum); {detail}")
    if not affordable:
        return StopDecision(stop=True, reason="budget", hardness=level,
                            detail=f"the budget cannot pay another sample; {detail}")
    return StopDecision(stop=False, hardness=level, detail=detail)
