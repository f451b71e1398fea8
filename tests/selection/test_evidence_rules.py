"""Rules learned from real candidate pools (benchmarks/selection_real/README.md), on the stats fixture:
tests every system breaks are the issue's change, messages the issue asks for are not debug output, and
scratch files never count as a fix."""

from __future__ import annotations

import asyncio

from selection import Candidate, SelectionConfig, select_patch
from selection.hygiene import is_debug_print, scratch_files, static_hygiene, without_scratch
from selection.regression import intended_changes
from tests.selection.conftest import CASES, candidate

RULES = CASES / "evidence_rules"
NO_SELECTOR = SelectionConfig(selector_enabled=False)


def rule_candidate(name: str, candidate_id: str) -> Candidate:
    return Candidate(id=candidate_id, patch=(RULES / f"{name}.diff").read_text(), source=f"fixture:{name}")


def select(pool, repo, issue: str, candidates: list[Candidate]):
    return asyncio.run(select_patch(candidates, pool=pool, repo_dir=repo, issue=issue, config=NO_SELECTOR))


def test_a_test_every_probe_fixing_candidate_breaks_is_the_issues_change(pool, stats_repo):
    """pylint-6506 / sympy-18532: the existing tests pin the behaviour the issue changes, so every real fix
    "breaks" them and only a candidate that changes nothing breaks none. When every candidate that an
    issue probe shows fixing the issue (2.5 -> 2 here), from at least two systems, breaks a test, that
    break does not count."""
    repo, _ = stats_repo
    issue = (RULES / "lower_middle.md").read_text()
    fixes = [rule_candidate("lower_middle", "acme_run1"), rule_candidate("lower_middle_min", "beta_agent"),
             rule_candidate("lower_middle_index", "gamma-v2")]
    noop = rule_candidate("docstring_only", "delta_run1")
    result = select(pool, repo, issue, [noop, *fixes])
    assert result.chosen_id in {"acme_run1", "beta_agent", "gamma-v2"}
    assert result.candidate("acme_run1").regressions == ["tests.teststats.MedianTest.test_median_even"]
    assert result.candidate("acme_run1").probe_fixes == 1
    assert any("fixes an issue probe" in note and "test_median_even" in note for note in result.notes)
    assert result.confidence_level != "high"  # a choice that discounts tests is never high

    # The fixers are two runs of one system: not independent, so the break is evidence again.
    one_system = [noop, rule_candidate("lower_middle", "acme_run1"), rule_candidate("lower_middle_min", "acme_run2")]
    result = select(pool, repo, issue, one_system)
    assert result.chosen_id == "delta_run1"
    assert not any("fixes an issue probe" in note for note in result.notes)


def test_intended_changes_are_what_every_fixer_breaks():
    systems = {"p1": {"a"}, "p2": {"b"}, "p3": {"c"}, "p4": {"a"}}
    broken = {"p1": ["t1", "t2"], "p2": ["t1"], "p3": ["t1", "t2"], "p4": []}
    assert intended_changes(broken, systems, {"p1", "p3"}) == {"t1", "t2"}
    assert intended_changes(broken, systems, {"p1", "p2", "p3"}) == {"t1"}
    assert intended_changes(broken, systems, {"p1", "p4"}) == set()  # one system: not independent
    # Many systems breaking a test is not enough without probe evidence (sympy-14817: all 7 systems had a
    # candidate breaking a test that only the right patches kept passing).
    assert intended_changes(broken, systems, set()) == set()


def test_a_message_the_issue_asks_for_is_not_debug_output():
    """pylint-6506: the fix prints a usage message; 16 of 17 candidates were penalised as debug output."""
    asks = "A traceback is printed for an unknown option. A usage tip would be better."
    silent = "The index has two Symbols sections."
    assert is_debug_print('print(x)', asks) and is_debug_print('print(linter.help())', asks)
    assert is_debug_print('print(f"{value=}")', asks) and is_debug_print('print("DEBUG entries", e)', asks)
    assert not is_debug_print('print(f"usage: pylint [options]: {msg}", file=sys.stderr)', silent)
    assert not is_debug_print('print(f"Unrecognized option: {msg}")', asks)
    assert is_debug_print('print(f"Index entry: {entry}")', silent)  # library code, nothing asked for
    patch = ("--- a/pkg/cli.py\n+++ b/pkg/cli.py\n@@ -1 +1,2 @@\n x = 1\n"
             "+print(f\"error: unrecognized arguments: {x}\", file=sys.stderr)\n")
    assert static_hygiene(patch, silent).penalties == []


def test_scratch_files_are_cut_before_anything_runs(pool, stats_repo):
    """pylint-7114: a patch that only recreated the issue's example package (`a/a.py`, `r.py`) "fixed" the
    probe's import and was chosen. Scratch files (root scripts, new top-level directories) are cut before
    anything runs: such a patch is empty, and a real fix is written without its reproduction script."""
    repo, _ = stats_repo
    issue = (RULES / "recreated_example.md").read_text()
    right = candidate("right")
    with_script = Candidate(id="beta_agent", patch=right.patch + (RULES / "reproduce_script.diff").read_text())
    breaker = candidate("breaker", "gamma-v2")  # a third candidate, so that there is a choice to make
    result = select(pool, repo, issue, [rule_candidate("recreated_example", "acme_run1"), with_script, breaker])
    assert result.candidate("acme_run1").status == "empty"
    assert result.chosen_id == "beta_agent" and result.patch == right.patch  # written without reproduce.py
    assert result.candidate("beta_agent").hygiene == ["adds unrelated file reproduce.py"]
    assert any("reproduce.py" in note for note in result.notes)


def test_scratch_detection_reads_git_and_plain_diffs():
    example = (RULES / "recreated_example.diff").read_text()
    assert scratch_files(example, {"mathlib", "tests"}) == ["demo/__init__.py", "demo/data.py"]
    assert scratch_files(example, {"demo", "mathlib"}) == []  # an existing directory: part of the code
    source = "--- a/mathlib/stats.py\n+++ b/mathlib/stats.py\n@@ -1 +1 @@\n-a\n+b\n"
    plain = source + (RULES / "reproduce_script.diff").read_text()
    assert without_scratch(plain, None) == (source, ["reproduce.py"])
    assert without_scratch(example, {"mathlib"}) == ("", ["demo/__init__.py", "demo/data.py"])
    test_file = "--- /dev/null\n+++ b/tests/test_issue_12.py\n@@ -0,0 +1 @@\n+x = 1\n"
    assert without_scratch(test_file, {"tests"}) == (test_file, [])  # a new test is not scratch
