"""What an instance page shows, derived from its result JSON: issue, vote heat map, candidates, costs.

Reads the result as a plain dict (see load.py) and tolerates missing fields: a failed instance may
have no selection, an old run may lack newer fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from patchswarm.report.text import Line, diff_lines, exit_tone, message_text

ORIGINAL_COLUMNS = ("original", "original#2")
_ISSUE = re.compile(r"<issue>\n?(.*?)\n?</issue>", re.S)
# Call-log roles shown as pipeline stages; the trajectories' share is split into testing and editing.
STAGE_OF_ROLE = {"relevance": "context", "primary": "trajectories", "selector": "selection"}


def issue_text(result: dict[str, Any]) -> tuple[str, str]:
    """The issue and where it came from: the result's own field, else the first trajectory prompt."""
    if result.get("issue"):
        return str(result["issue"]), "result"
    for trajectory in result.get("trajectories") or []:
        for part in ("testing", "editing"):
            for message in (trajectory.get(part) or {}).get("messages") or []:
                if message.get("role") != "user":
                    continue
                text = message_text(message.get("content"))
                found = _ISSUE.search(text)
                if found:
                    return found.group(1), "recovered from a trajectory's first prompt"
    return "", "not stored"


# -- the vote matrix -------------------------------------------------------------------------------


@dataclass
class Column:
    id: str
    label: str
    chosen: bool = False
    finalist: bool = False
    duplicate_of: str | None = None


@dataclass
class Cell:
    text: str
    tone: str
    title: str
    marked: bool = False  # a regression: passed on the original, fails with this candidate


@dataclass
class Row:
    label: str
    kind: str  # test, regression, votes
    status: str = ""
    reason: str = ""
    cells: list[Cell | None] = field(default_factory=list)


@dataclass
class Heatmap:
    columns: list[Column]
    rows: list[Row]


def heatmap(selection: dict[str, Any]) -> Heatmap:
    """Tests × (original runs, candidates); then the repository's own tests; then the votes."""
    matrix: dict[str, dict[str, Any]] = selection.get("matrix") or {}
    candidates = selection.get("candidates") or []
    chosen, finalists = selection.get("chosen_id"), set(selection.get("finalists") or [])
    seen_originals = {key for row in matrix.values() for key in row if key in ORIGINAL_COLUMNS}
    columns = [Column(key, "original" if key == "original" else "original (rerun)")
               for key in ORIGINAL_COLUMNS if key in seen_originals]
    columns += [Column(c["id"], c["id"], chosen=c["id"] == chosen, finalist=c["id"] in finalists,
                       duplicate_of=c.get("duplicate_of")) for c in candidates]
    known = {c["id"] for c in candidates} | seen_originals
    extra = sorted({key for row in matrix.values() for key in row} - known)
    columns += [Column(key, key) for key in extra]  # cells of candidates the report does not list
    tests = {t["id"]: t for t in selection.get("tests") or []}
    rows = []
    for test_id in [*tests, *(t for t in matrix if t not in tests)]:
        test = tests.get(test_id, {})
        row = Row(test_id, "test", status=test.get("status", ""), reason=test.get("reason", ""))
        row.cells = [_test_cell(matrix.get(test_id, {}).get(column.id)) for column in columns]
        rows.append(row)
    rows += _regression_rows(selection, columns)
    votes = Row("votes", "votes")
    by_id = {c["id"]: c for c in candidates}
    votes.cells = [Cell(str(by_id[c.id].get("votes", 0)), "votes", "votes of this candidate") if c.id in by_id
                   else None for c in columns]
    rows.append(votes)
    return Heatmap(columns, rows)


def _test_cell(cell: dict[str, Any] | None) -> Cell | None:
    if not cell:
        return None
    outcome = cell.get("outcome", "unknown")
    if cell.get("apply_failed"):
        return Cell("apply ✗", "apply_failed", "the patch did not apply")
    if cell.get("timed_out"):
        return Cell("T/O", "timeout", "timed out")
    code = cell.get("exit_code")
    tone = {"pass": "pass", "issue": "issue", "error": "error"}.get(outcome, exit_tone(code))
    return Cell("?" if code is None else str(code), tone, f"exit {code}: {outcome}")


