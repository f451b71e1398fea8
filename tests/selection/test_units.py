"""Selection pieces that need no sandbox: dedup, parsers, test discovery, replies, ensembles."""

from __future__ import annotations

import json

import pytest

from selection import (
    Candidate,
    GeneratedTest,
    SelectionResult,
    load_patch_dir,
    load_prediction_files,
    write_predictions,
)
from selection.candidates import distinct_patches, distinct_tests, patch_key
from selection.models import Outcome
from selection.regression import find_test_files, parse_pytest, parse_unittest
from selection.selector import original_files, parse_reply
from selection.voting import judge_test
from tests.selection.conftest import CASES, candidate


def test_whitespace_variants_collapse_and_keep_input_order():
    patches = distinct_patches([candidate("popular"), candidate("right"), candidate("popular_spaces"),
                                candidate("popular_blank"), Candidate(id="e", patch="")])
    assert [(p.id, p.members) for p in patches] == [
        ("popular", ["popular", "popular_spaces", "popular_blank"]), ("right", ["right"]), ("e", ["e"])]
    assert patches[2].empty and patches[0].lines_changed == 2
    assert patch_key("not a diff at all\n") not in ("", patch_key("something else\n"))
    with pytest.raises(ValueError, match="share the id"):
        distinct_patches([candidate("right"), candidate("right")])


def test_variant_that_applies_takes_over():
    group = distinct_patches([candidate("unappliable"), candidate("popular")])[0]
    assert group.id == "unappliable" and group.promote_next("hunk 1 failed")
    assert group.id == "popular" and group.failed == {"unappliable": "hunk 1 failed"}
    assert not group.promote_next("no")


def test_tests_differing_in_trailing_whitespace_run_once():
    tests = distinct_tests([GeneratedTest(id="a", code="x = 1\nprint(x)\n"),
                            GeneratedTest(id="b", code="x = 1   \nprint(x)\n\n\n"),
                            GeneratedTest(id="c", code="x =  1\nprint(x)\n")])
    assert [t.members for t in tests] == [["a", "b"], ["c"]]


@pytest.mark.parametrize(("first", "second", "status"), [
    ((2, False), (2, False), "voting"), ((1, False), (1, False), "voting"),
    ((0, False), (0, False), "passes_on_original"), ((2, False), (0, False), "flaky"),
    ((None, True), (None, True), "timed_out"), ((2, False), (None, True), "flaky"),
    ((None, False), (2, False), "unknown"),
])
def test_who_votes(first, second, status):
    def outcome(code, timed_out):
        return Outcome(exit_code=code, timed_out=timed_out, error=None if code is not None or timed_out else "boom")

    assert judge_test(outcome(*first), outcome(*second)).status == status


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


def test_parse_selector_replies():
    labels = ["A", "B"]
    assert parse_reply("reasoning...\n<choice> b </choice>", labels) == ("B", None, None)
    assert parse_reply("<choice>Candidate A</choice>", labels)[0] == "A"
    assert parse_reply("<test>\n```python\nprint(1)\n```\n</test>", labels) == (None, "print(1)\n", None)
    assert "not a candidate label" in parse_reply("<choice>C</choice>", labels)[2]
    assert "neither" in parse_reply("I like A", labels)[2]
    assert parse_reply("<test>x</test> then <choice>A</choice>", labels)[0] == "A"


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
    assert lines[0]["selection"] == {"method": "vote", "reason": "r", "chosen_id": "m2", "chosen_source": "m2 (c.json)"}
    assert lines[1]["model_patch"] == "" and lines[1]["selection"]["method"] == "nothing_to_select"



def test_selector_sees_original_files_windowed_and_inside_the_repo(tmp_path):
    (tmp_path / "big.py").write_text("".join(f"line {n}\n" for n in range(1, 5001)))
    diff = ("diff --git a/big.py b/big.py\n--- a/big.py\n+++ b/big.py\n@@ -2500,1 +2500,1 @@\n-line 2500\n+changed\n"
            "diff --git a/../escape.py b/../escape.py\n--- a/../escape.py\n+++ b/../escape.py\n@@ -1 +1 @@\n-a\n+b\n")
    (tmp_path.parent / "escape.py").write_text("host secret\n")
    text = original_files(tmp_path, distinct_patches([Candidate(id="a", patch=diff)]))
    assert "line 2500\n" in text and "line 10\n" not in text and "(lines 1-2459 omitted)" in text
    assert "host secret" not in text
