"""From a pipeline result to what GitHub shows: is it confident, did it fail, which branch, the push, the PR.

Shared by `github resolve` (one issue), `github batch` (many) and `github follow-up` (a PR's review).
Branches: `patchswarm/issue-N` while it holds only the bot's commits (a rerun replaces them, with a
lease on the tip it checked); once someone else committed there, a new attempt goes to
`patchswarm/issue-N-try2` (then -try3, …) with its own PR, so nobody's work is overwritten.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from patchswarm.github import summary
from patchswarm.github.api import ApiError, GitHubRepo, StatusComment
from patchswarm.github.gitops import Git, GitError
from patchswarm.github.options import LEVELS
from patchswarm.results import InstanceResult

log = logging.getLogger(__name__)

MAX_TRIES = 20


def no_pr_reason(result: InstanceResult, min_votes: int, min_confidence: str = "high") -> str | None:
    """Why this result does not deserve a PR, or None when it does.

    When the selection reports a confidence (`confidence_level` and the calibrated `confidence`), that
    decides: the level must reach `min_confidence` (a level), or the probability must (a number).
    Without one (older selection, or none ran) the chosen patch must pass `min_votes` reproduction tests."""
    base = summary.no_pr_reason(result, 0)  # failed / no patch
    if base is not None:
        return base
    selection = result.selection
    level = getattr(selection, "confidence_level", None) if selection is not None else None
    if level is None:
        return summary.no_pr_reason(result, min_votes)
    probability = float(getattr(selection, "confidence", 0.0) or 0.0)
    if min_confidence in LEVELS:
        confident = level in LEVELS and LEVELS.index(level) >= LEVELS.index(min_confidence)
    else:
        confident = probability >= float(min_confidence)
    if confident:
        return None
    why = getattr(selection, "confidence_reason", "") or ""
    return (f"the selection's confidence in the chosen patch is {level} ({probability:.2f}); a PR needs "
            f"{min_confidence}{f' — {why}' if why else ''} (method: {result.selection_method})")


def failure_reason(result: InstanceResult) -> str | None:
    """Why a run is a failure (a red job, not an answer), or None when it produced an answer."""
    if result.status not in ("solved", "no_patch"):  # failed, or `error` (every model call failed)
        return "; ".join(result.errors[:2]) or f"the instance ended as {result.status}"
    no_candidate = not result.patch.strip() and not (result.selection and result.selection.candidates)
    trajectories = result.trajectories
    if no_candidate and trajectories and all(t.error for t in trajectories):
        return f"every trajectory failed ({trajectories[0].error})"
    if no_candidate and result.budget_stopped:
        return "the budget was exhausted before any candidate patch existed"
    return None


@dataclass
class Plan:
    """What a dry run would have posted."""

    lines: list[str] = field(default_factory=list)


@dataclass
class Publisher:
    """Pushes branches and opens PRs for one repository; `dry_run` records instead of writing."""

    repo: GitHubRepo
    git: Git
    clone: Path
    owner: str
    fork_owner: str | None = None
    include_test: bool = False
    dry_run: bool = False
    plan: Plan = field(default_factory=Plan)
    said: dict[int, list[str]] = field(default_factory=dict)  # issue -> texts posted (or that would be)

    @property
    def push_url(self) -> str:
        return self.repo.fork(self.fork_owner).clone_url if self.fork_owner else self.repo.clone_url

    @property
    def head_owner(self) -> str:
        return self.fork_owner or self.owner

    def say(self, status: StatusComment | None, issue: int, text: str) -> None:
        self.said.setdefault(issue, []).append(text)
        if self.dry_run:
            self.plan.lines.append(f"would comment on #{issue}: {text.splitlines()[0]}")
        elif status is not None:
            status.update(text)

    def free_branch(self, stem: str, base: str) -> tuple[str, str | None]:
        """(branch, tip to replace) for a new attempt: `stem` unless someone else committed on it, then -tryK."""
        url = self.push_url
        for attempt in range(1, MAX_TRIES + 1):
            branch = stem if attempt == 1 else f"{stem}-try{attempt}"
            tip = self.git.fetch_branch(self.clone, url, branch)
            if tip is None:
                return branch, None
            others = self.git.foreign_authors(self.clone, base, tip)
            if not others:
                return branch, tip  # the bot's alone: its newer answer replaces it
            log.info("%s has commits by %s: trying the next branch", branch, ", ".join(others))
        raise RuntimeError(f"{stem}: {MAX_TRIES} attempt branches exist already")

    def commit(self, issue: int, title: str, result: InstanceResult, branch: str, start: str,
               replace: str | None) -> str | None:
        """Commit the patch (and the reproduction test) on `branch` from `start` and push; returns the test path."""
        files, test_path = {}, None
        found = summary.repro_test(result) if self.include_test else None
        if found is not None:
            test_path = f"tests/patchswarm_repro_issue_{issue}.py"
            files[test_path] = repro_file(issue, found[1])
        message = f"{title}\n\nChosen by patchswarm ({result.selection_method}, {result.votes or 0} vote(s))."
        if self.dry_run:
            self.plan.lines.append(f"would push {branch} ({'replacing the bot' + chr(39) + 's' if replace else 'new'})")
            return test_path
        self.git.commit_patch(self.clone, branch, result.patch, message, files, start=start)
        self.git.push(self.clone, self.push_url, branch, replace=replace)
        return test_path

    def open_pr(self, issue: int, issue_title: str, result: InstanceResult, info: summary.RunInfo,
                base_branch: str, start: str) -> tuple[str, bool]:
        """Push the chosen patch to the issue's branch and open (or update) its draft PR: (url, created)."""
        title = summary.pr_title(issue, issue_title)
        branch, replace = self.free_branch(f"patchswarm/issue-{issue}", start)
        test_path = self.commit(issue, title, result, branch, start, replace)
        body = summary.pr_body(result, info, test_path)
        self.said.setdefault(issue, []).append(f"## {title}\n\n{body}")
        if self.dry_run:
            self.plan.lines.append(f"would open a draft PR {self.head_owner}:{branch} -> {base_branch}: {title}")
            return f"(dry run) {branch}", True
        return self.repo.open_pull(head_owner=self.head_owner, branch=branch, base=base_branch, title=title,
                                   body=body)

    def push_attempt(self, issue: int, issue_title: str, result: InstanceResult, start: str,
                     stem: str | None = None) -> str:
        """Push a not-confident best attempt to `patchswarm/issue-N-attempt` (or `stem`) for a maintainer;
        returns the branch's URL."""
        title = summary.pr_title(issue, issue_title) + " (not confident)"
        branch, replace = self.free_branch(stem or f"patchswarm/issue-{issue}-attempt", start)
        self.commit(issue, title, result, branch, start, replace)
        return self.branch_url(branch)

    def branch_url(self, branch: str) -> str:
        owner_repo = f"{self.head_owner}/{self.repo.repo.name}"
        return f"{self.repo.repo.html_url.rsplit('/', 2)[0]}/{owner_repo}/tree/{branch}"


