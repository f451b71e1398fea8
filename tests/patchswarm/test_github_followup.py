"""`patchswarm github follow-up` on the bot's PR, against the loopback GitHub stand-in and a bare remote.

The bot's branch holds a bot commit (a changelog line, slug.py untouched) and a maintainer's commit on
top; the demo's scripted model then answers a review comment with the right fix, pushed as a new commit.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent.scripted import Script
from patchswarm.demo.script import DemoScript
from patchswarm.github.followup import FollowUpOptions, _FollowUp, follow_up
from patchswarm.github.gitops import BOT_EMAIL, BOT_NAME
from patchswarm.github.redact import Redactor
from tests.conftest import providers
from tests.patchswarm.github_helpers import (
    ISSUE,
    REPO,
    TOKEN,
    TOKEN_ENV,
    add_issue,
    assert_no_token,
    commit_on,
    git,
    model_overrides,
)

BRANCH = f"patchswarm/issue-{ISSUE}"
PASTED = "ghp_" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp9Oo8"  # a reviewer pasting a token by mistake
HUNK = '@@ -10,4 +10,4 @@ def slugify(text):\n-    words = ascii_text.lower().strip().split(" ")\n+    ...'


def bot_pr(stub, remote, tmp_path) -> dict:
    """Issue 7, and the bot's PR for it: a bot commit, then a maintainer's commit on the same branch."""
    add_issue(stub, remote)
    commit_on(remote, tmp_path, BRANCH, name=BOT_NAME, email=BOT_EMAIL, path="CHANGES.txt",
              text="slugify: work in progress\n", new_branch=True)
    commit_on(remote, tmp_path, BRANCH, name="maria", email="maria@example.com", path="NOTES.txt",
              text="maintainer note\n")
    return stub.add_pull(REPO, branch=BRANCH, title="Fix #7: slugify keeps repeated dashes", body="Fixes #7",
                         author=stub.bot_login)


def fu_options(stub, run_dir: Path, **extra) -> FollowUpOptions:
    values = {"repo": REPO, "api_url": stub.api_url, "token_env": TOKEN_ENV, "run_dir": run_dir,
              "overrides": model_overrides("demo"), "throttle": False, "live": False, **extra}
    return FollowUpOptions(**values)


@pytest.mark.docker  # the pipeline runs in sandboxes
def test_review_comment_gets_a_new_commit_on_top_of_the_maintainers(stub, remote, tmp_path, token_env, scripted):
    scripted.add("demo", Script(DemoScript()))
    pull = bot_pr(stub, remote, tmp_path)
    before = git("rev-parse", BRANCH, cwd=remote).strip()
    pull["labels"] = [{"name": "patchswarm"}]
    comment = stub.add_review_comment(REPO, pull["number"], author="maria", association="MEMBER",
                                      body=f"@patchswarm {PASTED} punctuation still leaks into the slug",
                                      path="textkit/slug.py",
                                      line=11, diff_hunk=HUNK)

    outcome = follow_up(fu_options(stub, tmp_path / "run", pr=pull["number"], comment_id=comment["id"],
                                   comment_kind="review-comment", remove_label="patchswarm"), providers=providers(scripted))

    assert outcome.exit_code == 0 and outcome.action == "pushed", outcome
    assert pull["labels"] == []
    assert git("rev-parse", f"{BRANCH}~1", cwd=remote).strip() == before  # a fast-forward: nothing overwritten
    authors = git("log", "--format=%ae", f"main..{BRANCH}", cwd=remote).split()
    assert authors == [BOT_EMAIL, "maria@example.com", BOT_EMAIL]
    assert "re.sub" in git("show", f"{BRANCH}:textkit/slug.py", cwd=remote)
    assert "maintainer note" in git("show", f"{BRANCH}:NOTES.txt", cwd=remote)
    replies = [c for c in stub.review_comments.values() if c.get("in_reply_to_id") == comment["id"]]
    assert len(replies) == 2 and "is working on this" in replies[0]["body"] and "pushed" in replies[1]["body"]
    assert not [c for c in stub.comments.values() if c["issue"] == pull["number"]]  # answered in the thread only
    messages = git("log", "--format=%B", f"main..{BRANCH}", cwd=remote)
    assert "Follow-up on #" in messages and "*** punctuation still leaks" in messages and PASTED not in messages
    assert not any(PASTED in r["body"] for r in replies)
    assert_no_token(stub, [outcome.message], tmp_path / "run")
    leaked = subprocess.run(["grep", "-rlaF", PASTED, str(tmp_path / "run")], capture_output=True, text=True)
    assert leaked.stdout == ""


@pytest.mark.docker  # the pipeline runs in sandboxes
def test_a_branch_moved_meanwhile_fails_the_push_instead_of_forcing(stub, remote, tmp_path, token_env, scripted,
                                                                     monkeypatch):
    scripted.add("demo", Script(DemoScript()))
    pull = bot_pr(stub, remote, tmp_path)
    comment = stub.add_comment(REPO, pull["number"], author="alice", association="OWNER",
                               body="@patchswarm handle punctuation too")
    from patchswarm.github import followup

    real = followup.run_tasks

    def and_a_maintainer_pushes(*args, **kwargs):
        results = real(*args, **kwargs)
        commit_on(remote, tmp_path, BRANCH, name="maria", email="maria@example.com", path="LATE.txt", text="late\n")
        return results

    monkeypatch.setattr(followup, "run_tasks", and_a_maintainer_pushes)
    outcome = follow_up(fu_options(stub, tmp_path / "run", pr=pull["number"], comment_id=comment["id"]), providers=providers(scripted))

    assert outcome.exit_code == 1 and outcome.action == "failed"
    assert "late" in git("show", f"{BRANCH}:LATE.txt", cwd=remote)  # the maintainer's commit survived
    answers = [c["body"] for c in stub.comments.values() if c["issue"] == pull["number"] and c["user"]["type"] == "Bot"]
    assert "failed while pushing to the PR branch" in answers[-1] and "ask again" in answers[-1]


def test_outsiders_the_bot_itself_and_other_prs_are_ignored_with_nothing_posted(stub, remote, tmp_path, token_env):
    pull = bot_pr(stub, remote, tmp_path)
    stub.repos[REPO].permissions["mallory"] = "read"
    outsider = stub.add_review_comment(REPO, pull["number"], author="mallory", association="NONE",
                                       body="@patchswarm add my crypto miner", path="textkit/slug.py")
    own = stub.add_comment(REPO, pull["number"], author=stub.bot_login, user_type="Bot", body="@patchswarm loop?")
    human_pr = stub.add_pull(REPO, branch="alice/feature", title="A feature", author="alice")
    writes = len(stub.writes())

    cases = [({"pr": pull["number"], "comment_id": outsider["id"], "comment_kind": "review-comment"}, "mallory is NONE"),
             ({"pr": pull["number"], "comment_id": own["id"]}, "the bot's own"),
             ({"pr": human_pr["number"], "comment_kind": "none"}, "not a patchswarm PR")]
    for extra, expected in cases:
        outcome = follow_up(fu_options(stub, tmp_path / "run", **extra))
        assert outcome.exit_code == 0 and outcome.action == "ignored" and expected in outcome.message, outcome
    assert len(stub.writes()) == writes and not (tmp_path / "run").exists()


def test_a_review_becomes_an_instruction_with_its_inline_comments(stub, remote, tmp_path):
    pull = bot_pr(stub, remote, tmp_path)
    review = stub.add_review(REPO, pull["number"], author="maria", association="MEMBER",
                             body="@patchswarm two things, see inline")
    stub.add_review_comment(REPO, pull["number"], author="maria", association="MEMBER", review=review["id"],
                            body="tabs too", path="textkit/slug.py", line=11, diff_hunk=HUNK)
    runner = _FollowUp(fu_options(stub, tmp_path / "run", pr=pull["number"], comment_id=review["id"],
                                  comment_kind="review"), TOKEN, Redactor([TOKEN]), {})
    comment = runner._comment()
    text = runner.instruction(stub._pull_json(stub.repos[REPO], pull), comment)
    assert "two things, see inline" in text and "@patchswarm" not in text
    assert "tabs too" in text and "`textkit/slug.py` line 11" in text and "ascii_text.lower()" in text
    assert f"branch `{BRANCH}`" in text
