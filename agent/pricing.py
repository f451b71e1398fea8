"""What a call may cost at most, before it is sent: what budget reservations hold (agent.budget).

Worst case = every prompt token at the dearest input price (cache writes included) plus `max_tokens`
output tokens (else the model's largest output) at the output price. Prompt tokens are estimated from
characters (one token per 3 characters errs high for English and code with BPE tokenizers), which
costs nothing next to running a tokenizer on every 100k-token prompt.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Protocol

from agent import llm
from agent.prompt_caching import SCRIPTED_PREFIX

CHARS_PER_TOKEN = 3
# Output tokens assumed when neither the request nor litellm's map gives a limit.
DEFAULT_MAX_OUTPUT_TOKENS = 8192


class Price(Protocol):
    input_per_mtok: float
    output_per_mtok: float
    cache_write_per_mtok: float | None


def _map_info(model: str) -> dict[str, Any]:
    if model.startswith(SCRIPTED_PREFIX):
        return {}  # litellm cannot know it (and asking prints a banner)
    return llm.model_info(model)


def per_token_prices(model: str, overrides: Mapping[str, Price]) -> tuple[float, float] | None:
    """(dearest input, output) USD per token, or None when nothing prices the model."""
    override = overrides.get(model)
    if override is not None:
        dearest = max(override.input_per_mtok, override.cache_write_per_mtok or 0.0)
        return dearest / 1e6, override.output_per_mtok / 1e6
    info = _map_info(model)
    inp, out = info.get("input_cost_per_token"), info.get("output_cost_per_token")
    if not inp and not out:
        return None
    return max(inp or 0.0, info.get("cache_creation_input_token_cost") or 0.0), out or 0.0


def max_output_tokens(model: str) -> int:
    info = _map_info(model)
    return int(info.get("max_output_tokens") or info.get("max_tokens") or DEFAULT_MAX_OUTPUT_TOKENS)


def estimated_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    text = json.dumps(messages, ensure_ascii=False)
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def worst_case_usd(model: str, messages: list[dict[str, Any]], max_tokens: int | None,
                   overrides: Mapping[str, Price]) -> float | None:
    """The most one attempt of this call can cost; None when the model has no known price."""
    prices = per_token_prices(model, overrides)
    if prices is None:
        return None
    output = max_tokens if max_tokens is not None else max_output_tokens(model)
    return estimated_prompt_tokens(messages) * prices[0] + output * prices[1]


def unpriced(models: list[str], overrides: Mapping[str, Price]) -> list[str]:
    """The models among `models` whose calls no price covers (a budget could not count them)."""
    return [m for m in dict.fromkeys(models) if per_token_prices(m, overrides) is None]


def price_fix(model: str) -> str:
    return (f"--set \"models.price_overrides={{'{model}': {{input_per_mtok: 3.0, output_per_mtok: 15.0}}}}\" "
            "(USD per million tokens)")