def _regression_rows(selection: dict[str, Any], columns: list[Column]) -> list[Row]:
    """The repository's own tests per candidate, read from the behaviour groups' outcome vectors."""
    groups = {g["id"]: g.get("outcomes") or {} for g in selection.get("groups") or []}
    candidates = {c["id"]: c for c in selection.get("candidates") or []}
    names = sorted({key for outcomes in groups.values() for key in outcomes if key.startswith("regression:")})
    rows = []
    for name in names:
        test = name.removeprefix("regression:")
        row = Row(test, "regression", status="regression")
        for column in columns:
            candidate = candidates.get(column.id)
            if candidate is None:
                row.cells.append(None)
                continue
            group = candidate.get("group") or (candidates.get(candidate.get("duplicate_of") or "") or {}).get("group")
            outcome = groups.get(group or "", {}).get(name)
            broken = test in (candidate.get("regressions") or []) or name in (candidate.get("regressions") or [])
            if outcome is None and not broken:
                row.cells.append(None)
                continue
            tone = "pass" if outcome == "passed" else ("issue" if broken or outcome == "failed" else "unknown")
            title = f"{outcome or 'failed'}" + (" (regression: passed on the original)" if broken else "")
            row.cells.append(Cell(outcome or "failed", tone, title, marked=broken))
        rows.append(row)
    return rows


# -- candidates ------------------------------------------------------------------------------------


@dataclass
class CandidateView:
    id: str
    source: str
    status: str
    votes: int
    patch: str
    lines: list[Line]
    chosen: bool
    details: dict[str, Any]


def candidate_views(result: dict[str, Any]) -> list[CandidateView]:
    """Every candidate with its patch; trajectory candidates are named t<index> by the pipeline."""
    selection = result.get("selection") or {}
    patches = {f"t{t.get('index')}": (t.get("editing") or {}).get("patch") or ""
               for t in result.get("trajectories") or []}
    if selection.get("chosen_id"):
        patches[selection["chosen_id"]] = selection.get("patch") or patches.get(selection["chosen_id"], "")
    views = []
    for c in selection.get("candidates") or []:
        patch = patches.get(c["id"], "")
        details = {key: c.get(key) for key in ("rank", "group", "support", "lines_changed", "duplicate_of",
                                               "apply_error", "regression_checked")}
        details["regressions"] = ", ".join(c.get("regressions") or []) or None
        views.append(CandidateView(c["id"], c.get("source", ""), c.get("status", ""), c.get("votes", 0), patch,
                                   diff_lines(patch), c["id"] == selection.get("chosen_id"), details))
    return views


# -- costs -----------------------------------------------------------------------------------------


@dataclass
class Bar:
    label: str
    value: float
    y: int
    width: float


@dataclass
class BarChart:
    bars: list[Bar]
    height: int
    label_width: int = 110
    bar_width: int = 300


def stage_costs(result: dict[str, Any]) -> list[tuple[str, float]]:
    """USD per stage: context (relevance calls), testing and editing (the trajectories' machines),
    selection (selector calls), and any other role by name."""
    by_role = dict(result.get("cost_by_role") or {})
    trajectories = result.get("trajectories") or []
    testing = sum((t.get("testing") or {}).get("cost_usd") or 0.0 for t in trajectories)
    editing = sum((t.get("editing") or {}).get("cost_usd") or 0.0 for t in trajectories)
    stages = [("context", by_role.pop("relevance", 0.0) or 0.0), ("testing", testing), ("editing", editing)]
    primary = by_role.pop("primary", 0.0) or 0.0
    if primary - testing - editing > 1e-9:  # calls the machines did not count, e.g. failed ones
        stages.append(("trajectories (other)", primary - testing - editing))
    stages.append(("selection", by_role.pop("selector", 0.0) or 0.0))
    stages += [(role or "?", cost or 0.0) for role, cost in sorted(by_role.items(), key=lambda kv: str(kv[0]))]
    return stages


def bar_chart(values: list[tuple[str, float]], row_height: int = 22) -> BarChart:
    top = max((v for _, v in values), default=0.0) or 1.0
    bars = [Bar(label, value, i * row_height, round(300 * value / top, 1)) for i, (label, value) in enumerate(values)]
    return BarChart(bars, height=len(values) * row_height)
