"""Markdown the bot writes: the PR body, the status comment's stages, the no-PR explanation.

Pure functions of the pipeline's result, so they are easy to test and nothing here talks to GitHub.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from patchswarm.results import InstanceResult
from selection import SelectionResult

MAX_BODY = 60_000  # GitHub refuses bodies over 65,536 characters
MAX_TEST_CHARS = 20_000
MAX_MATRIX_ROWS = 12
MAX_MATRIX_COLUMNS = 6
LINK_KEYWORD = "Fixes"  # GitHub closes the issue when the (reviewed) PR merges into the default branch


@dataclass
class RunInfo:
    """Where and how a run happened, for the texts."""

    issue: int
    commit: str
    run_dir: Path
    report_url: str | None = None

    @property
    def report_path(self) -> Path:
        return self.run_dir / "report" / "index.html"

    def report_line(self) -> str:
        if self.report_url:  # the runner's path means nothing to readers; the artifact does
            return (f"HTML report: `index.html` in the artifact `patchswarm-report` of [the workflow run]"
                    f"({self.report_url}) (uploaded when the run ends).")
        return f"HTML report: `{self.report_path}` (written by `patchswarm report` after the run)."


def diff_stats(patch: str) -> list[tuple[str, int, int]]:
    """(path, lines added, lines removed) per file of a unified diff."""
    try:
        files = PatchSet(patch)
    except UnidiffParseError:
        return []
    return [(f.path, f.added, f.removed) for f in files]


def no_pr_reason(result: InstanceResult, min_votes: int) -> str | None:
    """Why this result does not deserve a PR, or None when it does.

    A PR needs a patch (status solved) that passes at least `min_votes` generated reproduction tests
    that reproduced the issue. A selector's or fallback's pick with no such evidence is a guess.
    """
    if result.status == "failed":
        return "the pipeline failed before it could choose a patch"
    if result.status == "no_patch" or not result.patch.strip():
        return "no trajectory produced a patch that could be chosen"
    votes = result.votes or 0
    if votes < min_votes:
        return (f"the chosen patch passes {votes} reproduction test(s) that reproduced the issue; "
                f"at least {min_votes} needed for a PR (method: {result.selection_method})")
    return None


def cost_line(result: InstanceResult) -> str:
    unknown = f" + {result.unknown_cost_calls} call(s) of unknown price" if result.unknown_cost_calls else ""
    return (f"${result.cost_usd:.4f}{unknown} · {result.input_tokens:,} input / {result.output_tokens:,} output tokens"
            f" · {result.wall_time_s:.0f} s")


def repro_test(result: InstanceResult) -> tuple[str, str] | None:
    """(test id, code) of a voting reproduction test the chosen patch passes, its own trajectory's first."""
    selection, chosen = result.selection, result.chosen_candidate
    if selection is None or chosen is None:
        return None
    codes: dict[str, str] = {}
    for t in result.trajectories:
        if t.editing and t.editing.test_code:
            codes.setdefault(f"editing{t.index}", t.editing.test_code)
        if t.testing and t.testing.test_code:
            codes.setdefault(f"testing{t.index}", t.testing.test_code)
    own = f"editing{chosen.removeprefix('t')}"
    order = sorted(selection.tests, key=lambda t: t.id != own)
    for test in order:
        cell = selection.matrix.get(test.id, {}).get(chosen)
        if test.status == "voting" and cell is not None and cell.outcome == "pass" and test.id in codes:
            return test.id, codes[test.id]
    return None


def _cell(selection: SelectionResult, test_id: str, column: str) -> str:
    cell = selection.matrix.get(test_id, {}).get(column)
    if cell is None:
        return "–"
    if cell.apply_failed:
        return "A"
    if cell.timed_out:
        return "T"
    return "?" if cell.exit_code is None else str(cell.exit_code)


