"""Selection pieces that need no sandbox: dedup, parsers, test discovery, replies, outside candidates."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from agent.actions import Action, ActionFormatError, parse_action
from sandbox.execution import ExecResult
from selection import (
    Candidate,
    GeneratedTest,
    SelectionResult,
    load_patch_dir,
    load_prediction_files,
    write_predictions,
)
from selection.cache import OutcomeCache
from selection.candidates import agreement_key, distinct_patches, distinct_tests, patch_key
from selection.matrix import CachedJobRunner, Job
from selection.models import Outcome
from selection.regression import find_test_files, parse_pytest, parse_unittest
from selection.selector import SelectorMachine, original_files, run_selector
from selection.voting import judge_test
from tests.selection.conftest import CASES, candidate


def test_only_trailing_whitespace_and_crs_collapse_and_input_order_is_kept():
    popular = candidate("popular")
    copies = [Candidate(id="crlf", patch=popular.patch.replace("\n", "\r\n")),
              Candidate(id="trailing", patch=popular.patch.replace("\n", "  \n"))]
    patches = distinct_patches([popular, candidate("right"), *copies, candidate("popular_spaces"),
                                candidate("popular_blank"), Candidate(id="e", patch="")])
    # Inner spaces and an added blank line are changed-line content: those copies run on their own.
    assert [(p.id, p.members) for p in patches] == [
        ("popular", ["popular", "crlf", "trailing"]), ("right", ["right"]), ("popular_spaces", ["popular_spaces"]),
        ("popular_blank", ["popular_blank"]), ("e", ["e"])]
    assert patches[-1].empty and not any(p.empty for p in patches[:-1]) and patches[0].lines_changed == 2
    assert patch_key("not a diff at all\n") not in ("", patch_key("something else\n"))
    with pytest.raises(ValueError, match="share the id"):
        distinct_patches([candidate("right"), candidate("right")])


INDENT_DIFF = """\
diff --git a/m.py b/m.py
--- a/m.py
+++ b/m.py
@@ -1,4 +1,5 @@
 def f(x, y):
     if x:
         y = y + 1
+{added}
     return 0
"""


def test_patches_differing_in_indentation_or_inner_spaces_run_separately():
    texts = [INDENT_DIFF.format(added=added) for added in ("        return y", "    return y", "        returny")]
    patches = distinct_patches([Candidate(id=str(n), patch=text) for n, text in enumerate(texts)])
    assert [p.members for p in patches] == [["0"], ["1"], ["2"]]
    assert len({p.key for p in patches}) == 3 and not any(p.empty for p in patches)
    # They still count as agreeing on the change when reporting support.
    assert len({agreement_key(text) for text in texts}) == 1


@pytest.mark.parametrize("patch", [
    "diff --git a/old.py b/new.py\nsimilarity index 100%\nrename from old.py\nrename to new.py\n",
    "diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n",
    "diff --git a/x.bin b/x.bin\nindex e69de29..d00491f 100644\nGIT binary patch\nliteral 1\nIc${NkU;qFB\n\n"
    "literal 0\nHcmV?d00001\n\n",
    "diff --git a/m.py b/m.py\n--- a/m.py\n+++ b/m.py\n@@ -1 +1 @@\n-x = 1\n+x  =  1\n",  # whitespace only
])
def test_renames_modes_binary_and_whitespace_changes_are_not_empty(patch):
    (group,) = distinct_patches([Candidate(id="a", patch=patch)])
    assert group.key and not group.empty
    assert agreement_key(patch)  # not lumped with the blank patch when reporting either


def test_variant_that_applies_takes_over():
    popular = candidate("popular")
    # Trailing spaces on a context line: the same key, but git apply would reject this text.
    unappliable = Candidate(id="unappliable", patch=popular.patch.replace("values):\n", "values):   \n", 1))
    group = distinct_patches([unappliable, popular])[0]
    assert group.members == ["unappliable", "popular"]
    assert group.id == "unappliable" and group.promote_next("hunk 1 failed")
    assert group.id == "popular" and group.failed == {"unappliable": "hunk 1 failed"}
    assert not group.promote_next("no")


def test_tests_differing_in_trailing_whitespace_run_once():
    tests = distinct_tests([GeneratedTest(id="a", code="x = 1\nprint(x)\n"),
                            GeneratedTest(id="b", code="x = 1   \nprint(x)\n\n\n"),
                            GeneratedTest(id="c", code="x =  1\nprint(x)\n")])
    assert [t.members for t in tests] == [["a", "b"], ["c"]]


@pytest.mark.parametrize(("first", "second", "status"), [
    ((2, False), (2, False), "voting"), ((1, False), (1, False), "error_on_original"),
    ((137, False), (137, False), "killed"), ((-9, False), (-9, False), "killed"),
    ((0, False), (0, False), "passes_on_original"), ((2, False), (0, False), "flaky"),
    ((None, True), (None, True), "timed_out"), ((2, False), (None, True), "flaky"),
    ((None, False), (2, False), "unknown"),
])
def test_who_votes(first, second, status):
    def outcome(code, timed_out):
        return Outcome(exit_code=code, timed_out=timed_out, error=None if code is not None or timed_out else "boom")

    assert judge_test(outcome(*first), outcome(*second)).status == status


def test_a_test_whose_prelude_failed_twice_on_the_original_proves_nothing():
    failed = Outcome(exit_code=None, apply_failed=True, error="prelude failed")
    assert judge_test(failed, failed).status == "unknown"  # used to compare None >= 128 and raise


def test_parse_unittest_old_and_new_formats():
    output = """\
