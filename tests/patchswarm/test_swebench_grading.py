"""Grading with the harness's own parsers and report functions, on fixture logs; summaries; the CLI's checks."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from patchswarm.swebench.cli import eval_app, register
from patchswarm.swebench.dataset import SweInstance, load_instances
from patchswarm.swebench.evaluation import new_eval_run_id, official_command, summarize
from patchswarm.swebench.grading import (
    InstanceReport,
    apply_script,
    blank_report,
    grade_log,
    harness_test_spec,
    mark_validation,
)
from patchswarm.swebench.specs import load_spec_table
from tests.conftest import FIXTURES

# A few real rows per repository, committed (see its README): the suite needs no ../shared.
SHARED_DATA = FIXTURES / "swebench_rows"
LOGS = FIXTURES / "swebench_logs"
CALC = FIXTURES / "swebench_calc"


def calc_row() -> dict:
    row = json.loads((CALC / "meta.json").read_text())
    row.update(patch=(CALC / "patch.diff").read_text(), test_patch=(CALC / "test_patch.diff").read_text(),
               eval_script=(CALC / "eval.sh").read_text())
    return row


@pytest.fixture(scope="module")
def django_13220() -> SweInstance:
    path = SHARED_DATA / "swe-bench-lite.test.jsonl"
    return load_instances(path, instance_ids=["django__django-13220"])[0]


def _grade(instance: SweInstance, log: str, tmp_path: Path, patch: str | None = "diff") -> dict:
    shutil.copy(LOGS / log, tmp_path / "test_output.txt")
    return grade_log(harness_test_spec(instance), patch, tmp_path / "test_output.txt")[instance.instance_id]


def test_django_log_graded_by_the_real_parser(django_13220, tmp_path):
    resolved = _grade(django_13220, "django__django-13220.resolved.log", tmp_path)
    assert resolved["resolved"] and resolved["patch_successfully_applied"]
    assert resolved["tests_status"]["FAIL_TO_PASS"]["success"] == django_13220.FAIL_TO_PASS
    assert resolved["tests_status"]["PASS_TO_PASS"]["failure"] == []
    unresolved = _grade(django_13220, "django__django-13220.unresolved.log", tmp_path)
    assert not unresolved["resolved"]
    assert set(unresolved["tests_status"]["FAIL_TO_PASS"]["failure"]) == set(django_13220.FAIL_TO_PASS)
    assert unresolved["tests_status"]["PASS_TO_PASS"]["success"] == django_13220.PASS_TO_PASS


def test_pytest_log_of_the_fixture_instance(tmp_path):
    instance = SweInstance(**calc_row())
    report = _grade(instance, "fixture__calc-1.resolved.log", tmp_path)
    assert report["resolved"]
    assert set(report) >= {"patch_is_None", "patch_exists", "patch_successfully_applied", "resolved", "tests_status"}
    failing = _grade(instance, "fixture__calc-1.unresolved.log", tmp_path)
    assert not failing["resolved"]
    assert failing["tests_status"]["FAIL_TO_PASS"] == {"success": [], "failure": ["tests/test_ops.py::test_divide_by_zero"]}


def test_log_without_markers_is_not_applied(tmp_path, django_13220):
    (tmp_path / "test_output.txt").write_text("+ git apply -v -\nerror: patch failed\n")
    report = grade_log(harness_test_spec(django_13220), "diff", tmp_path / "test_output.txt")
    assert report["django__django-13220"]["patch_successfully_applied"] is False
    assert report["django__django-13220"]["resolved"] is False


def test_rows_without_eval_script_use_the_spec_table(django_13220):
    row = django_13220.harness_row()
    for column in ("eval_script", "log_parser", "eval_type", "image"):
        row.pop(column)
    bare = SweInstance(**row)
    spec = harness_test_spec(bare, load_spec_table())
    official = harness_test_spec(django_13220)
    assert spec.eval_script == official.eval_script and spec.log_parser == "parse_log_django"
    assert ">>>>> Test Exit Code" in spec.eval_script  # the harness's own exit-code record is added


def test_apply_script_is_the_harness_chain():
    from swebench.harness.run_evaluation import GIT_APPLY_CMDS

    script = apply_script()
    positions = [script.index(f"{command} /tmp/patch.diff") for command in GIT_APPLY_CMDS]
    assert positions == sorted(positions)
    assert script.count("git checkout -- . ; git clean -fd") == len(GIT_APPLY_CMDS) - 1
    assert "git apply --check --reverse /tmp/patch.diff" in script


def _report(iid: str, repo: str, status: str, resolved: bool = False) -> InstanceReport:
    return InstanceReport(instance_id=iid, repo=repo, model_name_or_path="m", status=status, resolved=resolved,
                          report=blank_report(iid, "diff"))


def test_summary_counts_like_the_run_report():
    instances = [SweInstance(instance_id=f"o__r-{n}", repo="o/r" if n < 3 else "p/q", base_commit="c",
                             problem_statement="p", version="1", environment_setup_commit="e", patch="",
                             test_patch="", FAIL_TO_PASS=[], PASS_TO_PASS=[]) for n in range(5)]
    reports = [_report("o__r-0", "o/r", "resolved", True), _report("o__r-1", "o/r", "patch_failed"),
               _report("o__r-2", "o/r", "error"), _report("o__r-3", "p/q", "unresolved")]
    summary = summarize(reports, instances, "run", "predictions", "m")
    assert (summary.resolved_instances, summary.patch_failed_instances, summary.error_instances) == (1, 1, 1)
    assert summary.resolved_pct == 20.0 and summary.incomplete_ids == ["o__r-4"]
    assert summary.per_repo["o/r"].resolved_pct == pytest.approx(33.33)
    assert summary.per_repo["p/q"].total == 2


def test_validation_flags_broken_environments():
    gold = mark_validation(_report("a", "o/r", "unresolved"), "gold")
    assert gold.env_broken and "gold patch does not resolve" in gold.env_broken_reason
    empty = mark_validation(_report("a", "o/r", "resolved", True), "empty")
    assert empty.env_broken and "empty patch resolves" in empty.env_broken_reason
    assert not mark_validation(_report("a", "o/r", "resolved", True), "gold").env_broken


def test_official_command_and_unique_run_ids():
    command = official_command("/d/lite.jsonl", "gold", run_id="r1", instance_ids=["a", "b"], max_workers=2)
    assert command[:3] == [sys.executable, "-m", "swebench.harness.run_evaluation"]
    assert command[command.index("--predictions_path") + 1] == "gold"
    assert command[command.index("--run_id") + 1] == "r1" and command[-3:] == ["--instance_ids", "a", "b"]
    assert len({new_eval_run_id() for _ in range(20)}) == 20


def test_cli_refuses_inconsistent_options(tmp_path):
    runner = CliRunner()
    result = runner.invoke(eval_app, ["--dataset", str(tmp_path / "d.jsonl")])
    assert result.exit_code == 1 and "pass a predictions file, or --gold / --empty" in result.output
    result = runner.invoke(eval_app, ["--dataset", "d.jsonl", "--empty", "--official"])
    assert result.exit_code == 1 and "--empty is not supported by the official harness" in result.output
    result = runner.invoke(eval_app, ["--dataset", str(tmp_path / "missing.jsonl"), "--gold"])
    assert result.exit_code == 1 and "dataset file not found" in result.output
    app = typer.Typer()
    app.command("other")(lambda: None)
    register(app)
    assert "eval" in {c.name for c in app.registered_commands}
