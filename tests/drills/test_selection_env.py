"""Drill item 11: `patchswarm select` goes on when one instance's environment fails to build."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from patchswarm.cli import app
from patchswarm.demo.run import demo_task
from tests.patchswarm.test_select_cli import _patch


def test_one_broken_environment_is_that_instances_error(tmp_path, docker_client, base_image):
    """item 11"""
    task = demo_task(tmp_path / "demo")
    from pathlib import Path

    repo = Path(task.repo)
    broken = task.model_copy(update={"instance_id": "broken-env", "setup": ["exit 7"]})
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(t.model_dump(exclude={"swebench"})) + "\n" for t in (broken, task)))
    wrong, right = _patch(repo, "whitespace"), _patch(repo, "right")
    lines = [{"instance_id": i, "model_name_or_path": name, "model_patch": patch}
             for i in ("broken-env", task.instance_id) for name, patch in (("a", wrong), ("b", right))]
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "selected.jsonl"
    result = CliRunner().invoke(app, [
        "select", "-p", str(predictions), "--tasks", str(tasks), "--out", str(out), "--run-dir", str(tmp_path / "run"),
        "--quiet", "--no-generate-tests", "--set", "selection.selector_enabled=false", "--set", "sandbox.pool_size=2",
    ])
    assert result.exit_code == 0, result.output
    by_id = {line["instance_id"]: line for line in map(json.loads, out.read_text().splitlines())}
    assert by_id["broken-env"]["selection"]["method"] == "error"
    assert by_id["broken-env"]["model_patch"] == ""
    print(by_id["broken-env"]["selection"]["reason"])
    assert "ImageBuildError" in by_id["broken-env"]["selection"]["reason"]
    assert by_id[task.instance_id]["selection"]["method"] == "vote"
    assert by_id[task.instance_id]["model_patch"] in (wrong, right)
