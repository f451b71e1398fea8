"""Configuration: pydantic models, named presets, a YAML file and `key=value` overrides.

Resolution order: preset → YAML file → command-line overrides (dotted keys). Unknown keys fail with
the closest valid key named.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.context.build import ContextConfig
from agent.model import ModelSettings, RoleModels
from agent.trajectory import TrajectoryConfig
from patchswarm.adaptive import AdaptiveConfig
from patchswarm.models import CHEAP_MODEL, DEFAULT_ROLES, ROLES, STRONG_MODEL, model_overrides  # noqa: F401 (re-exported)
from sandbox.manager import Limits
from selection import SelectionConfig


class ConfigError(ValueError):
    """A configuration problem, said in one line."""


class BudgetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_cost_usd: float | None = Field(None, description="Stop starting model calls once the whole run has spent this (USD).")
    max_cost_per_instance_usd: float | None = Field(None, description="Per-instance spending limit (USD).")
    max_cost_per_trajectory_usd: float | None = Field(None, description="Per-trajectory spending limit (USD).")


class PipelineTrajectoryConfig(TrajectoryConfig):
    """The trajectories' settings plus how many to run: a fixed number, or adaptively."""

    adaptive: AdaptiveConfig = Field(default_factory=AdaptiveConfig, description="Sequential sampling: trajectories until the evidence is decisive (num_tests/num_edits are ignored when enabled).")


class SandboxConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pool_size: int = Field(4, ge=1, description="Warm sandboxes per instance (bounds concurrent executions).")
    limits: Limits = Field(default_factory=Limits, description="CPU, memory and process limits of each sandbox.")


class PatchswarmConfig(BaseModel):
    """Everything a run needs to know. `patchswarm config show` prints it resolved."""

    model_config = ConfigDict(extra="forbid")
    models: ModelSettings = Field(
        default_factory=lambda: ModelSettings(roles=RoleModels(**DEFAULT_ROLES)),
        description="litellm model names per role, concurrency, retries, prices.")
    context: ContextConfig = Field(default_factory=ContextConfig, description="Context stage (file choice under a token budget).")
    trajectories: PipelineTrajectoryConfig = Field(default_factory=PipelineTrajectoryConfig, description="Testing and editing state machines.")
    selection: SelectionConfig = Field(default_factory=SelectionConfig, description="Test matrix, voting and selector.")
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig, description="Sandbox pool and limits.")
    budget: BudgetConfig = Field(default_factory=BudgetConfig, description="Spending limits that hold across workers.")
    workers: int = Field(1, ge=1, description="Instances solved concurrently in a batch.")

    def result_hash(self) -> str:
        """Hash of the settings that change results (not workers, budgets or pool sizes): keys resumable work."""
        relevant = self.model_dump(mode="json", include={"models", "context", "trajectories", "selection"})
        for volatile in ("max_concurrency", "max_retries", "retry_base_delay_s", "retry_max_delay_s",
                         "request_timeout_s", "warm_prefix_cache"):
            relevant["models"].pop(volatile, None)
        relevant["selection"].pop("cache_dir", None)
        if not self.trajectories.adaptive.enabled:  # off: the keys of fixed-N runs stay what they were
            relevant["trajectories"].pop("adaptive", None)
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


PRESETS: dict[str, dict[str, Any]] = {
    # Cheap: a few samples and attempts.
    "default": {
        "trajectories": {"num_tests": 2, "num_edits": 2, "max_attempts_testing": 3, "max_attempts_editing": 4},
        "context": {"token_budget": 32_000},
    },
    # The CodeMonkeys paper's settings: 10 tests, 10 edits, 8 attempts each, top-3 selector, 128k context.
    "codemonkeys": {
        "trajectories": {"num_tests": 10, "num_edits": 10, "max_attempts_testing": 8, "max_attempts_editing": 8},
        "selection": {"top_k": 3, "selector_enabled": True},
        "context": {"token_budget": 128_000},
    },
}


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _all_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        keys.append(dotted)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.extend(_all_keys(annotation, dotted + "."))
    return keys


def _check_known(data: dict[str, Any], model: type[BaseModel], prefix: str = "") -> None:
    """Unknown keys fail here, before any bad value elsewhere. (Every section's model also forbids extras,
    for configs built without this loader.)"""
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        field = model.model_fields.get(key)
        if field is None:
            raise ConfigError(f"unknown config key {dotted!r}{_closest(dotted)}")
        annotation = field.annotation
        if isinstance(value, dict) and isinstance(annotation, type) and issubclass(annotation, BaseModel):
            _check_known(value, annotation, dotted + ".")


def _closest(key: str) -> str:
    matches = difflib.get_close_matches(key, _all_keys(PatchswarmConfig), n=1, cutoff=0.5)
    return f"; did you mean {matches[0]!r}?" if matches else ""


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value (e.g. trajectories.num_edits=4)")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else ""


def load_config(preset: str = "default", path: Path | None = None, overrides: list[str] | None = None) -> PatchswarmConfig:
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    data = _deep_merge({"models": {"roles": dict(DEFAULT_ROLES)}}, PRESETS[preset])
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping")
        data = _deep_merge(data, loaded)
    for text in overrides or []:
        keys, value = parse_override(text)
        nested: dict[str, Any] = value
        for key in reversed(keys):
            nested = {key: nested}
        data = _deep_merge(data, nested)
    _check_known(data, PatchswarmConfig)
    try:
        return PatchswarmConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            raise ConfigError(f"unknown config key {key!r}{_closest(key)}") from None
        raise ConfigError(f"config key {key!r}: {first['msg']}") from None


def describe(config: PatchswarmConfig) -> str:
    """The resolved config as YAML with each field's description as a comment."""
    lines: list[str] = []

    def walk(model: BaseModel, indent: int) -> None:
        plain = model.model_dump(mode="json")  # nested models inside dicts (price_overrides) as plain data
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            pad = "  " * indent
            if field.description:
                lines.append(f"{pad}# {field.description}")
            if isinstance(value, BaseModel):
                lines.append(f"{pad}{name}:")
                walk(value, indent + 1)
            else:
                # Block style: `name: value`, not `{name: value}`.
                dumped = yaml.safe_dump({name: plain[name]}, default_flow_style=False, sort_keys=False).rstrip()
                lines.extend(pad + line for line in dumped.splitlines())

    walk(config, 0)
    return "\n".join(lines)
