"""Turn the evidence of one selection into the `SelectionResult` reports (candidates, tests, matrix)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from selection.candidates import DistinctPatch, DistinctTest, agreement_key, lines_changed
from selection.matrix import ReproMatrix
from selection.models import (
    ORIGINAL,
    ORIGINAL_RERUN,
    BehaviourGroup,
    Candidate,
    CandidateReport,
    CandidateStatus,
    MatrixCell,
    ReproTestReport,
)
from selection.selector import SelectorTestRun
from selection.voting import Verdict

APPLY_FAILED_CELL = MatrixCell(apply_failed=True, outcome="apply_failed")


def candidate_reports(patches: Sequence[DistinctPatch], by_id: Mapping[str, Candidate], votes: Mapping[str, int],
                      regressions: Mapping[str, list[str]], regression_ran: bool,
                      ranked: Sequence[DistinctPatch], groups: Sequence[BehaviourGroup]) -> list[CandidateReport]:
    """One report per input candidate, in input order; duplicates share their first copy's results."""
    rank_of = {p.key: index for index, p in enumerate(ranked, 1)}
    group_of = {cid: g.id for g in groups for cid in g.candidate_ids}
    agreement = {cid: agreement_key(c.patch) for cid, c in by_id.items()}
    support = Counter(agreement.values())
    reports: dict[str, CandidateReport] = {}
    for patch in patches:
        for member in patch.members:
            first = member == patch.id
            status: CandidateStatus = "empty" if patch.empty else "apply_failed" if member in patch.failed else "ok"
            reports[member] = CandidateReport(
                id=member, source=by_id[member].source, status=status, apply_error=patch.failed.get(member),
                duplicate_of=None if first else patch.id, support=support[agreement[member]],
                votes=votes.get(patch.key, 0) if status == "ok" else 0,
                regression_checked=status == "ok" and regression_ran and patch.key in regressions,
                regressions=list(regressions.get(patch.key, [])) if status == "ok" else [],
                lines_changed=patch.lines_changed if first or patch.empty else lines_changed(by_id[member].patch),
                group=group_of.get(patch.id) if status == "ok" else None,
                rank=rank_of.get(patch.key) if first else None,
            )
    return [reports[c] for c in by_id]


def repro_test_reports(tests: Sequence[DistinctTest], verdicts: Mapping[str, Verdict], sources: Mapping[str, str],
                 selector_runs: Sequence[SelectorTestRun]) -> list[ReproTestReport]:
    reports: list[ReproTestReport] = []
    for test in tests:
        verdict = verdicts[test.key]
        for member in test.members:
            if member == test.id:
                reports.append(ReproTestReport(id=member, source=sources.get(member, ""), status=verdict.status,
                                               reason=verdict.reason))
            else:
                reports.append(ReproTestReport(
                    id=member, source=sources.get(member, ""), status="duplicate", duplicate_of=test.id,
                    reason=f"same text as {test.id} (up to trailing whitespace); its results count once"))
    for number, _ in enumerate(selector_runs, 1):
        reports.append(ReproTestReport(id=f"selector-{number}", source="selector", status="selector",
                                       reason="written by the selector to tell finalists apart; no vote"))
    return reports


def matrix_view(tests: Sequence[DistinctTest], patches: Sequence[DistinctPatch], matrix: ReproMatrix,
                selector_runs: Sequence[SelectorTestRun]) -> dict[str, dict[str, MatrixCell]]:
    """test id → 'original' / 'original#2' / candidate id → cell; duplicates of a test or a patch repeat it."""
    view: dict[str, dict[str, MatrixCell]] = {}
    runnable = [p for p in patches if not p.empty]
    for test in tests:
        first, second = matrix.original[test.key]
        row = {ORIGINAL: first.cell(), ORIGINAL_RERUN: second.cell()}
        for patch in runnable:
            for member in patch.members:
                failed = member in patch.failed
                row[member] = APPLY_FAILED_CELL if failed else matrix.cells[(test.key, patch.key)].cell()
        for member in test.members:
            view[member] = dict(row)
    by_key = {p.key: p for p in patches}
    for number, run in enumerate(selector_runs, 1):
        row = {ORIGINAL: run.original.cell()}
        for key, outcome in run.by_patch.items():
            for member in by_key[key].members:
                row[member] = APPLY_FAILED_CELL if member in by_key[key].failed else outcome.cell()
        view[f"selector-{number}"] = row
    return view
