"""What a model call cost and returned, and where completed calls are kept for replay.

Split out of `agent.model` so the run store can depend on these records without the client.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field


class Usage(BaseModel):
    """Token counts of one billed response, as the provider reported them."""

    input_tokens: int = Field(0, description="All prompt tokens, including cache reads and cache writes.")
    output_tokens: int = Field(0, description="Completion tokens.")
    cache_read_tokens: int = Field(0, description="Prompt tokens served from the provider's prompt cache.")
    cache_write_tokens: int = Field(0, description="Prompt tokens written to the provider's prompt cache.")

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
        )


class CallScope(BaseModel):
    """Whom a model call is for, besides its role and model: part of its replay key and its accounting.

    Passed explicitly (`ModelClient.scoped`), never read from ambient state, so one client shared by
    many instances (one concurrency limit) still attributes and keys each call by its own instance.
    """

    model_config = ConfigDict(frozen=True)

    instance_id: str | None = Field(None, description="The instance the call's cost is attributed to.")
    epoch: int = Field(0, ge=0, description="Bumped by --redo: the instance's calls are made again, not replayed.")


class CallRecord(BaseModel):
    """One logical model call (all its attempts), successful or not."""

    call_id: str = Field(description="Unique id of this call.")
    key: str | None = Field(None, description="Replay key; a stored call with this key is reused.")
    instance_id: str | None = Field(None, description="The instance the call was made for (its CallScope).")
    role: str = Field(description="Role that made the call: relevance, primary or selector.")
    model: str = Field(description="litellm model name the call went to.")
    started_at: float = Field(description="Unix time when the call (its first attempt) started.")
    latency_s: float = Field(0.0, description="Round-trip seconds of the last attempt (excludes backoff).")
    usage: Usage = Field(default_factory=Usage, description="Tokens of the billed responses.")
    cost_usd: float | None = Field(
        None, description="USD of all billed attempts; None when any billed attempt's cost is unknown."
    )
    attempts: int = Field(0, description="Requests sent, retries included.")
    error: str | None = Field(None, description="Final error when the call failed, else None.")
    response_text: str | None = Field(None, description="Text returned by the model (unparsed).")


class Completion(BaseModel):
    text: str
    record: CallRecord
    reused: bool = Field(False, description="True when replayed from the CallStore instead of sent.")


class CallStore(Protocol):
    """Completed calls by key, so a resumed run never pays for the same call twice."""

    def get(self, key: str) -> CallRecord | None: ...

    def put(self, record: CallRecord) -> None: ...


class CallRecorder(Protocol):
    """Receives every call that ended (billed success or final failure), e.g. to persist it."""

    def record(self, record: CallRecord) -> None: ...


class InMemoryCallStore:
    def __init__(self) -> None:
        self._records: dict[str, CallRecord] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> CallRecord | None:
        with self._lock:
            return self._records.get(key)

    def put(self, record: CallRecord) -> None:
        if record.key is None:
            raise ValueError("only keyed calls can be stored")
        with self._lock:
            self._records[record.key] = record


def call_key(
    model: str, messages: list[dict[str, Any]], temperature: float, sample: int = 0, max_tokens: int | None = None,
    epoch: int = 0,
) -> str:
    """Stable replay key: sha256 of the canonical JSON of the request (`ModelClient` builds it; no caller does).

    `sample` tells apart deliberate repeats of one prompt (parallel trajectories), which must not
    collapse into one stored answer. `max_tokens` is part of the request: an answer cut short at one
    limit must not be replayed under another. It is hashed only when set, so keys of calls without a
    limit stay what they were.
    """
    request: dict[str, Any] = {"model": model, "messages": messages, "temperature": temperature, "sample": sample}
    if max_tokens is not None:
        request["max_tokens"] = max_tokens
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    # surrogatepass: a prompt may hold a lone surrogate (agent.text); it must key, not crash, the call.
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
    # A redo epoch namespaces the key (keys of epoch 0 stay what they were, so older runs still resume).
    return f"redo{epoch}:{digest}" if epoch else digest
