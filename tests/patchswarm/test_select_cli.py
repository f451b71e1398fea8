"""`patchswarm select`: candidates from prediction files, tests from the testing machine, one choice each."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from patchswarm.cli import app
from patchswarm.demo.run import demo_task
from patchswarm.demo.script import FIXES, ORIGINAL_LINES


def _patch(repo, fix: str) -> str:
    import subprocess

    path = repo / "textkit" / "slug.py"
    original = path.read_text()
    new = original.replace(ORIGINAL_LINES, FIXES[fix])
    if fix == "right":
        new = new.replace("import unicodedata\n", "import re\nimport unicodedata\n", 1)
    path.write_text(new)
    diff = subprocess.run(["git", "diff"], cwd=repo, capture_output=True, text=True, check=True).stdout
    path.write_text(original)
    return diff


@pytest.mark.docker  # the CLI runs the matrix in sandboxes
def test_select_prefers_the_candidate_generated_tests_support(tmp_path, scripted):
    task = demo_task(tmp_path / "demo")
    from pathlib import Path

    repo = Path(task.repo)
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps(task.model_dump(exclude={"swebench"})) + "\n")
    wrong, right = _patch(repo, "whitespace"), _patch(repo, "right")
    files = []
    for name, patch in (("model-a", wrong), ("model-b", wrong.replace("\n\n", "\n \n", 1)), ("model-c", right)):
        file = tmp_path / f"{name}.jsonl"
        file.write_text(json.dumps({"instance_id": task.instance_id, "model_name_or_path": name, "model_patch": patch}) + "\n")
        files += ["--predictions", str(file)]
    out = tmp_path / "selected.jsonl"
    result = CliRunner().invoke(app, [
        "select", *files, "--tasks", str(tasks), "--out", str(out), "--run-dir", str(tmp_path / "run"), "--quiet",
        "--scripted", "demo=patchswarm.demo.script:DemoScript",
        *[x for role in ("relevance", "primary", "selector") for x in ("--set", f"models.roles.{role}=scripted/demo")],
        "--set", "trajectories.num_tests=2", "--set", "sandbox.pool_size=2", "--set", "selection.selector_enabled=false",
    ])
    assert result.exit_code == 0, result.output
    (line,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert line["instance_id"] == task.instance_id
    assert line["model_patch"] == right
    assert line["selection"]["chosen_source"].startswith("model-c")
    assert line["selection"]["method"] == "vote"
