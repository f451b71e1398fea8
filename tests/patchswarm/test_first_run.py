"""What a first real run needs to read right: failed model calls are errors (not no_patch), not final, and
the exit code says so; predictions hold every attempted instance, merged across commands into one run dir.

Real Docker, git and SQLite; the scripted model (down for chosen instances) stands in for the provider.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from tests.patchswarm.test_pipeline import (
    ISSUE,
    OVERRIDES,
    calc_repo,
    result_json,
    run_cli,
    run_containers,
    unique_run_dir,
)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "calc=tests.patchswarm.failing_scripts:DownFor"
DOWN = "Seen by the outage tenant."


def batch_command(tasks: Path, run_dir: Path, *extra: str) -> list[str]:
    sets = [item for o in OVERRIDES for item in ("--set", o)]
    return [sys.executable, "-m", "patchswarm.cli", "batch", "--tasks", str(tasks), "--run-dir", str(run_dir),
            "--scripted", SCRIPT, *sets, "--quiet", *extra]


def write_tasks(tmp_path: Path, sha: str) -> Path:
    rows = [{"instance_id": "calc-ok", "repo": "pipeline_calc", "commit": sha, "issue": ISSUE},
            {"instance_id": "calc-down", "repo": "pipeline_calc", "commit": sha, "issue": ISSUE + "\n" + DOWN + "\n"}]
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tasks


def test_failed_model_calls_are_an_error_that_a_rerun_retries(tmp_path, base_image, docker_client):
    calc_repo(tmp_path)
    tasks = write_tasks(tmp_path, "main")
    run_dir = unique_run_dir(tmp_path, "down")
    done = run_cli(batch_command(tasks, run_dir), PATCHSWARM_TEST_DOWN_FOR=DOWN)
    assert done.returncode == 3, done.stderr  # some instances ended in error
    assert done.stderr.strip().splitlines()[-1] == (
        "error: 1 of 2 instance(s) ended in error (1 error); they are not final: rerun the same command to "
        "retry them")
    down = result_json(run_dir, "calc-down")
    assert down["status"] == "error" and down["patch"] == ""
    assert down["errors"][0].startswith("all ") and "primary call(s) failed (model scripted/calc)" in down["errors"][0]
    assert "scripted outage" in down["errors"][0]
    assert result_json(run_dir, "calc-ok")["status"] == "solved"
    row = next(line for line in done.stdout.splitlines() if line.startswith("calc-down"))
    assert " error " in row and "None" not in row
    assert not done.stdout.startswith("\x1b") and "Provider List" not in done.stdout + done.stderr
    # Plain progress lines (not a TTY): each instance's stages as they change, then the totals.
    for stage in ("environment", "context", "testing 1/1", "editing 2/2", "matrix"):
        assert re.search(rf"^  calc-ok: {stage} · \d+ call\(s\) · \$\d+\.\d{{4}} · \d:\d\d:\d\d$", done.stderr, re.M), stage
    assert re.search(r"^2/2 done · 1 resolved · 1 error\(s\) · 0 running · \$\d+\.\d{4} · ETA 0:00:00$", done.stderr, re.M)

    lines = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert sorted(p["instance_id"] for p in lines) == ["calc-down", "calc-ok"]  # every attempted instance
    by_id = {p["instance_id"]: p for p in lines}
    assert by_id["calc-down"]["model_patch"] == "" and by_id["calc-ok"]["model_patch"].strip()
    assert {p["model_name_or_path"] for p in lines} == {"scripted/calc"}  # the primary model by default

    # The provider is back: another slice of the same run dir, no --redo, retries the errored instance;
    # the predictions file keeps the first command's line and holds the newest result of the retried one.
    again = run_cli(batch_command(tasks, run_dir, "--slice", "1:2", "--model-name", "patchswarm-first-run"))
    assert again.returncode == 0, again.stderr
    assert "started calc-down" in again.stderr
    assert result_json(run_dir, "calc-down")["status"] == "solved"
    lines = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    by_id = {p["instance_id"]: p for p in lines}
    assert len(lines) == 2 and set(by_id) == {"calc-down", "calc-ok"}
    assert by_id["calc-down"]["model_patch"].strip() and by_id["calc-down"]["model_name_or_path"] == "patchswarm-first-run"
    assert by_id["calc-ok"]["model_name_or_path"] == "scripted/calc"
    assert not run_containers(docker_client, run_dir)
