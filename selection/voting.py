"""Which tests may vote, the votes of each candidate, behaviour groups, ranking and finalists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel

from selection.candidates import DistinctPatch, DistinctTest
from selection.matrix import ReproMatrix
from selection.models import BehaviourGroup, Outcome, TestStatus


class Verdict(BaseModel):
    status: TestStatus
    reason: str


def describe(outcome: Outcome) -> str:
    if outcome.apply_failed:
        return "patch did not apply"
    if outcome.timed_out:
        return "timed out"
    if outcome.exit_code is None:
        return outcome.error or "no exit code"
    return f"exit {outcome.exit_code}"


def judge_test(first: Outcome, second: Outcome) -> Verdict:
    """A test votes only if both runs on the original end the same way, in time, with exit 2: the
    convention's "issue present". Killed by a signal or for memory (exit >= 128), or any other failure,
    is not evidence about the issue."""
    runs = f"{describe(first)}, then {describe(second)}"
    if first.outcome == "unknown" or second.outcome == "unknown":
        return Verdict(status="unknown", reason=f"could not run on the original ({runs})")
    if first.outcome != second.outcome:
        return Verdict(status="flaky", reason=f"two runs on the original ended differently ({runs})")
    if first.timed_out:
        return Verdict(status="timed_out", reason="timed out on the original; a timeout proves nothing")
    if first.exit_code is None:  # e.g. the run on the original could not even start
        return Verdict(status="unknown", reason=f"could not run on the original ({runs})")
    if first.exit_code == 0:
        return Verdict(status="passes_on_original",
                           reason="exits 0 on the original, so it does not reproduce the issue")
    if first.exit_code >= 128 or first.exit_code < 0:
        return Verdict(status="killed", reason=f"killed on the original ({runs}: a signal or out of memory); "
                                               "that proves nothing about the issue")
    if first.exit_code != 2:
        return Verdict(status="error_on_original",
                       reason=f"exit {first.exit_code} on the original, not 2 (issue present): the test itself fails")
    return Verdict(status="voting", reason="exit 2 in both runs on the original (issue reproduced)")


def judge_tests(tests: Sequence[DistinctTest], matrix: ReproMatrix) -> dict[str, Verdict]:
    return {t.key: judge_test(*matrix.original[t.key]) for t in tests}


def count_votes(patch: DistinctPatch, voting: Sequence[str], matrix: ReproMatrix) -> int:
    """Voting tests that exit 0 (in time) with this patch applied."""
    return sum(1 for key in voting if matrix.cells[(key, patch.key)].outcome == "pass")


def behaviour(patch: DistinctPatch, stable_tests: Mapping[str, str], matrix: ReproMatrix,
              regression: Mapping[str, str] | None = None) -> dict[str, str]:
    """Observed outcomes: test id → outcome class, plus regression test statuses when checked."""
    vector: dict[str, str] = {test_id: matrix.cells[(key, patch.key)].outcome for key, test_id in stable_tests.items()}
    for name, status in (regression or {}).items():
        vector[f"regression:{name}"] = status
    return vector


def rank(patches: Sequence[DistinctPatch], votes: Mapping[str, int],
         regressions: Mapping[str, int]) -> list[DistinctPatch]:
    """Votes desc, then fewer regressions, then smaller patch, then id (determinism)."""
    return sorted(patches, key=lambda p: (-votes[p.key], regressions.get(p.key, 0), p.lines_changed, p.id))


def make_groups(ranked: Sequence[DistinctPatch], vectors: Mapping[str, dict[str, str]],
                votes: Mapping[str, int]) -> list[BehaviourGroup]:
    """Candidates with identical observed outcomes form one group; groups follow their best member."""
    groups: dict[tuple, BehaviourGroup] = {}
    for patch in ranked:
        vector = vectors[patch.key]
        key = tuple(sorted(vector.items()))
        if key not in groups:
            groups[key] = BehaviourGroup(id=f"g{len(groups) + 1}", candidate_ids=[], votes=votes[patch.key],
                                         outcomes=vector)
        groups[key].candidate_ids.append(patch.id)
    return list(groups.values())


def pick_finalists(ranked: Sequence[DistinctPatch], group_of: Mapping[str, str], k: int) -> list[DistinctPatch]:
    """Top k, taking the best of each behaviour group first, so the finalists differ in behaviour."""
    finalists: list[DistinctPatch] = []
    seen_groups: set[str] = set()
    for patch in ranked:
        if len(finalists) < k and group_of[patch.id] not in seen_groups:
            finalists.append(patch)
            seen_groups.add(group_of[patch.id])
    for patch in ranked:
        if len(finalists) < k and all(patch.key != f.key for f in finalists):
            finalists.append(patch)
    order = {p.key: index for index, p in enumerate(ranked)}
    return sorted(finalists, key=lambda p: order[p.key])
