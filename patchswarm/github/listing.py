"""Which issues of a repository a batch solves: listed through the REST API, pull requests excluded.

Skipped, with the reason in the summary: issues an open PR already claims (a `patchswarm/issue-N`
branch, or a closing keyword such as `Fixes #N` in an open PR's body: someone is on it), and closed
issues (a search query may return them; closed-by-PR or not, there is nothing left to solve).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from patchswarm.github.api import IssueThread, ThreadComment
from patchswarm.github.redact import Redactor
from patchswarm.github.rest import RestClient

BOT_BRANCH = re.compile(r"^patchswarm/issue-(\d+)(?:-try\d+)?$")
CLOSING = re.compile(r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s*:?\s+#(\d+)\b", re.IGNORECASE)


@dataclass
class Skipped:
    number: int
    title: str
    reason: str


def check_since(value: str | None) -> str | None:
    """`--since` as GitHub wants it (ISO 8601); a bad date is a one-line error naming it."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {value!r} is not a date (use YYYY-MM-DD or an ISO 8601 time)") from None
    return parsed.strftime("%Y-%m-%dT%H:%M:%SZ") if parsed.tzinfo is None else parsed.isoformat()


def claimed_issues(rest: RestClient, repo: str) -> dict[int, str]:
    """Issue number -> why an open PR claims it."""
    claimed: dict[int, str] = {}
    for pull in rest.paginate(f"/repos/{repo}/pulls", {"state": "open"}):
        branch = BOT_BRANCH.match((pull.get("head") or {}).get("ref") or "")
        if branch:
            claimed.setdefault(int(branch.group(1)), f"open patchswarm PR #{pull['number']}")
        for number in CLOSING.findall(pull.get("body") or ""):
            claimed.setdefault(int(number), f"open PR #{pull['number']} closes it")
    return claimed


def list_issues(rest: RestClient, repo: str, *, label: str | None = None, query: str | None = None,
                since: str | None = None, limit: int | None = None,
                redactor: Redactor | None = None) -> tuple[list[IssueThread], list[Skipped]]:
    """The issues to solve (oldest first, at most `limit`) with their comments, and those skipped."""
    redactor = redactor or Redactor()
    if query is not None:
        terms = [f"repo:{repo}", "is:issue", query]
        if label:
            terms.append(f'label:"{label}"')
        if since:
            terms.append(f"updated:>={since}")
        items = rest.paginate("/search/issues", {"q": " ".join(terms), "sort": "created", "order": "asc"},
                              items_key="items")
    else:
        params = {"state": "open", "sort": "created", "direction": "asc"}
        params |= {"labels": label} if label else {}
        params |= {"since": since} if since else {}
        items = rest.paginate(f"/repos/{repo}/issues", params)
    claimed = claimed_issues(rest, repo)
    chosen: list[IssueThread] = []
    skipped: list[Skipped] = []
    for item in items:
        if "pull_request" in item:
            continue  # the issues API lists PRs too; they are not issues to solve
        number, title = int(item["number"]), redactor.scrub(item.get("title") or "")
        if item.get("state", "open") != "open":
            skipped.append(Skipped(number, title, f"closed ({item.get('state_reason') or 'closed'})"))
        elif number in claimed:
            skipped.append(Skipped(number, title, claimed[number]))
        elif limit is None or len(chosen) < limit:
            chosen.append(thread_of(rest, repo, item, redactor))
        else:
            break
    return chosen, skipped


def thread_of(rest: RestClient, repo: str, item: dict, redactor: Redactor) -> IssueThread:
    """An issue with its comments (fetched only when it has some), scrubbed as read."""
    number = int(item["number"])
    thread = IssueThread(number=number, title=redactor.scrub(item.get("title") or ""),
                         body=redactor.scrub(item.get("body") or ""), author=item["user"]["login"],
                         association=item.get("author_association") or "NONE", url=item.get("html_url", ""))
    if item.get("comments"):
        thread.comments = [ThreadComment(id=c["id"], login=c["user"]["login"],
                                         association=c.get("author_association") or "NONE",
                                         body=redactor.scrub(c.get("body") or ""),
                                         user_type=c["user"].get("type") or "User")
                           for c in rest.paginate(f"/repos/{repo}/issues/{number}/comments")]
    return thread
