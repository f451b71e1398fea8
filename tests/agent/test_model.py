

import asyncio  # noqa: E402
import random  # noqa: E402
import threading  # noqa: E402

import httpx  # noqa: E402
import litellm  # noqa: E402
import pytest  # noqa: E402
from litellm import ModelResponse  # noqa: E402
from litellm.types.utils import Usage as ProviderUsage  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from agent.budget import Budget, BudgetExceeded, Spend, Tally  # noqa: E402
from agent.model import (  # noqa: E402
    CallRecord,
    CallScope,
    InMemoryCallStore,
    ModelCallError,
    ModelClient,
    ModelSettings,
    PriceOverride,
    RoleModels,
    Usage,
    call_key,
    mark_cache_prefix,
    missing_api_key,
    usage_from_response,
    warm_then_fan_out,
)
from agent.pricing import worst_case_usd
from agent.retry_policy import backoff_s, is_retryable, retry_after_s  # noqa: E402
from agent.scripted import Fault, Reply, ScriptedLLM  # noqa: E402

PROMPT = [{"role": "user", "content": "x" * 40}]  # 10 scripted input tokens
# $1 per input token and $2 per output token: costs are easy to read in assertions.
PRICE = PriceOverride(input_per_mtok=1_000_000, output_per_mtok=2_000_000)


