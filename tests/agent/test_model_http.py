"""The provider path over real HTTP: `ModelClient` → litellm → a loopback OpenAI-compatible API or Anthropic
Messages API (tests/agent/provider_stub.py), exactly as a real provider is reached. Retries, errors,
usage and cost are what litellm makes of real wire responses, not of objects a test built."""

from __future__ import annotations

import asyncio
import random
import threading

import litellm  # noqa: E402
import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from agent.budget import Budget  # noqa: E402
from agent.model import CallScope, ModelCallError, ModelClient, ModelSettings, RoleModels  # noqa: E402
from patchswarm.cli import app  # noqa: E402
from patchswarm.store import RunCallStore, RunStore  # noqa: E402
from tests.agent.provider_stub import (  # noqa: E402
    Answer,
    ProviderStub,
    anthropic_error,
    anthropic_reply,
    openai_error,
    openai_reply,
)

OPENAI_MODEL = "openai/gpt-5.4-mini"
ANTHROPIC_MODEL = "anthropic/claude-sonnet-5-5"
PROMPT = [{"role": "system", "content": "You fix bugs."}, {"role": "user", "content": "average([]) raises"}]


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def openai_stub(monkeypatch):
    with ProviderStub() as stub:
        monkeypatch.setenv("OPENAI_API_BASE", stub.url + "/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-stub")
        yield stub


@pytest.fixture
def anthropic_stub(monkeypatch):
    with ProviderStub() as stub:
        monkeypatch.setenv("ANTHROPIC_API_BASE", stub.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-stub")
        yield stub


def client_for(model: str, recorder=None, **settings) -> tuple[ModelClient, RecordingSleep]:
    values = {"roles": RoleModels(relevance=model, primary=model, selector=model), "max_retries": 3,
              "retry_base_delay_s": 0.01, "retry_max_delay_s": 0.05, **settings}
    sleep = RecordingSleep()
    return ModelClient(ModelSettings(**values), recorder=recorder, sleep=sleep, rng=random.Random(0)), sleep


def complete(client: ModelClient, messages=PROMPT, **kwargs):
    return asyncio.run(client.complete("primary", messages, **kwargs))


def test_openai_429_waits_the_retry_after_the_provider_asked_for(openai_stub):
    openai_stub.add(openai_error(429, "Rate limit reached", type_="rate_limit_error", code="rate_limit_exceeded",
                                 headers={"retry-after": "7"}), openai_reply("fixed"))
    client, sleep = client_for(OPENAI_MODEL)
    done = complete(client)
    assert done.text == "fixed" and done.record.attempts == 2
    assert len(openai_stub.received) == 2  # no hidden retries inside litellm or the SDK: each attempt is ours
    assert sleep.delays == [7.0]  # above retry_max_delay_s: retrying sooner would only fail again
    request = openai_stub.received[0]
    assert request.path == "/v1/chat/completions" and request.headers["authorization"] == "Bearer sk-stub"
    assert request.body["temperature"] == 0.8  # the primary role's, where the model takes one
    assert request.body["model"] == "gpt-5.4-mini" and request.body["messages"][1]["content"] == PROMPT[1]["content"]


def test_anthropic_529_overloaded_and_500_are_retried(anthropic_stub):
    anthropic_stub.add(anthropic_error(529, "overloaded_error", "Overloaded"),
                       anthropic_error(500, "api_error", "Internal server error"), anthropic_reply("fixed"))
    client, sleep = client_for(ANTHROPIC_MODEL)
    done = complete(client)
    assert done.text == "fixed" and done.record.attempts == 3 and len(sleep.delays) == 2
    assert [r.path for r in anthropic_stub.received] == ["/v1/messages"] * 3
    assert anthropic_stub.received[0].headers["x-api-key"] == "sk-ant-stub"
    # Current Claude models take no temperature but 1: it is left out instead of failing every call.
    assert "temperature" not in anthropic_stub.received[0].body


def test_persistent_500_fails_for_good_after_the_retries(openai_stub):
    openai_stub.add(*[openai_error(500, "The server had an error", type_="server_error")] * 4)
    recorded = []
    client, sleep = client_for(OPENAI_MODEL, recorder=type("R", (), {"record": lambda self, r: recorded.append(r)})())
    with pytest.raises(ModelCallError) as caught:
        complete(client)
    assert caught.value.record.attempts == 4 and len(openai_stub.received) == 4 and len(sleep.delays) == 3
    assert "failed after 4 attempt(s): InternalServerError" in str(caught.value)
    assert [r.error is not None for r in recorded] == [True]  # one failed record, with the error


def test_a_read_timeout_is_retried_and_its_cost_counts_as_unknown(openai_stub):
    held = threading.Event()  # released when the stub stops: the provider never answers in time
    openai_stub.add(Answer(body=openai_reply().body, hold=held), openai_reply("late but fine"))
    client, _ = client_for(OPENAI_MODEL, request_timeout_s=0.5)
    budget = Budget(10.0, "run")
    done = complete(client, budget=budget)
    assert done.text == "late but fine" and done.record.attempts == 2 and len(openai_stub.received) == 2
    # The timed-out attempt may have been billed without our knowing: the call's cost is unknown, not 0.
    assert done.record.cost_usd is None


def test_a_context_window_error_fails_at_once_and_says_what_to_do(anthropic_stub):
    anthropic_stub.add(anthropic_error(400, "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"))
    client, sleep = client_for(ANTHROPIC_MODEL)
    with pytest.raises(ModelCallError) as caught:
        complete(client)
    assert caught.value.record.attempts == 1 and sleep.delays == [] and len(anthropic_stub.received) == 1
    error = caught.value.record.error
    assert error.startswith("ContextWindowExceededError: the prompt is longer than the model's context window: "
                            "lower context.token_budget")
    assert "250000 tokens > 200000 maximum" in error


def test_cache_tokens_and_litellm_prices_reach_the_run_accounting(anthropic_stub, tmp_path):
    anthropic_stub.add(anthropic_reply("fixed", input_tokens=100, output_tokens=20, cache_read=1000, cache_write=500))
    store = RunStore(tmp_path / "run")
    try:
        client, _ = client_for(ANTHROPIC_MODEL, recorder=RunCallStore(store, "h"))
        done = complete(client.scoped(CallScope(instance_id="calc-1")))
        usage = done.record.usage
        assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens, usage.output_tokens) == \
            (1600, 1000, 500, 20)  # prompt tokens as litellm counts them: uncached + read + written
        price = litellm.model_cost["claude-sonnet-5-5"]
        expected = (100 * price["input_cost_per_token"] + 1000 * price["cache_read_input_token_cost"]
                    + 500 * price["cache_creation_input_token_cost"] + 20 * price["output_cost_per_token"])
        assert done.record.cost_usd == pytest.approx(expected, rel=1e-9) and expected > 0
        row = store._exec("SELECT instance_id, model, cost_usd, input_tokens, cache_read_tokens, cache_write_tokens "
                          "FROM call_log")
        assert row == [("calc-1", ANTHROPIC_MODEL, pytest.approx(expected), 1600, 1000, 500)]
        assert store.totals("calc-1").cost_usd == pytest.approx(expected)
    finally:
        store.close()


