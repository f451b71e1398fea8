"""What one `github resolve` run is asked to do, and the repository's own `.patchswarm.yml`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from patchswarm.tasks import Task

DEFAULT_ASSOCIATIONS = ("OWNER", "MEMBER", "COLLABORATOR")
LEVELS = ("none", "low", "medium", "high")  # the selection's confidence levels, weakest first


def check_min_confidence(value: str) -> str:
    """`--min-confidence`: a level (low, medium, high) or a probability in [0, 1]."""
    value = str(value).strip().lower()
    if value in LEVELS[1:]:
        return value
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number <= 1:
        raise ValueError(f"--min-confidence {value!r}: give low, medium, high or a number between 0 and 1")
    return value
REPO_SETTINGS_FILE = ".patchswarm.yml"


class RunOptions(BaseModel):
    """What every `patchswarm github` command that solves takes: the repository, how to solve in it, the API,
    and what a patch needs for a PR (CLI values win over `.patchswarm.yml`)."""

    repo: str = Field(description="OWNER/NAME of the repository.")
    setup: list[str] | None = Field(None, description="Environment setup commands; None = from .patchswarm.yml.")
    test_cmd: str | None = None
    preset: str | None = Field(None, description="Config preset; None = .patchswarm.yml's, else 'default'.")
    config_file: Path | None = None
    overrides: list[str] = Field(default_factory=list, description="key=value config overrides.")
    max_cost: float | None = None
    run_dir: Path | None = None
    token_env: str = "GITHUB_TOKEN"
    api_url: str = "https://api.github.com"
    min_votes: int = Field(1, ge=0, description="Votes the chosen patch needs for a PR (when no confidence is given).")
    min_confidence: str = Field("high", description="Selection confidence a PR needs, when reported: a level or 0..1.")
    report_url: str | None = Field(None, description="Where readers find the HTML report (e.g. the workflow run).")
    live: bool | None = Field(None, description="Live progress display; None = only on a TTY.")
    throttle: bool = Field(True, description="PyGithub's pauses between requests (off for the test stand-in).")

    @field_validator("repo")
    @classmethod
    def _owner_name(cls, value: str) -> str:
        owner, sep, name = value.partition("/")
        if not sep or not owner or not name or "/" in name:
            raise ValueError(f"--repo must look like OWNER/NAME, got {value!r}")
        return value

    _confidence = field_validator("min_confidence", mode="before")(classmethod(lambda cls, v: check_min_confidence(v)))

    @property
    def owner(self) -> str:
        return self.repo.split("/")[0]

    @property
    def name(self) -> str:
        return self.repo.split("/")[1]


class ResolveOptions(RunOptions):
    """Command-line options of `patchswarm github resolve`."""

    issue: int = Field(gt=0, description="Issue number.")
    ref: str | None = Field(None, description="Branch, tag or commit to solve at (default: the default branch).")
    actor: str | None = Field(None, description="Who triggered the run (default: the issue author).")
    allowed_associations: list[str] = Field(default_factory=lambda: list(DEFAULT_ASSOCIATIONS))
    fork_owner: str | None = None
    include_test: bool = False
    remove_label: str | None = Field(None, description="Label taken off the issue when the run ends.")

    @field_validator("allowed_associations")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [v.strip().upper() for v in value if v.strip()]

    @property
    def branch(self) -> str:
        return f"patchswarm/issue-{self.issue}"

    def default_run_dir(self) -> Path:
        return self.run_dir or Path("runs") / "github" / f"{self.owner}__{self.name}" / f"issue-{self.issue}"


class RepoSettings(BaseModel):
    """`.patchswarm.yml` at the root of the solved commit (command-line values win over it)."""

    model_config = ConfigDict(extra="forbid")
    setup: list[str] = Field(default_factory=list)
    test_cmd: str | None = None
    preset: str | None = None
    model: str | None = Field(None, description="litellm model for every role (relevance, primary, selector).")
    max_cost: float | None = Field(None, gt=0, description="USD limit of one run (a batch: of the whole batch).")
    max_cost_per_instance: float | None = Field(None, gt=0, description="USD limit per issue.")
    label: str | None = Field(None, description="The label that selects issues (`github batch` without --label).")
    overrides: list[str] = Field(default_factory=list, description="key=value strings or a nested mapping.")

    def config_overrides(self) -> list[str]:
        """The settings as config overrides, in the order they apply (the explicit overrides last)."""
        extra = [f"models.roles.{role}={self.model}" for role in ("relevance", "primary", "selector")] \
            if self.model else []
        if self.max_cost is not None:
            extra.append(f"budget.max_cost_usd={self.max_cost}")
        if self.max_cost_per_instance is not None:
            extra.append(f"budget.max_cost_per_instance_usd={self.max_cost_per_instance}")
        return [*extra, *self.overrides]

    @field_validator("setup", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if value is None:
            return []
        return [value] if isinstance(value, str) else value

    @field_validator("overrides", mode="before")
    @classmethod
    def _flatten(cls, value: Any) -> Any:
        # A mapping reads better in YAML; the config loader wants dotted key=value strings.
        if value is None:
            return []
        if isinstance(value, dict):
            return [f"{key}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
                    for key, v in _dotted(value)]
        return value


def _dotted(mapping: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            items.extend(_dotted(value, f"{prefix}{key}."))
        else:
            items.append((f"{prefix}{key}", value))
    return items


class SettingsError(ValueError):
    """The repository's `.patchswarm.yml` is unreadable; the message says why in one line."""


def load_repo_settings(checkout: Path) -> RepoSettings:
    path = Path(checkout) / REPO_SETTINGS_FILE
    if not path.is_file():
        return RepoSettings()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"{REPO_SETTINGS_FILE} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{REPO_SETTINGS_FILE} must hold a mapping")
    try:
        return RepoSettings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SettingsError(f"{REPO_SETTINGS_FILE}: {where}: {first['msg']}") from None


def issue_task(repo_name: str, number: int, text: str, clone: Path, commit: str, setup: list[str],
               test_cmd: str | None, kind: str = "issue") -> Task:
    """One issue (or, `kind` "pr", one follow-up on a PR) as a pipeline task. A new comment or commit is a
    new question (a new id); the same ones resume the earlier run."""
    digest = hashlib.sha256(json.dumps([commit, text, setup, test_cmd]).encode()).hexdigest()[:8]
    return Task(instance_id=f"{repo_name}-{kind}-{number}-{digest}", repo=str(Path(clone).resolve()),
                commit=commit, issue=text, setup=setup, test_cmd=test_cmd)
