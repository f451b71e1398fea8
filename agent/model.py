"""`ModelClient`: litellm calls per role, with retries, budgets, per-call accounting and replay.

The client never parses what the model says; it returns the text and records what the call cost,
so a reply that later fails to parse is still accounted for.
"""

from __future__ import annotations

import asyncio
import copy
import random
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from agent import llm
from agent.budget import Budget, BudgetExceeded, Reservation
from agent.call_records import (
    CallRecord,
    CallRecorder,
    CallScope,
    CallStore,
    Completion,
    InMemoryCallStore,
    Usage,
    call_key,
)
from agent.model_settings import ModelSettings, PriceOverride, Role, RoleModels, RoleTemperatures
from agent.pricing import worst_case_usd
from agent.prompt_caching import (
    SCRIPTED_PREFIX,
    mark_cache_prefix,
    supports_prompt_caching,
    warm_then_fan_out,
)
from agent.retry_policy import backoff_s, failure_hint, is_retryable, retry_after_s
from agent.text import storable, storable_data

__all__ = [
    "Budget",
    "BudgetExceeded",
    "CallRecord",
    "CallRecorder",
    "CallScope",
    "CallStore",
    "Completion",
    "InMemoryCallStore",
    "ModelCallError",
    "ModelClient",
    "ModelSettings",
    "PriceOverride",
    "Role",
    "RoleModels",
    "RoleTemperatures",
    "Usage",
    "call_key",
    "is_retryable",
    "mark_cache_prefix",
    "missing_api_key",
    "retry_after_s",
    "supports_prompt_caching",
    "usage_from_response",
    "warm_then_fan_out",
]

Sleep = Callable[[float], Awaitable[None]]


class ModelCallError(Exception):
    """A call failed for good (non-retryable error, or retries exhausted); `record` says what it cost."""

    def __init__(self, record: CallRecord) -> None:
        self.record = record
        super().__init__(
            f"{record.role} call to {record.model} failed after {record.attempts} attempt(s): {record.error}"
        )


def missing_api_key(model: str) -> str | None:
    """Environment variable(s) litellm needs for `model` that are unset, else None."""
    if model.startswith(SCRIPTED_PREFIX):
        return None
    missing = llm.missing_keys(model)
    return ", ".join(missing) if missing else None


def usage_from_response(response: Any) -> Usage:
    """Token counts from a litellm response; cache fields from Anthropic or OpenAI style usage."""
    usage = getattr(response, "usage", None)
    if usage is None:
        return Usage()
    details = getattr(usage, "prompt_tokens_details", None)
    cache_read = getattr(usage, "cache_read_input_tokens", None) or getattr(details, "cached_tokens", None)
    cache_write = getattr(usage, "cache_creation_input_tokens", None) or getattr(
        details, "cache_write_tokens", None
    )
    return Usage(
        input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cache_read_tokens=int(cache_read or 0),
        cache_write_tokens=int(cache_write or 0),
    )


def _response_text(response: Any) -> str:
    choices = getattr(response, "choices", None) or []
    if not choices:
        return ""
    message = getattr(choices[0], "message", None)
    return getattr(message, "content", None) or ""


def _total_cost(costs: list[float | None]) -> float | None:
    """Sum of attempt costs; unknown if any billed attempt's cost is unknown."""
    known = [cost for cost in costs if cost is not None]
    return None if len(known) < len(costs) else sum(known, 0.0)


def _error_text(exc: BaseException) -> str:
    hint = failure_hint(exc)  # first, so that a one-line summary of the error still says what to do
    return storable(f"{type(exc).__name__}: {f'{hint}. ' if hint else ''}{exc}"[:2000])


