"""A choice made without evidence the infrastructure lost is never recorded as `select`'s result."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

from patchswarm.lifecycle import select_instance
from patchswarm.tasks import Task
from selection import SelectionResult


class Recorder:
    def __init__(self) -> None:
        self.files: dict[str, str] = {}

    def event(self, *args, **kwargs) -> None:
        pass

    def write_file(self, name: str, text: str) -> None:
        self.files[name] = text


def _select(result: SelectionResult) -> tuple[SelectionResult, Recorder]:
    store = Recorder()
    run = SimpleNamespace(progress=Recorder(), store=store)
    task = Task(instance_id="calc-1", repo="/tmp/calc", commit="0" * 40, issue="mean([]) fails")

    async def work(_task: Task) -> SelectionResult:
        return result

    return asyncio.run(select_instance(run, task, work)), store


def test_a_choice_with_lost_executions_is_an_error_to_retry_and_a_whole_one_is_kept():
    lost = SelectionResult(chosen_id="t1", patch="diff --git a/x b/x\n", method="vote", reason="2 votes",
                           confidence=0.9, confidence_level="high",
                           sandbox_failures=["sandbox abc died: exited (137)"] * 3)
    recorded, store = _select(lost)
    assert recorded.method == "error" and recorded.chosen_id is None and recorded.patch == ""
    assert recorded.confidence_level == "none"
    assert "infrastructure failure in 3 execution(s)" in recorded.reason and "rerun" in recorded.reason
    assert json.loads(store.files["selection/calc-1.json"])["method"] == "error"
    whole = lost.model_copy(update={"sandbox_failures": []})
    kept, _ = _select(whole)
    assert kept.chosen_id == "t1" and kept.method == "vote"
