"""Choosing models: current priced defaults named once, `-m` for every role, checks before any paid work,
and help that teaches (order, quick start, --version, -h)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import litellm
import yaml
from typer.testing import CliRunner

from patchswarm.cli import COMMAND_ORDER, app
from patchswarm.config import CHEAP_MODEL, DEFAULT_ROLES, STRONG_MODEL, load_config

ROOT = Path(__file__).resolve().parents[2]


def invoke(*args: str, env: dict[str, str | None] | None = None):
    return CliRunner().invoke(app, list(args), env=env)


def only_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_default_models_are_current_and_priced_by_this_litellm():
    assert DEFAULT_ROLES == {"relevance": CHEAP_MODEL, "primary": STRONG_MODEL, "selector": STRONG_MODEL}
    for model in (STRONG_MODEL, CHEAP_MODEL):
        info = litellm.get_model_info(model)
        assert info["input_cost_per_token"] > 0 and info["output_cost_per_token"] > 0, model
        assert not info.get("deprecation_date"), model
    cheap, strong = litellm.get_model_info(CHEAP_MODEL), litellm.get_model_info(STRONG_MODEL)
    assert cheap["input_cost_per_token"] < strong["input_cost_per_token"]
    for preset in ("default", "codemonkeys"):
        assert load_config(preset).models.roles.model_dump() == DEFAULT_ROLES


def test_readme_and_example_workflow_name_the_defaults_and_nothing_retired():
    readme = (ROOT / "README.md").read_text()
    workflow = (ROOT / "examples" / "github-workflow.yml").read_text()
    for text in (readme, workflow):
        assert STRONG_MODEL in text and CHEAP_MODEL in text
        assert "claude-3" not in text
    step = yaml.safe_load(workflow)["jobs"]["resolve"]["steps"][0]
    assert step["with"]["model"] == ""  # empty: the action runs with the defaults above


def test_model_flag_sets_every_role_and_a_per_role_override_still_wins():
    result = invoke("config", "show", "-m", "openai/gpt-5.4", "--set", "models.roles.relevance=openai/gpt-5.4-mini")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "    primary: openai/gpt-5.4" in lines and "    selector: openai/gpt-5.4" in lines
    assert "    relevance: openai/gpt-5.4-mini" in lines
    result = invoke("config", "show", "--model", "openai/gpt-5.4")
    assert "    relevance: openai/gpt-5.4" in result.stdout.splitlines()


def test_an_unknown_provider_fails_before_anything_starts(tmp_path):
    result = invoke("solve", "--repo", str(tmp_path), "--issue", "x", "--run-dir", str(tmp_path / "run"),
                    "-m", "foo/bar")
    assert result.exit_code == 1
    line = only_error(result)
    assert line.startswith("error: model foo/bar (relevance, primary, selector) does not name a provider litellm knows")
    assert "-m MODEL" in line
    assert "Provider List" not in result.output and "Traceback" not in result.output  # no library banner
    assert not (tmp_path / "run").exists()


def test_a_missing_key_names_the_variable_and_the_roles(tmp_path):
    tasks = tmp_path / "t.jsonl"
    tasks.write_text('{"instance_id": "a", "repo": ".", "commit": "HEAD", "issue": "x"}\n')
    result = invoke("batch", "--tasks", str(tasks), "--run-dir", str(tmp_path / "run"), "-m", "openai/gpt-5.4",
                    "--set", "models.roles.relevance=scripted/calc", env={"OPENAI_API_KEY": None})
    line = only_error(result)
    assert line == ("error: model openai/gpt-5.4 (primary, selector) needs OPENAI_API_KEY in the environment; "
                    "pick another with -m MODEL or --set models.roles.ROLE=MODEL")
    assert not (tmp_path / "run").exists()


def test_models_check_offline_and_a_one_token_call(tmp_path):
    script = tmp_path / "ok.yaml"
    script.write_text("responses: ['OK']\n")
    result = invoke("models", "check", "-m", "scripted/ok", "--scripted", f"ok={script}")
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"ok: scripted/ok \(relevance, primary, selector\), answered in \d+\.\ds; litellm has no "
                        r"price for it, so budgets cannot count its calls \(set models.price_overrides\)\n",
                        result.stdout), result.stdout
    script.write_text("responses: [{fault: server_error}]\n")
    result = invoke("models", "check", "-m", "scripted/bad", "--scripted", f"bad={script}")
    assert result.exit_code == 1
    assert "error: model scripted/bad (relevance, primary, selector) did not answer a one-token call " \
           "(InternalServerError:" in only_error(result)
    result = invoke("models", "check", "--offline", env={"ANTHROPIC_API_KEY": "sk-test"})
    assert result.exit_code == 0, result.output
    fixed = "; it takes no temperature but its own, so models.temperatures do not apply to it"
    assert result.stdout.splitlines() == [f"ok: {CHEAP_MODEL} (relevance){fixed}",
                                          f"ok: {STRONG_MODEL} (primary, selector){fixed}"]


def test_top_level_help_teaches_in_the_order_a_user_meets_the_commands():
    for flag in ("--help", "-h"):
        result = CliRunner().invoke(app, [flag], terminal_width=120)
        assert result.exit_code == 0
        text = result.stdout
        assert "Quick start" in text and "patchswarm demo" in text and "patchswarm models check" in text
        listed = [m.group(1) for m in re.finditer(r"^│ (\w+) ", text, flags=re.M) if m.group(1) in COMMAND_ORDER]
        assert listed == [c for c in COMMAND_ORDER if c in listed] and listed[:3] == ["demo", "solve", "batch"]
        assert {"eval", "report", "runs", "models", "github"} <= set(listed)
    assert CliRunner().invoke(app, ["solve", "-h"]).exit_code == 0
    result = invoke("--version")
    assert result.exit_code == 0 and re.fullmatch(r"patchswarm \d+\.\d+\.\d+\n", result.stdout)


def test_help_imports_no_model_library():
    """What keeps `patchswarm --help` fast (scripts/bench_cli.py measures it): litellm is imported lazily."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = ("import sys; from patchswarm.cli import app; sys.argv[1:] = ['--help']\ntry: app()\n"
            "except SystemExit: pass\nprint(sorted(m for m in ('litellm', 'agent.model', 'patchswarm.pipeline') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "[]"
