"""When a failed model request is worth repeating, and how long to wait first."""

from __future__ import annotations

import email.utils
import random
import time
from typing import Any

from agent import llm


def is_retryable(exc: BaseException) -> bool:
    """Rate limits, timeouts, connection errors and 5xx are worth retrying; auth/bad request are not.

    litellm maps every provider error to a status: Timeout is 408, APIConnectionError 500.
    """
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status in (408, 429) or status >= 500)


def failure_hint(exc: BaseException) -> str | None:
    """What to do about a failure that retrying cannot fix, for the error text (None when nothing to say)."""
    if isinstance(exc, llm.ContextWindowExceededError):
        return ("the prompt is longer than the model's context window: lower context.token_budget or "
                "trajectories.max_attempts_*, or pick a model with a larger window")
    status = getattr(exc, "status_code", None)
    if status == 401 or isinstance(exc, llm.AuthenticationError):
        return "the provider rejected the API key: check the key variable litellm names for this provider"
    if status == 404 or isinstance(exc, llm.NotFoundError):
        return "the provider does not know this model name: check it (`patchswarm models check`)"
    return None


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    try:
        items = headers.items()
    except AttributeError:
        return None
    for key, value in items:
        if str(key).lower() == name:
            return str(value)
    return None


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds the provider asked us to wait, from a `retry_after` attribute or response headers."""
    value = getattr(exc, "retry_after", None)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return max(0.0, float(value))
    response = getattr(exc, "response", None)
    for headers in (getattr(exc, "headers", None), getattr(response, "headers", None)):
        millis = _header(headers, "retry-after-ms")
        if millis is not None:
            try:
                return max(0.0, float(millis) / 1000)
            except ValueError:
                pass
        raw = _header(headers, "retry-after")
        if raw is None:
            continue
        try:
            return max(0.0, float(raw))
        except ValueError:
            pass
        try:  # Retry-After may also be an HTTP date
            return max(0.0, email.utils.parsedate_to_datetime(raw).timestamp() - time.time())
        except (TypeError, ValueError):
            continue
    return None


def backoff_s(retry: int, exc: BaseException, *, base_s: float, max_s: float, rng: random.Random) -> float:
    """Full jitter over an exponential ceiling, but never sooner than the provider asked.

    Full jitter spreads many trajectories hitting the same rate limit instead of having them
    retry in lockstep. Retry-After is honoured even above `max_s`: retrying earlier only fails again.
    """
    ceiling = min(max_s, base_s * 2 ** (retry - 1))
    delay = rng.uniform(0, ceiling)
    hint = retry_after_s(exc)
    return delay if hint is None else max(delay, hint)
