"""The composite action and the example workflow: triggers, the `if:` gate, routing, and the failure step.

The action's shell steps run for real under bash (with `patchswarm` replaced by a recorder, or against
the loopback GitHub stand-in); the `${{ }}` expressions GitHub would evaluate are given as environment.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from patchswarm.github.listing import BOT_BRANCH
from tests.patchswarm.github_helpers import ISSUE, REPO, ROOT, TOKEN

ASSOCIATIONS = '["OWNER", "MEMBER", "COLLABORATOR"]'


def action_steps() -> dict[str, dict]:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    return {step["name"]: step for step in action["runs"]["steps"]}


def workflow() -> dict:
    return yaml.safe_load((ROOT / "examples" / "github-workflow.yml").read_text())


def test_workflow_triggers_and_gate_on_author_association():
    flow = workflow()
    triggers = flow[True] if True in flow else flow["on"]  # YAML 1.1 reads `on` as true
    assert triggers == {"issues": {"types": ["labeled"]}, "issue_comment": {"types": ["created"]},
                        "pull_request_review_comment": {"types": ["created"]},
                        "pull_request_review": {"types": ["submitted"]}, "pull_request": {"types": ["labeled"]}}
    assert flow["permissions"] == {"contents": "write", "pull-requests": "write", "issues": "write"}
    (job,) = flow["jobs"].values()
    gate = job["if"]
    # Every comment-like trigger is gated on the commenter's association and excludes bots; PR ones on the branch.
    for who in ("comment", "comment", "review"):
        assert f"contains(fromJSON('{ASSOCIATIONS}'), github.event.{who}.author_association)" in gate
    assert gate.count("author_association") == 3 and gate.count("user.type != 'Bot'") == 3
    assert gate.count("startsWith(github.event.pull_request.head.ref, 'patchswarm/')") == 3
    assert job["timeout-minutes"] > 0
    assert BOT_BRANCH.match("patchswarm/issue-12-try2") and not BOT_BRANCH.match("patchswarm/issue-12-attempt")


def run_step(step: dict, env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", step["run"]], env={**os.environ, "GITHUB_ACTION_PATH": str(ROOT), **env},
                          capture_output=True, text=True, cwd=tmp)


@pytest.mark.parametrize("event, on_pr, expected", [
    ("issues", "", "github resolve --issue 7 --remove-label patchswarm --include-test"),
    ("issue_comment", "", "github resolve --issue 7 --remove-label patchswarm --include-test"),
    ("issue_comment", "true", "github follow-up --pr 7 --comment-id 41 --comment-kind issue"),
    ("pull_request_review_comment", "", "github follow-up --pr 7 --comment-id 41 --comment-kind review-comment"),
    ("pull_request_review", "", "github follow-up --pr 7 --comment-id 42 --comment-kind review"),
    ("pull_request", "", "github follow-up --pr 7 --comment-kind none --remove-label patchswarm"),
])
def test_the_action_routes_each_event_to_its_command(tmp_path, event, on_pr, expected):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    recorder = bin_dir / "patchswarm"
    recorder.write_text('#!/bin/sh\necho "$@" > "$RUNNER_TEMP/args"\necho https://example/pr/1\nexit 3\n')
    recorder.chmod(0o755)
    outputs = tmp_path / "outputs"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "RUNNER_TEMP": str(tmp_path), "GITHUB_OUTPUT": str(outputs),
           "GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": "https://api.example", "EVENT_NAME": event, "ON_PR": on_pr,
           "COMMENT_ID": "41", "REVIEW_ID": "42", "INPUT_ISSUE": "7", "INPUT_ACTOR": "maria", "INPUT_BUDGET": "5",
           "INPUT_LABEL": "patchswarm", "INPUT_ALLOW": "OWNER MEMBER", "INPUT_INCLUDE_TEST": "true",
           "RUN_DIR": str(tmp_path / "run"), "REPORT_URL": "https://ci.example/run/1", "INPUT_MODEL": "",
           "INPUT_SAMPLES": "", "INPUT_PRESET": ""}

    done = run_step(action_steps()["Resolve the issue, or answer the review"], env, tmp_path)

    assert done.returncode == 3, done.stderr  # patchswarm's exit code is the step's: a failure is red
    args = (tmp_path / "args").read_text()
    assert args.startswith(expected) and "--actor maria" in args and "--allow-association MEMBER" in args
    assert "started=true" in outputs.read_text() and "pr-url=https://example/pr/1" in outputs.read_text()


def test_a_job_failing_before_patchswarm_runs_gets_a_comment_from_the_workflow_step(stub, remote, tmp_path):
    stub.add_repo(REPO, clone_url=remote.as_uri())
    stub.add_issue(REPO, ISSUE, title="t", body="b", author="alice", association="OWNER")
    step = action_steps()["Say so when the job failed before patchswarm ran"]
    assert step["if"] == "failure() && steps.resolve.outputs.started != 'true' && inputs.issue != ''"
    env = {"GITHUB_API_URL": stub.api_url, "GITHUB_REPOSITORY": REPO, "PATCHSWARM_GITHUB_TOKEN": TOKEN,
           "NUMBER": str(ISSUE), "RUN_URL": "https://ci.example/run/5"}

    done = run_step(step, env, tmp_path)

    assert done.returncode == 0, done.stderr
    (comment,) = stub.issue_comments(REPO, ISSUE)
    assert "could not start" in comment["body"] and "(https://ci.example/run/5)" in comment["body"]
    assert TOKEN not in done.stdout + done.stderr