test_a (pkg.tests.test_x.T.test_a) ... ok
test_b (pkg.tests.test_x.T)
A docstring line ... FAIL
test_c (pkg.tests.test_x.T.test_c) ... printed by the test
ok
test_d (pkg.tests.test_x.T.test_d) ... skipped 'later'
test_e (pkg.tests.test_x.T.test_e) ... ERROR

======================================================================
FAIL: test_b (pkg.tests.test_x.T)
"""
    assert parse_unittest(output) == {
        "pkg.tests.test_x.T.test_a": "passed", "pkg.tests.test_x.T.test_b": "failed",
        "pkg.tests.test_x.T.test_c": "passed", "pkg.tests.test_x.T.test_d": "skipped",
        "pkg.tests.test_x.T.test_e": "error"}


def test_parse_pytest_summary():
    output = """\
..F
=========================== short test summary info ============================
PASSED tests/test_x.py::test_a
PASSED tests/test_x.py::test_p[1 2]
FAILED tests/test_x.py::TestK::test_b - AssertionError: assert 1 == 2
SKIPPED [1] tests/test_x.py:9: later
ERROR tests/test_y.py
"""
    assert parse_pytest(output) == {"tests/test_x.py::test_a": "passed", "tests/test_x.py::test_p[1 2]": "passed",
                                    "tests/test_x.py::TestK::test_b": "failed"}


def test_find_test_files(tmp_path):
    files = {
        "src/pkg/core.py": "", "src/pkg/other.py": "",
        "tests/test_core.py": "",  # named after the module
        "tests/test_api.py": "from pkg.core import thing\n",
        "tests/test_rel.py": "from pkg import core, other\n",
        "tests/test_none.py": "import pkgcore\nfrom pkg.coreutils import x\n",
        "pkg_test.py": "import pkg.other\n",
        ".venv/lib/test_core.py": "import pkg.core\n",
        "tests/helpers.py": "import pkg.core\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert find_test_files(tmp_path, ["src/pkg/core.py", "README.md"], 10) == [
        "tests/test_core.py", "tests/test_api.py", "tests/test_rel.py"]
    assert find_test_files(tmp_path, ["src/pkg/core.py"], 1) == ["tests/test_core.py"]
    assert find_test_files(tmp_path, ["README.md"], 10) == []


def test_find_test_files_in_other_layouts(tmp_path):
    """sphinx's tests/test_<pkg>_<mod>.py, pylint's unittest_<mod>.py, pytest's testing/test_<pkg>.py; the
    most touched file picks first, so one candidate's stray setup.py or new script does not decide."""
    files = {
        "sphinx/environment/adapters/indexentries.py": "", "setup.py": "", "src/_pytest/mark/evaluate.py": "",
        "pylint/lint/expand_modules.py": "", "pylint/testutils/lint_module_test.py": "import pylint.lint\n",
        "tests/test_environment_indexentries.py": "", "tests/test_setup_command.py": "",
        "tests/test_build.py": "from sphinx.environment.adapters.indexentries import x\n",
        "tests/lint/unittest_expand_modules.py": "", "testing/test_mark.py": "", "doc/test_docs.py": "import setup\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    touched = ["sphinx/environment/adapters/indexentries.py", "setup.py", "replicate_bug.py"]
    assert find_test_files(tmp_path, touched, 3) == [
        "tests/test_environment_indexentries.py", "tests/test_build.py", "tests/test_setup_command.py"]
    assert find_test_files(tmp_path, ["pylint/lint/expand_modules.py"], 1) == ["tests/lint/unittest_expand_modules.py"]
    assert find_test_files(tmp_path, ["src/_pytest/mark/evaluate.py"], 1) == ["testing/test_mark.py"]


def test_parse_selector_replies():
    accepts = SelectorMachine.accepts
    assert parse_action("reasoning...\n<choice> b </choice>", accepts) == Action(kind="choice", body="B")
    assert parse_action("<choice>Candidate A</choice>", accepts).body == "A"
    assert parse_action("<test>\n```python\nprint(1)\n```\n</test>", accepts) == Action(kind="test", body="print(1)\n")
    with pytest.raises(ActionFormatError, match="no action"):
        parse_action("I like A", accepts)
    # A tag inside a test is part of the test, not a second action.
    assert parse_action("<test>\nprint('<choice>A</choice>')\n</test>", accepts).body == "print('<choice>A</choice>')\n"
    # Where no choice is taken (testing, editing) the tag is prose.
    assert parse_action("<choice>A</choice> <approve/>", {"done": "<approve/>"}).kind == "done"


@pytest.mark.parametrize("reply, problem", [
    ("<test>\nprint(1)\n</test>\n<choice>B</choice>", "several kinds"),  # a test and a choice: which one was meant?
    ("<choice>A</choice> or maybe <choice>B</choice>", "several choices"),
    ("<test>\na = 1\n</test>\n<test>\nb = 2\n</test>", "several tests"),
])
def test_selector_reply_with_several_actions_is_a_format_problem(reply, problem):
    with pytest.raises(ActionFormatError) as caught:
        parse_action(reply, SelectorMachine.accepts)
    assert problem in caught.value.problem and "exactly one action" in caught.value.message


def test_prediction_files_and_patch_dirs(tmp_path):
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in [
        {"instance_id": "i1", "model_name_or_path": "m1", "model_patch": "diff-1"},
        {"instance_id": "i2", "model_name_or_path": "m1", "model_patch": None}]) + "\n")
    as_dict = tmp_path / "b.json"
    as_dict.write_text(json.dumps({"i1": {"model_name_or_path": "m1", "model_patch": "diff-2"}}))
    as_list = tmp_path / "c.json"
    as_list.write_text(json.dumps([{"instance_id": "i1", "model_name_or_path": "m2", "model_patch": "diff-3"}]))
    loaded = load_prediction_files([jsonl, as_dict, as_list])
    assert [(c.id, c.patch, c.source) for c in loaded["i1"]] == [
        ("m1", "diff-1", "m1 (a.jsonl)"), ("m1#2", "diff-2", "m1 (b.json)"), ("m2", "diff-3", "m2 (c.json)")]
    assert loaded["i2"][0].patch == ""

    patches = load_patch_dir(CASES / "candidates")
    assert sorted(c.id for c in patches["candidates"]) == [
        "alternative", "breaker", "popular", "popular_blank", "popular_spaces", "right", "unappliable"]
    (tmp_path / "dir" / "inst-1").mkdir(parents=True)
    (tmp_path / "dir" / "inst-1" / "x.patch").write_text("p\r\n")
    assert load_patch_dir(tmp_path / "dir")["inst-1"][0].patch == "p\r\n"

    results = {"i1": SelectionResult(chosen_id="m2", patch="diff-3", method="vote", reason="r",
                                     candidates=[{"id": "m2", "source": "m2 (c.json)", "status": "ok"}]),
               "i2": SelectionResult(chosen_id=None, method="nothing_to_select", reason="none")}
    out = write_predictions(tmp_path / "out" / "preds.jsonl", results, "patchswarm")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0]["model_patch"] == "diff-3" and lines[0]["model_name_or_path"] == "patchswarm"
    assert lines[0]["selection"] == {"method": "vote", "reason": "r", "chosen_id": "m2", "chosen_source": "m2 (c.json)",
                                     "confidence": 0.0, "confidence_level": "none"}
    assert lines[1]["model_patch"] == "" and lines[1]["selection"]["method"] == "nothing_to_select"