class RecordingSleep:
    """Stands in for asyncio.sleep: backoff is observed, never waited for."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class ListRecorder:
    def __init__(self) -> None:
        self.records: list[CallRecord] = []

    def record(self, record: CallRecord) -> None:
        self.records.append(record)


def make_settings(**overrides) -> ModelSettings:
    values = {
        "roles": RoleModels(relevance="scripted/rel", primary="scripted/main", selector="scripted/sel"),
        "retry_base_delay_s": 0.5,
        "retry_max_delay_s": 2.0,
        "price_overrides": {"scripted/main": PRICE},
    }
    values.update(overrides)
    return ModelSettings(**values)


def make_client(handler: ScriptedLLM, **kwargs):
    sleep = RecordingSleep()
    recorder = ListRecorder()
    settings = kwargs.pop("settings", None) or make_settings()
    client = ModelClient(settings, recorder=recorder, sleep=sleep, rng=random.Random(0),
                         providers={"scripted": handler}, **kwargs)
    return client, sleep, recorder


def complete(client, role="primary", messages=PROMPT, **kwargs):
    return asyncio.run(client.complete(role, messages, **kwargs))


# --- retries ---------------------------------------------------------------------------------


def test_rate_limit_then_success_honours_retry_after(scripted):
    scripted.add("main", [Fault.rate_limit(retry_after=7), "done"])
    client, sleep, recorder = make_client(scripted)
    completion = complete(client)
    assert completion.text == "done"
    assert completion.record.attempts == 2
    assert sleep.delays == [7.0]  # Retry-After beats the 0.5 s backoff ceiling
    assert len(scripted.calls("main")) == 2
    assert recorder.records == [completion.record]


def test_server_error_then_success(scripted):
    scripted.add("main", [Fault.server_error(), "done"])
    client, sleep, _ = make_client(scripted)
    completion = complete(client)
    assert completion.text == "done" and completion.record.attempts == 2
    assert len(sleep.delays) == 1 and 0 <= sleep.delays[0] <= 0.5
    assert completion.record.cost_usd == 10 + 2 * 1  # only the billed response


def test_timeout_then_success_counts_the_timeout_as_unknown_cost(scripted):
    scripted.add("main", [Fault.timeout(), "done"])
    client, _, _ = make_client(scripted)
    budget = Budget(None, "trajectory")
    completion = complete(client, budget=budget)
    assert completion.text == "done" and completion.record.attempts == 2
    # A timed-out request may have been billed by the provider: its cost is unknown, not 0.
    assert completion.record.cost_usd is None
    assert budget.spent_usd == 12 and budget.unknown_cost_calls == 1


def test_exhausted_retries_raise_model_call_error_with_record(scripted):
    scripted.add("main", [Fault.server_error()] * 3)
    client, sleep, recorder = make_client(scripted, settings=make_settings(max_retries=2))
    with pytest.raises(ModelCallError) as failed:
        complete(client)
    record = failed.value.record
    assert record.attempts == 3 and len(sleep.delays) == 2
    assert "InternalServerError" in record.error and record.response_text is None
    assert record.cost_usd == 0.0  # 5xx responses are not billed
    assert recorder.records == [record]
    assert "primary call to scripted/main failed after 3 attempt(s)" in str(failed.value)


def test_exhausted_retries_keep_the_cost_of_billed_attempts(scripted):
    scripted.add("main", [Fault.timeout(), Fault.timeout()])
    client, _, recorder = make_client(scripted, settings=make_settings(max_retries=1))
    budget = Budget(None, "trajectory")
    with pytest.raises(ModelCallError) as failed:
        complete(client, budget=budget)
    assert failed.value.record.cost_usd is None
    assert budget.unknown_cost_calls == 2
    assert recorder.records == [failed.value.record]


def test_backoff_grows_exponentially_and_is_capped(scripted):
    scripted.add("main", [Fault.server_error()] * 4 + ["done"])
    client, sleep, _ = make_client(scripted)
    assert complete(client).record.attempts == 5
    ceilings = [0.5, 1.0, 2.0, 2.0]
    assert all(0 <= delay <= ceiling for delay, ceiling in zip(sleep.delays, ceilings, strict=True))


def test_non_retryable_errors_fail_at_once(scripted):
    def reject(messages):
        raise litellm.AuthenticationError("bad key", llm_provider="scripted", model="scripted/main")

    scripted.add("main", reject)
    client, sleep, recorder = make_client(scripted)
    with pytest.raises(ModelCallError) as failed:
        complete(client)
    assert failed.value.record.attempts == 1 and sleep.delays == []
    assert isinstance(failed.value.__cause__, litellm.AuthenticationError)
    assert len(recorder.records) == 1


def test_exhausted_script_is_not_retried(scripted):
    scripted.add("main", [])
    client, sleep, _ = make_client(scripted)
    with pytest.raises(ModelCallError, match="exhausted"):
        complete(client)
    assert sleep.delays == []


def test_retry_classification_and_retry_after_parsing():
    request = httpx.Request("POST", "http://x.invalid")
    rate_limited = litellm.RateLimitError(
        "slow",
        llm_provider="p",
        model="m",
        response=httpx.Response(429, headers={"Retry-After": "4"}, request=request),
    )
    assert is_retryable(rate_limited) and retry_after_s(rate_limited) == 4.0
    assert is_retryable(litellm.Timeout("t", model="m", llm_provider="p"))
    assert is_retryable(litellm.APIConnectionError("c", llm_provider="p", model="m"))
    assert is_retryable(litellm.ServiceUnavailableError("s", llm_provider="p", model="m"))
    assert not is_retryable(litellm.BadRequestError("b", model="m", llm_provider="p"))
    assert not is_retryable(ValueError("plain bug"))

    hinted = RuntimeError("hinted")
    hinted.retry_after = 2.5
    assert retry_after_s(hinted) == 2.5
    with_ms = RuntimeError("ms")
    with_ms.headers = {"retry-after-ms": "1500"}
    assert retry_after_s(with_ms) == 1.5
    dated = RuntimeError("dated")
    dated.headers = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    assert retry_after_s(dated) == 0.0  # in the past: retry now
    assert retry_after_s(ValueError("none")) is None
    assert backoff_s(3, hinted, base_s=1, max_s=30, rng=random.Random(1)) >= 2.5


# --- budgets ---------------------------------------------------------------------------------


def test_budget_hierarchy_and_messages():
    run = Budget(10.0, "run")
    instance = run.child(4.0, "instance django-1")
    trajectory = instance.child(None, "trajectory 0")
    trajectory.charge(3.0)
    trajectory.charge(None)
    assert (trajectory.spent_usd, instance.spent_usd, run.spent_usd) == (3.0, 3.0, 3.0)
    assert run.unknown_cost_calls == 1
    assert trajectory.remaining_usd is None and instance.remaining_usd == 1.0
    trajectory.check()
    trajectory.charge(1.5)
    assert trajectory.exceeded and not run.exceeded
    with pytest.raises(
        BudgetExceeded, match="budget 'instance django-1' exhausted: spent \\$4.5000 of \\$4.0000"
    ):
        trajectory.check()
    with pytest.raises(ValueError):
        trajectory.charge(-1.0)


def test_spend_counts_unknown_costs_apart_and_totals_keep_them():
    state, other = Spend(), Spend(cost_usd=0.5)
    for cost in (0.25, None, 0.0, None):
        state.add_cost(cost)
    assert (state.cost_usd, state.unknown_cost_calls) == (0.25, 2)
    assert Spend.total([state, other]) == Spend(cost_usd=0.75, unknown_cost_calls=2)
    resumed = Tally(Spend.total([state, other]))  # a Ray run's actor starts from the driver's tally
    resumed.add(None)
    assert resumed.totals() == Spend(cost_usd=0.75, unknown_cost_calls=3)


def test_call_past_the_budget_is_not_made(scripted):
    scripted.add("main", ["first", "second"])
    client, _, recorder = make_client(scripted)
    budget = Budget(5.0, "trajectory")
    assert complete(client, budget=budget).record.cost_usd == 10 + 1 * 2
    with pytest.raises(BudgetExceeded, match="trajectory"):
        complete(client, budget=budget)
    assert len(scripted.calls("main")) == 1
    assert len(recorder.records) == 1  # nothing was sent, so nothing to record


def test_ancestor_budget_blocks_calls(scripted):
    scripted.add("main", ["unused"])
    client, _, _ = make_client(scripted)
    run = Budget(0.0, "run")
    with pytest.raises(BudgetExceeded, match="'run'"):
        complete(client, budget=run.child(100.0, "instance").child(None, "trajectory"))
    assert scripted.calls("main") == []


def _drain_budget(client, instance, workers, max_tokens=1):
    async def worker(index):
        trajectory = instance.child(None, f"trajectory {index}")
        while True:
            try:
                await client.complete("primary", PROMPT, budget=trajectory, max_tokens=max_tokens)
            except BudgetExceeded:
                return

    async def main():
        await asyncio.gather(*(worker(i) for i in range(workers)))

    asyncio.run(main())


class InFlightCounter(ScriptedLLM):
    """Counts requests being answered at once, to show the concurrency test really overlaps calls."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.in_flight = 0
        self.most_in_flight = 0

    async def acompletion(self, **request):
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await super().acompletion(**request)
        finally:
            self.in_flight -= 1


