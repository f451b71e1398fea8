"""Combining the evidence of one candidate into a rank, and the confidence of the choice.

Order of the evidence (each is only a tie-break of the ones before it): hygiene-fatal last; generated
tests' votes; regressions in the repository's own tests; issue probes fixed minus broken; consensus
(systems whose candidates behave the same on every executed probe and test, then that propose the same
change: `candidates.system_of`);
hygiene penalties; patch size. Evidence kinds can be switched off (ablations measure each one).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from selection.models import ConfidenceLevel

# Share of right choices at each level, measured by `patchswarm bench-select` on the dev candidates
# (benchmarks/selection_real/README.md), as (right+1)/(chosen+2) over the tuned sympy instances and the
# held-out ones pooled. Measured 2026-12-02, LLM-free: high 2/2, medium 2/2, low 4/8 (none: no choice
# yet, prior kept). Two choices per level cannot show "high is right >= 90%"; low stays under the
# GitHub bot's default PR bar (0.5): agreement and size alone never open a PR.
CALIBRATION: dict[str, float] = {"high": 0.75, "medium": 0.75, "low": 0.44, "none": 0.2}


class EvidenceKinds(BaseModel):
    """Which evidence the rank uses (generated tests vote whenever there are any)."""

    regression: bool = True
    probes: bool = True
    consensus: bool = True
    hygiene: bool = True


class PatchEvidence(BaseModel):
    key: str
    id: str
    votes: int = 0
    regressions: int | None = Field(None, description="Broken existing tests; None = not checked.")
    intended_breaks: int = Field(0, description="Broken tests every probe-fixing candidate breaks (the issue's change, not counted).")
    probe_fixes: int = 0
    probe_breaks: int = 0
    changed_behaviour: bool = Field(False, description="Some probe or test ends differently than on the original.")
    behaviour_support: int = Field(0, description="Systems with the same changed behaviour (0 if unchanged).")
    patch_support: int = Field(1, description="Systems proposing the same change up to whitespace.")
    fatal: str | None = None
    penalties: int = 0
    lines_changed: int = 0
    behaviour: str = Field("", description="Key of everything observed (tests, probes, regressions): equal = indistinguishable.")


def rank_key(e: PatchEvidence, kinds: EvidenceKinds) -> tuple:
    """Smaller is better."""
    return (
        1 if kinds.hygiene and e.fatal else 0,
        -e.votes,
        (e.regressions or 0) if kinds.regression else 0,
        -(e.probe_fixes - e.probe_breaks) if kinds.probes else 0,
        -e.behaviour_support if kinds.consensus else 0,
        -e.patch_support if kinds.consensus else 0,
        e.penalties if kinds.hygiene else 0,
        e.lines_changed,
        e.id,
    )


def evidence_key(e: PatchEvidence, kinds: EvidenceKinds) -> tuple:
    """The rank key without size and id: what the evidence says, not the tie-breaks."""
    return rank_key(e, kinds)[:-2]


class Confidence(BaseModel):
    level: ConfidenceLevel
    value: float = Field(description="Estimated probability that the choice is right (calibrated per level).")
    reason: str


def confidence(ranked: Sequence[PatchEvidence], kinds: EvidenceKinds) -> Confidence:
    """How sure the choice of `ranked[0]` is; 'none' means abstain (nothing separates the candidates)."""
    def make(level: ConfidenceLevel, reason: str) -> Confidence:
        return Confidence(level=level, value=CALIBRATION[level], reason=reason)

    if not ranked:
        return make("none", "no candidate")
    best = ranked[0]
    if kinds.hygiene and best.fatal:
        return make("none", f"the best candidate {best.fatal}")
    if kinds.regression and best.regressions:
        return make("none", f"every candidate checked breaks existing tests (the best breaks {best.regressions})")
    if len(ranked) == 1:
        return make("low", "only one candidate can win")
    positive = best.votes > 0 or (kinds.probes and best.probe_fixes > best.probe_breaks)
    # Only a candidate that behaves differently is a rival: a tie with an indistinguishable one costs nothing.
    rivals = [e for e in ranked[1:] if not best.behaviour or e.behaviour != best.behaviour]
    if not rivals:
        return make("medium" if positive else "low", "every candidate behaves the same on all executed evidence")
    second = rivals[0]
    separated = evidence_key(best, kinds) != evidence_key(second, kinds)
    if not separated:
        return make("none", f"{best.id} and {second.id} are tied on every piece of evidence; size decides")
    if not positive:
        return make("low", "no execution shows the issue fixed; chosen by agreement and size")
    changed = [e for e in ranked if e.changed_behaviour and not (kinds.hygiene and e.fatal)]
    share = best.behaviour_support / max(1, sum(e.patch_support for e in changed)) if kinds.consensus else 0.0
    # A probe "fixed" by a patch that also adds scratch files or debug output is not high: on pylint-7114
    # a 1-line patch plus a stray r.py changed the probe's outcome and was wrong.
    # Nor is one whose cleanliness rests on discounting tests the probe-fixing candidates break (`intended_changes`).
    clean = best.regressions == 0 and not best.intended_breaks and not (kinds.hygiene and best.penalties)
    if clean and (best.votes > second.votes or (best.probe_fixes > 0 and share >= 0.5)):
        return make("high", f"fixes the reported behaviour, breaks no existing test checked, and "
                            f"{best.behaviour_support} of the candidates that change behaviour agree with it")
    return make("medium", "fixes the reported behaviour; other candidates do too, differently")
