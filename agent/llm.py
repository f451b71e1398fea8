"""The one litellm boundary: the only module of ours that imports litellm (scripts/check_layers.py checks it).

Everything else reaches litellm through these few names, so its import-time switch is set once, here,
before the import (no network fetch of the price map, no banners on stdout), and the CLI's `--help`,
which imports nothing of agent/, never pays for loading it.

`ChatProvider` is what `ModelClient` sends a request to: litellm for real models, or a provider the
caller injects for a model prefix (the scripted model, `agent.scripted`). An injected provider answers
with litellm's response type and raises litellm's exceptions, so the client's retry and accounting path
treats it exactly as a real provider.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Protocol

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch of the price map

import litellm  # noqa: E402
from litellm.types.utils import Choices, Message, ModelResponse  # noqa: E402
from litellm.types.utils import Usage as ProviderUsage  # noqa: E402

litellm.suppress_debug_info = True  # its "Provider List" / "Give Feedback" banners would go to stdout

# The provider errors callers tell apart (retryable or not, what to tell the user).
APIConnectionError = litellm.APIConnectionError
AuthenticationError = litellm.AuthenticationError
BadRequestError = litellm.BadRequestError
ContextWindowExceededError = litellm.ContextWindowExceededError
InternalServerError = litellm.InternalServerError
NotFoundError = litellm.NotFoundError
RateLimitError = litellm.RateLimitError
ServiceUnavailableError = litellm.ServiceUnavailableError
Timeout = litellm.Timeout

__all__ = [
    "APIConnectionError", "AuthenticationError", "BadRequestError", "ChatProvider", "ContextWindowExceededError",
    "InternalServerError", "LITELLM", "ModelResponse", "NotFoundError", "Providers", "RateLimitError",
    "ServiceUnavailableError", "Timeout", "completion_cost", "count_tokens", "map_entry", "missing_keys",
    "model_info", "provider_for", "provider_of", "reply", "supports_prompt_caching",
]


class ChatProvider(Protocol):
    """Answers chat requests in litellm's shape (`model`, `messages`, sampling and timeout keywords)."""

    async def acompletion(self, *, model: str, messages: list[dict[str, Any]], **params: Any) -> Any: ...

    def completion(self, *, model: str, messages: list[dict[str, Any]], **params: Any) -> Any: ...


class _LiteLLM:
    """Every provider litellm knows, over HTTP."""

    async def acompletion(self, *, model: str, messages: list[dict[str, Any]], **params: Any) -> Any:
        return await litellm.acompletion(model=model, messages=messages, **params)

    def completion(self, *, model: str, messages: list[dict[str, Any]], **params: Any) -> Any:
        return litellm.completion(model=model, messages=messages, **params)


LITELLM: ChatProvider = _LiteLLM()  # stateless: one instance serves every client
# Providers injected by the caller, by model prefix ("scripted" serves "scripted/<name>").
Providers = Mapping[str, ChatProvider]


def reply(model: str, text: str, prompt_tokens: int, completion_tokens: int) -> ModelResponse:
    """A response as a provider sends it (for injected providers)."""
    return ModelResponse(
        model=model,
        choices=[Choices(index=0, finish_reason="stop", message=Message(role="assistant", content=text))],
        usage=ProviderUsage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                            total_tokens=prompt_tokens + completion_tokens),
    )


def completion_cost(response: Any) -> float | None:
    """litellm's price of a response; None when it cannot say."""
    try:
        cost = litellm.completion_cost(completion_response=response)
    except Exception:
        return None
    return None if cost is None else float(cost)


def missing_keys(model: str) -> list[str] | None:
    """Environment variables litellm needs for `model` that are unset; None when it cannot check."""
    try:
        return list(litellm.validate_environment(model).get("missing_keys") or [])
    except Exception:  # unknown provider: let the call itself report it
        return None


def provider_of(model: str) -> str | None:
    """The litellm provider `model` routes to, or None when litellm cannot route it."""
    try:
        return litellm.get_llm_provider(model)[1]
    except Exception:  # litellm raises BadRequestError for a name it cannot route
        return None


def model_info(model: str) -> dict[str, Any]:
    """litellm's map entry for `model` as `get_model_info` gives it; {} when unknown."""
    try:
        return dict(litellm.get_model_info(model))
    except Exception:
        return {}


def map_entry(model: str) -> dict[str, Any]:
    """The raw price-map entry (it holds flags `get_model_info` leaves out); {} when unknown."""
    return dict(litellm.model_cost.get(model) or litellm.model_cost.get(model.split("/", 1)[-1]) or {})


def supports_prompt_caching(model: str) -> bool:
    try:
        return bool(litellm.utils.supports_prompt_caching(model))
    except Exception:  # unknown model: litellm raises rather than answering False
        return False


def count_tokens(model: str, text: str) -> int:
    """litellm's token count of `text` for `model` (raises when it cannot count)."""
    return int(litellm.token_counter(model=model, text=text))


def provider_for(model: str, providers: Providers) -> ChatProvider | None:
    """The injected provider serving `model`'s prefix, else None (litellm serves it)."""
    prefix, sep, _ = model.partition("/")
    return providers.get(prefix) if sep else None