def test_concurrent_tasks_overrun_by_at_most_one_calls_worst_case(scripted):
    # 10 in + 1 out tokens = $12 a call (worst case reserved: ~$22); the delay only makes calls overlap.
    counter = InFlightCounter({"main": lambda messages: Reply("ok", delay_s=0.002)})
    client, _, _ = make_client(counter, settings=make_settings(max_concurrency=3))
    instance = Budget(100.0, "instance")
    _drain_budget(client, instance, workers=10)
    assert counter.most_in_flight == 3  # reservations that fit do not serialize calls
    assert instance.spent_usd == 12 * len(counter.calls("main"))
    worst = worst_case_usd("scripted/main", PROMPT, 1, client.settings.price_overrides)
    assert 100 - 12 < instance.spent_usd <= 100 + worst


def test_threads_with_their_own_loops_share_client_and_budget(scripted):
    scripted.add("main", lambda messages: Reply("ok", delay_s=0.002))
    client, _, _ = make_client(scripted, settings=make_settings(max_concurrency=2))
    instance = Budget(200.0, "instance")
    threads = [threading.Thread(target=_drain_budget, args=(client, instance, 4)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    worst = worst_case_usd("scripted/main", PROMPT, 1, client.settings.price_overrides)
    assert 200 - 12 < instance.spent_usd <= 200 + worst
    assert instance.spent_usd == 12 * len(scripted.calls("main"))


def test_unknown_cost_stays_none_and_is_counted(scripted):
    scripted.add("sel", ["A"])
    client, _, _ = make_client(scripted)
    budget = Budget(1.0, "selector")
    completion = complete(client, role="selector", budget=budget)
    assert completion.record.cost_usd is None
    assert budget.spent_usd == 0 and budget.unknown_cost_calls == 1
    assert completion.record.usage.input_tokens == 10  # usage is known even when the price is not


# --- replay, accounting, caching -------------------------------------------------------------


def test_stored_call_is_replayed_not_resent(scripted):
    scripted.add("main", ["once"])
    store = InMemoryCallStore()
    client, _, recorder = make_client(scripted, store=store)
    first = complete(client)
    assert first.record.key == call_key("scripted/main", PROMPT, 0.8, sample=0)  # the keys runs stored so far
    budget = Budget(None, "resumed trajectory")
    again = complete(ModelClient(make_settings(), store=store, providers={"scripted": scripted}), budget=budget)
    assert again.text == "once" and again.reused and not first.reused
    assert again.record == first.record
    assert len(scripted.calls("main")) == 1 and len(recorder.records) == 1
    assert budget.spent_usd == first.record.cost_usd  # the resumed budget ends where it did


def test_failed_calls_are_not_replayed(scripted):
    scripted.add("main", [Fault.server_error(), "second try"])
    store = InMemoryCallStore()
    client, _, _ = make_client(scripted, store=store, settings=make_settings(max_retries=0))
    with pytest.raises(ModelCallError):
        complete(client)
    assert store.get(client.call_key("primary", PROMPT)) is None
    assert complete(client).text == "second try"


def test_scoped_views_key_and_attribute_their_instance_and_share_one_limit():
    counter = InFlightCounter({"main": lambda messages: Reply("ok", delay_s=0.01)})
    store = InMemoryCallStore()
    client, _, recorder = make_client(counter, store=store, settings=make_settings(max_concurrency=1))
    a, b = client.scoped(CallScope(instance_id="a")), client.scoped(CallScope(instance_id="b"))
    prompt_a, prompt_b = [{"role": "user", "content": "issue a"}], [{"role": "user", "content": "issue b"}]

    async def both():
        return await asyncio.gather(a.complete("primary", prompt_a), b.complete("primary", prompt_b))

    done = asyncio.run(both())
    assert counter.most_in_flight == 1  # the views share the client's one concurrency limit
    assert [c.record.instance_id for c in done] == ["a", "b"]
    assert sorted(r.instance_id for r in recorder.records) == ["a", "b"]  # cost attributed per instance
    # A resumed instance (a new client on the same store) replays; --redo's next epoch calls again.
    resumed = ModelClient(make_settings(), store=store, providers={"scripted": counter})
    again = asyncio.run(resumed.scoped(CallScope(instance_id="a")).complete("primary", prompt_a))
    assert again.reused and len(counter.calls("main")) == 2
    redone = asyncio.run(resumed.scoped(CallScope(instance_id="a", epoch=1)).complete("primary", prompt_a))
    assert not redone.reused and redone.record.key.startswith("redo1:") and len(counter.calls("main")) == 3


def test_settings_reject_unknown_keys():
    with pytest.raises(ValidationError, match="max_retry"):
        make_settings(max_retry=3)


def test_call_key_is_stable_and_separates_samples():
    messages = [{"role": "user", "content": "hi"}]
    assert call_key("m", messages, 0.0) == call_key("m", [dict(messages[0])], 0.0)
    assert call_key("m", messages, 0.0, sample=0) != call_key("m", messages, 0.0, sample=1)
    assert call_key("m", messages, 0.0) != call_key("m2", messages, 0.0)


def test_call_key_includes_max_tokens_and_keeps_unlimited_keys():
    messages = [{"role": "user", "content": "hi"}]
    # The key of a call without a limit is what it was before max_tokens was hashed (stored calls replay).
    unlimited = "4114b8b0153395477718d3119e6337c5ec6a7aaf313c4c9772e80da5d9703d50"
    assert call_key("m", messages, 0.0) == call_key("m", messages, 0.0, max_tokens=None) == unlimited
    # A reply cut short at one limit is not an answer under another.
    keys = {call_key("m", messages, 0.0, max_tokens=limit) for limit in (None, 256, 4096)}
    assert len(keys) == 3


def test_malformed_text_passes_through_and_is_billed(scripted):
    scripted.add("main", [Fault.malformed("<<<not a diff")])
    client, _, recorder = make_client(scripted)
    budget = Budget(None, "trajectory")
    completion = complete(client, budget=budget)
    assert completion.text == "<<<not a diff"
    assert completion.record.cost_usd == 10 + 3 * 2 and budget.spent_usd == 16
    assert recorder.records[0].response_text == "<<<not a diff"


def test_request_parameters_reach_the_model(scripted):
    seen = {}

    class Spy(ScriptedLLM):
        def completion(self, **request):  # pragma: no cover - async path used
            raise AssertionError("sync path not expected")

        async def acompletion(self, **request):
            seen.update(request)
            return await super().acompletion(**request)

    spy = Spy({"sel": ["A"]})
    client, _, _ = make_client(spy)
    complete(client, role="selector", max_tokens=50)
    assert seen["temperature"] == 0.0 and seen["max_tokens"] == 50
    assert spy.calls("sel") == [PROMPT]


def test_usage_from_anthropic_and_openai_style_responses():
    anthropic = ModelResponse(
        model="claude",
        usage=ProviderUsage(
            prompt_tokens=1000,
            completion_tokens=50,
            total_tokens=1050,
            cache_read_input_tokens=600,
            cache_creation_input_tokens=300,
        ),
    )
    assert usage_from_response(anthropic) == Usage(
        input_tokens=1000, output_tokens=50, cache_read_tokens=600, cache_write_tokens=300
    )
    openai_style = ModelResponse(
        model="gpt",
        usage=ProviderUsage(
            prompt_tokens=800,
            completion_tokens=20,
            total_tokens=820,
            prompt_tokens_details={"cached_tokens": 512},
        ),
    )
    assert usage_from_response(openai_style) == Usage(
        input_tokens=800, output_tokens=20, cache_read_tokens=512
    )
    assert usage_from_response(object()) == Usage()


def test_price_override_prices_cache_tokens():
    price = PriceOverride(
        input_per_mtok=3, output_per_mtok=15, cache_read_per_mtok=0.3, cache_write_per_mtok=3.75
    )
    usage = Usage(
        input_tokens=1_000_000, output_tokens=100_000, cache_read_tokens=600_000, cache_write_tokens=300_000
    )
    assert price.cost_usd(usage) == pytest.approx(0.1 * 3 + 0.6 * 0.3 + 0.3 * 3.75 + 0.1 * 15)


def test_litellm_prices_known_models_and_zero_means_unknown(monkeypatch):
    client = ModelClient(make_settings())
    response = ModelResponse(model="gpt-4o", usage=ProviderUsage(prompt_tokens=1000, completion_tokens=1000))
    usage = usage_from_response(response)
    assert client.cost_usd("gpt-4o", response, usage) > 0
    # litellm answers $0 for models it cannot price; tokens were used, so that is "unknown".
    monkeypatch.setattr(litellm, "completion_cost", lambda **kwargs: 0.0)
    assert client.cost_usd("gpt-4o", response, usage) is None
    monkeypatch.setattr(litellm, "completion_cost", lambda **kwargs: 1 / 0)
    assert client.cost_usd("gpt-4o", response, usage) is None
    free = ModelClient(
        make_settings(price_overrides={"gpt-4o": PriceOverride(input_per_mtok=0, output_per_mtok=0)})
    )
    assert free.cost_usd("gpt-4o", response, usage) == 0.0  # an explicit zero price is known


def test_mark_cache_prefix_only_where_supported():
    messages = [
        {"role": "system", "content": "rules"},
        {"role": "user", "content": "issue"},
        {"role": "user", "content": "q"},
    ]
    marked = mark_cache_prefix(messages, 1, "anthropic/claude-sonnet-4-5")
    assert marked[1]["content"] == [{"type": "text", "text": "issue", "cache_control": {"type": "ephemeral"}}]
    assert marked[0] == messages[0] and marked[2] == messages[2]
    assert messages[1]["content"] == "issue"  # input untouched
    assert mark_cache_prefix(messages, 1, "ollama/llama3") == messages
    parts = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    marked_parts = mark_cache_prefix(parts, -1, "anthropic/claude-sonnet-4-5")
    assert marked_parts[0]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in marked_parts[0]["content"][0]
    with pytest.raises(IndexError):
        mark_cache_prefix(messages, 5, "anthropic/claude-sonnet-4-5")


def test_client_cache_marking_follows_settings(scripted):
    scripted.add("main", ["ok"])
    client, _, _ = make_client(scripted)
    marked = client.mark_cache_prefix("primary", PROMPT, 0)
    assert marked[0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    complete(client, messages=marked)
    assert scripted.calls("main")[0][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    uncached = ModelClient(make_settings(prompt_caching=False), providers={"scripted": scripted})
    assert uncached.mark_cache_prefix("primary", PROMPT, 0) == PROMPT


def test_warm_then_fan_out_runs_first_alone_and_returns_errors():
    events: list[str] = []

    def job(name, fail=False):
        async def run():
            events.append(f"{name} start")
            await asyncio.sleep(0)
            events.append(f"{name} end")
            if fail:
                raise RuntimeError(name)
            return name

        return run

    results = asyncio.run(warm_then_fan_out(job("first"), [job("a", fail=True), job("b")]))
    assert events[:2] == ["first start", "first end"]
    assert results[0] == "first" and results[2] == "b"
    assert isinstance(results[1], RuntimeError)
    failed_first = asyncio.run(warm_then_fan_out(job("first", fail=True), [job("c")]))
    assert isinstance(failed_first[0], RuntimeError) and failed_first[1] == "c"


def test_missing_api_key(monkeypatch):
    assert missing_api_key("scripted/anything") is None
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert missing_api_key("anthropic/claude-sonnet-4-5") == "ANTHROPIC_API_KEY"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    assert missing_api_key("anthropic/claude-sonnet-4-5") is None


def test_one_client_serves_several_event_loops(scripted):
    scripted.add("main", ["one", "two"])
    client, _, _ = make_client(scripted)
    assert complete(client).text == "one"
    assert complete(client).text == "two"  # a new asyncio.run loop: the semaphore must not be reused
