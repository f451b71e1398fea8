"""Keep secrets out of everything the bot writes: logs, comments, the PR, files in the run directory.

`Redactor.scrub` replaces each secret (and the encodings the bot itself derives from it, such as the
basic-auth header git sends) with `***`. `redacted_logging` puts a filter on every handler of the root
logger, so records of *any* logger (PyGithub, urllib3, ours) are scrubbed before they are written.
"""

from __future__ import annotations

import base64
import contextlib
import logging
from collections.abc import Iterable, Iterator
from typing import Any

MASK = "***"
MIN_SECRET_LENGTH = 4  # shorter "secrets" would mask ordinary words


def basic_auth(token: str) -> str:
    """The value git sends for a token (the header actions/checkout uses too)."""
    return base64.b64encode(f"x-access-token:{token}".encode()).decode()


class Redactor:
    """Replaces known secrets and their derived forms with a mask."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if not secret or len(secret) < MIN_SECRET_LENGTH:
            return
        for form in (secret, basic_auth(secret)):
            if form not in self._secrets:
                self._secrets.append(form)
        # Longest first, so a secret containing another is masked whole.
        self._secrets.sort(key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def scrub_data(self, value: Any) -> Any:
        """Scrub every string inside nested dicts, lists and tuples."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {self.scrub_data(k): self.scrub_data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.scrub_data(v) for v in value)
        return value


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (and traceback text) with secrets masked; never drops a record."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = self.redactor.scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.scrub(record.stack_info)
        return True


@contextlib.contextmanager
def redacted_logging(redactor: Redactor) -> Iterator[RedactingFilter]:
    """Scrub every record that reaches a root handler (or the last-resort handler) while active."""
    flt = RedactingFilter(redactor)
    handlers = [*logging.getLogger().handlers]
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        handler.addFilter(flt)
    try:
        yield flt
    finally:
        for handler in handlers:
            handler.removeFilter(flt)
