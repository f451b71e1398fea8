"""Deterministic `scripted/<name>` provider: test configs and pipelines without spending.

    handler = ScriptedLLM({"demo": ["first reply", Fault.rate_limit(2), "second"]})
    client = ModelClient(settings, providers={"scripted": handler})   # scripted/demo -> "first reply"

A `agent.llm.ChatProvider` the caller injects into the clients that should use it (nothing
process-wide), so two handlers in one process never see each other's scripts. Each script answers
from a list (consumed in order; running out is an error) or from a callable
`(messages) -> str | Reply | Fault`. Replies are litellm responses and faults raise the same litellm
exceptions real providers do, so `ModelClient` retries and accounts for them exactly as it would in
production. Every message list received is kept (`handler.calls(name)`), so tests can assert what
reached the model.

Usage is deterministic (about 4 characters per token). litellm has no price for scripted models,
so their cost is unknown unless `ModelSettings.price_overrides` names `scripted/<name>`; set an
override to make scripted calls count against budgets.

A script can also live in YAML (`load_script_file`):

    responses:
      - "plain reply"
      - {text: "slow reply", delay_s: 0.5}
      - {fault: rate_limit, retry_after: 1}
      - {fault: server_error}
      - {fault: timeout}
      - {fault: malformed, text: "<<<garbage"}
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml

from agent import llm

PROVIDER = "scripted"
CHARS_PER_TOKEN = 4

FaultKind = Literal["rate_limit", "server_error", "timeout", "malformed"]


@dataclass(frozen=True)
class Reply:
    """A normal answer, optionally after `delay_s` seconds."""

    text: str
    delay_s: float = 0.0


@dataclass(frozen=True)
class Fault:
    """A provider misbehaving: raises what litellm raises for real providers (or returns garbage)."""

    kind: FaultKind
    retry_after: float | None = None
    text: str = ""
    delay_s: float = 0.0

    @classmethod
    def rate_limit(cls, retry_after: float | None = None, delay_s: float = 0.0) -> Fault:
        """429 with a Retry-After header when `retry_after` is given."""
        return cls("rate_limit", retry_after=retry_after, delay_s=delay_s)

    @classmethod
    def server_error(cls, delay_s: float = 0.0) -> Fault:
        return cls("server_error", delay_s=delay_s)

    @classmethod
    def timeout(cls, delay_s: float = 0.0) -> Fault:
        return cls("timeout", delay_s=delay_s)

    @classmethod
    def malformed(cls, text: str, delay_s: float = 0.0) -> Fault:
        """A successful (billed) response whose text the caller will fail to parse."""
        return cls("malformed", text=text, delay_s=delay_s)


Item = str | Reply | Fault
Responder = Callable[[list[dict[str, Any]]], Item]


@dataclass
class Script:
    """What one `scripted/<name>` model answers: a list consumed in order, or a callable."""

    responses: list[Item] | Responder


class ScriptError(llm.BadRequestError):
    """The script cannot answer (unknown name, exhausted list). Not retryable: it is a setup bug."""

    def __init__(self, message: str, model: str) -> None:
        super().__init__(message=message, model=model, llm_provider=PROVIDER)


def text_of(content: Any) -> str:
    """The text of a message content (a string, or a list of text parts as prompt caching makes it)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def count_tokens(text: str) -> int:
    """Cheap deterministic stand-in for a tokenizer."""
    return max(1, len(text) // CHARS_PER_TOKEN)


def _delay_of(item: Item) -> float:
    return 0.0 if isinstance(item, str) else item.delay_s


class ScriptedLLM:
    """A `ChatProvider` answering `scripted/<name>` from named scripts. Safe to share across threads and loops."""

    def __init__(self, scripts: Mapping[str, Script | list[Item] | Responder] | None = None) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, Script] = {}
        self._next_index: dict[str, int] = {}
        self._received: dict[str, list[list[dict[str, Any]]]] = {}
        for name, script in (scripts or {}).items():
            self.add(name, script)

    def add(self, name: str, script: Script | list[Item] | Responder) -> None:
        """Add or replace the script `scripted/<name>` answers from (restarting at its first item)."""
        if not isinstance(script, Script):
            script = Script(list(script) if isinstance(script, list) else script)
        with self._lock:
            self._scripts[name] = script
            self._next_index[name] = 0
            self._received.setdefault(name, [])

    def calls(self, name: str) -> list[list[dict[str, Any]]]:
        """Copies of every message list `scripted/<name>` received, in arrival order."""
        with self._lock:
            return copy.deepcopy(self._received.get(name, []))

    def remaining(self, name: str) -> int | None:
        """Unused items of a list script (None for callable scripts)."""
        with self._lock:
            responses = self._scripts[name].responses
            return len(responses) - self._next_index[name] if isinstance(responses, list) else None

    def _take(self, name: str, messages: list[dict[str, Any]]) -> Item:
        with self._lock:
            self._received.setdefault(name, []).append(copy.deepcopy(messages))
            script = self._scripts.get(name)
            if script is None:
                known = ", ".join(sorted(self._scripts)) or "none"
                raise ScriptError(f"no script named '{name}' (known: {known})", name)
            if isinstance(script.responses, list):
                index = self._next_index[name]
                if index >= len(script.responses):
                    raise ScriptError(
                        f"script '{name}' exhausted: all {len(script.responses)} responses used "
                        f"(call {index + 1})",
                        name,
                    )
                self._next_index[name] = index + 1
                return script.responses[index]
            responder = script.responses
        return responder(copy.deepcopy(messages))  # outside the lock: user code may be slow

    def _respond(self, name: str, messages: list[dict[str, Any]], item: Item) -> llm.ModelResponse:
        if isinstance(item, Fault) and item.kind != "malformed":
            raise _fault_exception(name, item)
        text = item if isinstance(item, str) else item.text
        prompt_tokens = count_tokens("".join(text_of(m.get("content")) for m in messages))
        return llm.reply(name, text, prompt_tokens, count_tokens(text))

    # Called as litellm is: keyword arguments, `model` as "scripted/<name>"; sampling and timeout
    # parameters mean nothing to a script.
    def completion(self, *, model: str, messages: list[dict[str, Any]], **params: Any) -> llm.ModelResponse:
        name = model.removeprefix(f"{PROVIDER}/")
        item = self._take(name, messages)
        if _delay_of(item):
            time.sleep(_delay_of(item))
        return self._respond(name, messages, item)

    async def acompletion(self, *, model: str, messages: list[dict[str, Any]], **params: Any) -> llm.ModelResponse:
        name = model.removeprefix(f"{PROVIDER}/")
        item = self._take(name, messages)
        if _delay_of(item):
            await asyncio.sleep(_delay_of(item))
        return self._respond(name, messages, item)


