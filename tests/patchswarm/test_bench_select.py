"""`patchswarm bench-select`: grade real-format candidates, select among them, score against the grades."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from patchswarm.cli import app
from tests.conftest import FIXTURES
from tests.patchswarm.test_swebench_docker import calc_row, make_calc_mirror

ISSUE = """divide(1, 0) raises a bare ZeroDivisionError

```
>>> from calc.ops import divide
>>> divide(1, 0)
Traceback (most recent call last):
ZeroDivisionError: division by zero
```

It should raise ValueError('cannot divide by zero') so callers get a clear message.
"""
HEADER = "diff --git a/calc/ops.py b/calc/ops.py\n--- a/calc/ops.py\n+++ b/calc/ops.py\n"
CONTEXT = " \n \n def divide(a, b):\n"  # diff context lines (a space each), kept out of the source's blank lines
RIGHT = (HEADER + "@@ -6,4 +6,6 @@ def add(a, b):\n" + CONTEXT
         + '+    if b == 0:\n+        raise ValueError("cannot divide by zero")\n     return a / b\n')
WRONG_TYPE = RIGHT.replace("ValueError", "TypeError")
BREAKS_DIVIDE = (HEADER + "@@ -6,4 +6,6 @@ def add(a, b):\n" + CONTEXT
                 + '-    return a / b\n+    if b == 0:\n+        raise ValueError("cannot divide by zero")\n'
                 + "+    return a // b + 0.5\n")
MISSING_FILE = RIGHT.replace("calc/ops.py", "calc/nothere.py")


def test_bench_select_grades_selects_and_scores(tmp_path, docker_client, base_image):
    row = calc_row()
    row["problem_statement"] = ISSUE
    dataset = tmp_path / "calc.jsonl"
    dataset.write_text(json.dumps(row) + "\n")
    template, _ = make_calc_mirror(tmp_path)
    lines = [("sys-a", RIGHT, False), ("sys-b", RIGHT, None), ("sys-c", WRONG_TYPE, True), ("sys-d", BREAKS_DIVIDE, True),
             ("sys-e", MISSING_FILE, True), ("sys-f", "", True)]
    candidates = tmp_path / "candidates.jsonl"
    # The `resolved` hints are deliberately wrong: they must never be used.
    candidates.write_text("".join(json.dumps({"instance_id": row["instance_id"], "system": s, "model_patch": p,
                                              "resolved": hint}) + "\n" for s, p, hint in lines))
    grades = tmp_path / "grades.jsonl"
    args = ["bench-select", str(candidates), "--dataset", str(dataset), "--grades", str(grades),
            "--repo-url", template,
            "--spec-table", str(FIXTURES / "swebench_calc" / "specs.json"), "--run-dir", str(tmp_path / "run")]
    result = CliRunner().invoke(app, [*args, "--grade", "--ablation"])
    assert result.exit_code == 0, result.output
    graded = {json.loads(line)["status"] for line in grades.read_text().splitlines()}
    assert len(grades.read_text().splitlines()) == 4  # distinct non-empty patches; the empty one is not graded
    assert graded == {"resolved", "unresolved", "patch_failed"}
    (score,) = [json.loads(line) for line in (tmp_path / "run" / "all" / "scores.jsonl").read_text().splitlines()]
    assert (score["candidates"], score["resolving"], score["correct"]) == (4, 1, True)
    assert score["chosen"] in ("sys-a", "sys-b") and score["confidence_level"] in ("high", "medium")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["all"]["accuracy"] == 1.0 and summary["all"]["random"] == 0.25
    assert summary["all"]["majority"] == 1.0 and summary["all"]["gap_closed"] == 1.0
    assert set(summary) == {"all", "-regression", "-probes", "-consensus", "-hygiene"}
    assert "gap closed 100%" in result.output

    # Grades are cached: a rerun grades nothing and scores the same.
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert len(grades.read_text().splitlines()) == 4


def test_bench_select_llm_mode_with_a_scripted_model(tmp_path, docker_client, base_image):
    """--model: generated reproduction tests and the selector run through a (scripted) model; its tokens
    and calls are counted per instance and in the totals. Grades are given, so nothing is graded here."""
    from patchswarm.benchselect.grades import Grade, patch_sha

    row = calc_row()
    row["problem_statement"] = ISSUE
    dataset = tmp_path / "calc.jsonl"
    dataset.write_text(json.dumps(row) + "\n")
    template, _ = make_calc_mirror(tmp_path)
    lines = [("sys-a", RIGHT, True), ("sys-c", WRONG_TYPE, False), ("sys-d", BREAKS_DIVIDE, False)]
    candidates = tmp_path / "candidates.jsonl"
    candidates.write_text("".join(json.dumps({"instance_id": row["instance_id"], "system": s, "model_patch": p})
                                  + "\n" for s, p, _ in lines))
    grades = tmp_path / "grades.jsonl"
    grades.write_text("".join(Grade(instance_id=row["instance_id"], patch_sha=patch_sha(p), resolved=ok,
                                    status="resolved" if ok else "unresolved").model_dump_json() + "\n"
                              for _, p, ok in lines))
    result = CliRunner().invoke(app, [
        "bench-select", str(candidates), "--dataset", str(dataset), "--grades", str(grades),
        "--repo-url", template,
        "--spec-table", str(FIXTURES / "swebench_calc" / "specs.json"), "--run-dir", str(tmp_path / "run"),
        "--model", "scripted/echo", "--scripted", "echo=patchswarm.benchselect.echo_model:IssueEchoScript"])
    assert result.exit_code == 0, result.output
    (score,) = [json.loads(line) for line in (tmp_path / "run" / "all" / "scores.jsonl").read_text().splitlines()]
    assert score["error"] is None and score["calls"] >= 2 and score["tokens"] > 0  # testing machine + selector
    assert score["executions"] > 0 and score["candidates"] == 3 and score["resolving"] == 1
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["all"]["tokens"] == score["tokens"] and summary["all"]["calls"] == score["calls"]
    assert "model calls" in result.output
    table = (tmp_path / "run" / "results.md").read_text()
    assert f"| {row['instance_id']} | 3 | 1 |" in table and "| all | 1 |" in table
    selection = json.loads(next((tmp_path / "run" / "all").rglob("selection/*.json")).read_text())
    assert selection["tests"], "the scripted testing machine's reproduction test reached selection"
