"""Drill of issue 14 item 3: an unpaired surrogate from a model, a repository or a test crashed the store
write after the call was billed; every resume then billed the call again."""

from __future__ import annotations

import asyncio
import json

from agent.model import CallScope, ModelClient
from agent.testing import ReproRun
from patchswarm.store import RunCallStore, RunStore
from patchswarm.tasks import load_tasks_jsonl
from tests.conftest import providers, scripted_settings

REPLY = "Fixed the caf\udce9 bug.\n<finish/>"


def test_a_paid_reply_with_a_lone_surrogate_is_stored_once_and_replayed(scripted, tmp_path):
    scripted.add("main", [REPLY])
    store = RunStore(tmp_path / "run")
    calls = RunCallStore(store, "cfg")
    scope = CallScope(instance_id="inst")
    try:
        client = ModelClient(scripted_settings(), store=calls, recorder=calls, providers=providers(scripted))
        first = asyncio.run(client.scoped(scope).complete("primary", [{"role": "user", "content": "fix \udce9"}]))
        assert first.text == "Fixed the caf\ufffd bug.\n<finish/>" and not first.reused
        assert store.count_calls() == 1 and store.totals().calls == 1
        # A resume (a new client on the same store) replays the paid call instead of paying again.
        again = asyncio.run(ModelClient(scripted_settings(), store=calls, recorder=calls,
                                        providers=providers(scripted)).scoped(scope).complete(
            "primary", [{"role": "user", "content": "fix \udce9"}]))
        assert again.reused and again.text == first.text
        assert len(scripted.calls("main")) == 1
        # Test output and state text with surrogates are storable and read back by pydantic too.
        run = ReproRun(exit_code=2, output="b\udcff\udcfe")
        store.save("state", {"run": run.model_dump(), "note": "\ud800"})
        loaded = ReproRun.model_validate_json(json.dumps(store.load("state")["run"]))
        assert loaded.output == "b\ufffd\ufffd"
        store.mark_instance("inst", "cfg", "failed", error="path caf\udce9.py", result={"x": "\udce9"})
        store.event("note", "inst", text="\udce9")
        store.write_file("instances/inst/result.json", "\udce9")
        assert (tmp_path / "run" / "instances" / "inst" / "result.json").read_text() == "\ufffd"
    finally:
        store.close()


def test_task_file_with_an_escaped_surrogate_is_usable(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"instance_id": "i\udce9", "repo": ".", "commit": "HEAD",
                                 "issue": "caf\udce9 breaks"}) + "\n")
    task = load_tasks_jsonl(tasks)[0]
    assert task.issue == "caf\ufffd breaks" and task.instance_id == "i\ufffd"
    task.model_dump_json()  # would raise with the surrogate
