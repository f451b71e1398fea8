"""Small shared types of the agent package: context bundles, reproduction tests, state persistence."""

from __future__ import annotations

import shlex
from typing import Any, Protocol

from pydantic import BaseModel, Field

# Reproduction tests live outside the repository so they never show up in a candidate's diff.
REPRO_TEST_PATH = "/tmp/patchswarm/repro_test.py"
# Exit-code convention of generated reproduction tests.
EXIT_FIXED, EXIT_ERROR, EXIT_ISSUE_PRESENT = 0, 1, 2


def repro_command(path: str = REPRO_TEST_PATH, python: str = "python") -> str:
    """How a reproduction test runs: from the repository root, with the repository importable."""
    return f"PYTHONPATH=\"$PWD${{PYTHONPATH:+:$PYTHONPATH}}\" {python} {shlex.quote(path)}"


class ContextFile(BaseModel):
    path: str
    text: str
    summary: str = ""
    tokens: int = 0


class ContextBundle(BaseModel):
    """The files a trajectory sees. `render()` is byte-identical for every trajectory of an instance,
    so prompts that start with it share a cacheable prefix."""

    files: list[ContextFile] = Field(default_factory=list)
    total_tokens: int = 0
    budget_tokens: int = 0
    notes: list[str] = Field(default_factory=list)  # e.g. files skipped and why

    def render(self) -> str:
        parts = []
        for f in self.files:
            parts.append(f"<file path=\"{f.path}\">\n{f.text}{'' if f.text.endswith(chr(10)) else chr(10)}</file>")
        return "\n".join(parts)


class StateStore(Protocol):
    """Where state machines persist their state after every step (in memory here; SQLite in the app)."""

    def load(self, key: str) -> dict[str, Any] | None: ...

    def save(self, key: str, state: dict[str, Any]) -> None: ...


class InMemoryStateStore:
    def __init__(self) -> None:
        self._states: dict[str, dict[str, Any]] = {}

    def load(self, key: str) -> dict[str, Any] | None:
        state = self._states.get(key)
        return None if state is None else dict(state)

    def save(self, key: str, state: dict[str, Any]) -> None:
        self._states[key] = dict(state)
