"""Item 10: a token found in the issue title was pushed into the commit message (the PR title was scrubbed).

Every text the bot writes is checked: commit messages and branch names on the remote, the PR's title and
body, its comments, the log, stdout/stderr and every file of the run directory (the SQLite store too).
Two secrets ride in the title: the bot's own token and a foreign one it was never given (a user pasting
their personal token), which only its credential shape gives away.
"""

from __future__ import annotations

import logging
import subprocess

import pytest

from agent.scripted import Script
from patchswarm.demo.script import DemoScript
from patchswarm.github.redact import Redactor, basic_auth
from patchswarm.github.resolve import resolve_issue
from tests.conftest import providers
from tests.patchswarm.github_helpers import (  # noqa: F401 - fixtures
    ISSUE,
    REPO,
    TOKEN,
    add_issue,
    git,
    options,
    remote,
    stub,
    token_env,
)

FOREIGN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"  # shaped like a classic personal token


@pytest.mark.docker  # the pipeline runs in sandboxes
def test_tokens_in_the_issue_title_reach_no_text_the_bot_writes(stub, remote, token_env, scripted,  # noqa: F811
                                                                 tmp_path, caplog, capsys):
    """item 10"""
    scripted.add("demo", Script(DemoScript()))
    add_issue(stub, remote)
    issue = stub.repos[REPO].issues[ISSUE]
    issue["title"] = f"slugify keeps repeated dashes {TOKEN} {FOREIGN}"
    issue["body"] += f"\n\nCI log: https://ci:{FOREIGN}@example.com/x\n"
    caplog.set_level(logging.INFO)
    run_dir = tmp_path / "run"

    outcome = resolve_issue(options(stub, run_dir, include_test=True), providers=providers(scripted))

    assert outcome.exit_code == 0 and outcome.action == "pr", outcome
    secrets = [TOKEN, basic_auth(TOKEN), FOREIGN]
    messages = git("log", "--all", "--format=%B", cwd=remote)
    refs = git("for-each-ref", "--format=%(refname)", cwd=remote)
    assert "Fix #7: slugify keeps repeated dashes *** ***" in messages
    pulls = [p["title"] + "\n" + p["body"] for p in stub.repos[REPO].pulls.values()]
    comments = [c["body"] for c in stub.comments.values() if c["user"]["type"] == "Bot"]
    captured = capsys.readouterr()
    for text in [messages, refs, *pulls, *comments, caplog.text, captured.out, captured.err, outcome.message]:
        for secret in secrets:
            assert secret not in text
    found = subprocess.run(["grep", "-rlaF", *[arg for s in secrets for arg in ("-e", s)], str(run_dir)],
                           capture_output=True, text=True)
    assert found.stdout == "", f"a secret is in {found.stdout}"


def test_branch_names_and_credential_shapes_are_scrubbed():
    """item 10"""
    redactor = Redactor([TOKEN])
    assert redactor.scrub_ref(f"patchswarm/{FOREIGN}") == "patchswarm/redacted"
    assert redactor.scrub(f"key sk-ant-api03-{'x' * 30} and AKIAABCDEFGHIJKLMNOP") == "key *** and ***"
    assert redactor.scrub("https://user:hunter2@host/repo.git") == "https://user:***@host/repo.git"
    assert redactor.scrub("task-runner and ask-me-anything stay") == "task-runner and ask-me-anything stay"
