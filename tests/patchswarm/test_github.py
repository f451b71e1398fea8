"""`patchswarm github resolve` against a loopback GitHub stand-in and a local bare git remote.

The pipeline is the real one (real Docker sandboxes) with the demo's scripted model; nothing reaches
GitHub. Runs that need a solved issue share one run directory, so only the first one pays for the
pipeline (later ones resume from the run store).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from agent.scripted import Script, ScriptError
from patchswarm.demo.script import DemoScript
from patchswarm.github import register
from patchswarm.github.api import STATUS_MARKER
from patchswarm.github.gitops import Git
from patchswarm.github.options import RepoSettings
from patchswarm.github.redact import Redactor, basic_auth, redacted_logging
from patchswarm.github.resolve import resolve_issue
from patchswarm.github.summary import no_pr_reason
from patchswarm.results import InstanceResult
from tests.conftest import providers
from tests.patchswarm.github_helpers import (
    ISSUE,
    REPO,
    REPO_SETTINGS,
    ROOT,
    TOKEN,
    TOKEN_ENV,
    NoFixScript,
    add_issue,
    assert_no_token,
    bot_comments,
    commit_on,
    git,
    make_remote,
    model_overrides,
    options,
)


@pytest.fixture(scope="module")
def shared_run_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("github-run") / "run"


# -- the whole flow -------------------------------------------------------------------------------

@pytest.mark.docker  # the pipeline runs in sandboxes
def test_labelled_issue_becomes_a_draft_pr(stub, remote, token_env, scripted, shared_run_dir, caplog, capsys):
    scripted.add("demo", Script(DemoScript()))
    add_issue(stub, remote)
    caplog.set_level(logging.INFO)
    # A token-looking string in the issue must not reach the models, the run store or the PR either.
    stub.add_comment(REPO, ISSUE, body=f"my token is {TOKEN}", author="alice", association="OWNER")

    outcome = resolve_issue(options(stub, shared_run_dir, include_test=True, remove_label="patchswarm",
                                    report_url="https://ci.example/run/1"), providers=providers(scripted))

    assert outcome.exit_code == 0 and outcome.action == "pr", outcome
    branch_file = git("show", "patchswarm/issue-7:textkit/slug.py", cwd=remote)
    assert "re.sub" in branch_file
    repro = git("show", "patchswarm/issue-7:tests/patchswarm_repro_issue_7.py", cwd=remote)
    assert "Exit codes: 2 = the issue is present" in repro and "slugify" in repro
    (pull,) = stub.repos[REPO].pulls.values()
    assert pull["draft"] is True and pull["base"]["ref"] == "main"
    assert pull["head"]["label"] == "octo:patchswarm/issue-7"
    body = pull["body"]
    for expected in ("Fixes #7", "### What changed", "`textkit/slug.py`", "### How the patch was chosen",
                     "Method: **", "Votes: **", "| test | status | original |", "<details>", "```python",
                     "### Cost", "$", "patchswarm-report", "https://ci.example/run/1",
                     "tests/patchswarm_repro_issue_7.py"):
        assert expected in body, expected
    (status,) = bot_comments(stub)
    assert STATUS_MARKER in status["body"] and f"opened draft pull request {outcome.pr_url}" in status["body"]
    assert stub.comment_edits[status["id"]] >= 2  # started → running → done, in one comment
    assert stub.repos[REPO].issues[ISSUE]["labels"] == []
    captured = capsys.readouterr()
    assert_no_token(stub, [caplog.text, captured.out, captured.err], shared_run_dir)
    assert (shared_run_dir / "github-outcome.json").exists()


@pytest.mark.docker  # the pipeline runs in sandboxes
def test_fork_owner_pushes_to_the_fork(stub, remote, tmp_path, token_env, scripted, shared_run_dir):
    scripted.add("demo", Script(DemoScript()))  # the shared run resumes; no call is expected
    add_issue(stub, remote)
    fork = make_remote(tmp_path, "fork.git")
    stub.add_repo("forker/textkit", clone_url=fork.as_uri())

    outcome = resolve_issue(options(stub, shared_run_dir, fork_owner="forker"), providers=providers(scripted))

    assert outcome.exit_code == 0 and outcome.action == "pr", outcome
    assert "re.sub" in git("show", "patchswarm/issue-7:textkit/slug.py", cwd=fork)
    assert "patchswarm/issue-7" not in git("branch", "--list", cwd=remote)
    (pull,) = stub.repos[REPO].pulls.values()
    assert pull["head"]["label"] == "forker:patchswarm/issue-7"


@pytest.mark.docker  # the pipeline runs in sandboxes
def test_retrigger_replaces_the_bots_own_pr_and_moves_to_try2_after_a_maintainer_commit(
        stub, remote, tmp_path, token_env, scripted, shared_run_dir):
    scripted.add("demo", Script(DemoScript()))
    add_issue(stub, remote)
    first = resolve_issue(options(stub, shared_run_dir), providers=providers(scripted))
    again = resolve_issue(options(stub, shared_run_dir), providers=providers(scripted))  # the branch is the bot's alone: replaced, PR updated
    assert first.action == again.action == "pr" and again.pr_url == first.pr_url and "updated" in again.message

    maintainer = commit_on(remote, tmp_path, "patchswarm/issue-7", name="maria", email="maria@example.com",
                           path="NOTES.txt", text="maintainer note\n")
    third = resolve_issue(options(stub, shared_run_dir), providers=providers(scripted))

    assert third.action == "pr" and third.pr_url != first.pr_url, third
    assert git("rev-parse", "patchswarm/issue-7", cwd=remote).strip() == maintainer  # not overwritten
    assert "re.sub" in git("show", "patchswarm/issue-7-try2:textkit/slug.py", cwd=remote)
    heads = sorted(p["head"]["ref"] for p in stub.repos[REPO].pulls.values())
    assert heads == ["patchswarm/issue-7", "patchswarm/issue-7-try2"]


@pytest.mark.docker  # the pipeline runs in sandboxes
def test_not_confident_pushes_the_best_attempt_to_a_branch_and_links_it(stub, remote, token_env, scripted,
                                                                        shared_run_dir):
    scripted.add("demo", Script(DemoScript()))
    add_issue(stub, remote)

    # The selection reports a confidence (at most 0.9): a bar above it, and above any vote count, is not met.
    outcome = resolve_issue(options(stub, shared_run_dir, min_votes=99, min_confidence=0.99), providers=providers(scripted))

    assert outcome.exit_code == 0 and outcome.action == "no_pr" and stub.repos[REPO].pulls == {}
    assert outcome.branch_url and outcome.branch_url.endswith("/octo/textkit/tree/patchswarm/issue-7-attempt")
    assert "re.sub" in git("show", "patchswarm/issue-7-attempt:textkit/slug.py", cwd=remote)
    (status,) = bot_comments(stub)
    assert f"**Best attempt:** pushed to {outcome.branch_url}" in status["body"]


@pytest.mark.docker  # the pipeline runs in sandboxes
def test_all_model_calls_failing_is_a_red_job_with_a_failure_comment(stub, remote, tmp_path, token_env, scripted):
    def refuse(messages):
        raise ScriptError("the provider refuses every call", "scripted/down")

    scripted.add("down", Script(refuse))
    add_issue(stub, remote)

    outcome = resolve_issue(options(stub, tmp_path / "run", overrides=model_overrides("down"),
                                    report_url="https://ci.example/run/9"), providers=providers(scripted))

    assert outcome.exit_code == 1 and outcome.action == "failed", outcome
    (status,) = bot_comments(stub)
    assert "❌ **patchswarm** failed while solving the issue" in status["body"]
    assert "https://ci.example/run/9" in status["body"] and stub.repos[REPO].pulls == {}


@pytest.mark.docker  # the pipeline runs in sandboxes
def test_push_refused_is_a_failure_with_one_comment(stub, remote, token_env, scripted, shared_run_dir):
    scripted.add("demo", Script(DemoScript()))
    add_issue(stub, remote)
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'permission denied to patchswarm' >&2\nexit 1\n")
    hook.chmod(0o755)

    outcome = resolve_issue(options(stub, shared_run_dir), providers=providers(scripted))

    assert outcome.exit_code == 1 and outcome.action == "failed"
    assert stub.repos[REPO].pulls == {}
    (status,) = bot_comments(stub)
    assert "failed while pushing the branch" in status["body"] and "Cost so far" in status["body"]


@pytest.mark.docker  # the pipeline runs in sandboxes
def test_no_confident_patch_means_one_comment_and_no_pr(stub, remote, tmp_path, token_env, scripted, caplog, capsys):
    scripted.add("nofix", Script(NoFixScript()))
    add_issue(stub, remote)
    # A status comment of an earlier run is found by its marker and edited, not duplicated.
    earlier = stub.add_comment(REPO, ISSUE, body=f"{STATUS_MARKER}\nold status", author=stub.bot_login,
                               user_type="Bot")
    run_dir = tmp_path / "run"

    outcome = resolve_issue(options(stub, run_dir, overrides=model_overrides("nofix")), providers=providers(scripted))

    assert outcome.exit_code == 0 and outcome.action == "no_pr", outcome
    assert stub.repos[REPO].pulls == {}
    assert "patchswarm/issue-7" not in git("branch", "--list", cwd=remote)
    (status,) = bot_comments(stub)
    assert status["id"] == earlier["id"] and stub.comment_edits[status["id"]] >= 3
    for expected in ("opened no pull request", "Why it stopped", "What was tried", "3 trajectories at",
                     "attempts_exhausted", "Cost:", "$", str(run_dir / "report" / "index.html")):
        assert expected in status["body"], expected
    captured = capsys.readouterr()
    assert_no_token(stub, [caplog.text, captured.out, captured.err], run_dir)


@pytest.mark.docker  # the pipeline runs in sandboxes
def test_failing_setup_is_a_bot_failure_with_one_comment(stub, remote, tmp_path, token_env, scripted):
    scripted.add("demo", Script(DemoScript()))
    add_issue(stub, remote)

    outcome = resolve_issue(options(stub, tmp_path / "run", setup=["echo setting up; exit 3"]), providers=providers(scripted))

    assert outcome.exit_code == 1 and outcome.action == "failed" and outcome.status == "failed"
    assert stub.repos[REPO].pulls == {}
    (status,) = bot_comments(stub)
    assert "failed while solving the issue: ImageBuildError" in status["body"] and "HTML report" in status["body"]


def test_pipeline_crash_ends_with_a_scrubbed_comment(stub, remote, tmp_path, token_env, monkeypatch, caplog):
    add_issue(stub, remote)

    def crash(*args, **kwargs):
        raise RuntimeError(f"engine gone while using {TOKEN}")

    monkeypatch.setattr("patchswarm.github.resolve.run_tasks", crash)
    outcome = resolve_issue(options(stub, tmp_path / "run"))

    assert outcome.exit_code == 1 and outcome.action == "failed"
    (status,) = bot_comments(stub)
    assert "failed while running the pipeline: RuntimeError: engine gone while using ***" in status["body"]
    assert_no_token(stub, [caplog.text, outcome.message], tmp_path / "run")


# -- refusals and bad input: no pipeline ---------------------------------------------------------

def test_unauthorized_author_gets_nothing_posted(stub, remote, tmp_path, token_env, caplog):
    add_issue(stub, remote, author="mallory", association="NONE")
    stub.repos[REPO].permissions["mallory"] = "read"
    app = typer.Typer()
    app.command()(lambda: None)  # a group needs a second command for sub-apps to show as such
    register(app)
    run_dir = tmp_path / "run"
    caplog.set_level(logging.INFO)

    result = CliRunner().invoke(app, ["github", "resolve", "--repo", REPO, "--issue", str(ISSUE), "--api-url",
                                      stub.api_url, "--token-env", TOKEN_ENV, "--run-dir", str(run_dir)])

    assert result.exit_code == 0, result.output
    assert stub.writes() == [] and not run_dir.exists()
    assert "mallory is NONE" in caplog.text
    assert_no_token(stub, [caplog.text, result.output], None)


def test_collaborator_actor_is_allowed_and_a_bad_ref_fails_with_a_comment(stub, remote, tmp_path, token_env):
    add_issue(stub, remote, author="mallory", association="NONE")
    stub.repos[REPO].permissions["carol"] = "write"
    stub.bot_login = None  # like GITHUB_TOKEN: /user is refused, comments come from a Bot account

    outcome = resolve_issue(options(stub, tmp_path / "run", actor="carol", ref="no-such-branch"))

    assert outcome.exit_code == 1 and outcome.action == "failed"
    (status,) = [c for c in stub.issue_comments(REPO, ISSUE) if STATUS_MARKER in c["body"]]
    assert status["user"]["type"] == "Bot"
    assert "failed while cloning the repository" in status["body"] and "no-such-branch" in status["body"]


@pytest.mark.parametrize("case", ["missing issue", "missing repo", "bad token", "no token"])
def test_bad_input_posts_nothing_and_exits_2(stub, remote, tmp_path, monkeypatch, case, caplog):
    add_issue(stub, remote)
    monkeypatch.setenv(TOKEN_ENV, "ghs_wrongToken987654321" if case == "bad token" else TOKEN)
    if case == "no token":
        monkeypatch.delenv(TOKEN_ENV)
    extra = {"issue": 999} if case == "missing issue" else {"repo": "octo/nothing"} if case == "missing repo" else {}

    outcome = resolve_issue(options(stub, tmp_path / "run", **extra))

    assert outcome.exit_code == 2 and outcome.action == "bad_input"
    assert stub.writes() == []
    assert outcome.message in caplog.text
    assert "ghs_wrongToken987654321" not in caplog.text


# -- pieces -------------------------------------------------------------------------------------

def test_token_reaches_git_only_through_its_environment(tmp_path, remote):
    git_runner = Git(TOKEN, Redactor([TOKEN]), base_env=os.environ)
    dest = tmp_path / "clone"
    git_runner.clone(remote.as_uri(), dest, None)
    header = git_runner.run(["config", "--get", "http.extraheader"], dest)
    assert header.strip() == f"AUTHORIZATION: basic {basic_auth(TOKEN)}"
    assert TOKEN not in (dest / ".git" / "config").read_text()
    assert basic_auth(TOKEN) not in (dest / ".git" / "config").read_text()


def test_redaction_covers_every_logger_and_tracebacks(caplog):
    redactor = Redactor([TOKEN, "ab"])  # too short to mask
    caplog.set_level(logging.INFO)
    with redacted_logging(redactor):
        logging.getLogger("github.Requester").info("header %s", f"token {TOKEN}")
        try:
            raise RuntimeError(f"failed with {basic_auth(TOKEN)}")
        except RuntimeError:
            logging.getLogger("somewhere").exception("boom")
    assert TOKEN not in caplog.text and basic_auth(TOKEN) not in caplog.text
    assert "header token ***" in caplog.text and "failed with ***" in caplog.text
    assert redactor.scrub_data({"k": [TOKEN, ("ab", 1)]}) == {"k": ["***", ("ab", 1)]}


def test_fallback_without_votes_is_not_confident():
    base = {"instance_id": "x", "patch": "diff --git a/f b/f\n"}
    assert no_pr_reason(InstanceResult(status="solved", selection_method="fallback", votes=0, **base), 1)
    assert no_pr_reason(InstanceResult(status="solved", selection_method="selector", votes=1, **base), 1) is None
    assert no_pr_reason(InstanceResult(status="solved", selection_method="fallback", votes=0, **base), 0) is None
    assert "failed" in no_pr_reason(InstanceResult(instance_id="x", status="failed"), 1)


def test_a_reported_confidence_decides_else_the_votes():
    from types import SimpleNamespace

    from patchswarm.github.publish import no_pr_reason as decide

    result = InstanceResult(instance_id="x", status="solved", selection_method="selector", votes=3,
                            patch="diff --git a/f b/f\n")
    assert decide(result, 1) is None  # no confidence reported: three votes are enough
    result.selection = SimpleNamespace(confidence_level="medium", confidence=0.62, confidence_reason="two groups",
                                       candidates=[])
    assert "confidence in the chosen patch is medium (0.62); a PR needs high — two groups" in decide(result, 1)
    assert decide(result, 1, "medium") is None and decide(result, 1, "0.6") is None
    assert decide(result, 1, "0.7") is not None
    result.selection.confidence_level = "high"
    assert decide(result, 99) is None  # the level decides, not the votes


def test_failure_reasons_tell_a_failed_run_from_an_answer():
    from agent.trajectory import TrajectoryResult
    from patchswarm.github.publish import failure_reason

    broken = [TrajectoryResult(index=i, error="model_error: provider down") for i in range(2)]
    assert "every trajectory failed (model_error: provider down)" in failure_reason(
        InstanceResult(instance_id="x", status="no_patch", trajectories=broken))
    assert "budget was exhausted before any candidate" in failure_reason(
        InstanceResult(instance_id="x", status="no_patch", budget_stopped=True))
    assert failure_reason(InstanceResult(instance_id="x", status="error", errors=["all calls failed"])) == \
        "all calls failed"
    # An answer, not a failure: no patch after honest work, or a budget that stopped after a candidate.
    assert failure_reason(InstanceResult(instance_id="x", status="no_patch",
                                         trajectories=[TrajectoryResult(index=0)])) is None
    assert failure_reason(InstanceResult(instance_id="x", status="solved", budget_stopped=True,
                                         patch="diff --git a/f b/f\n")) is None


def test_repo_settings_accept_a_mapping_of_overrides():
    settings = RepoSettings.model_validate({"setup": "pip install -e .", "overrides": REPO_SETTINGS["overrides"]})
    assert settings.setup == ["pip install -e ."]
    assert "trajectories.num_edits=3" in settings.overrides


def test_action_and_example_workflow_parse():
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    assert {"model", "budget", "samples", "preset", "label", "python-version"} <= set(action["inputs"])
    steps = action["runs"]["steps"]
    assert all("shell" in s for s in steps if "run" in s)  # composite steps must name their shell
    assert any("patchswarm github \"${command[@]}\"" in s.get("run", "") for s in steps)
    assert any(s.get("uses", "").startswith("actions/upload-artifact@") for s in steps)
    workflow = yaml.safe_load((ROOT / "examples" / "github-workflow.yml").read_text())
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on` as true
    assert triggers["issues"]["types"] == ["labeled"] and "issue_comment" in triggers
    assert workflow["permissions"] == {"contents": "write", "pull-requests": "write", "issues": "write"}
    (job,) = workflow["jobs"].values()
    assert job["timeout-minutes"] > 0