def _fault_exception(name: str, fault: Fault) -> Exception:
    model = f"{PROVIDER}/{name}"
    if fault.kind == "rate_limit":
        headers = {} if fault.retry_after is None else {"retry-after": str(fault.retry_after)}
        response = httpx.Response(
            429, headers=headers, request=httpx.Request("POST", "http://scripted.invalid")
        )
        return llm.RateLimitError(
            f"scripted rate limit on '{name}'", llm_provider=PROVIDER, model=model, response=response
        )
    if fault.kind == "server_error":
        return llm.InternalServerError(
            f"scripted server error on '{name}'", llm_provider=PROVIDER, model=model
        )
    if fault.kind == "timeout":
        return llm.Timeout(f"scripted timeout on '{name}'", model=model, llm_provider=PROVIDER)
    raise ValueError(f"fault '{fault.kind}' does not raise")


_FAULT_FIELDS: dict[str, set[str]] = {
    "rate_limit": {"retry_after", "delay_s"},
    "server_error": {"delay_s"},
    "timeout": {"delay_s"},
    "malformed": {"text", "delay_s"},
}


def _item_from_yaml(entry: Any, where: str) -> Item:
    if isinstance(entry, str):
        return entry
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a string or a mapping, got {type(entry).__name__}")
    if "fault" not in entry:
        extra = set(entry) - {"text", "delay_s"}
        if extra or "text" not in entry:
            raise ValueError(
                f"{where}: a reply mapping takes 'text' and optional 'delay_s', got {sorted(entry)}"
            )
        return Reply(str(entry["text"]), float(entry.get("delay_s", 0.0)))
    kind = entry["fault"]
    if kind not in _FAULT_FIELDS:
        raise ValueError(f"{where}: unknown fault '{kind}' (expected one of {', '.join(_FAULT_FIELDS)})")
    extra = set(entry) - {"fault"} - _FAULT_FIELDS[kind]
    if extra:
        raise ValueError(f"{where}: fault '{kind}' does not take {', '.join(sorted(extra))}")
    retry_after = entry.get("retry_after")
    return Fault(
        kind,
        retry_after=None if retry_after is None else float(retry_after),
        text=str(entry.get("text", "")),
        delay_s=float(entry.get("delay_s", 0.0)),
    )


def load_script_file(path: str | Path) -> Script:
    """Read a YAML script (`responses: [...]`, see the module docstring)."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("responses"), list):
        raise ValueError(f"{path}: expected a mapping with a 'responses' list")
    if set(data) != {"responses"}:
        raise ValueError(f"{path}: unknown keys {sorted(set(data) - {'responses'})}")
    return Script(
        [_item_from_yaml(entry, f"{path}: responses[{i}]") for i, entry in enumerate(data["responses"])]
    )