def test_selector_sees_original_files_windowed_and_inside_the_repo(tmp_path):
    (tmp_path / "big.py").write_text("".join(f"line {n}\n" for n in range(1, 5001)))
    diff = ("diff --git a/big.py b/big.py\n--- a/big.py\n+++ b/big.py\n@@ -2500,1 +2500,1 @@\n-line 2500\n+changed\n"
            "diff --git a/../escape.py b/../escape.py\n--- a/../escape.py\n+++ b/../escape.py\n@@ -1 +1 @@\n-a\n+b\n")
    (tmp_path.parent / "escape.py").write_text("host secret\n")
    text = original_files(tmp_path, distinct_patches([Candidate(id="a", patch=diff)]))
    assert "line 2500\n" in text and "line 10\n" not in text and "(lines 1-2459 omitted)" in text
    assert "host secret" not in text


def test_selector_is_told_about_several_actions_and_it_costs_a_turn(scripted, model_client, tmp_path):
    scripted.add("sel", ["<test>\nprint(1)\n</test>\n<choice>B</choice>", "<choice>A</choice>"])
    finalists = distinct_patches([candidate("popular"), candidate("right")])
    outcome = asyncio.run(run_selector(model_client, None, executor=None, issue="mean([]) fails", finalists=finalists,
                                       repo_dir=tmp_path, evidence={}, example_test=None, max_attempts=2, timeout=5))
    assert outcome.chosen_key == finalists[0].key and outcome.calls == 2 and not outcome.test_runs
    assert outcome.outcome == "chosen" and outcome.cost_usd > 0
    feedback = scripted.calls("sel")[1][-1]["content"]
    feedback = feedback if isinstance(feedback, str) else "".join(part["text"] for part in feedback)
    assert "several kinds of action" in feedback and "last reply" in feedback


