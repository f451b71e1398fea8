"""The default models (named here only) and `-m MODEL`; imports nothing heavy (the CLI's start-up needs them)."""

from __future__ import annotations

# The one place the default models are named (README, presets and examples/github-workflow.yml follow it;
# a test keeps them in step). Both are current and priced in litellm's own map, so budgets count from the
# first call: a strong model writes tests, edits and selects; a cheap one judges file relevance (many calls).
STRONG_MODEL = "anthropic/claude-sonnet-5-5"
CHEAP_MODEL = "anthropic/claude-haiku-5-5"
# Defaults of the required `models.roles`; also the base that files and overrides merge into, so that
# `--set models.roles.primary=...` alone keeps the other two roles.
DEFAULT_ROLES = {"relevance": CHEAP_MODEL, "primary": STRONG_MODEL, "selector": STRONG_MODEL}
ROLES = tuple(DEFAULT_ROLES)


def model_overrides(model: str | None) -> list[str]:
    """`-m MODEL`: the same model for every role, as overrides that per-role `--set`s given later win over."""
    return [] if not model else [f"models.roles.{role}={model}" for role in ROLES]
