"""Before any paid work: does a model name resolve to a provider litellm knows, is its key set, does it answer.

Each check returns what is wrong as a short clause (the caller names the model and the fix), or None.
"""

from __future__ import annotations

import time

from agent import llm
from agent.prompt_caching import SCRIPTED_PREFIX


def provider_of(model: str) -> str | None:
    """The litellm provider `model` routes to, or None when litellm cannot route it."""
    if model.startswith(SCRIPTED_PREFIX):
        return SCRIPTED_PREFIX.rstrip("/")
    return llm.provider_of(model)


def model_problem(model: str) -> str | None:
    """Why `model` cannot be called at all (unknown provider, missing key), else None. No network."""
    if model.startswith(SCRIPTED_PREFIX):
        return None
    if not model.strip():
        return "is empty"
    if provider_of(model) is None:
        return "does not name a provider litellm knows (write PROVIDER/MODEL, e.g. anthropic/claude-sonnet-5-5)"
    missing = llm.missing_keys(model)  # None: an odd provider litellm cannot check; the call itself will say
    return f"needs {', '.join(missing)} in the environment" if missing else None


def is_priced(model: str) -> bool:
    """Whether litellm's price map knows `model` (else its calls count as unknown cost)."""
    if model.startswith(SCRIPTED_PREFIX):
        return False
    info = llm.model_info(model)
    return bool(info.get("input_cost_per_token") or info.get("output_cost_per_token"))


def fixes_sampling(model: str) -> bool:
    """Whether the model accepts no sampling temperature but its own (litellm's `supports_sampling_params`)."""
    if model.startswith(SCRIPTED_PREFIX):
        return False
    # Read from the map itself: get_model_info leaves this flag out.
    return llm.map_entry(model).get("supports_sampling_params") is False


def _reason(exc: BaseException) -> str:
    """A provider error as one short line: its kind, then the first line of litellm's message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text.removeprefix("litellm.").split(" - ", 1)[-1] if " - " in text else text.removeprefix("litellm.")
    return f"{type(exc).__name__}: {text[:200]}"


def ping(model: str, *, timeout_s: float = 30.0, providers: llm.Providers | None = None) -> tuple[str | None, float]:
    """A one-token call: (what went wrong or None, seconds it took). Costs a few input tokens.

    `providers`: the ones injected for model prefixes (the scripted model), as `ModelClient` takes them."""
    problem = model_problem(model)
    if problem is not None:
        return problem, 0.0
    started = time.monotonic()
    try:
        provider = llm.provider_for(model, providers or {}) or llm.LITELLM
        provider.completion(model=model, messages=[{"role": "user", "content": "Reply with the word OK."}],
                            max_tokens=1, timeout=timeout_s, num_retries=0, drop_params=True)
    except Exception as exc:  # every provider failure is reported, none raised
        return f"did not answer a one-token call ({_reason(exc)})", time.monotonic() - started
    return None, time.monotonic() - started
