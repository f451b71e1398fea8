"""Provider prompt caching: mark the shared prefix, and warm the cache before fanning out.

Parallel trajectories of one instance share a long prefix (system prompt, issue, code context).
Marking it lets Anthropic-style providers bill repeats at the cache-read price; running one
trajectory's first call alone first makes the cache exist before the others read it.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from agent import llm

SCRIPTED_PREFIX = "scripted/"
EPHEMERAL = {"type": "ephemeral"}

T = TypeVar("T")


def supports_prompt_caching(model: str) -> bool:
    """Whether litellm says `model` accepts cache_control marks.

    Scripted models count as supporting it so offline runs send the same message shapes as
    real caching models.
    """
    if model.startswith(SCRIPTED_PREFIX):
        return True
    return llm.supports_prompt_caching(model)


def mark_cache_prefix(messages: list[dict[str, Any]], upto_index: int, model: str) -> list[dict[str, Any]]:
    """Return a copy of `messages` whose message at `upto_index` ends the cached prefix.

    Adds `cache_control: {"type": "ephemeral"}` to that message's last content part (string
    content becomes a one-element list of text parts). Messages are returned unchanged (as a
    shallow copy) when the model does not support prompt caching or the content is empty.
    """
    marked = list(messages)
    if not supports_prompt_caching(model):
        return marked
    index = upto_index if upto_index >= 0 else len(messages) + upto_index
    if not 0 <= index < len(messages):
        raise IndexError(f"upto_index {upto_index} outside {len(messages)} messages")
    message = copy.deepcopy(messages[index])
    content = message.get("content")
    if isinstance(content, str):
        if not content:
            return marked  # providers reject cache marks on empty text
        message["content"] = [{"type": "text", "text": content, "cache_control": dict(EPHEMERAL)}]
    elif isinstance(content, list) and content:
        content[-1] = {**content[-1], "cache_control": dict(EPHEMERAL)}
    else:
        return marked
    marked[index] = message
    return marked


async def warm_then_fan_out(
    first: Callable[[], Awaitable[T]], rest: list[Callable[[], Awaitable[T]]]
) -> list[T | BaseException]:
    """Run `first` alone, then all of `rest` concurrently; results in input order.

    `first` writes the provider's prompt cache so the others read it instead of each paying to
    write it. Exceptions are returned in place of results, never raised, so one failing
    trajectory never stops the others; callers must check each item with isinstance.
    Cancellation still propagates.
    """
    results: list[T | BaseException] = []
    try:
        results.append(await first())
    except Exception as exc:  # noqa: BLE001 - returned to the caller by design
        results.append(exc)
    results.extend(await asyncio.gather(*(make() for make in rest), return_exceptions=True))
    return results
