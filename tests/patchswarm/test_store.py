"""The run store: real SQLite files in a temporary run directory."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from agent.call_records import CallRecord, Usage
from patchswarm.store import CallTotals, NamespacedStateStore, RunCallStore, RunStore


@pytest.fixture
def store(tmp_path):
    store = RunStore(tmp_path / "run")
    yield store
    store.close()


def record(call_id: str, *, key: str | None = None, role: str = "primary", cost: float | None = 0.5,
           tokens: tuple[int, int] = (100, 10), text: str = "reply") -> CallRecord:
    return CallRecord(call_id=call_id, key=key, role=role, model="scripted/m", started_at=0.0, cost_usd=cost,
                      usage=Usage(input_tokens=tokens[0], output_tokens=tokens[1]), response_text=text)


def test_database_is_in_wal_mode(store):
    other = sqlite3.connect(store.path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent: any connection sees it
    finally:
        other.close()
    store.set_meta("k", 1)
    assert store.path.with_name("run.sqlite-wal").exists()


def test_states_save_load_overwrite_and_survive_reopen(tmp_path):
    store = RunStore(tmp_path / "run")
    store.save("i:h:0:traj/testing/0", {"phase": "ask", "turns": [{"role": "user", "content": "é"}]})
    store.save("i:h:0:traj/testing/0", {"phase": "run", "turns": []})
    assert store.load("i:h:0:traj/testing/0") == {"phase": "run", "turns": []}
    assert store.load("missing") is None
    store.close()
    reopened = RunStore(tmp_path / "run")
    try:
        assert reopened.load("i:h:0:traj/testing/0") == {"phase": "run", "turns": []}
    finally:
        reopened.close()


def test_namespaced_state_store_keeps_instances_and_configs_apart(store):
    one, two = NamespacedStateStore(store, "inst:hash1:0"), NamespacedStateStore(store, "inst:hash2:0")
    one.save("traj/editing/0", {"v": 1})
    assert two.load("traj/editing/0") is None
    two.save("traj/editing/0", {"v": 2})
    assert one.load("traj/editing/0") == {"v": 1}
    assert store.load("inst:hash1:0:traj/editing/0") == {"v": 1}


def test_call_store_is_namespaced_by_config_hash(store):
    first, second = RunCallStore(store, "hash1"), RunCallStore(store, "hash2")
    first.put(record("c1", key="k", text="from config 1"))
    assert first.get("k").response_text == "from config 1"
    assert second.get("k") is None, "another config must not replay this config's calls"
    second.put(record("c2", key="k", text="from config 2"))
    assert first.get("k").response_text == "from config 1"
    assert second.get("k").response_text == "from config 2"
    first.put(record("c3", key=None))  # unkeyed calls are not replayable and not stored
    assert store.count_calls() == 2


def test_calls_are_filed_under_the_instance_their_record_names(store):
    calls = RunCallStore(store, "h")

    async def instance(name: str, cost: float) -> None:
        await asyncio.sleep(0)  # interleave the two instances' tasks
        calls.record(record(f"{name}-1", cost=cost).model_copy(update={"instance_id": name}))
        calls.put(record(f"{name}-1", key=f"{name}-key", cost=cost).model_copy(update={"instance_id": name}))

    async def both() -> None:
        await asyncio.gather(instance("a", 0.25), instance("b", 1.0))

    asyncio.run(both())
    assert store.totals("a").cost_usd == 0.25 and store.totals("b").cost_usd == 1.0
    rows = dict(store._exec("SELECT key, instance_id FROM calls"))
    assert rows == {"h:a-key": "a", "h:b-key": "b"}


def test_totals_count_billed_calls_only(store):
    store.log_call(record("1", role="relevance", cost=0.25, tokens=(100, 5)), "a")
    store.log_call(record("2", role="primary", cost=1.0, tokens=(200, 20)), "a")
    store.log_call(record("3", role="primary", cost=None, tokens=(50, 5)), "a")  # unknown price
    store.log_call(record("4", role="primary", cost=2.0, tokens=(300, 30)), "b")
    store.log_call(record("5", role="primary", cost=8.0, tokens=(999, 99)), "a", reused=True)  # replayed, not billed
    assert store.totals("a") == CallTotals(calls=3, cost_usd=1.25, input_tokens=350, output_tokens=30,
                                           unknown_cost_calls=1)
    assert store.totals() == CallTotals(calls=4, cost_usd=3.25, input_tokens=650, output_tokens=60,
                                        unknown_cost_calls=1)
    assert store.totals("nobody") == CallTotals()
    assert store.cost_by_role("a") == {"relevance": 0.25, "primary": 1.0}
    assert store.cost_by_role() == {"relevance": 0.25, "primary": 3.0}


def test_instances_are_keyed_by_config_hash_and_keep_their_result(store):
    store.mark_instance("i", "h1", "running")
    assert store.instance_status("i", "h1") == ("running", None)
    store.mark_instance("i", "h1", "solved", result={"patch": "p"}, cost_usd=0.5)
    store.mark_instance("i", "h1", "running")  # resumed: the earlier result stays until replaced
    assert store.instance_status("i", "h1") == ("running", {"patch": "p"})
    assert store.instance_status("i", "h2") is None
    store.mark_instance("i", "h2", "failed", error="boom")
    rows = {(r["config_hash"], r["status"]): r for r in store.instances()}
    assert rows[("h1", "running")]["cost_usd"] == 0.5 and rows[("h1", "running")]["finished_at"] is None
    assert rows[("h2", "failed")]["error"] == "boom" and rows[("h2", "failed")]["finished_at"] is not None


def test_events_and_meta(store):
    store.event("execution", "a", exit_code=0)
    store.event("execution", "b", exit_code=2)
    store.event("note", None, text="x")
    assert [e["data"]["exit_code"] for e in store.events(kind="execution")] == [0, 2]
    assert [e["kind"] for e in store.events(instance_id="b")] == ["execution"]
    store.set_meta("config", {"workers": 2})
    assert store.get_meta("config") == {"workers": 2} and store.get_meta("nope", 7) == 7


def test_write_file_is_atomic_and_leaves_no_temporary(store):
    path = store.write_file("instances/x/result.json", "{}")
    store.write_file("instances/x/result.json", '{"a": 1}')
    assert path.read_text() == '{"a": 1}'
    assert sorted(p.name for p in path.parent.iterdir()) == ["result.json"]


def test_many_threads_write_without_losing_anything(store):
    def work(n: int) -> None:
        for i in range(40):
            store.save(f"t{n}:{i}", {"i": i})
            store.log_call(record(f"{n}-{i}", cost=0.01), f"inst{n}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.totals().calls == 240
    assert store.totals().cost_usd == pytest.approx(2.4)
    assert all(store.load(f"t{n}:39") == {"i": 39} for n in range(6))
