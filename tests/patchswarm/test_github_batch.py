"""`patchswarm github batch` and its REST client against the loopback GitHub stand-in.

Listings are cut into pages of two, rate limits are injected as GitHub sends them, and the batch runs
the real pipeline (real sandboxes) with scripted models; nothing reaches GitHub.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from agent.scripted import Script, text_of
from patchswarm.demo.script import DemoScript
from patchswarm.github import register
from patchswarm.github.api import STATUS_MARKER, ApiError, GitHubRepo, connect
from patchswarm.github.listing import list_issues
from patchswarm.github.redact import Redactor
from patchswarm.github.rest import RestClient
from tests.patchswarm.github_helpers import (
    DEMO_REPO,
    REPO,
    TOKEN,
    TOKEN_ENV,
    NoFixScript,
    assert_no_token,
    git,
    model_overrides,
)

NOFIX_MARKER = "(this one has no fix)"
FOREIGN = "github_pat_" + "11ABCDEFG0123456789abcdefghijklmnopqrstuvwxyz"  # a token the bot was never given


class ByIssue:
    """The demo's script for the slugify issue, one that never edits for the issue marked NOFIX_MARKER."""

    def __init__(self) -> None:
        self.demo, self.nofix, self.calls = DemoScript(), NoFixScript(), 0

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        self.calls += 1
        marked = any(NOFIX_MARKER in text_of(m.get("content")) for m in messages)
        return (self.nofix if marked else self.demo)(messages)


def seed(stub, remote) -> None:
    """Six open items on pages of two: 1 solvable, 2 not, 3 claimed by an open PR, 4 closed, a PR, 6 solvable later."""
    stub.page_size = 2
    stub.add_repo(REPO, clone_url=remote.as_uri())
    slug_issue = (DEMO_REPO.parent / "issue.md").read_text()
    stub.add_issue(REPO, 1, title="slugify keeps repeated dashes", body=slug_issue, author="alice",
                   association="OWNER", labels=["bug"])
    stub.add_issue(REPO, 2, title="slugify should transliterate", body=f"{slug_issue}\n{NOFIX_MARKER}", author="bob",
                   association="CONTRIBUTOR", labels=["bug"])
    stub.add_comment(REPO, 2, body="Greek letters too, please.", author="carol", association="NONE")
    stub.add_comment(REPO, 2, body=f"CI says: {FOREIGN}", author="carol", association="NONE")
    stub.add_issue(REPO, 3, title="slugify drops digits", body="digits vanish", author="dave", labels=["bug"])
    stub.add_issue(REPO, 4, title="an old one", body="fixed long ago", author="erin", labels=["bug"])
    stub.repos[REPO].issues[4]["state"] = "closed"
    stub.add_pull(REPO, branch="dave/digits", title="Keep digits", body="Fixes #3", author="dave")  # number 5
    stub.add_issue(REPO, 6, title="docs typo", body="a typo", author="frank", labels=["docs"])


def rest_client(stub, **extra) -> tuple[RestClient, list[float]]:
    waits: list[float] = []
    return RestClient(stub.api_url, TOKEN, redactor=Redactor([TOKEN]), sleep=waits.append, **extra), waits


def test_listing_pages_excludes_prs_and_skips_claimed_and_closed(stub, remote):
    seed(stub, remote)
    rest, _ = rest_client(stub)

    threads, skipped = list_issues(rest, REPO, label="bug")
    assert [t.number for t in threads] == [1, 2]
    assert [c.body for c in threads[1].comments] == ["Greek letters too, please.", "CI says: ***"]
    assert NOFIX_MARKER in threads[1].as_task_text() and "Greek letters" in threads[1].as_task_text()
    assert [(s.number, s.reason) for s in skipped] == [(3, "open PR #5 closes it")]
    pages = [r for r in stub.requests if r.path.endswith(f"/repos/{REPO}/issues")]
    assert len(pages) == 2 and "page=2" in pages[1].query  # three open items labelled bug, two per page

    threads, skipped = list_issues(rest, REPO, query="is:closed label:bug")
    assert threads == [] and [(s.number, s.reason) for s in skipped] == [(4, "closed (closed)")]
    threads, _ = list_issues(rest, REPO)  # the PR (#5) is listed as an issue by the API, and left out
    assert [t.number for t in threads] == [1, 2, 6]
    threads, _ = list_issues(rest, REPO, limit=1)
    assert [t.number for t in threads] == [1]


