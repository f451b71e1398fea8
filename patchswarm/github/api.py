"""The GitHub side of the bot, over PyGithub: the issue thread, who may trigger, the status comment, the PR."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from github import Auth, Github, GithubException, GithubRetry
from github.Issue import Issue
from github.IssueComment import IssueComment
from github.Repository import Repository

from patchswarm.github.redact import Redactor

log = logging.getLogger(__name__)

STATUS_MARKER = "<!-- patchswarm:status -->"
# Repository permissions that make an actor a collaborator for our purposes (read alone does not).
WRITE_PERMISSIONS = ("admin", "maintain", "write")


class ApiError(RuntimeError):
    """A GitHub call failed; `status` is the HTTP status (0 when unknown)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def describe(exc: GithubException) -> str:
    data = exc.data if isinstance(exc.data, dict) else {}
    return f"HTTP {exc.status}: {data.get('message') or exc.message or 'no message'}"


def connect(api_url: str, token: str, *, throttle: bool = True) -> Github:
    """A client for github.com or GitHub Enterprise (`https://HOST/api/v3`).

    Rate limits slow it down: GithubRetry waits for `retry-after` or `x-ratelimit-reset` on a 403; 429 is
    added to the retried statuses (urllib3 honours its `retry-after`)."""
    pauses: dict[str, Any] = {} if throttle else {"seconds_between_requests": None, "seconds_between_writes": None}
    retry = GithubRetry(total=5, status_forcelist=[429, *range(500, 600)], max_rate_limit_wait=3600)
    return Github(base_url=api_url.rstrip("/"), auth=Auth.Token(token), retry=retry, timeout=30, **pauses)


@dataclass
class ThreadComment:
    id: int
    login: str
    association: str
    body: str
    user_type: str = "User"


@dataclass
class IssueThread:
    """What the bot reads of an issue."""

    number: int
    title: str
    body: str
    author: str
    association: str
    url: str
    comments: list[ThreadComment] = field(default_factory=list)

    def as_task_text(self) -> str:
        """The issue as the models see it: title, body, then the discussion (without the bot's own status)."""
        parts = [self.title.strip(), "", self.body.strip() or "(no description)"]
        discussion = [c for c in self.comments if STATUS_MARKER not in c.body and c.body.strip()]
        if discussion:
            parts += ["", "## Comments"]
            parts += [f"\n**{c.login}** wrote:\n\n{c.body.strip()}" for c in discussion]
        return "\n".join(parts) + "\n"


