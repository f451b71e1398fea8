"""Images to evaluate SWE-bench instances in: the official instance image when there is one, else built locally.

Local images come in three layers, each cached by content hash through `sandbox.build_env_image` and
built once for everything that uses it (gold, empty, candidates, solving):

1. system (per Python): the patchswarm base image whose Python is nearest to the spec's, with the
   official base image's apt packages, the `conda activate` shim and `/testbed -> /repo`, as root.
2. environment (per repository, version, environment_setup_commit and Python): as root, the spec's
   system `pre_install` lines (apt, locales); as the sandbox user, pip raised to a version that can do
   what the spec asks, then the spec's packages, requirement files (read with `git show` at
   environment_setup_commit) and pip packages, installed into the venv. Then the venv is locked.
3. instance: the repository at base_commit (replacing the environment layer's copy), the
   repository-level `pre_install` lines, the install command and the build backend's wheels (so the
   eval script's reinstall works offline), as root so the locked venv is written in place.

Repositories are fetched commit by commit (shallow), so partial mirrors work. Without git history,
setuptools-scm is given `SETUPTOOLS_SCM_PRETEND_VERSION` (the row's version). Build logs are kept one per
image (`~/.cache/patchswarm/build-logs/env-<digest>.log`).

Root-only steps run at build time, never at evaluation: sandboxes of local images run as the sandbox user
without network, as every other sandbox does. Root commands inside published eval scripts (Django's
`locale-gen`) then fail harmlessly; the locales they would make come with `locales-all`, one of the
official base packages installed at build time. Pass `system=False` to skip the apt steps (faster builds,
and no Debian mirror needed), at the cost of tests that need those system packages.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import docker
from pydantic import BaseModel, Field

from patchswarm.swebench.dataset import SweInstance, SweTask
from patchswarm.swebench.scripts import CONSTRAINTS_PATH, BuildPlan, compiles_extensions, plan_build
from patchswarm.swebench.specs import (
    DEFAULT_REPO_URL,
    SpecTable,
    conda_packages,
    git_show,
    read_environment_yml,
    read_requirements,
)
from sandbox import EnvSpec, ImageError, RepoSource, build_env_image, use_existing_image
from sandbox.repos import DEFAULT_CACHE, local_git_dir, resolve_commit
from sandbox.sandbox import REPO_DIR, SANDBOX_USER

OFFICIAL_WORKDIR = "/testbed"
WIPE_REPO = f"find {REPO_DIR} -mindepth 1 -delete"
LAYER_LABEL, REPO_LABEL = "patchswarm.layer", "patchswarm.repo"


class InstanceImage(BaseModel):
    """An image an instance can be evaluated in, and the facts a result should record about it."""

    tag: str
    kind: Literal["official", "local"]
    user: str = Field(description="Who runs the evaluation: root in official images, the sandbox user in ours.")
    workdir: str
    python_wanted: str | None = None
    python_used: str | None = None
    nearest: bool = Field(False, description="The wanted Python was not available; the nearest one was used.")
    env_tag: str | None = Field(None, description="The cached environment layer (local images).")
    built: bool = False
    build_log: str | None = None
    env_build_log: str | None = None
    system_build_s: float = Field(0.0, description="Seconds spent building the system layer (0: cached).")
    env_build_s: float = Field(0.0, description="Seconds spent building the environment layer (0: cached).")
    instance_build_s: float = Field(0.0, description="Seconds spent building the instance layer (0: cached).")
    grade_user: str | None = Field(None, description="Who runs the eval script, when not `user` (root in ours, as in the official images).")


def repo_url(template: str, repo: str) -> str:
    """`{owner}`, `{name}` and `{repo}` filled in, e.g. file:///mirrors/{owner}__{name}.git."""
    owner, _, name = repo.partition("/")
    return template.format(owner=owner, name=name, repo=repo)


def _minor(version: str | None) -> tuple[int, ...]:
    return tuple(int(x) for x in (version or "0").split(".")[:2])


def build_requires(git_dir: Path, commit: str) -> list[str] | None:
    """The `[build-system] requires` of pyproject.toml at `commit`, or None when it names none."""
    import tomllib

    text = git_show(git_dir, commit, "pyproject.toml")
    try:
        requires = tomllib.loads(text).get("build-system", {}).get("requires") if text else None
    except tomllib.TOMLDecodeError:
        return None
    return [str(r) for r in requires] if requires else None


def pretend_version(version: str) -> str:
    """The version setuptools-scm reports in our images, which have no git history (the row's X.Y as X.Y.0)."""
    parts = version.split(".")
    return ".".join(parts + ["0"] * (3 - len(parts)))


