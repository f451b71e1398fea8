"""What a `ModelClient` is configured with: the model of each role, temperatures, retries, prices.

Split out of `agent.model` so configuration code can read the settings without the client.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.call_records import Usage

Role = Literal["relevance", "primary", "selector"]


class PriceOverride(BaseModel):
    """USD per million tokens; wins over litellm's price map for that model."""

    model_config = ConfigDict(extra="forbid")

    input_per_mtok: float = Field(ge=0, description="USD per million uncached prompt tokens.")
    output_per_mtok: float = Field(ge=0, description="USD per million completion tokens.")
    cache_read_per_mtok: float | None = Field(
        None, ge=0, description="USD per million cache-read prompt tokens; defaults to the input price."
    )
    cache_write_per_mtok: float | None = Field(
        None, ge=0, description="USD per million cache-write prompt tokens; defaults to the input price."
    )

    def cost_usd(self, usage: Usage) -> float:
        read_price = self.input_per_mtok if self.cache_read_per_mtok is None else self.cache_read_per_mtok
        write_price = self.input_per_mtok if self.cache_write_per_mtok is None else self.cache_write_per_mtok
        uncached = max(0, usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens)
        return (
            uncached * self.input_per_mtok
            + usage.cache_read_tokens * read_price
            + usage.cache_write_tokens * write_price
            + usage.output_tokens * self.output_per_mtok
        ) / 1_000_000


class RoleModels(BaseModel):
    model_config = ConfigDict(extra="forbid")

    relevance: str = Field(
        description="litellm model that judges which files are relevant (many cheap calls)."
    )
    primary: str = Field(description="litellm model that writes tests and edits (the trajectories).")
    selector: str = Field(description="litellm model that picks among candidate patches.")


class RoleTemperatures(BaseModel):
    model_config = ConfigDict(extra="forbid")

    relevance: float = Field(0.0, ge=0, description="Sampling temperature for relevance calls.")
    primary: float = Field(
        0.8,
        ge=0,
        description="Sampling temperature for trajectories; above 0 so parallel trajectories differ.",
    )
    selector: float = Field(0.0, ge=0, description="Sampling temperature for the selector.")


class ModelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a typo in the config must not pass silently

    roles: RoleModels = Field(description="Which model serves each role.")
    temperatures: RoleTemperatures = Field(
        default_factory=RoleTemperatures, description="Default sampling temperature per role."
    )
    max_concurrency: int = Field(
        8, ge=1, description="Requests in flight at once per client (per event loop)."
    )
    max_retries: int = Field(
        4,
        ge=0,
        description="Retries after the first attempt on rate limits, 5xx, timeouts, connection errors.",
    )
    retry_base_delay_s: float = Field(1.0, ge=0, description="First backoff ceiling; doubles every retry.")
    retry_max_delay_s: float = Field(
        30.0, ge=0, description="Largest backoff ceiling (Retry-After may exceed it)."
    )
    request_timeout_s: float = Field(600.0, gt=0, description="Timeout of one request, in seconds.")
    price_overrides: dict[str, PriceOverride] = Field(
        default_factory=dict,
        description="Prices by model name; win over litellm's map. Needed for models litellm cannot price, "
        "and for scripted/<name> models whose calls should count against budgets.",
    )
    drop_unsupported_params: bool = Field(
        True,
        description="Let litellm leave out request parameters a model does not take instead of failing every "
        "call (current Claude models accept no temperature but 1, so the temperatures above are not sent to them).",
    )
    prompt_caching: bool = Field(
        True, description="Mark the shared prompt prefix for provider prompt caching where supported."
    )
    warm_prefix_cache: Literal["auto", "always", "never"] = Field(
        "auto",
        description="Make one call alone before fanning out a phase's trajectories, so the others read the "
        "provider's prompt cache. auto: only for models with a provider cache (costs one model latency).",
    )

    def model_for(self, role: Role) -> str:
        return getattr(self.roles, role)

    def temperature_for(self, role: Role) -> float:
        return getattr(self.temperatures, role)
