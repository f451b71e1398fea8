"""Parallel trajectories: fan-out, seeding, failure isolation and resume, on in-process sandboxes."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import pytest

from agent.instance import Instance
from agent.model import ModelClient
from agent.prompts import EDITING_SYSTEM, TESTING_SYSTEM
from agent.scripted import ScriptError
from agent.testing import TestingResult
from agent.trajectory import TrajectoryConfig, choose_seeds, run_trajectories
from agent.types import InMemoryStateStore
from tests.agent import test_testing as shared
from tests.agent.test_editing import CONTEXT, RIGHT_FIX, Killed
from tests.agent.test_testing import (
    ISSUE,
    client_with_store,
    reply_with_test,
)

# Fixtures shared by the agent tests (a conftest.py of their own is not ours to add).
minicalc, pool, docker_pool, either_pool = shared.minicalc, shared.pool, shared.docker_pool, shared.either_pool


def text_of(message: dict) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(part["text"] for part in content)


class Responder:
    """Answers by conversation: testing writes a test then approves; editing fixes then finishes.

    Editing first calls numbered in `crash_on` fail for good; `kill_on` (a call number) kills the process.
    """

    def __init__(self, crash_on: set[int] = frozenset(), kill_on: int | None = None) -> None:
        self.crash_on, self.kill_on = crash_on, kill_on
        self.lock = threading.Lock()
        self.calls = self.first_edit_calls = 0

    def __call__(self, messages: list[dict]) -> str:
        replies = sum(m["role"] == "assistant" for m in messages)
        with self.lock:
            self.calls += 1
            if self.calls == self.kill_on:
                raise Killed()
            first_edit = text_of(messages[0]) == EDITING_SYSTEM and replies == 0
            self.first_edit_calls += first_edit
            number = self.first_edit_calls
        if text_of(messages[0]) == TESTING_SYSTEM:
            return reply_with_test() if replies == 0 else "<approve/>"
        if first_edit and number in self.crash_on:
            raise ScriptError("scripted crash", "main")
        return RIGHT_FIX if replies == 0 else "<finish/>"


class BrokenPool:
    def lease(self):
        raise RuntimeError("docker engine gone")


def run(client, pool, repo_dir, store, config, issue=ISSUE):
    instance = Instance(client, pool, repo_dir, issue, store)
    return asyncio.run(run_trajectories(instance, context=CONTEXT, key="inst", config=config))


def test_ten_trajectories_two_crash_eight_finish(scripted, model_client: ModelClient, pool, minicalc):
    scripted.add("main", Responder(crash_on={1, 6}))  # 1: the cache-warming call itself fails
    config = TrajectoryConfig(num_tests=10, num_edits=10, test_timeout_s=20)
    results = run(model_client, pool, minicalc[0], InMemoryStateStore(), config)
    assert [r.index for r in results] == list(range(10))
    assert all(r.testing.approved and r.testing.original_exit_code == 2 for r in results)
    assert Counter(r.editing.outcome for r in results) == {"finished": 8, "model_error": 2}
    crashed = [r for r in results if r.error]
    assert len(crashed) == 2 and all("scripted crash" in r.error and r.error.startswith("editing") for r in crashed)
    for r in results:
        assert r.seed_test_index == r.index  # round-robin over ten approved tests
        assert r.cost_usd > 0
        if r.editing.outcome == "finished":
            assert r.editing.edited_exit_code == 0 and "/ len(values)" in r.editing.patch
    calls = scripted.calls("main")
    assert len(calls) == 10 * 2 + 8 * 2 + 2
    # Every trajectory of a phase starts with the byte-identical prefix.
    for system in (TESTING_SYSTEM, EDITING_SYSTEM):
        prefixes = {tuple(text_of(m) for m in c[:2]) for c in calls if text_of(c[0]) == system}
        assert len(prefixes) == 1


def test_resume_after_a_kill(scripted, pool, minicalc):
    scripted.add("main", Responder(kill_on=5))  # call 5: the first editing call, alone by design
    client, store = client_with_store(scripted), InMemoryStateStore()
    config = TrajectoryConfig(num_tests=2, num_edits=2)
    with pytest.raises(Killed):
        run(client, pool, minicalc[0], store, config)
    first = scripted.calls("main")
    assert len(first) == 5
    results = run(client, pool, minicalc[0], store, config)
    assert [r.editing.outcome for r in results] == ["finished", "finished"]
    later = scripted.calls("main")[5:]
    # Testing is not repeated at all; editing sends its 4 calls, the killed one among them.
    assert len(later) == 4 and all(text_of(c[0]) == EDITING_SYSTEM for c in later)


def test_sandbox_failures_are_recorded_then_resumed(scripted, pool, minicalc):
    scripted.add("main", Responder())
    client, store = client_with_store(scripted), InMemoryStateStore()
    config = TrajectoryConfig(num_tests=2, num_edits=2)
    broken = run(client, BrokenPool(), minicalc[0], store, config)
    assert [r.testing.outcome for r in broken] == ["crashed", "crashed"]
    assert [r.editing.outcome for r in broken] == ["crashed", "crashed"]
    assert all("RuntimeError: docker engine gone" in r.error for r in broken)
    assert broken[0].testing.test_code is not None  # the work before the failure is kept
    assert len(scripted.calls("main")) == 4
    # With a working pool the same call resumes every machine from its last step.
    results = run(client, pool, minicalc[0], store, config)
    assert all(r.testing.approved and r.editing.outcome == "finished" and not r.error for r in results)
    assert len(scripted.calls("main")) == 8  # 2 testers x 2 + 2 editors x 2, none repeated


def test_empty_issue_makes_no_call(scripted, model_client, tmp_path):
    scripted.add("main", [])
    results = run(model_client, BrokenPool(), tmp_path, InMemoryStateStore(), TrajectoryConfig(num_tests=2, num_edits=3),
                  issue="")
    assert [r.testing.outcome if r.testing else None for r in results] == ["empty_issue", "empty_issue", None]
    assert [r.editing.outcome for r in results] == ["no_edit"] * 3
    assert scripted.calls("main") == [] and not any(r.error for r in results)


def test_choose_seeds_prefers_approved_then_reproducing():
    def result(index, approved, code):
        return TestingResult(index=index, test_code=f"t{index}", approved=approved, original_exit_code=code,
                             original_output="", outcome="approved" if approved else "attempts_exhausted",
                             messages=[])

    mixed = [result(0, False, 1), result(1, True, 2), result(2, True, 2)]
    assert [s.index for s in choose_seeds(mixed, 3)] == [1, 2, 1]
    unapproved = [result(0, False, 1), result(1, False, 2)]
    assert [s.index for s in choose_seeds(unapproved, 2)] == [1, 1]
    assert choose_seeds([], 2) == [None, None]
