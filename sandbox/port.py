"""The sandbox as the layers above see it: run a command on the base tree, lease one, name the image.

`agent/` and `selection/` are typed against these two Protocols only. `SandboxPool` (Docker) implements
them for real; `sandbox.local.LocalPool` implements them with subprocesses in a copy of the repository,
so the logic above can be unit-tested without a Docker engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from sandbox.execution import DEFAULT_OUTPUT_CAP, ExecResult


class SandboxPort(Protocol):
    """One isolated copy of the repository at its base commit."""

    def run(
        self, command: str, *, patch: str | None = None, files: Mapping[str, str | bytes] | None = None,
        timeout: float | None = 60, env: dict[str, str] | None = None, reset: bool = True,
        output_cap: int = DEFAULT_OUTPUT_CAP,
    ) -> ExecResult:
        """Reset to base (unless `reset=False`), apply `patch`, write `files` (absolute paths outside the
        repository, or relative to it), run `command` from the repository root. A patch that does not
        apply raises `PatchApplyError`; a dead sandbox raises `SandboxBroken`; any exit code is data."""
        ...


class PoolPort(Protocol):
    """Sandboxes of one environment, at most `size` at once, each leased at the base state."""

    @property
    def size(self) -> int: ...

    def lease(self) -> AbstractAsyncContextManager[SandboxPort]:
        """A sandbox at the base state for the duration of the `async with`; waits while `size` are in use.
        A sandbox that raised `SandboxBroken` inside the block is discarded, never leased again."""
        ...

    def image_id(self) -> str:
        """Content id of the environment (a rebuilt tag has another): keys cached execution results."""
        ...