class StubPool:
    """One fake sandbox whose command times out under a 10 s limit and passes otherwise."""

    size = 1

    def __init__(self) -> None:
        self.runs: list[tuple[str, float]] = []

    @contextlib.asynccontextmanager
    async def lease(self):
        yield self

    def run(self, command, *, patch=None, files=None, timeout, output_cap):
        self.runs.append((command, timeout))
        slow = timeout < 10
        return ExecResult(command=command, exit_code=None if slow else 0, output="", timed_out=slow,
                          duration_s=min(timeout, 1.0), output_bytes=0)


def test_cached_results_are_reused_only_for_the_same_command_and_time_limit(tmp_path):
    pool, cache = StubPool(), OutcomeCache(tmp_path)

    def run(timeout: float, command: str = "python repro.py") -> tuple[bool, int]:
        executor = CachedJobRunner(pool, cache, "image")
        job = Job(patch_key="", patch=None, test_key="t", command=command, timeout=timeout)
        outcome = asyncio.run(executor.run([job]))[("", "t", 0)]
        return outcome.timed_out, executor.performed

    assert run(5) == (True, 1)
    assert run(5) == (True, 0)  # same command, same limit: from the cache
    assert run(60) == (False, 1)  # a timeout at 5 s says nothing about 60 s
    assert run(60.0) == (False, 0)
    assert run(60, "python other.py") == (False, 1)
    assert pool.runs == [("python repro.py", 5), ("python repro.py", 60), ("python other.py", 60)]
    cache.close()


def test_system_of_names_the_system_behind_a_candidate_id():
    from selection.candidates import system_of

    assert system_of("swefixer_lite_no_p2p") == system_of("swefixer_verified#2") == "swefixer"
    assert system_of("20240620_SWEagent_claude") == "sweagent"  # a leading date is not a system
    assert len({system_of(i) for i in ("sys-a", "sys-b", "t0", "t1")}) == 4
