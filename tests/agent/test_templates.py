from __future__ import annotations

import pytest

from agent.context.build import RANKING_SYSTEM, RELEVANCE_SYSTEM, SKELETON_SYSTEM, relevance_messages
from agent.prompts import EDITING_SYSTEM, TESTING_SYSTEM, describe_run, editing_report, reproduction_report
from agent.templates import render
from agent.types import EXIT_ISSUE_PRESENT, REPRO_TEST_PATH
from selection.selector import SYSTEM_PROMPT


def test_prompts_are_rendered_from_their_files_with_every_placeholder_filled():
    for text in (TESTING_SYSTEM, EDITING_SYSTEM, RELEVANCE_SYSTEM, SKELETON_SYSTEM, RANKING_SYSTEM, SYSTEM_PROMPT):
        assert "$" not in text and not text.endswith("\n")
    assert f"`python {REPRO_TEST_PATH}`" in TESTING_SYSTEM and "<<<<<<< SEARCH" in EDITING_SYSTEM
    report = reproduction_report(describe_run(1, "boom", False, 0.2), 1)
    assert report.startswith("Your test ran on the original (unfixed) repository.\nExit code: 1 (something else")
    assert f"a correct test exits {EXIT_ISSUE_PRESENT} here." in report
    assert editing_report(None, None, None).startswith("No edit is in place yet")


def test_values_are_inserted_verbatim_dollars_and_braces_included():
    (_, asked) = relevance_messages("costs $5 {a}", "p.py", "x = {'$b': 1}", 100)
    assert asked["content"] == '<issue>\ncosts $5 {a}\n</issue>\n\n<file path="p.py">\nx = {\'$b\': 1}\n</file>'


def test_a_missing_value_is_one_line_naming_the_template():
    with pytest.raises(ValueError, match=r"prompt template agent/templates/patch_failed.txt: no value for \$message"):
        render("patch_failed")