class ModelClient:
    """Calls the model serving a role. One client can be shared by many tasks and event loops."""

    def __init__(
        self,
        settings: ModelSettings,
        store: CallStore | None = None,
        recorder: CallRecorder | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        charge_replays: bool = True,
        providers: llm.Providers | None = None,
        scope: CallScope | None = None,
    ) -> None:
        self.settings = settings
        # Whom this client's calls are for (see `scoped`): part of every replay key and record.
        self.scope = scope or CallScope()
        # Providers the caller injects by model prefix (the scripted model); litellm serves the rest.
        self.providers: llm.Providers = dict(providers or {})
        # False when the caller charges budgets with what was spent before a resume by other means.
        self.charge_replays = charge_replays
        self.store = store
        self.recorder = recorder
        self._sleep = sleep  # injectable so tests observe backoff without waiting
        self._rng = rng or random.Random()
        # asyncio primitives bind to one loop; tests and threads may each run their own loop.
        self._slots_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._slots_lock = threading.Lock()

    def scoped(self, scope: CallScope) -> ModelClient:
        """This client for one instance: the same settings, stores, providers and concurrency limit
        (the slots are shared, not copied), with `scope` keying and attributing every call."""
        view = copy.copy(self)
        view.scope = scope
        return view

    def call_key(self, role: Role, messages: list[dict[str, Any]], *, sample: int = 0,
                 temperature: float | None = None, max_tokens: int | None = None) -> str:
        """The replay key of a call: the role's model, the request, which deliberate repeat (`sample`:
        parallel trajectories must not collapse into one stored answer) and this client's scope."""
        temperature = self.settings.temperature_for(role) if temperature is None else temperature
        return call_key(self.settings.model_for(role), messages, temperature, sample=sample, max_tokens=max_tokens,
                        epoch=self.scope.epoch)

    def _slots(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        with self._slots_lock:
            slots = self._slots_by_loop.get(loop)
            if slots is None:
                slots = self._slots_by_loop[loop] = asyncio.Semaphore(self.settings.max_concurrency)
            return slots

    def should_warm_cache(self, role: Role) -> bool:
        """Whether a lone first call pays off: only where a provider cache exists to be written."""
        mode = self.settings.warm_prefix_cache
        if mode != "auto":
            return mode == "always"
        model = self.settings.model_for(role)
        return self.settings.prompt_caching and not model.startswith(SCRIPTED_PREFIX) and supports_prompt_caching(model)

    def mark_cache_prefix(
        self, role: Role, messages: list[dict[str, Any]], upto_index: int
    ) -> list[dict[str, Any]]:
        """`mark_cache_prefix` for the role's model, or an unchanged copy when caching is off."""
        if not self.settings.prompt_caching:
            return list(messages)
        return mark_cache_prefix(messages, upto_index, self.settings.model_for(role))

    def cost_usd(self, model: str, response: Any, usage: Usage) -> float | None:
        """Price of one response; None when unknown (never a made-up 0)."""
        override = self.settings.price_overrides.get(model)
        if override is not None:
            return override.cost_usd(usage)
        if model.startswith(SCRIPTED_PREFIX):
            return None  # litellm cannot price it; asking would only log noise
        cost = llm.completion_cost(response)
        if cost is None:
            return None
        # litellm answers 0 for models missing from its map; a call that used tokens is not free.
        if cost == 0 and usage.input_tokens + usage.output_tokens > 0:
            return None
        return float(cost)

    def _replay(self, key: str, budget: Budget | None) -> Completion | None:
        stored = self.store.get(key) if self.store is not None else None
        if stored is None or stored.error is not None or stored.response_text is None:
            return None
        # Re-charge what the original call cost so a resumed run's budgets end where they did.
        if budget is not None and self.charge_replays:
            budget.charge(stored.cost_usd)
        return Completion(text=stored.response_text, record=stored, reused=True)

    async def complete(
        self,
        role: Role,
        messages: list[dict[str, Any]],
        *,
        budget: Budget | None = None,
        sample: int = 0,
        key_messages: list[dict[str, Any]] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> Completion:
        """Send `messages` to the role's model and return its text.

        Every call is keyed (`call_key`); with a store, a completed call stored under its key is
        returned instead of calling again. `key_messages` stands for `messages` in the key where a
        shorter equivalent exists (a digest of a long shared prefix). Raises `BudgetExceeded` when a
        budget is spent before an attempt starts, `ModelCallError` when the call fails for good.
        Both leave other callers unaffected.
        """
        key = self.call_key(role, messages if key_messages is None else key_messages, sample=sample,
                            temperature=temperature, max_tokens=max_tokens)
        replayed = self._replay(key, budget)
        if replayed is not None:
            return replayed
        model = self.settings.model_for(role)
        request: dict[str, Any] = {
            "model": model,
            "messages": storable_data(messages),  # a prompt holding a lone surrogate could not be sent
            "temperature": self.settings.temperature_for(role) if temperature is None else temperature,
            "timeout": self.settings.request_timeout_s,
            "num_retries": 0,  # retries are ours, so every attempt is counted and charged
        }
        if self.settings.drop_unsupported_params:
            request["drop_params"] = True
        if max_tokens is not None:
            request["max_tokens"] = max_tokens
        record = CallRecord(call_id=uuid.uuid4().hex, key=key, instance_id=self.scope.instance_id, role=role,
                            model=model, started_at=time.time())
        return await self._attempt_until_done(request, record, budget)

    async def _attempt_until_done(
        self, request: dict[str, Any], record: CallRecord, budget: Budget | None
    ) -> Completion:
        costs: list[float | None] = []
        while True:
            reservation: Reservation | None = None
            try:
                async with self._slots():
                    # Reserved after taking a slot; the reservation is what bounds the overrun (agent.budget).
                    if budget is not None:
                        reservation = await self._reserve(budget, request)
                    record.attempts += 1
                    sent_at = time.monotonic()
                    try:
                        response = await self._provider(request["model"]).acompletion(**request)
                    finally:
                        record.latency_s = time.monotonic() - sent_at
            except BudgetExceeded as exc:
                if record.attempts:
                    self._finish_failed(record, costs, exc)
                raise
            except Exception as exc:
                if isinstance(exc, llm.Timeout):
                    # The provider may have generated (and billed) tokens we never received.
                    costs.append(None)
                if reservation is not None and budget is not None:
                    budget.settle(reservation, None, billed=isinstance(exc, llm.Timeout))
                if is_retryable(exc) and record.attempts <= self.settings.max_retries:
                    delay = backoff_s(
                        record.attempts,
                        exc,
                        base_s=self.settings.retry_base_delay_s,
                        max_s=self.settings.retry_max_delay_s,
                        rng=self._rng,
                    )
                    await self._sleep(delay)
                    continue
                self._finish_failed(record, costs, exc)
                raise ModelCallError(record) from exc
            except BaseException:  # cancelled mid-call: what it holds must not block every other call
                if reservation is not None and budget is not None:
                    budget.settle(reservation, None)
                raise
            return self._finish_succeeded(record, costs, response, budget, reservation)

    def _provider(self, model: str) -> llm.ChatProvider:
        injected = llm.provider_for(model, self.providers)
        if injected is not None:
            return injected
        if model.startswith(SCRIPTED_PREFIX):  # litellm would only say it knows no such provider
            raise llm.BadRequestError(message=f"{model}: no scripted models were given to this client "
                                      "(--scripted NAME=FILE.yaml or NAME=module:callable)",
                                      model=model, llm_provider="scripted")
        return llm.LITELLM

    async def _reserve(self, budget: Budget, request: dict[str, Any]) -> Reservation:
        """Hold the attempt's worst case on the budget chain, waiting while other calls hold what is left."""
        worst = worst_case_usd(request["model"], request["messages"], request.get("max_tokens"),
                               self.settings.price_overrides)
        delay = 0.02
        while (reservation := budget.reserve(worst or 0.0)) is None:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
        return reservation

    def _finish_succeeded(
        self, record: CallRecord, costs: list[float | None], response: Any, budget: Budget | None,
        reservation: Reservation | None = None,
    ) -> Completion:
        record.usage = usage_from_response(response)
        cost = self.cost_usd(record.model, response, record.usage)
        costs.append(cost)
        record.cost_usd = _total_cost(costs)
        # Whatever the model sent must be storable (agent.text), and the paid call is stored before
        # anything else can fail, so no resume pays for it again.
        record.response_text = storable(_response_text(response))
        if self.store is not None and record.key is not None:
            self.store.put(record)
        if self.recorder is not None:
            self.recorder.record(record)
        if reservation is not None and budget is not None:
            budget.settle(reservation, cost)
        elif budget is not None:
            budget.charge(cost)
        return Completion(text=record.response_text, record=record)

    def _finish_failed(self, record: CallRecord, costs: list[float | None], exc: BaseException) -> None:
        record.cost_usd = _total_cost(costs)
        record.error = _error_text(exc)
        if self.recorder is not None:
            self.recorder.record(record)