@dataclass
class Answer:
    """What the bot answered for one issue: kind is pr | no_pr | failed."""

    kind: str
    message: str
    pr_url: str | None = None
    attempt_url: str | None = None
    stage: str | None = None


def answer_issue(publisher: Publisher, status: StatusComment | None, issue: int, issue_title: str,
                 result: InstanceResult, info: summary.RunInfo, base_branch: str, start: str, *,
                 min_votes: int, min_confidence: str) -> Answer:
    """A failure comment (a red job), the best attempt on a branch (not confident), or the draft PR; each
    ends in the issue's status comment. Git and API errors of the PR path come back as a failed Answer."""
    failure = failure_reason(result)
    if failure is not None:
        publisher.say(status, issue, summary.status_failed("solving the issue", failure, summary.cost_line(result))
                      + "\n\n" + info.report_line())
        return Answer("failed", failure, stage="solving the issue")
    reason = no_pr_reason(result, min_votes, min_confidence)
    if reason is not None:
        attempt = None
        if result.patch.strip():
            try:
                attempt = publisher.push_attempt(issue, issue_title, result, start)
            except (GitError, ApiError, RuntimeError) as exc:
                log.warning("could not push the best attempt: %s", exc)
        publisher.say(status, issue, summary.status_no_pr(result, reason, info, attempt))
        return Answer("no_pr", reason, attempt_url=attempt)
    try:
        url, created = publisher.open_pr(issue, issue_title, result, info, base_branch, start)
    except (GitError, ApiError, RuntimeError) as exc:
        stage = "opening the pull request" if isinstance(exc, ApiError) else "pushing the branch"
        error = publisher.git.redactor.scrub(str(exc))
        publisher.say(status, issue, summary.status_failed(stage, error, summary.cost_line(result)))
        return Answer("failed", f"{stage}: {error}", stage=stage)
    publisher.say(status, issue, summary.status_pr(result, url, created))
    return Answer("pr", f"{'opened' if created else 'updated'} {url}", pr_url=url)


def repro_file(issue: int, code: str) -> str:
    header = (f"# Reproduction test for issue #{issue}, written by patchswarm.\n"
              f"# Run it from the repository root: python tests/patchswarm_repro_issue_{issue}.py\n"
              "# Exit codes: 2 = the issue is present, 0 = fixed, 1 = something else went wrong.\n")
    return header + code if code.endswith("\n") else header + code + "\n"