def plan_for(instance: SweInstance | SweTask, table: SpecTable, git_dir: Path, *, system: bool = True) -> BuildPlan:
    """The build steps of an instance, with its requirement files read from the repository."""
    spec = table.spec(instance.repo, instance.version)
    repo_spec = table.repo(instance.repo)
    commit = instance.environment_setup_commit
    requirements, conda = None, conda_packages(spec.packages)
    if spec.packages == "requirements.txt":
        requirements = read_requirements(git_dir, commit, repo_spec.requirements_paths, table.replace_requirements)
    elif spec.packages == "environment.yml":
        conda = read_environment_yml(git_dir, commit, repo_spec.environment_yml_paths, table.replace_requirements)
    tracked = subprocess.run(["git", "ls-tree", "-r", "--name-only", commit], cwd=git_dir, capture_output=True,
                             text=True, timeout=120).stdout.splitlines()
    return plan_build(spec, requirements=requirements, conda_requirements=conda,
                      system_packages=table.system_packages, install_repo=repo_spec.install_repo, system=system,
                      build_requires=build_requires(git_dir, instance.base_commit),
                      extensions=compiles_extensions(tracked), repo=instance.repo, version=instance.version)


def build_instance_image(
    client: docker.DockerClient, instance: SweInstance | SweTask, spec_table: SpecTable,
    repo_url_template: str = DEFAULT_REPO_URL, *, system: bool = True, run_id: str = "swebench-build",
    log_dir: Path | None = None, cache_dir: Path = DEFAULT_CACHE, on_phase: Callable[[str], None] | None = None,
) -> InstanceImage:
    """Build (or reuse) the local image of `instance`: environment layer, then the repo at base_commit."""
    url = repo_url(repo_url_template, instance.repo)
    env_source = RepoSource(location=url, commit=instance.environment_setup_commit)
    git_dir = local_git_dir(env_source, cache_dir)
    resolve_commit(git_dir, instance.environment_setup_commit, url)
    base_source = RepoSource(location=url, commit=instance.base_commit)
    local_git_dir(base_source, cache_dir)  # both commits in the cache before the plan reads files at them
    plan = plan_for(instance, spec_table, git_dir, system=system)
    if on_phase:
        on_phase("build environment")
    system_layer = build_env_image(
        client, None, EnvSpec(python=plan.python, root_setup=plan.system_setup,
                              labels={LAYER_LABEL: "swebench-system"}),
        run_id=run_id, log_dir=log_dir, cache_dir=cache_dir,
    )
    variables = {"SETUPTOOLS_SCM_PRETEND_VERSION": pretend_version(instance.version), "PIP_CONSTRAINT": CONSTRAINTS_PATH}
    env = build_env_image(
        client, env_source,
        EnvSpec(base_image=system_layer.tag, python=system_layer.python, root_setup=plan.root_setup,
                setup=plan.env_setup, env=variables,
                labels={LAYER_LABEL: "swebench-env", REPO_LABEL: instance.repo, "patchswarm.version": instance.version}),
        run_id=run_id, log_dir=log_dir, cache_dir=cache_dir,
    )
    if on_phase:
        on_phase("build instance")
    # As root: the environment's venv is locked, and root writes it in place (no copy of it in this layer).
    image = build_env_image(
        client, base_source,
        EnvSpec(base_image=env.tag, python=env.python, root_setup=[WIPE_REPO], setup=plan.instance_setup,
                setup_as_root=True, labels={LAYER_LABEL: "swebench-instance", REPO_LABEL: instance.repo,
                                            "patchswarm.instance": instance.instance_id}),
        run_id=run_id, log_dir=log_dir, cache_dir=cache_dir,
    )
    return InstanceImage(
        tag=image.tag, kind="local", user=SANDBOX_USER, workdir=REPO_DIR, python_wanted=plan.python,
        python_used=env.python, nearest=_minor(env.python) != _minor(plan.python), env_tag=env.tag,
        built=env.built or image.built, build_log=image.build_log, env_build_log=env.build_log,
        system_build_s=system_layer.build_s, env_build_s=env.build_s, instance_build_s=image.build_s,
        grade_user="0",
    )


def official_image(client: docker.DockerClient, instance: SweInstance | SweTask) -> InstanceImage | None:
    """The row's official instance image when present locally or pullable, else None (fails fast offline)."""
    if not instance.image:
        return None
    try:
        tag = use_existing_image(client, instance.image)
    except ImageError:
        return None
    return InstanceImage(tag=tag, kind="official", user="root", workdir=OFFICIAL_WORKDIR)


def resolve_instance_image(
    client: docker.DockerClient, instance: SweInstance | SweTask, spec_table: SpecTable,
    repo_url_template: str = DEFAULT_REPO_URL, *, prefer_official: bool = True, **build_options,
) -> InstanceImage:
    """The official image if available, else a locally built one."""
    if prefer_official:
        found = official_image(client, instance)
        if found is not None:
            return found
    return build_instance_image(client, instance, spec_table, repo_url_template, **build_options)