def test_a_repeated_listing_is_conditional_and_costs_no_quota(stub, remote, tmp_path):
    seed(stub, remote)
    etags = tmp_path / "etags.json"
    first, _ = rest_client(stub, etag_file=etags)
    expected = [t.number for t in list_issues(first, REPO)[0]]
    before = len(stub.requests)

    again, _ = rest_client(stub, etag_file=etags)  # a new process: the cache is read from the file
    assert [t.number for t in list_issues(again, REPO)[0]] == expected
    repeated = stub.requests[before:]
    assert repeated and all(r.if_none_match for r in repeated)
    assert again.stats.not_modified == len(repeated)


def test_rate_limits_slow_the_client_down_instead_of_failing(stub, remote):
    seed(stub, remote)
    rest, waits = rest_client(stub)
    reset = int(time.time()) + 30
    stub.injected = [
        (403, {"retry-after": "7"}, {"message": "You have exceeded a secondary rate limit."}),
        (429, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}, {"message": "API rate limit exceeded"}),
        (403, {}, {"message": "You have exceeded a secondary rate limit. Please wait a few minutes."}),
    ]
    assert rest.get(f"/repos/{REPO}")["full_name"] == REPO
    assert waits[0] == 7 and 25 <= waits[1] <= 32 and waits[2] == 240  # no advice: 60 s, doubled per retry

    # Primary limit on a successful response: the next request waits for the reset, then goes.
    stub.rate_remaining, stub.rate_reset = 1, int(time.time()) + 20
    rest.get(f"/repos/{REPO}")
    assert len(waits) == 3
    rest.get(f"/repos/{REPO}")
    assert len(waits) == 4 and 15 <= waits[3] <= 22

    # A plain 403 is an error, and a wait past the cap fails naming when the limit resets.
    stub.rate_remaining = None
    stub.injected = [(403, {}, {"message": "Resource not accessible by integration"})]
    with pytest.raises(ApiError, match="HTTP 403: Resource not accessible"):
        rest.get(f"/repos/{REPO}")
    capped, _ = rest_client(stub, max_wait_s=5)
    stub.injected = [(429, {"retry-after": "600"}, {"message": "slow down"})]
    with pytest.raises(ApiError, match="resets in 600s"):
        capped.get(f"/repos/{REPO}")


def invoke(stub, run_dir, *extra: str, scripted=None):
    app = typer.Typer()
    app.command()(lambda: None)  # a group needs a second command for sub-apps to show as such
    register(app)
    args = ["github", "batch", "--repo", REPO, "--label", "bug", "--api-url", stub.api_url, "--token-env", TOKEN_ENV,
            "--run-dir", str(run_dir), "--quiet", "--workers", "2", "--include-test"]
    for override in model_overrides("byissue"):
        args += ["--set", override]
    return CliRunner().invoke(app, [*args, *extra], obj=scripted)  # the CLI adds --scripted specs to it


