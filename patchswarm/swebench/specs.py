"""The SWE-bench install table: per repository and version, the Python, packages, install and test commands.

`data/specs.json` holds facts, not code. swebench 5.x no longer ships them, so they were dumped once from
swebench==4.1.0 (installed with --no-deps in a scratch venv; a throwaway script loaded
`harness/constants/python.py` by file path and wrote MAP_REPO_VERSION_TO_SPECS_PY, MAP_REPO_TO_REQS_PATHS,
MAP_REPO_TO_ENV_YML_PATHS, MAP_REPO_TO_INSTALL_PY, the parser name of MAP_REPO_TO_PARSER_PY per repository,
REPLACE_REQ_PACKAGES and the apt packages of the Python base Dockerfile as JSON). Users can pass their
own table in the same format; it is laid over the packaged one repository by repository.

Requirement files and environment.yml are read from the repository itself at the instance's
environment_setup_commit with `git show` (never downloaded from a raw-file host).
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import subprocess
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from types import MappingProxyType

import yaml
from pydantic import BaseModel, ConfigDict, Field

# Conda packages with no pip equivalent (compilers, BLAS builds, C libraries, conda-forge-only packages such
# as xarray's cdms2): skipped when installing with pip.
CONDA_ONLY = frozenset({
    "mkl", "mkl-service", "blas", "openblas", "libblas", "compilers", "gcc_linux-64", "gxx_linux-64",
    "make", "cmake", "pkg-config", "c-compiler", "cxx-compiler", "libgcc", "nomkl", "pip", "python",
    "hdf5", "cdms2",
})
# Same package, other name on PyPI ("iris" on PyPI is an unrelated project).
CONDA_TO_PIP = MappingProxyType({"matplotlib-base": "matplotlib", "pytables": "tables", "pytorch": "torch",
                                 "iris": "scitools-iris", "dask-core": "dask"})
EXCLUDED_REQUIREMENT_PREFIXES = ("-e .", "#", ".[test")
DEFAULT_REPO_URL = "https://github.com/{owner}/{name}.git"


class SpecError(ValueError):
    """A repository or version the table does not know, or requirement files that are not there."""


class VersionSpec(BaseModel):
    """How one version of a repository is installed and tested (the official harness's `specs`)."""

    model_config = ConfigDict(extra="allow")

    python: str
    packages: str = Field("", description="Conda-style package list, or 'requirements.txt' / 'environment.yml'.")
    pip_packages: list[str] = Field(default_factory=list)
    pre_install: list[str] = Field(default_factory=list)
    install: str | None = None
    test_cmd: str | None = None
    eval_commands: list[str] = Field(default_factory=list)
    no_use_env: bool = False
    execute_test_as_nonroot: bool = False


class RepoSpec(BaseModel):
    model_config = ConfigDict(extra="allow")

    log_parser: str | None = None
    requirements_paths: list[str] = Field(default_factory=list)
    environment_yml_paths: list[str] = Field(default_factory=list)
    install_repo: str | None = None
    versions: dict[str, VersionSpec] = Field(default_factory=dict)


class SpecTable(BaseModel):
    source: str = ""
    system_packages: list[str] = Field(default_factory=list, description="apt packages of the official base image.")
    replace_requirements: list[tuple[str, str | None]] = Field(default_factory=list)
    repos: dict[str, RepoSpec] = Field(default_factory=dict)

    def repo(self, repo: str) -> RepoSpec:
        try:
            return self.repos[repo]
        except KeyError:
            raise SpecError(f"no install spec for repository {repo}: pass a spec table that has it") from None

    def spec(self, repo: str, version: str) -> VersionSpec:
        versions = self.repo(repo).versions
        try:
            return versions[str(version)]
        except KeyError:
            known = ", ".join(sorted(versions)) or "none"
            raise SpecError(f"no install spec for {repo} version {version} (known: {known})") from None

    def merged(self, other: SpecTable) -> SpecTable:
        """This table with `other`'s repositories (and any top-level field it sets) laid over it."""
        update = {name: getattr(other, name) for name in other.model_fields_set if name != "repos"}
        return self.model_copy(update={**update, "repos": {**self.repos, **other.repos}})


def load_spec_table(path: str | Path | None = None, *, include_default: bool = True) -> SpecTable:
    """The packaged table, with the user's table at `path` (same JSON format) laid over it."""
    packaged = resources.files("patchswarm.swebench").joinpath("data/specs.json").read_text()
    table = SpecTable.model_validate_json(packaged) if include_default or path is None else SpecTable()
    if path is not None:
        try:
            user = SpecTable.model_validate(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise SpecError(f"cannot read spec table {path}: {str(exc).splitlines()[0]}") from None
        table = table.merged(user)
    return table


# -- files read from the repository at a commit ------------------------------------------------------


def git_show(git_dir: Path, commit: str, path: str) -> str | None:
    """A file's text at `commit`, or None when it is not there."""
    done = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=git_dir, capture_output=True, timeout=120)
    return done.stdout.decode("utf-8", errors="replace") if done.returncode == 0 else None


def _first_file(git_dir: Path, commit: str, paths: list[str], what: str) -> tuple[str, str]:
    for path in paths:
        text = git_show(git_dir, commit, path)
        if text is not None:
            return path, text
    raise SpecError(f"no {what} at {', '.join(paths) or '(no paths listed)'} in the repository at {commit[:12]}")


def _replace_packages(text: str, replace: list[tuple[str, str | None]]) -> str:
    # Packages yanked from PyPI since the benchmark was made (the harness's own replacements).
    for old, new in replace:
        pattern = rf"^{re.escape(old)}([<>=!~]=?.*|$)\n?" if new is None else rf"^{re.escape(old)}([<>=!~]=?.*|$)"
        text = re.sub(pattern, new or "", text, flags=re.MULTILINE)
    return text


def read_requirements(git_dir: Path, commit: str, paths: list[str],
                      replace: Sequence[tuple[str, str | None]] = ()) -> str:
    """The first requirements file found at `commit`, with `-r` includes inlined and local installs dropped."""
    path, text = _first_file(git_dir, commit, paths, "requirements file")

    def keep(line: str) -> bool:
        return not line.strip().startswith(EXCLUDED_REQUIREMENT_PREFIXES)

    included, own = [], []
    for line in text.split("\n"):
        if line.strip().startswith("-r"):
            name = posixpath.normpath(posixpath.join(posixpath.dirname(path), line.strip()[2:].strip()))
            extra = git_show(git_dir, commit, name)
            included += [x for x in (extra or "").split("\n") if keep(x)]
        elif keep(line):
            own.append(line)
    return _replace_packages("\n".join([*included, "\n".join(own)]), list(replace))


def conda_to_pip(specs: list[str]) -> list[str]:
    """Conda package specs as pip requirements (best effort): `x=1.2` → `x==1.2`, conda-only packages dropped."""
    out = []
    for spec in specs:
        spec = spec.strip().strip("'\"")
        match = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", spec)
        if not match:
            continue
        name, rest = match.group(1), match.group(2).strip()
        if name.lower() in CONDA_ONLY:
            continue
        name = CONDA_TO_PIP.get(name.lower(), name)
        if rest.startswith("=") and not rest.startswith("=="):
            rest = "==" + rest[1:].split("=")[0]  # conda's `=ver=build`
        out.append(name + rest)
    return out


def environment_yml_requirements(text: str, replace: Sequence[tuple[str, str | None]] = ()) -> list[str]:
    """Requirements of a conda environment.yml for pip: conda dependencies converted, the pip section as is."""
    data = yaml.safe_load(text) or {}
    conda, pip = [], []
    for dep in data.get("dependencies") or []:
        if isinstance(dep, dict):
            pip += [str(x) for x in dep.get("pip") or []]
        else:
            conda.append(str(dep))
    pip_text = _replace_packages("\n".join(pip), list(replace))
    return conda_to_pip(conda) + [line for line in pip_text.split("\n") if line.strip()]


def read_environment_yml(git_dir: Path, commit: str, paths: list[str],
                         replace: Sequence[tuple[str, str | None]] = ()) -> list[str]:
    """The first environment.yml found at `commit`, as pip requirements."""
    _, text = _first_file(git_dir, commit, paths, "environment.yml")
    return environment_yml_requirements(text, replace)


def conda_packages(packages: str) -> list[str]:
    """The spec's conda package string (shell-quoted words) as pip requirements."""
    if packages in ("", "requirements.txt", "environment.yml"):
        return []
    return conda_to_pip(shlex.split(packages))