def matrix_table(selection: SelectionResult, chosen: str | None) -> str:
    """Tests × (original, candidates) as exit codes, the chosen candidate first and starred."""
    columns = [c.id for c in sorted(selection.candidates, key=lambda c: (c.id != chosen, c.rank or 10**6, c.id))
               if c.duplicate_of is None and c.status == "ok"][:MAX_MATRIX_COLUMNS]
    tests = [t for t in selection.tests if t.duplicate_of is None and t.id in selection.matrix]
    if not tests or not columns:
        return "_No generated test ran against a candidate._"
    heads = ["test", "status", "original"] + [f"**{c}** ★" if c == chosen else c for c in columns]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for test in tests[:MAX_MATRIX_ROWS]:
        cells = [f"`{test.id}`", test.status, _cell(selection, test.id, "original")]
        cells += [_cell(selection, test.id, c) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    votes = {c.id: c.votes for c in selection.candidates}
    lines.append("| votes | | | " + " | ".join(str(votes.get(c, 0)) for c in columns) + " |")
    more = []
    if len(tests) > MAX_MATRIX_ROWS:
        more.append(f"{len(tests) - MAX_MATRIX_ROWS} more test(s)")
    hidden = sum(1 for c in selection.candidates if c.duplicate_of is None and c.status == "ok") - len(columns)
    if hidden > 0:
        more.append(f"{hidden} more candidate(s)")
    legend = ("Exit codes: 2 = issue present, 0 = fixed, 1 = other error; T = timeout, A = patch does not apply. "
              "Only `voting` tests (issue reproduced on the original, twice) count.")
    return "\n".join(lines) + "\n\n" + legend + (f" Not shown: {', '.join(more)}." if more else "")


def regression_line(selection: SelectionResult, chosen: str | None) -> str:
    report = selection.regression
    if not report.enabled:
        return "Existing tests: not run."
    what = f"`{report.command}`" if report.command else f"{len(report.test_files)} test file(s)"
    broken = next((c.regressions for c in selection.candidates if c.id == chosen), [])
    verdict = f"breaks {len(broken)}: {', '.join(broken[:5])}" if broken else "breaks none"
    return (f"Existing tests ({report.runner or 'unknown runner'}, {what}): {report.baseline_passing} pass on "
            f"the original; the chosen patch {verdict}.")


def _fence(code: str) -> str:
    ticks = "`" * max(3, _longest_backticks(code) + 1)  # a fence the code itself cannot close
    return f"{ticks}python\n{code.rstrip()}\n{ticks}"


def _longest_backticks(text: str) -> int:
    best = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        best = max(best, run)
    return best


def repro_details(result: InstanceResult, path: str | None = None) -> str:
    found = repro_test(result)
    if found is None:
        return "_No reproduction test passed by the chosen patch._"
    test_id, code = found
    if len(code) > MAX_TEST_CHARS:
        code = code[:MAX_TEST_CHARS] + "\n# … truncated"
    where = f", committed as `{path}`" if path else ""
    return (f"<details><summary>Reproduction test (<code>{test_id}</code>{where}): exits 2 while the issue is "
            f"present, 0 once fixed</summary>\n\n{_fence(code)}\n\n</details>")


def selection_lines(result: InstanceResult) -> list[str]:
    selection = result.selection
    lines = [f"- Method: **{result.selection_method}** — {result.selection_reason}"]
    if selection is not None:
        voting = sum(1 for t in selection.tests if t.status == "voting")
        distinct = sum(1 for c in selection.candidates if c.duplicate_of is None)
        lines.append(f"- Votes: **{result.votes or 0}** of {voting} voting reproduction test(s); "
                     f"{len(selection.candidates)} candidate patch(es), {distinct} distinct, "
                     f"from {len(result.trajectories)} trajectories.")
    if result.budget_stopped:
        lines.append("- ⚠️ A budget stopped work early: this is the best patch found so far.")
    return lines


def pr_title(issue: int, title: str) -> str:
    text = f"Fix #{issue}: {' '.join(title.split())}"
    return text if len(text) <= 100 else text[:99] + "…"


def pr_body(result: InstanceResult, info: RunInfo, test_path: str | None = None) -> str:
    stats = diff_stats(result.patch)
    files = "\n".join(f"| `{path}` | +{added} | −{removed} |" for path, added, removed in stats)
    total = (f"{len(stats)} file(s), +{sum(s[1] for s in stats)} −{sum(s[2] for s in stats)}"
             + (f"; plus the reproduction test `{test_path}`" if test_path else ""))
    parts = [
        f"{LINK_KEYWORD} #{info.issue}",
        "",
        "Draft opened by **patchswarm**. The patch was chosen on the evidence below, not by a person: "
        "please review it before merging.",
        "",
        "### What changed",
        "| file | added | removed |\n|---|---|---|\n" + files if files else "_(the diff could not be parsed)_",
        "",
        total + f" (base commit `{info.commit[:12]}`).",
        "",
        "### How the patch was chosen",
        *selection_lines(result),
        "",
        "### Tests",
        matrix_table(result.selection, result.chosen_candidate) if result.selection else "_No selection ran._",
        "",
        regression_line(result.selection, result.chosen_candidate) if result.selection else "",
        "",
        repro_details(result, test_path),
        "",
        "### Cost",
        cost_line(result),
        "",
        "### Report",
        info.report_line(),
    ]
    return _cap("\n".join(parts))


def _cap(text: str) -> str:
    return text if len(text) <= MAX_BODY else text[:MAX_BODY] + "\n\n_(truncated)_"


# -- the status comment's stages -------------------------------------------------------------------

def status_started(ref: str, actor: str) -> str:
    return f"⏳ **patchswarm** started on this issue (triggered by `{actor}`): cloning `{ref}`…"


def status_running(info: RunInfo, num_tests: int, num_edits: int, max_cost: float | None) -> str:
    budget = f", budget ${max_cost:.2f}" if max_cost is not None else ""
    return (f"🔄 **patchswarm** is working at `{info.commit[:12]}`: {num_tests} reproduction-test and "
            f"{num_edits} editing trajectories{budget}. This comment is updated when it finishes.")


def status_pr(result: InstanceResult, pr_url: str, created: bool) -> str:
    verb = "opened draft pull request" if created else "updated draft pull request"
    return (f"✅ **patchswarm** {verb} {pr_url}\n\n" + "\n".join(selection_lines(result))
            + f"\n- Cost: {cost_line(result)}")


def status_no_pr(result: InstanceResult, reason: str, info: RunInfo, attempt_url: str | None = None) -> str:
    """One comment saying what was tried, why it stopped, where the best attempt is and what it cost."""
    written = {code for t in result.trajectories
               for code in (t.testing.test_code if t.testing else None, t.editing.test_code if t.editing else None)
               if code}
    patches = sum(1 for t in result.trajectories if t.editing and t.editing.patch)
    lines = ["🤷 **patchswarm** found no patch it is confident in, so it opened no pull request.", "",
             f"**Why it stopped:** {reason}.", "",
             "**What was tried:**",
             f"- {len(result.trajectories)} trajectories at `{info.commit[:12]}`: {len(written)} distinct "
             f"reproduction test(s) written, {patches} patch(es) produced."]
    outcomes = sorted({t.editing.outcome for t in result.trajectories if t.editing})
    if outcomes:
        lines.append(f"- Editing trajectories ended as: {', '.join(outcomes)}.")
    if result.selection is not None and result.selection.candidates:
        lines += selection_lines(result)
    elif result.selection is not None:
        lines.append(f"- Selection: {result.selection.reason}.")
    if result.budget_stopped and not (result.selection and result.selection.candidates):
        lines.append("- ⚠️ A budget stopped work early.")
    if result.errors:
        lines += ["", "**Errors:**", *[f"- {error[:300]}" for error in result.errors[:3]]]
    if attempt_url:
        lines += ["", f"**Best attempt:** pushed to {attempt_url} for a maintainer to pick up or build on."]
    lines += ["", f"**Cost:** {cost_line(result)}", "", info.report_line()]
    return _cap("\n".join(lines))


def status_failed(stage: str, error: str, cost: str | None = None) -> str:
    text = f"❌ **patchswarm** failed while {stage}: {error}"
    return text + (f"\n\nCost so far: {cost}" if cost else "")
