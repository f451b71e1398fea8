"""Where an instance's environment comes from, one source per kind of task.

The pipeline asks `source_for(task)` and knows no kind: a task with its own setup commands gets an image
built from them (`RepoEnvironments`); a SWE-bench task gets its instance image (patchswarm.swebench.tasks).
A source also says what selection's regression check should run when the task names no test command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from patchswarm.tasks import Task
from sandbox import EnvSpec, RepoSource, build_env_image


@dataclass(frozen=True)
class Environment:
    """The image to run a task in, how its sandboxes start (user, workdir), and what to record of it."""

    tag: str
    sandbox_options: dict[str, str] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)


class EnvironmentSource(Protocol):
    def handles(self, task: Task) -> bool: ...

    def environment(self, docker: Any, task: Task, *, run_id: str, log_dir: Path,
                    on_phase: Callable[[str], None] | None = None) -> Environment:
        """The task's image, built or fetched (blocking: called in a thread); `on_phase(name)` as phases start."""
        ...

    def regression_file_cmd(self, task: Task) -> str | None:
        """A test command taking test files as arguments, when the source knows one."""
        ...


class RepoEnvironments:
    """Any repository: an image built from the task's base image, Python and setup commands."""

    def handles(self, task: Task) -> bool:
        return True

    def environment(self, docker: Any, task: Task, *, run_id: str, log_dir: Path,
                    on_phase: Callable[[str], None] | None = None) -> Environment:
        env = EnvSpec(base_image=task.base_image, python=task.python, setup=task.setup, test_cmd=task.test_cmd)
        image = build_env_image(docker, RepoSource(location=task.repo, commit=task.commit), env, run_id=run_id,
                                log_dir=log_dir)
        return Environment(tag=image.tag, record=image.model_dump())

    def regression_file_cmd(self, task: Task) -> str | None:
        return None


def default_sources() -> tuple[EnvironmentSource, ...]:
    """The kinds patchswarm knows, most specific first (the last one handles every task)."""
    from patchswarm.swebench.tasks import SweBenchEnvironments

    return SweBenchEnvironments(), RepoEnvironments()


def source_for(task: Task, sources: tuple[EnvironmentSource, ...]) -> EnvironmentSource:
    return next(source for source in sources if source.handles(task))