def test_openai_cached_tokens_are_read_from_prompt_tokens_details(openai_stub):
    openai_stub.add(openai_reply(prompt_tokens=2000, completion_tokens=10, cached_tokens=1500))
    client, _ = client_for(OPENAI_MODEL)
    done = complete(client)
    assert (done.record.usage.input_tokens, done.record.usage.cache_read_tokens) == (2000, 1500)
    price = litellm.model_cost["gpt-5.4-mini"]
    expected = (500 * price["input_cost_per_token"] + 1500 * price["cache_read_input_token_cost"]
                + 10 * price["output_cost_per_token"])
    assert done.record.cost_usd == pytest.approx(expected, rel=1e-9)


def test_prompt_caching_marks_reach_anthropic_and_stay_away_where_unsupported(anthropic_stub, openai_stub):
    anthropic_stub.add(anthropic_reply())
    client, _ = client_for(ANTHROPIC_MODEL)
    complete(client, client.mark_cache_prefix("primary", PROMPT, 0))
    (system,) = anthropic_stub.received[0].body["system"]
    assert system == {"type": "text", "text": "You fix bugs.", "cache_control": {"type": "ephemeral"}}
    assert client.should_warm_cache("primary")

    openai_stub.add(openai_reply())
    local, _ = client_for("openai/my-local-model")  # a name litellm cannot say supports caching
    assert not local.should_warm_cache("primary")
    complete(local, local.mark_cache_prefix("primary", PROMPT, 0))
    assert "cache_control" not in str(openai_stub.received[0].body)


def test_models_check_makes_one_token_call_and_names_the_fix(openai_stub):
    openai_stub.add(openai_reply("O"), openai_error(401, "Incorrect API key provided", type_="invalid_request_error",
                                                    code="invalid_api_key"))
    result = CliRunner().invoke(app, ["models", "check", "-m", OPENAI_MODEL])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"ok: {OPENAI_MODEL} (relevance, primary, selector), answered in ")
    body = openai_stub.received[0].body
    assert 1 in (body.get("max_tokens"), body.get("max_completion_tokens")), body
    result = CliRunner().invoke(app, ["models", "check", "-m", OPENAI_MODEL])
    assert result.exit_code == 1
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith(f"error: model {OPENAI_MODEL} (relevance, primary, selector) did not answer a one-token "
                           "call (AuthenticationError: ")
    assert "Incorrect API key provided" in line and line.endswith("pick another with -m MODEL or --set "
                                                                  "models.roles.ROLE=MODEL")
    assert "Provider List" not in result.output
