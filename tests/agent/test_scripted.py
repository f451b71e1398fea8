import asyncio

import pytest

from agent import llm
from agent.model import ModelCallError, ModelClient
from agent.retry_policy import retry_after_s
from agent.scripted import (
    Fault,
    Reply,
    Script,
    ScriptedLLM,
    ScriptError,
    load_script_file,
)
from tests.conftest import providers, scripted_settings

USER = [{"role": "user", "content": "x" * 40}]


def test_sync_completion_returns_scripted_text_and_usage(scripted):
    scripted.add("demo", ["hello there!"])
    response = scripted.completion(model="scripted/demo", messages=USER)
    assert response.choices[0].message.content == "hello there!"
    assert response.usage.prompt_tokens == 10  # 40 chars / 4
    assert response.usage.completion_tokens == 3
    assert scripted.calls("demo") == [USER]
    assert scripted.remaining("demo") == 0


def test_async_completion_and_delay(scripted):
    scripted.add("demo", [Reply("late", delay_s=0.01)])
    response = asyncio.run(scripted.acompletion(model="scripted/demo", messages=USER))
    assert response.choices[0].message.content == "late"


def test_faults_raise_the_litellm_exceptions_real_providers_raise(scripted):
    scripted.add(
        "demo",
        [Fault.rate_limit(retry_after=3), Fault.server_error(), Fault.timeout(), Fault.malformed("}{")],
    )
    with pytest.raises(llm.RateLimitError) as rate_limited:
        scripted.completion(model="scripted/demo", messages=USER)
    assert retry_after_s(rate_limited.value) == 3.0
    with pytest.raises(llm.InternalServerError):
        scripted.completion(model="scripted/demo", messages=USER)
    with pytest.raises(llm.Timeout):
        scripted.completion(model="scripted/demo", messages=USER)
    assert scripted.completion(model="scripted/demo", messages=USER).choices[0].message.content == "}{"
    assert len(scripted.calls("demo")) == 4


def test_exhausted_and_unknown_scripts_fail_clearly(scripted):
    scripted.add("demo", ["only"])
    scripted.completion(model="scripted/demo", messages=USER)
    with pytest.raises(ScriptError, match="script 'demo' exhausted"):
        scripted.completion(model="scripted/demo", messages=USER)
    with pytest.raises(ScriptError, match="no script named 'nope'"):
        scripted.completion(model="scripted/nope", messages=USER)


def test_callable_script_sees_messages(scripted):
    scripted.add("echo", lambda messages: f"you said {messages[-1]['content']}")
    response = scripted.completion(model="scripted/echo", messages=[{"role": "user", "content": "hi"}])
    assert response.choices[0].message.content == "you said hi"
    assert scripted.remaining("echo") is None


def test_token_count_reads_list_content(scripted):
    scripted.add("demo", ["ok"])
    messages = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "y" * 80, "cache_control": {"type": "ephemeral"}}],
        }
    ]
    response = scripted.completion(model="scripted/demo", messages=messages)
    assert response.usage.prompt_tokens == 20
    assert scripted.calls("demo")[0][0]["content"][0]["cache_control"] == {"type": "ephemeral"}


def test_recorded_calls_are_copies(scripted):
    scripted.add("demo", ["ok"])
    messages = [{"role": "user", "content": "before"}]
    scripted.completion(model="scripted/demo", messages=messages)
    messages[0]["content"] = "after"
    assert scripted.calls("demo")[0][0]["content"] == "before"


def test_handlers_are_injected_so_two_in_one_process_never_mix(scripted):
    scripted.add("demo", ["from the first"])
    other = ScriptedLLM({"demo": ["from the second"]})
    first = ModelClient(scripted_settings(primary="scripted/demo"), providers=providers(scripted))
    second = ModelClient(scripted_settings(primary="scripted/demo"), providers=providers(other))
    assert asyncio.run(second.complete("primary", USER)).text == "from the second"
    assert asyncio.run(first.complete("primary", USER)).text == "from the first"
    assert len(scripted.calls("demo")) == len(other.calls("demo")) == 1


def test_a_client_without_scripts_names_the_missing_option():
    client = ModelClient(scripted_settings(primary="scripted/demo"))
    with pytest.raises(ModelCallError, match="no scripted models were given to this client") as failed:
        asyncio.run(client.complete("primary", USER))
    assert failed.value.record.attempts == 1  # a setup error: not retried


def test_load_script_file(tmp_path, scripted):
    path = tmp_path / "demo.yaml"
    path.write_text(
        "responses:\n"
        "  - plain reply\n"
        "  - {text: slow reply, delay_s: 0.01}\n"
        "  - {fault: rate_limit, retry_after: 1}\n"
        "  - {fault: server_error}\n"
        "  - {fault: timeout}\n"
        "  - {fault: malformed, text: '<<<'}\n"
    )
    script = load_script_file(path)
    assert script.responses == [
        "plain reply",
        Reply("slow reply", 0.01),
        Fault.rate_limit(retry_after=1.0),
        Fault.server_error(),
        Fault.timeout(),
        Fault.malformed("<<<"),
    ]
    scripted.add(path.stem, script)
    assert (
        scripted.completion(model="scripted/demo", messages=USER).choices[0].message.content == "plain reply"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("- a\n", "'responses' list"),
        ("responses: [a]\nextra: 1\n", "unknown keys"),
        ("responses: [{fault: meltdown}]\n", "unknown fault 'meltdown'"),
        ("responses: [{fault: timeout, retry_after: 1}]\n", "does not take retry_after"),
        ("responses: [{delay_s: 1}]\n", "'text'"),
    ],
)
def test_load_script_file_rejects_bad_scripts(tmp_path, body, message):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ValueError, match=message):
        load_script_file(path)


def test_script_object_accepted():
    handler = ScriptedLLM({"a": Script(["x"]), "b": ["y"]})
    assert handler.remaining("a") == 1 and handler.remaining("b") == 1
