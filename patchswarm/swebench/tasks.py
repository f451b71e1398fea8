"""SWE-bench instances as pipeline tasks: only the issue (and optionally the hints) reaches solving."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from patchswarm.environment_sources import Environment
from patchswarm.swebench.dataset import load_instances
from patchswarm.swebench.environments import DEFAULT_REPO_URL, repo_url
from patchswarm.tasks import SweBenchEnvironment, Task


def tasks_from_dataset(name_or_file: str, split: str = "test", repo_url_template: str = DEFAULT_REPO_URL, *,
                       with_hints: bool = False, spec_table: Path | None = None,
                       prefer_official_images: bool = True) -> list[Task]:
    """One task per instance. The gold patch, test patch and test lists stay behind in the dataset."""
    tasks = []
    for instance in load_instances(name_or_file, split):
        public = instance.to_task()
        issue = public.problem_statement
        if with_hints and public.hints_text:
            issue += f"\n\nHints from the discussion:\n{public.hints_text}"
        tasks.append(Task(
            instance_id=public.instance_id, repo=repo_url(repo_url_template, public.repo),
            commit=public.base_commit, issue=issue,
            swebench=SweBenchEnvironment(task=public.model_dump(), repo_url_template=repo_url_template,
                                        spec_table=str(spec_table) if spec_table else None,
                                        prefer_official=prefer_official_images),
        ))
    return tasks


def instance_environment(client, env: SweBenchEnvironment, *, run_id: str, log_dir: Path, on_phase=None):
    """The instance's image (official when available, else built locally from the spec table).

    `on_phase(name)`: the build's phases as they start (build environment, build instance), for progress."""
    from patchswarm.swebench.dataset import SweTask
    from patchswarm.swebench.environments import resolve_instance_image
    from patchswarm.swebench.specs import load_spec_table

    table = load_spec_table(Path(env.spec_table) if env.spec_table else None)
    return resolve_instance_image(client, SweTask(**env.task), table, env.repo_url_template,
                                  prefer_official=env.prefer_official, run_id=run_id, log_dir=log_dir,
                                  on_phase=on_phase)


def spec_test_command(env: SweBenchEnvironment) -> str | None:
    """The spec's test command (it takes test files as arguments), for selection's regression check."""
    from patchswarm.swebench.specs import SpecError, load_spec_table

    try:
        table = load_spec_table(Path(env.spec_table) if env.spec_table else None)
        return table.spec(env.task["repo"], env.task["version"]).test_cmd
    except (SpecError, KeyError, OSError, ValueError):
        return None


class SweBenchEnvironments:
    """SWE-bench tasks: the instance's image; the spec's test command for the regression check."""

    def handles(self, task: Task) -> bool:
        return task.swebench is not None

    def environment(self, docker: Any, task: Task, *, run_id: str, log_dir: Path,
                    on_phase: Callable[[str], None] | None = None) -> Environment:
        assert task.swebench is not None
        image = instance_environment(docker, task.swebench, run_id=run_id, log_dir=log_dir, on_phase=on_phase)
        return Environment(tag=image.tag, sandbox_options={"user": image.user, "workdir": image.workdir},
                           record=image.model_dump())

    def regression_file_cmd(self, task: Task) -> str | None:
        return spec_test_command(task.swebench) if task.swebench is not None else None
