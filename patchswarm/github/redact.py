"""Keep secrets out of everything the bot writes: logs, comments, the PR, commits, files in the run directory.

`Redactor.scrub` replaces each known secret (and the encodings the bot itself derives from it, such as
the basic-auth header git sends) with `***`, and so does it for anything shaped like a well-known
credential (GitHub, OpenAI, Anthropic, AWS, Slack, GitLab, Hugging Face tokens, passwords in URLs):
an issue may quote a token the bot was never given. The sinks (git commits and pushes, every API
write, the run's files) scrub themselves, so a new call site cannot forget. `redacted_logging` puts
a filter on every handler of the root logger, so records of *any* logger are scrubbed before they
are written.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
from collections.abc import Iterable, Iterator
from typing import Any

MASK = "***"
MIN_SECRET_LENGTH = 4  # shorter "secrets" would mask ordinary words
# Credential shapes (prefixes as the providers document them); long enough not to match prose.
CREDENTIAL_PATTERNS = re.compile("|".join([
    r"\bgh[pousr]_[A-Za-z0-9]{20,}",          # GitHub classic, OAuth, user-to-server, installation, refresh
    r"\bgithub_pat_[A-Za-z0-9_]{20,}",        # GitHub fine-grained
    r"\bsk-[A-Za-z0-9][A-Za-z0-9_-]{19,}",     # OpenAI, Anthropic (sk-ant-…)
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",          # AWS access key ids
    r"\bxox[abprs]-[A-Za-z0-9-]{10,}",         # Slack
    r"\bglpat-[A-Za-z0-9_-]{20,}",             # GitLab
    r"\bhf_[A-Za-z0-9]{30,}",                  # Hugging Face
    r"\bAIza[0-9A-Za-z_-]{35}",                # Google API keys
]))
URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@", re.IGNORECASE)


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
        text = CREDENTIAL_PATTERNS.sub(MASK, text)
        return URL_PASSWORD.sub(rf"\g<1>{MASK}@", text)

    def scrub_ref(self, name: str) -> str:
        """A branch name without secrets, still a valid ref (the mask's `*` is not allowed in refs)."""
        return self.scrub(name).replace(MASK, "redacted")

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