class GitHubRepo:
    """One repository through one client; every failure becomes an `ApiError` with a readable message."""

    def __init__(self, client: Github, full_name: str, redactor: Redactor | None = None) -> None:
        self.client = client
        self.redactor = redactor or Redactor()  # every text written is scrubbed here, at the sink
        try:
            self.repo: Repository = client.get_repo(full_name)
        except GithubException as exc:
            raise ApiError(f"repository {full_name} is not accessible ({describe(exc)})", exc.status) from None

    @property
    def clone_url(self) -> str:
        return self.repo.clone_url

    @property
    def default_branch(self) -> str:
        return self.repo.default_branch

    def issue(self, number: int) -> tuple[Issue, IssueThread]:
        try:
            issue = self.repo.get_issue(number)
            # Scrubbed as read, before anything truncates a secret past recognition (e.g. the PR title).
            scrub = self.redactor.scrub
            thread = IssueThread(number=number, title=scrub(issue.title or ""), body=scrub(issue.body or ""),
                                 author=issue.user.login, association=issue.author_association or "NONE",
                                 url=issue.html_url)
            thread.comments = [ThreadComment(id=c.id, login=c.user.login,
                                             association=c.author_association or "NONE",
                                             body=scrub(c.body or ""), user_type=c.user.type or "User")
                               for c in issue.get_comments()]
        except GithubException as exc:
            raise ApiError(f"issue #{number} of {self.repo.full_name} cannot be read ({describe(exc)})",
                           exc.status) from None
        return issue, thread

    def association_of(self, actor: str, thread: IssueThread) -> str:
        """The actor's association: owner, write access (COLLABORATOR), else what the thread shows for them."""
        if actor.lower() == self.repo.owner.login.lower():
            return "OWNER"
        seen = [thread.association] if actor.lower() == thread.author.lower() else []
        seen += [c.association for c in thread.comments if c.login.lower() == actor.lower()]
        strongest = next((a for a in ("OWNER", "MEMBER", "COLLABORATOR") if a in seen), None)
        if strongest:
            return strongest
        try:
            if self.repo.get_collaborator_permission(actor) in WRITE_PERMISSIONS:
                return "COLLABORATOR"
        except GithubException as exc:
            # Tokens without the right to list collaborators: the thread's associations must do.
            log.info("collaborator permission of %s unavailable (%s)", actor, describe(exc))
        return seen[0] if seen else "NONE"

    def authenticated_login(self) -> str | None:
        """The token's user; None for installation tokens (GITHUB_TOKEN), which cannot read /user."""
        try:
            return self.client.get_user().login
        except GithubException:
            return None

    def fork(self, owner: str) -> Repository:
        name = f"{owner}/{self.repo.name}"
        try:
            return self.client.get_repo(name)
        except GithubException as exc:
            raise ApiError(f"fork {name} is not accessible ({describe(exc)})", exc.status) from None

    def open_pull(self, *, head_owner: str, branch: str, base: str, title: str, body: str) -> tuple[str, bool]:
        """Open a draft PR, or update the open one from the same head; returns (url, created)."""
        head = f"{head_owner}:{self.redactor.scrub_ref(branch)}"
        title, body = self.redactor.scrub(title), self.redactor.scrub(body)
        try:
            existing = list(self.repo.get_pulls(state="open", head=head))
            if existing:
                existing[0].edit(title=title, body=body)
                return existing[0].html_url, False
            pull = self.repo.create_pull(base=base, head=head, title=title, body=body, draft=True,
                                         maintainer_can_modify=True)
            return pull.html_url, True
        except GithubException as exc:
            raise ApiError(f"cannot open the pull request ({describe(exc)})", exc.status) from None

    def remove_label(self, issue: Issue, label: str) -> None:
        try:
            issue.remove_from_labels(label)
        except GithubException as exc:
            if exc.status != 404:  # the label was already gone
                log.warning("could not remove label %r: %s", label, describe(exc))


class StatusComment:
    """The one comment a run keeps up to date (started → running → done), found again by a hidden marker.

    A rerun edits the same comment. Only comments the bot wrote count: by the token's login when
    known, else by a Bot account (GITHUB_TOKEN acts as github-actions[bot]); anything else carrying
    the marker is someone else's text and is left alone.
    """

    def __init__(self, issue: Issue, thread: IssueThread, bot_login: str | None,
                 redactor: Redactor | None = None) -> None:
        self.issue = issue
        self.redactor = redactor or Redactor()
        self._comment: IssueComment | None = None
        mine = [c.id for c in thread.comments if STATUS_MARKER in c.body and _written_by(c, bot_login)]
        self._existing_id = mine[-1] if mine else None
        self.updates = 0

    def _find(self) -> IssueComment | None:
        if self._existing_id is None:
            return None
        try:
            return self.issue.get_comment(self._existing_id)
        except GithubException:
            return None  # deleted since: start a new one

    def update(self, text: str) -> None:
        """Write `text` (the marker is added); errors are logged, never raised: status is best effort."""
        body = f"{STATUS_MARKER}\n{self.redactor.scrub(text)}"
        try:
            if self._comment is None:
                self._comment = self._find()
            if self._comment is None:
                self._comment = self.issue.create_comment(body)
            else:
                self._comment.edit(body)
            self.updates += 1
        except GithubException as exc:
            log.warning("could not write the status comment: %s", describe(exc))

    @property
    def url(self) -> str | None:
        return self._comment.html_url if self._comment else None


def _written_by(comment: ThreadComment, bot_login: str | None) -> bool:
    if bot_login:
        return comment.login.lower() == bot_login.lower()
    return comment.user_type == "Bot"
