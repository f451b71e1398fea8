"""The command line's error paths and listings: each problem is one line on stderr that says what to do.

Most run in-process through typer's runner (the real commands, no subprocess start-up cost); the missing
engine runs as a subprocess with its own DOCKER_HOST.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from agent.call_records import CallRecord, Usage
from patchswarm.cli import app
from patchswarm.config import STRONG_MODEL
from patchswarm.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
SCRIPTED_ROLES = ["--set", "models.roles.relevance=scripted/calc", "--set", "models.roles.primary=scripted/calc",
                  "--set", "models.roles.selector=scripted/calc"]


def invoke(*args: str, env: dict[str, str | None] | None = None):
    return CliRunner().invoke(app, list(args), env=env)


def error_line(result) -> str:
    """The single line the command printed on stderr (fails when there are more)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def test_bad_task_file_line_is_named(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    good = {"repo": ".", "commit": "HEAD", "issue": "x"}
    tasks.write_text(json.dumps(good) + "\n" + '{"repo": ".", "commit": \n')
    result = invoke("batch", "--tasks", str(tasks), "--run-dir", str(tmp_path / "run"), *SCRIPTED_ROLES)
    assert result.exit_code == 1
    assert "tasks.jsonl line 2: not valid JSON" in error_line(result)

    tasks.write_text("\n" + json.dumps(good) + "\n" + json.dumps({"repo": "."}) + "\n")
    result = invoke("batch", "--tasks", str(tasks), "--run-dir", str(tmp_path / "run"), *SCRIPTED_ROLES)
    assert "tasks.jsonl line 3: missing commit, issue" in error_line(result)
    assert not (tmp_path / "run").exists(), "nothing may start before the task file is known to be good"


def test_unknown_config_key_names_the_closest_one(tmp_path):
    result = invoke("config", "show", "--set", "trajectories.num_edit=3")
    assert result.exit_code == 1
    assert error_line(result) == ("error: unknown config key 'trajectories.num_edit'; "
                                  "did you mean 'trajectories.num_edits'?")
    config = tmp_path / "config.yaml"
    config.write_text("selection:\n  topk: 2\n")
    result = invoke("config", "show", "--config", str(config))
    assert "unknown config key 'selection.topk'; did you mean 'selection.top_k'?" in error_line(result)
    result = invoke("config", "show", "--set", "trajectories.num_edits=-1")
    assert "config key 'trajectories.num_edits': Input should be greater than or equal to 0" in error_line(result)


def test_config_show_prints_values_with_descriptions():
    result = invoke("config", "show", "--preset", "codemonkeys", "--set", "trajectories.num_edits=4",
                    "--set", "models.roles.primary=scripted/calc")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    at = lines.index("  num_edits: 4")
    assert lines[at - 1] == "  # Editing trajectories, each seeded by one reproduction test."
    assert "  num_tests: 10" in lines  # from the preset
    assert "    primary: scripted/calc" in lines
    # The roles not overridden keep their defaults.
    assert f"    selector: {STRONG_MODEL}" in lines
    assert "# Spending limits that hold across workers." in lines


def test_missing_api_key_names_the_environment_variable(tmp_path):
    result = invoke("solve", "--repo", str(tmp_path), "--issue", "something is wrong", "--run-dir",
                    str(tmp_path / "run"), "--set", f"models.roles.primary={STRONG_MODEL}",
                    "--set", "models.roles.relevance=scripted/calc", "--set", "models.roles.selector=scripted/calc",
                    env={"ANTHROPIC_API_KEY": None})
    assert result.exit_code == 1
    line = error_line(result)
    assert "ANTHROPIC_API_KEY" in line and "(primary)" in line and "--set models.roles.primary=" in line
    assert not (tmp_path / "run").exists()


def test_issue_problems_are_reported(tmp_path):
    result = invoke("solve", "--repo", str(tmp_path), "--issue", f"@{tmp_path / 'missing.md'}", *SCRIPTED_ROLES)
    assert "cannot read issue file" in error_line(result) and "missing.md" in result.stderr
    (tmp_path / "empty.md").write_text("  \n")
    result = invoke("solve", "--repo", str(tmp_path), "--issue", f"@{tmp_path / 'empty.md'}", *SCRIPTED_ROLES)
    assert error_line(result) == "error: the issue text is empty"
    result = invoke("batch", *SCRIPTED_ROLES)
    assert error_line(result) == "error: give exactly one of --tasks FILE.jsonl or --dataset NAME_OR_FILE"
    result = invoke("solve", "--repo", str(tmp_path), "--issue", "x", "--scripted", "calc=no.such.module:Thing",
                    *SCRIPTED_ROLES)
    assert "--scripted calc: cannot load no.such.module:Thing" in error_line(result)


def test_no_docker_engine_is_one_clear_line(tmp_path):
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent.sock"}
    done = subprocess.run(
        [sys.executable, "-m", "patchswarm.cli", "solve", "--repo", str(tmp_path), "--issue", "x", "--run-dir",
         str(tmp_path / "run"), "--quiet", *SCRIPTED_ROLES],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("error: no Docker engine answers at unix:///nonexistent.sock")
    assert "patchswarm doctor --fix" in lines[0]
    assert not (tmp_path / "run" / "run.sqlite").exists()


def test_runs_lists_status_counts_and_cost(tmp_path):
    store = RunStore(tmp_path / "nightly")
    try:
        store.set_meta("status", "interrupted")
        store.mark_instance("a", "h", "solved", result={}, cost_usd=0.5)
        store.mark_instance("b", "h", "failed", error="boom")
        store.mark_instance("c", "h", "running")
        store.log_call(CallRecord(call_id="1", role="primary", model="m", started_at=0, cost_usd=0.25,
                                  usage=Usage(input_tokens=10, output_tokens=2)), "a")
        store.log_call(CallRecord(call_id="2", role="primary", model="m", started_at=0, cost_usd=1.0), "a",
                       reused=True)
    finally:
        store.close()
    result = CliRunner().invoke(app, ["runs", "--root", str(tmp_path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "nightly" in line)
    cells = [cell.strip() for cell in row.split("│") if cell.strip()]
    assert cells == ["nightly", "interrupted", "3", "1", "1", "0.2500"]


def test_a_run_directory_in_use_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with open(run_dir / ".lock", "w") as held:  # what a live run holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242")
        held.flush()
        result = invoke("solve", "--repo", str(tmp_path), "--issue", "x", "--run-dir", str(run_dir), *SCRIPTED_ROLES)
    assert result.exit_code == 1
    assert error_line(result) == (f"error: run directory {run_dir} is in use by another patchswarm process "
                                  "(pid 4242); wait for it or pick another --run-dir")
    assert not (run_dir / "run.sqlite").exists()


def test_batch_skips_instances_eval_found_env_broken(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    rows = [{"instance_id": name, "repo": ".", "commit": "HEAD", "issue": "x"} for name in ("a-1", "b-2")]
    tasks.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"env_broken_ids": ["a-1", "b-2", "not-in-batch"]}))
    result = invoke("batch", "--tasks", str(tasks), "--skip-env-broken", str(summary),
                    "--run-dir", str(tmp_path / "run"), *SCRIPTED_ROLES)
    assert result.exit_code == 1
    assert "skipping 2 instance(s) with broken environments" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: no tasks left after --filter/--slice/--skip-env-broken"

    summary.write_text(json.dumps({"resolved_ids": []}))
    result = invoke("batch", "--tasks", str(tasks), "--skip-env-broken", str(summary),
                    "--run-dir", str(tmp_path / "run"), *SCRIPTED_ROLES)
    assert "no env_broken_ids" in error_line(result)


def test_runs_shows_a_run_whose_process_died_as_interrupted(tmp_path):
    for name in ("dead", "live"):
        store = RunStore(tmp_path / name)
        store.set_meta("status", "running")
        store.close()
        (tmp_path / name / ".lock").write_text("1")
    with open(tmp_path / "live" / ".lock") as held:  # what a live run holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = CliRunner().invoke(app, ["runs", "--root", str(tmp_path)], terminal_width=200)
    status = {cells[0]: cells[1] for cells in ([c.strip() for c in line.split("│") if c.strip()]
                                               for line in result.stdout.splitlines()) if len(cells) > 2}
    assert status["dead"] == "interrupted" and status["live"] == "running"
