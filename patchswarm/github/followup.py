"""`patchswarm github follow-up`: a review comment or `@patchswarm` mention on the bot's PR, answered.

The PR's branch (at its current head, maintainers' commits included) is the base; the original
issue plus the comment (with the file, line and diff hunk a review comment points at) is the new
instruction. A confident patch is committed on top and pushed as a fast-forward: never a force-push,
so nobody's commit is lost (a branch that moved meanwhile fails the push and says so). The answer goes
into the thread: a reply to a review comment, else a comment on the PR.

Ignored, with nothing posted: PRs that are not the bot's, comments written by the bot itself (no loops),
and authors whose association is not allowed.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Literal
from urllib.parse import quote as requests_quote

from pydantic import Field

from agent.llm import Providers
from patchswarm.config import ConfigError, load_config
from patchswarm.github import summary
from patchswarm.github.api import ApiError, GitHubRepo, connect
from patchswarm.github.gitops import Git, GitError
from patchswarm.github.listing import BOT_BRANCH, thread_of
from patchswarm.github.options import (
    DEFAULT_ASSOCIATIONS,
    RunOptions,
    SettingsError,
    issue_task,
    load_repo_settings,
)
from patchswarm.github.publish import Publisher, failure_reason, no_pr_reason
from patchswarm.github.redact import Redactor, redacted_logging
from patchswarm.github.resolve import BAD_INPUT, BOT_FAILED, EXTRA_SECRET_SUFFIXES, OK, Outcome
from patchswarm.github.rest import RestClient
from patchswarm.pipeline import run_tasks
from patchswarm.results import InstanceResult

log = logging.getLogger(__name__)

MENTION = re.compile(r"@patchswarm\b", re.IGNORECASE)
CommentKind = Literal["issue", "review-comment", "review", "none"]


class FollowUpOptions(RunOptions):
    """Command-line options of `patchswarm github follow-up`."""

    pr: int = Field(gt=0)
    comment_id: int | None = None
    comment_kind: CommentKind = "issue"
    actor: str | None = None
    allowed_associations: list[str] = Field(default_factory=lambda: list(DEFAULT_ASSOCIATIONS))
    remove_label: str | None = Field(None, description="Label taken off the PR when the run ends (a PR label trigger).")

    def default_run_dir(self) -> Path:
        return self.run_dir or Path("runs") / "github" / f"{self.owner}__{self.name}" / f"pr-{self.pr}"


def follow_up(options: FollowUpOptions, env: Mapping[str, str] | None = None, *,
              providers: Providers | None = None) -> Outcome:
    env = os.environ if env is None else env
    token = env.get(options.token_env) or None
    extra = [value for name, value in env.items() if name.endswith(EXTRA_SECRET_SUFFIXES) and len(value) >= 16]
    redactor = Redactor([token, *extra])
    with redacted_logging(redactor):
        if not token:
            return Outcome(BAD_INPUT, "bad_input", f"no token: set ${options.token_env} (or pass --token-env NAME)")
        outcome = _FollowUp(options, token, redactor, env, providers).run()
        log.log(logging.ERROR if outcome.exit_code else logging.INFO, "patchswarm follow-up: %s: %s",
                outcome.action, outcome.message)
        return outcome


class _FollowUp:
    def __init__(self, options: FollowUpOptions, token: str, redactor: Redactor, env: Mapping[str, str],
                 providers: Providers | None = None) -> None:
        self.options, self.token, self.redactor, self.env = options, token, redactor, env
        self.providers = providers
        self.rest = RestClient(options.api_url, token, redactor=redactor)
        self.run_dir = options.default_run_dir()
        self.reply_to: str | None = None  # where the answer goes

    def run(self) -> Outcome:
        opts = self.options
        try:
            pull = self.rest.get(f"/repos/{opts.repo}/pulls/{opts.pr}")
            head = pull["head"]
            branch = BOT_BRANCH.match(head["ref"] or "")
            if not branch or (head.get("repo") or {}).get("full_name", opts.repo) != opts.repo:
                return Outcome(OK, "ignored", f"PR #{opts.pr} is not a patchswarm PR of {opts.repo}; nothing to do")
            comment = self._comment()
            bot = self._bot_login()
            if comment and (comment["user"].get("type") == "Bot" or comment["user"]["login"] == bot):
                return Outcome(OK, "ignored", "the comment is the bot's own; nothing to do")
            actor = opts.actor or (comment["user"]["login"] if comment else pull["user"]["login"])
            association = self._association(actor, comment)
            if association not in opts.allowed_associations:
                return Outcome(OK, "ignored", f"{actor} is {association}; only {', '.join(opts.allowed_associations)} "
                                                  "may ask patchswarm for changes; nothing posted")
            issue_number = int(branch.group(1))
            issue = thread_of(self.rest, opts.repo, self.rest.get(f"/repos/{opts.repo}/issues/{issue_number}"),
                              self.redactor)
        except ApiError as exc:
            return Outcome(BAD_INPUT, "bad_input", self.redactor.scrub(str(exc)))
        self._reply(f"⏳ **patchswarm** is working on this (asked by `{actor}`), on top of `{head['ref']}`.")
        try:
            outcome = self._solve(pull, issue, comment)
        except Exception as exc:  # noqa: BLE001 - the bot's own bug still ends with an answer and exit 1
            log.exception("patchswarm follow-up crashed")
            outcome = self._failed("answering the review", f"{type(exc).__name__}: {exc}")
        finally:
            self._remove_label()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "github-outcome.json").write_text(
            json.dumps(self.redactor.scrub_data(asdict(outcome)), indent=2))
        return outcome

    def _remove_label(self) -> None:
        label = self.options.remove_label
        if not label:
            return
        try:
            self.rest.request("DELETE", f"/repos/{self.options.repo}/issues/{self.options.pr}/labels/"
                                        f"{requests_quote(label)}")
        except ApiError as exc:
            if exc.status != 404:  # already gone is fine
                log.warning("could not remove label %r: %s", label, exc)

    # -- reading ---------------------------------------------------------------------------------

    def _comment(self) -> dict | None:
        opts, repo = self.options, self.options.repo
        if opts.comment_kind == "none" or opts.comment_id is None:
            return None
        if opts.comment_kind == "review-comment":
            comment = self.rest.get(f"/repos/{repo}/pulls/comments/{opts.comment_id}")
            self.reply_to = f"/repos/{repo}/pulls/{opts.pr}/comments/{opts.comment_id}/replies"
            return comment
        if opts.comment_kind == "review":
            review = self.rest.get(f"/repos/{repo}/pulls/{opts.pr}/reviews/{opts.comment_id}")
            inline = list(self.rest.paginate(f"/repos/{repo}/pulls/{opts.pr}/reviews/{opts.comment_id}/comments"))
            return {**review, "inline": inline}
        return self.rest.get(f"/repos/{repo}/issues/comments/{opts.comment_id}")

    def _bot_login(self) -> str | None:
        try:
            return self.rest.get("/user")["login"]
        except ApiError:
            return None  # installation tokens cannot read /user; their comments are Bot-typed

    def _association(self, actor: str, comment: dict | None) -> str:
        if comment and comment["user"]["login"].lower() == actor.lower():
            association = comment.get("author_association") or "NONE"
            if association in self.options.allowed_associations:
                return association
        try:
            permission = self.rest.get(f"/repos/{self.options.repo}/collaborators/{actor}/permission")
        except ApiError:
            return (comment or {}).get("author_association") or "NONE"
        return "COLLABORATOR" if permission.get("permission") in ("admin", "maintain", "write") else "NONE"

    def instruction(self, pull: dict, comment: dict | None) -> str:
        """What the reviewer asks, as the models see it."""
        lines = ["", "## Review of the pull request",
                 f"The repository already contains the changes of pull request #{pull['number']} (branch "
                 f"`{pull['head']['ref']}`). A reviewer asks for more changes; make them on top of the current code."]
        inline = [comment] if comment and "diff_hunk" in comment else list((comment or {}).get("inline", []))
        if comment and comment.get("body"):
            lines += ["", f"**{comment['user']['login']}** wrote:", "", MENTION.sub("", comment["body"]).strip()]
        if comment is None:  # a label on the PR: every review comment so far
            inline = list(self.rest.paginate(f"/repos/{self.options.repo}/pulls/{pull['number']}/comments"))
        for item in inline:
            if item is not comment and item.get("body"):
                lines += ["", f"**{item['user']['login']}** wrote:", "", MENTION.sub("", item["body"]).strip()]
            if item.get("path"):
                where = f"`{item['path']}`" + (f" line {item['line']}" if item.get("line") else "")
                lines += ["", f"(on {where}:)", "```diff", (item.get("diff_hunk") or "").strip(), "```"]
        return self.redactor.scrub("\n".join(lines))

    # -- solving and answering -------------------------------------------------------------------

    def _reply(self, text: str) -> None:
        body = self.redactor.scrub(text)
        try:
            if self.reply_to:
                self.rest.post(self.reply_to, {"body": body})
            else:
                self.rest.post(f"/repos/{self.options.repo}/issues/{self.options.pr}/comments", {"body": body})
        except ApiError as exc:
            log.warning("could not answer in the thread: %s", exc)

    def _failed(self, stage: str, error: str, result: InstanceResult | None = None) -> Outcome:
        error = self.redactor.scrub(error)
        self._reply(summary.status_failed(stage, error, summary.cost_line(result) if result else None)
                    + (f"\n\nRun: {self.options.report_url}" if self.options.report_url else ""))
        return Outcome(BOT_FAILED, "failed", f"{stage}: {error}", status=result.status if result else None,
                       cost_usd=result.cost_usd if result else None)

    def _solve(self, pull: dict, issue, comment: dict | None) -> Outcome:
        opts = self.options
        git = Git(self.token, self.redactor, self.env)
        clone = self.run_dir / "clone"
        branch = pull["head"]["ref"]
        github = GitHubRepo(connect(opts.api_url, self.token, throttle=opts.throttle), opts.repo, self.redactor)
        try:
            head = git.clone(github.clone_url, clone, branch)
        except GitError as exc:
            return self._failed("cloning the PR branch", str(exc))
        try:
            settings = load_repo_settings(clone)
            budget = [f"budget.max_cost_usd={opts.max_cost}"] if opts.max_cost is not None else []
            config = load_config(opts.preset or settings.preset or "default", opts.config_file,
                                 [*settings.config_overrides(), *opts.overrides, *budget])
        except (SettingsError, ConfigError) as exc:
            return self._failed("reading the configuration", str(exc))
        text = self.redactor.scrub(issue.as_task_text()) + self.instruction(pull, comment)
        setup = opts.setup if opts.setup is not None else settings.setup
        task = issue_task(github.repo.name, opts.pr, text, clone, head, setup, opts.test_cmd or settings.test_cmd,
                          kind="pr")
        (result,) = run_tasks([task], config, self.run_dir, live=opts.live, providers=self.providers)
        result.errors = [self.redactor.scrub(error) for error in result.errors]
        info = summary.RunInfo(issue=issue.number, commit=head, run_dir=self.run_dir, report_url=opts.report_url)
        publisher = Publisher(github, git, clone, opts.repo.split("/")[0])
        failure = failure_reason(result)
        if failure is not None:
            return self._failed("answering the review", failure, result)
        reason = no_pr_reason(result, opts.min_votes, opts.min_confidence)
        if reason is not None:
            attempt = None
            if result.patch.strip():
                try:
                    attempt = publisher.push_attempt(issue.number, issue.title, result, head,
                                                     stem=f"patchswarm/pr-{opts.pr}-attempt")
                except (GitError, ApiError, RuntimeError) as exc:
                    log.warning("could not push the best attempt: %s", exc)
            self._reply(summary.status_no_pr(result, reason, info, attempt).replace("opened no pull request",
                                                                                     "pushed nothing to this PR"))
            return Outcome(OK, "no_pr", reason, status=result.status, cost_usd=result.cost_usd, branch_url=attempt)
        asked = " ".join(MENTION.sub("", self.redactor.scrub((comment or {}).get("body") or "review")).split())
        title = f"Follow-up on #{opts.pr}: {asked[:60]}"  # scrubbed before it is cut short
        try:
            publisher.commit(issue.number, title, result, branch, head, replace=None)  # fast-forward only
        except GitError as exc:
            return self._failed("pushing to the PR branch", f"{exc} (the branch may have moved; ask again)", result)
        sha = git.run(["rev-parse", "HEAD"], clone).strip()
        self._reply(f"✅ **patchswarm** pushed {sha[:12]} to `{branch}` for this.\n\n"
                    + "\n".join(summary.selection_lines(result)) + f"\n- Cost: {summary.cost_line(result)}")
        return Outcome(OK, "pushed", f"pushed {sha[:12]} to {branch}", pr_url=pull.get("html_url"),
                       status=result.status, cost_usd=result.cost_usd)