@pytest.mark.docker  # the pipeline runs in sandboxes
def test_batch_dry_run_then_open_prs_then_resume(stub, remote, tmp_path, token_env, scripted):
    script = ByIssue()
    scripted.add("byissue", Script(script))
    seed(stub, remote)
    run_dir = tmp_path / "batch"

    dry = invoke(stub, run_dir, "--dry-run", "--open-prs", scripted=scripted)
    assert dry.exit_code == 0, dry.output
    assert stub.writes() == []
    assert "resolved with confidence: 1 (#1)" in dry.output and "not confident: 1 (#2)" in dry.output
    assert "skipped #3: open PR #5 closes it" in dry.output
    assert "would open a draft PR octo:patchswarm/issue-1 -> main: Fix #1: slugify keeps repeated dashes" in dry.output
    assert "would comment on #2: 🤷 **patchswarm** found no patch it is confident in" in dry.output
    assert "patchswarm/issue-1" not in git("branch", "--list", cwd=remote)
    page = (run_dir / "github" / "issue-1.md").read_text()
    assert "would post (nothing was posted)" in page and "Fixes #1" in page
    paid = script.calls

    posted = invoke(stub, run_dir, "--open-prs", scripted=scripted)
    assert posted.exit_code == 0, posted.output
    assert script.calls == paid  # resumed from the run store: nothing solved (or paid) twice
    (pull,) = [p for p in stub.repos[REPO].pulls.values() if p["head"]["ref"].startswith("patchswarm/")]
    assert pull["draft"] and pull["body"].startswith("Fixes #1") and pull["head"]["ref"] == "patchswarm/issue-1"
    assert "re.sub" in git("show", "patchswarm/issue-1:textkit/slug.py", cwd=remote)
    statuses = {c["issue"]: c for c in stub.comments.values() if STATUS_MARKER in c["body"]}
    assert set(statuses) == {1, 2}
    assert "opened draft pull request" in statuses[1]["body"] and "no patch it is confident" in statuses[2]["body"]
    summary = json.loads((run_dir / "github" / "summary.json").read_text())
    assert summary["counts"] == {"pr": 1, "no_pr": 1, "failed": 0} and summary["cost_usd"] > 0

    again = invoke(stub, run_dir, "--open-prs", scripted=scripted)
    assert again.exit_code == 0, again.output
    assert script.calls == paid
    assert f"skipped #1: open patchswarm PR #{pull['number']}" in again.output  # its PR claims it now
    assert len([c for c in stub.comments.values() if STATUS_MARKER in c["body"]]) == 2  # edited, not repeated
    assert json.loads((run_dir / "github" / "summary.json").read_text())["not_modified"] > 0
    assert_no_token(stub, [dry.output, posted.output, again.output], run_dir)
    leaked = subprocess.run(["grep", "-rlaF", FOREIGN, str(run_dir)], capture_output=True, text=True).stdout
    assert leaked == "" and not any(FOREIGN in str(r.body) for r in stub.writes())


def test_batch_bad_input_is_one_line_and_posts_nothing(stub, remote, tmp_path, token_env):
    seed(stub, remote)
    bad_since = invoke(stub, tmp_path / "b", "--since", "last tuesday")
    assert bad_since.exit_code == 2 and "--since 'last tuesday' is not a date" in bad_since.output
    missing = invoke(stub, tmp_path / "b", "--repo", "octo/nothing")
    assert missing.exit_code == 2 and "octo/nothing is not accessible" in missing.output
    assert stub.writes() == []


def test_the_single_issue_client_waits_out_a_429_too(stub, remote):
    seed(stub, remote)
    stub.injected = [(429, {"retry-after": "1"}, {"message": "You have exceeded a secondary rate limit."})]
    started = time.monotonic()
    repo = GitHubRepo(connect(stub.api_url, TOKEN, throttle=False), REPO)
    assert repo.default_branch == "main" and time.monotonic() - started >= 1
    assert [r.path for r in stub.requests] == [f"/api/v3/repos/{REPO}"] * 2


@pytest.mark.docker  # the pipeline runs in sandboxes, inside Ray workers
def test_batch_runs_on_the_ray_executor(stub, remote, tmp_path, token_env, monkeypatch):
    import ray

    from patchswarm.github.batch import BatchOptions, run_batch
    from patchswarm.ray_executor import RayExecutor

    seed(stub, remote)
    temp_dir = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must stay under 108 characters
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", include_dashboard=False, num_cpus=2, _node_ip_address="127.0.0.1",
             _temp_dir=temp_dir, logging_level="WARNING")
    try:
        executor = RayExecutor(ray.get_runtime_context().gcs_address,
                               scripted=["demo=patchswarm.demo.script:DemoScript"])
        options = BatchOptions(repo=REPO, label="bug", limit=1, api_url=stub.api_url, token_env=TOKEN_ENV,
                               run_dir=tmp_path / "batch", overrides=model_overrides("demo"), live=False)
        outcome = run_batch(options, executor=executor)
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)

    assert outcome.exit_code == 0, outcome.message
    assert [(r.number, r.verdict) for r in outcome.reports] == [(1, "pr")] and outcome.cost_usd > 0
    assert stub.writes() == []  # without --open-prs nothing is posted
    assert "resolved with confidence: 1 (#1)" in (tmp_path / "batch" / "github" / "summary.md").read_text()
