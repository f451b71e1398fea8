"""A small GitHub REST client for listings: pagination, conditional requests, rate limits that slow down.

PyGithub serves the single-issue flow; listings over a whole repository need what it does not do:
- pagination by the `Link` header, whatever the page size the server picks;
- ETags: a repeated listing (a resumed batch, a poll) sends `If-None-Match` and a 304 costs no quota.
  The cache can live in a JSON file, so a rerun of the same command reuses it;
- primary limits: when `x-ratelimit-remaining` reaches 0 the next request waits for `x-ratelimit-reset`;
- secondary limits and abuse detection: 403/429 with `retry-after` (or a rate-limit message) wait and retry.
Waits are capped (`max_wait_s`); past the cap the error is raised, naming when the limit resets.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from patchswarm.github.api import ApiError
from patchswarm.github.redact import Redactor

log = logging.getLogger(__name__)

SECONDARY_WAIT_S = 60.0  # GitHub's advice when a secondary limit gives no retry-after
MAX_RETRIES = 5


@dataclass
class RateLimits:
    """What the waits were, for tests and the summary."""

    waits: list[float] = field(default_factory=list)
    not_modified: int = 0
    requests: int = 0


class RestClient:
    def __init__(self, api_url: str, token: str, *, redactor: Redactor | None = None,
                 etag_file: Path | None = None, max_wait_s: float = 3600.0,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
                 timeout: float = 30.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                                     "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "patchswarm"})
        self.redactor = redactor or Redactor([token])
        self.etag_file, self.max_wait_s, self.timeout = etag_file, max_wait_s, timeout
        self._sleep, self._clock = sleep, clock
        self._cache: dict[str, dict[str, Any]] = self._load_cache()
        self._blocked_until = 0.0
        self.stats = RateLimits()

    # -- the ETag cache ----------------------------------------------------------------------------

    def _load_cache(self) -> dict[str, dict[str, Any]]:
        if self.etag_file is None or not self.etag_file.is_file():
            return {}
        try:
            data = json.loads(self.etag_file.read_text())
        except (OSError, json.JSONDecodeError):
            return {}  # a damaged cache only costs quota
        return data if isinstance(data, dict) else {}

    def _save_cache(self) -> None:
        if self.etag_file is None:
            return
        self.etag_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.etag_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._cache))
        tmp.replace(self.etag_file)

    # -- requests ----------------------------------------------------------------------------------

    def _wait(self, seconds: float, why: str) -> None:
        seconds = max(0.0, seconds)
        if seconds > self.max_wait_s:
            raise ApiError(f"GitHub rate limit: {why}; it resets in {seconds:.0f}s, more than the "
                           f"{self.max_wait_s:.0f}s this run may wait", 403)
        log.warning("GitHub rate limit (%s): waiting %.0fs", why, seconds)
        self.stats.waits.append(seconds)
        self._sleep(seconds)

    def _reset_in(self, response: requests.Response) -> float | None:
        reset = response.headers.get("x-ratelimit-reset")
        return float(reset) - self._clock() + 1.0 if reset and reset.isdigit() else None

    def request(self, method: str, url: str, *, params: dict[str, Any] | None = None,
                body: Any = None, conditional: bool = False) -> requests.Response:
        """One request, retried on rate limits; `conditional` GETs answer 304s from the ETag cache."""
        if not url.startswith("http"):
            url = self.api_url + url
        key = requests.Request(method, url, params=params).prepare().url or url
        for attempt in range(MAX_RETRIES + 1):
            if self._blocked_until > self._clock():
                self._wait(self._blocked_until - self._clock(), "no requests left in this window")
            self._blocked_until = 0.0  # waited for (or past) the reset
            headers = {}
            cached = self._cache.get(key) if conditional else None
            if cached:
                headers["If-None-Match"] = cached["etag"]
            try:
                response = self.session.request(method, url, params=params, json=body, headers=headers,
                                                timeout=self.timeout)
            except requests.RequestException as exc:
                raise ApiError(self.redactor.scrub(f"{method} {url}: {exc}")) from None
            self.stats.requests += 1
            if response.headers.get("x-ratelimit-remaining") == "0":
                reset_in = self._reset_in(response)
                self._blocked_until = self._clock() + reset_in if reset_in else 0.0
            if response.status_code in (403, 429) and attempt < MAX_RETRIES:
                wait = self._limit_wait(response, attempt)
                if wait is not None:
                    self._wait(wait, f"HTTP {response.status_code} on {method} {_path(url)}")
                    self._blocked_until = 0.0  # this wait covered the window's reset
                    continue
            if response.status_code == 304 and cached:
                self.stats.not_modified += 1
                response._content = json.dumps(cached["body"]).encode()
                response.headers["link"] = cached.get("link", "")
                response.status_code = 200
                return response
            if response.status_code >= 400:
                raise ApiError(self.redactor.scrub(f"{method} {_path(url)}: HTTP {response.status_code}: "
                                                   f"{_message(response)}"), response.status_code)
            if conditional and response.headers.get("etag"):
                # Scrubbed: the cache is a file of the run directory, and issue texts may quote secrets.
                self._cache[key] = {"etag": response.headers["etag"], "body": self.redactor.scrub_data(response.json()),
                                    "link": response.headers.get("link", "")}
                self._save_cache()
            return response
        raise AssertionError("unreachable")

    def _limit_wait(self, response: requests.Response, attempt: int) -> float | None:
        """Seconds to wait before retrying, or None when the 403/429 is not a rate limit."""
        retry_after = response.headers.get("retry-after")
        if retry_after and retry_after.strip().isdigit():
            return float(retry_after)
        if response.headers.get("x-ratelimit-remaining") == "0":
            return self._reset_in(response) or SECONDARY_WAIT_S
        if response.status_code == 429 or "rate limit" in _message(response).lower():
            return SECONDARY_WAIT_S * 2 ** attempt  # secondary limit without advice: back off
        return None

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params, conditional=True).json()

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body=body).json()

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body=body).json()

    def paginate(self, path: str, params: dict[str, Any] | None = None, *,
                 items_key: str | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a listing, page after page (`items_key`: the search API's wrapper)."""
        url: str | None = path
        params = {"per_page": 100, **(params or {})}
        while url:
            response = self.request("GET", url, params=params, conditional=True)
            data = response.json()
            yield from (data.get(items_key, []) if items_key else data)
            url, params = response.links.get("next", {}).get("url"), None  # the next URL carries the query


def _path(url: str) -> str:
    return url.split("://", 1)[-1].partition("/")[2].split("?")[0]


def _message(response: requests.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200] or response.reason or ""
    return str(data.get("message", "")) if isinstance(data, dict) else ""
