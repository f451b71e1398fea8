"""A stand-in for the GitHub REST API on 127.0.0.1: the endpoints the bot uses, state in memory.

    with GitHubStub(token="t0ken") as gh:
        gh.add_repo("octo/textkit", clone_url="file:///…/remote.git")
        gh.add_issue("octo/textkit", 1, title="…", body="…", author="alice", association="OWNER")
        Github(base_url=gh.api_url, auth=Auth.Token("t0ken"))

URLs in responses point back at the stub under `/api/v3`, the GitHub Enterprise layout, so the bot is
exercised the way `--api-url https://HOST/api/v3` would use it. Requests are recorded in `requests`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlparse

PREFIX = "/api/v3"


@dataclass
class Recorded:
    method: str
    path: str
    body: Any
    authorization: str | None
    if_none_match: str | None = None
    query: str = ""


@dataclass
class Page:
    """A listing the HTTP layer cuts into pages (`per_page`, `page`, `Link` headers)."""

    items: list[Any]
    wrap: str | None = None  # the search API wraps items: {"total_count": n, "items": [...]}


@dataclass
class RepoState:
    full_name: str
    clone_url: str
    default_branch: str = "main"
    permissions: dict[str, str] = field(default_factory=dict)  # login -> admin/write/read/none
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)


class GitHubStub:
    """In-memory GitHub: repositories, issues, comments (with edit counts), pulls, collaborator permissions."""

    def __init__(self, token: str, bot_login: str | None = "patchswarm-bot") -> None:
        self.token = token
        self.bot_login = bot_login  # None: /user answers 403, like an installation token
        self.repos: dict[str, RepoState] = {}
        self.comments: dict[int, dict[str, Any]] = {}
        self.comment_edits: dict[int, int] = {}
        self.review_comments: dict[int, dict[str, Any]] = {}  # inline comments on a PR's diff
        self.reviews: dict[int, dict[str, Any]] = {}
        self.requests: list[Recorded] = []
        self.page_size = 100  # the listings' largest page, whatever per_page asks (to force pagination)
        # Responses served before any route: (status, headers, body), one per request, e.g. rate limits.
        self.injected: list[tuple[int, dict[str, str], Any]] = []
        self.rate_remaining: int | None = None  # when set: x-ratelimit-remaining counts down per request
        self.rate_reset = 0  # epoch seconds sent as x-ratelimit-reset
        self._ids = itertools.count(1000)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    # -- life cycle ------------------------------------------------------------------------------

    @property
    def root(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return self.root + PREFIX

    def __enter__(self) -> GitHubStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- state -----------------------------------------------------------------------------------

    def add_repo(self, full_name: str, clone_url: str, default_branch: str = "main") -> RepoState:
        self.repos[full_name] = RepoState(full_name, clone_url, default_branch)
        return self.repos[full_name]

    def add_issue(self, full_name: str, number: int, *, title: str, body: str, author: str,
                  association: str = "NONE", labels: list[str] | None = None) -> dict[str, Any]:
        issue = {"number": number, "title": title, "body": body, "user": _user(author),
                 "author_association": association, "labels": [{"name": n} for n in labels or []],
                 "state": "open", "comments": 0}
        self.repos[full_name].issues[number] = issue
        return issue

    def add_pull(self, full_name: str, *, branch: str, title: str, body: str = "", author: str = "someone",
                 base: str = "main") -> dict[str, Any]:
        repo = self.repos[full_name]
        owner = full_name.split("/")[0]
        number = max([*repo.pulls, *repo.issues, 0]) + 1
        pull = {"number": number, "title": title, "body": body, "draft": False, "state": "open",
                "head": {"ref": branch, "label": f"{owner}:{branch}", "repo": {"full_name": full_name}},
                "base": {"ref": base}, "user": _user(author)}
        repo.pulls[number] = pull
        return pull

    def add_comment(self, full_name: str, number: int, *, body: str, author: str, association: str = "NONE",
                    user_type: str = "User") -> dict[str, Any]:
        comment = {"id": next(self._ids), "body": body, "user": {**_user(author), "type": user_type},
                   "author_association": association, "repo": full_name, "issue": number}
        self.comments[comment["id"]] = comment
        return comment

    def add_review_comment(self, full_name: str, pull: int, *, body: str, author: str, association: str = "NONE",
                           path: str = "", line: int | None = None, diff_hunk: str = "",
                           review: int | None = None, in_reply_to: int | None = None) -> dict[str, Any]:
        comment = {"id": next(self._ids), "body": body, "user": _user(author), "author_association": association,
                   "path": path, "line": line, "diff_hunk": diff_hunk, "pull_request_review_id": review,
                   "repo": full_name, "pull": pull, **({"in_reply_to_id": in_reply_to} if in_reply_to else {})}
        self.review_comments[comment["id"]] = comment
        return comment

    def add_review(self, full_name: str, pull: int, *, body: str, author: str, association: str = "NONE",
                   state: str = "CHANGES_REQUESTED") -> dict[str, Any]:
        review = {"id": next(self._ids), "body": body, "user": _user(author), "author_association": association,
                  "state": state, "repo": full_name, "pull": pull}
        self.reviews[review["id"]] = review
        return review

    def issue_comments(self, full_name: str, number: int) -> list[dict[str, Any]]:
        return [c for c in self.comments.values() if c["repo"] == full_name and c["issue"] == number]

    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method != "GET"]

    # -- JSON as GitHub returns it ---------------------------------------------------------------

    def _repo_json(self, repo: RepoState) -> dict[str, Any]:
        owner, name = repo.full_name.split("/")
        return {"id": abs(hash(repo.full_name)) % 10**6, "name": name, "full_name": repo.full_name,
                "owner": _user(owner), "private": False, "default_branch": repo.default_branch,
                "clone_url": repo.clone_url, "url": f"{self.api_url}/repos/{repo.full_name}",
                "html_url": f"{self.root}/{repo.full_name}"}

    def _issue_json(self, repo: RepoState, issue: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.api_url}/repos/{repo.full_name}/issues/{issue['number']}"
        count = len(self.issue_comments(repo.full_name, issue["number"]))
        return {**issue, "id": issue["number"], "url": url, "comments_url": url + "/comments",
                "html_url": f"{self.root}/{repo.full_name}/issues/{issue['number']}", "comments": count,
                "repository_url": f"{self.api_url}/repos/{repo.full_name}"}

    def _comment_json(self, comment: dict[str, Any]) -> dict[str, Any]:
        repo, number = comment["repo"], comment["issue"]
        return {key: value for key, value in comment.items() if key not in ("repo", "issue")} | {
            "url": f"{self.api_url}/repos/{repo}/issues/comments/{comment['id']}",
            "html_url": f"{self.root}/{repo}/issues/{number}#issuecomment-{comment['id']}",
            "issue_url": f"{self.api_url}/repos/{repo}/issues/{number}",
            "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z"}

    def _pull_json(self, repo: RepoState, pull: dict[str, Any]) -> dict[str, Any]:
        return {**pull, "id": pull["number"], "url": f"{self.api_url}/repos/{repo.full_name}/pulls/{pull['number']}",
                "html_url": f"{self.root}/{repo.full_name}/pull/{pull['number']}"}

    def paginated(self, url, listing: Page) -> tuple[Any, dict[str, str]]:
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        size = min(int(query.get("per_page", 30)), self.page_size)
        page = int(query.get("page", 1))
        items = listing.items[(page - 1) * size: page * size]
        headers = {}
        if page * size < len(listing.items):
            nxt = f"{self.root}{url.path}?{urlencode({**query, 'page': page + 1})}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        if listing.wrap:
            return {"total_count": len(listing.items), listing.wrap: items}, headers
        return items, headers

    # -- routing ---------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        routes = [
            ("GET", r"/user", self._get_user),
            ("GET", r"/repos/([^/]+/[^/]+)", self._get_repo),
            ("GET", r"/search/issues", self._search_issues),
            ("GET", r"/repos/([^/]+/[^/]+)/issues", self._list_issues),
            ("GET", r"/repos/([^/]+/[^/]+)/issues/(\d+)", self._get_issue),
            ("GET", r"/repos/([^/]+/[^/]+)/issues/(\d+)/comments", self._list_comments),
            ("POST", r"/repos/([^/]+/[^/]+)/issues/(\d+)/comments", self._create_comment),
            ("GET", r"/repos/([^/]+/[^/]+)/issues/comments/(\d+)", self._get_comment),
            ("PATCH", r"/repos/([^/]+/[^/]+)/issues/comments/(\d+)", self._edit_comment),
            ("DELETE", r"/repos/([^/]+/[^/]+)/issues/(\d+)/labels/([^/]+)", self._remove_label),
            ("GET", r"/repos/([^/]+/[^/]+)/collaborators/([^/]+)/permission", self._permission),
            ("GET", r"/repos/([^/]+/[^/]+)/pulls", self._list_pulls),
            ("GET", r"/repos/([^/]+/[^/]+)/pulls/(\d+)", self._get_pull),
            ("GET", r"/repos/([^/]+/[^/]+)/pulls/comments/(\d+)", self._get_review_comment),
            ("GET", r"/repos/([^/]+/[^/]+)/pulls/(\d+)/comments", self._list_review_comments),
            ("POST", r"/repos/([^/]+/[^/]+)/pulls/(\d+)/comments/(\d+)/replies", self._reply_review_comment),
            ("GET", r"/repos/([^/]+/[^/]+)/pulls/(\d+)/reviews/(\d+)", self._get_review),
            ("GET", r"/repos/([^/]+/[^/]+)/pulls/(\d+)/reviews/(\d+)/comments", self._list_review_inline),
            ("POST", r"/repos/([^/]+/[^/]+)/pulls", self._create_pull),
            ("PATCH", r"/repos/([^/]+/[^/]+)/pulls/(\d+)", self._edit_pull),
        ]
        for verb, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                groups = [unquote(g) for g in match.groups()]
                if groups and "/" in groups[0] and groups[0] not in self.repos:
                    return 404, {"message": "Not Found"}
                return handler(*groups, query=query, body=body)
        return 404, {"message": "Not Found"}

    def _get_user(self, *, query, body):
        if self.bot_login is None:
            return 403, {"message": "Resource not accessible by integration"}
        return 200, _user(self.bot_login)

    def _get_repo(self, full_name, *, query, body):
        return 200, self._repo_json(self.repos[full_name])

    def _issue_items(self, repo: RepoState) -> list[dict[str, Any]]:
        """Issues and pulls as the issues API lists them (a PR is an issue with `pull_request`)."""
        items = [self._issue_json(repo, i) for i in repo.issues.values()]
        items += [{**self._issue_json(repo, self._pull_as_issue(p)), "pull_request": {"url": self._pull_json(repo, p)["url"]}}
                  for p in repo.pulls.values()]
        return sorted(items, key=lambda i: i["number"])

    def _pull_as_issue(self, pull: dict[str, Any]) -> dict[str, Any]:
        return {"number": pull["number"], "title": pull["title"], "body": pull["body"], "user": pull["user"],
                "author_association": pull.get("author_association", "NONE"), "labels": pull.get("labels", []),
                "state": pull["state"], "comments": 0}

    def _list_issues(self, full_name, *, query, body):
        state = query.get("state", ["open"])[0]
        labels = [x for x in query.get("labels", [""])[0].split(",") if x]
        since = query.get("since", [None])[0]
        items = [i for i in self._issue_items(self.repos[full_name])
                 if (state == "all" or i["state"] == state)
                 and all(label in [x["name"] for x in i["labels"]] for label in labels)
                 and (since is None or i.get("updated_at", "2025-01-01T00:00:00Z") >= since)]
        return 200, Page(items)

    def _search_issues(self, *, query, body):
        terms = re.findall(r'(\w+):"([^"]*)"|(\w+):(\S+)|(\S+)', query.get("q", [""])[0])
        pairs = [(a or c, b or d) for a, b, c, d, _ in terms if a or c]
        repo = self.repos.get(next((v for k, v in pairs if k == "repo"), ""))
        if repo is None:
            return 422, {"message": "Validation Failed"}
        items = self._issue_items(repo)
        for key, value in pairs:
            if key == "is" and value in ("open", "closed"):
                items = [i for i in items if i["state"] == value]
            elif key == "is" and value == "issue":
                items = [i for i in items if "pull_request" not in i]
            elif key == "label":
                items = [i for i in items if value in [x["name"] for x in i["labels"]]]
        return 200, Page(items, wrap="items")

    def _issue(self, full_name: str, number: str) -> dict[str, Any] | None:
        repo = self.repos[full_name]
        pull = repo.pulls.get(int(number))  # a PR is an issue too (its conversation tab)
        return repo.issues.get(int(number)) or (self._pull_as_issue(pull) if pull else None)

    def _plain(self, item: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if k not in ("repo", "pull")}

    def _get_pull(self, full_name, number, *, query, body):
        repo = self.repos[full_name]
        pull = repo.pulls.get(int(number))
        return (200, self._pull_json(repo, pull)) if pull else (404, {"message": "Not Found"})

    def _get_review_comment(self, full_name, comment_id, *, query, body):
        comment = self.review_comments.get(int(comment_id))
        if comment is None or comment["repo"] != full_name:
            return 404, {"message": "Not Found"}
        return 200, self._plain(comment)

    def _list_review_comments(self, full_name, number, *, query, body):
        return 200, Page([self._plain(c) for c in self.review_comments.values()
                          if c["repo"] == full_name and c["pull"] == int(number)])

    def _reply_review_comment(self, full_name, number, comment_id, *, query, body):
        parent = self.review_comments.get(int(comment_id))
        if parent is None:
            return 404, {"message": "Not Found"}
        login = self.bot_login or "github-actions[bot]"
        reply = self.add_review_comment(full_name, int(number), body=body["body"], author=login,
                                        path=parent["path"], line=parent["line"], in_reply_to=parent["id"])
        reply["user"]["type"] = "Bot"
        return 201, self._plain(reply)

    def _get_review(self, full_name, number, review_id, *, query, body):
        review = self.reviews.get(int(review_id))
        if review is None or review["pull"] != int(number):
            return 404, {"message": "Not Found"}
        return 200, self._plain(review)

    def _list_review_inline(self, full_name, number, review_id, *, query, body):
        return 200, Page([self._plain(c) for c in self.review_comments.values()
                          if c["pull_request_review_id"] == int(review_id)])

    def _get_issue(self, full_name, number, *, query, body):
        issue = self._issue(full_name, number)
        if issue is None:
            return 404, {"message": "Not Found"}
        return 200, self._issue_json(self.repos[full_name], issue)

    def _list_comments(self, full_name, number, *, query, body):
        if self._issue(full_name, number) is None:
            return 404, {"message": "Not Found"}
        return 200, [self._comment_json(c) for c in self.issue_comments(full_name, int(number))]

    def _create_comment(self, full_name, number, *, query, body):
        if self._issue(full_name, number) is None:
            return 404, {"message": "Not Found"}
        login = self.bot_login or "github-actions[bot]"
        comment = self.add_comment(full_name, int(number), body=body["body"], author=login, user_type="Bot")
        self.comment_edits[comment["id"]] = 0
        return 201, self._comment_json(comment)

    def _get_comment(self, full_name, comment_id, *, query, body):
        comment = self.comments.get(int(comment_id))
        if comment is None or comment["repo"] != full_name:
            return 404, {"message": "Not Found"}
        return 200, self._comment_json(comment)

    def _edit_comment(self, full_name, comment_id, *, query, body):
        comment = self.comments.get(int(comment_id))
        if comment is None or comment["repo"] != full_name:
            return 404, {"message": "Not Found"}
        if comment["user"]["login"] != (self.bot_login or "github-actions[bot]"):
            return 403, {"message": "Must have admin rights to edit this comment"}
        comment["body"] = body["body"]
        self.comment_edits[comment["id"]] = self.comment_edits.get(comment["id"], 0) + 1
        return 200, self._comment_json(comment)

    def _remove_label(self, full_name, number, label, *, query, body):
        repo = self.repos[full_name]
        issue = repo.issues.get(int(number)) or repo.pulls.get(int(number))  # the stored one, to change it
        names = [item["name"] for item in issue["labels"]] if issue else []
        if label not in names:
            return 404, {"message": "Label does not exist"}
        issue["labels"] = [item for item in issue["labels"] if item["name"] != label]
        return 200, issue["labels"]

    def _permission(self, full_name, login, *, query, body):
        permission = self.repos[full_name].permissions.get(login)
        if permission is None:
            return 404, {"message": f"{login} is not a user"}
        return 200, {"permission": permission, "user": _user(login)}

    def _list_pulls(self, full_name, *, query, body):
        repo = self.repos[full_name]
        head, state = query.get("head", [None])[0], query.get("state", ["open"])[0]
        pulls = [p for p in repo.pulls.values() if (head is None or p["head"]["label"] == head)
                 and (state == "all" or p["state"] == state)]
        return 200, Page([self._pull_json(repo, p) for p in pulls])

    def _create_pull(self, full_name, *, query, body):
        repo = self.repos[full_name]
        owner, _, branch = body["head"].rpartition(":")
        owner = owner or full_name.split("/")[0]
        number = max([*repo.pulls, *repo.issues, 0]) + 1
        pull = {"number": number, "title": body["title"], "body": body.get("body", ""), "draft": body.get("draft", False),
                "state": "open", "head": {"ref": branch, "label": f"{owner}:{branch}"},
                "base": {"ref": body["base"]}, "user": _user(self.bot_login or "github-actions[bot]")}
        repo.pulls[number] = pull
        return 201, self._pull_json(repo, pull)

    def _edit_pull(self, full_name, number, *, query, body):
        repo = self.repos[full_name]
        pull = repo.pulls.get(int(number))
        if pull is None:
            return 404, {"message": "Not Found"}
        pull.update({k: v for k, v in body.items() if k in ("title", "body", "state")})
        return 200, self._pull_json(repo, pull)

    # -- HTTP ------------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # quiet test output
                return

            def _serve(self) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                auth = self.headers.get("Authorization")
                with stub._lock:
                    stub.requests.append(Recorded(self.command, url.path, body, auth,
                                                  self.headers.get("If-None-Match"), url.query))
                    headers: dict[str, str] = {}
                    if stub.injected:
                        status, headers, payload = stub.injected.pop(0)
                    elif auth not in (f"token {stub.token}", f"Bearer {stub.token}"):
                        status, payload = 401, {"message": "Bad credentials"}
                    elif not url.path.startswith(PREFIX):
                        status, payload = 404, {"message": "Not Found"}
                    else:
                        status, payload = stub.handle(self.command, url.path[len(PREFIX):] or "/",
                                                      parse_qs(url.query), body)
                        if isinstance(payload, Page):
                            payload, headers = stub.paginated(url, payload)
                    if stub.rate_remaining is not None:
                        stub.rate_remaining = max(0, stub.rate_remaining - 1)
                        headers.setdefault("x-ratelimit-remaining", str(stub.rate_remaining))
                        headers.setdefault("x-ratelimit-reset", str(stub.rate_reset))
                data = json.dumps(payload).encode()
                if self.command == "GET" and status == 200:
                    etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
                    headers["ETag"] = etag
                    if self.headers.get("If-None-Match") == etag:
                        status, data = 304, b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

        return Handler


def _user(login: str) -> dict[str, Any]:
    return {"login": login, "id": abs(hash(login)) % 10**6, "type": "Bot" if login.endswith("[bot]") else "User"}
