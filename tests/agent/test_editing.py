"""Editing state machine with the scripted model, on in-process sandboxes (and end to end on Docker)."""

from __future__ import annotations

import asyncio

import pytest

from agent.editing import EditingMachine
from agent.instance import Instance, TrajectoryConfig
from agent.prompts import EDITING_SYSTEM, editing_prefix
from agent.testing import TestingResult
from agent.types import ContextBundle, ContextFile, InMemoryStateStore
from tests.agent import test_testing as shared
from tests.agent.test_testing import (
    ISSUE,
    REPRO,
    CountingPool,
    client_with_store,
    last_user_text,
    reply_with_test,
)
from tests.conftest import FIXTURES

STATS = (FIXTURES / "minicalc" / "minicalc" / "stats.py").read_text()
CONTEXT = ContextBundle(files=[ContextFile(path="minicalc/stats.py", text=STATS)])
SEED = TestingResult(test_code=REPRO, approved=True, original_exit_code=2, original_output="mean([2, 4]) = 2.0\n",
                     outcome="approved", messages=[])

# Fixtures shared by the agent tests (a conftest.py of their own is not ours to add).
minicalc, pool, docker_pool, either_pool = shared.minicalc, shared.pool, shared.docker_pool, shared.either_pool


def edit(search: str, replace: str, path: str = "minicalc/stats.py") -> str:
    return f"Fixing it.\n<edit>\n{path}\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n</edit>\n"


BUGGY_LINE = "    return total(values) / (len(values) + 1)"
WRONG_FIX = edit(BUGGY_LINE, "    return total(values) / (len(values) - 1)")
RIGHT_FIX = edit(BUGGY_LINE, "    return total(values) / len(values)")


def make_editor(client, pool, repo_dir, *, seed=SEED, store=None, **config) -> EditingMachine:
    instance = Instance(client, pool, repo_dir, ISSUE, store or InMemoryStateStore())
    return EditingMachine(instance, context=CONTEXT, seed=seed, key="inst/editing/0",
                          config=TrajectoryConfig(**config))


class Killed(BaseException):
    """Stands in for the process being killed: nothing in the machine may catch it."""


class KillingStore(InMemoryStateStore):
    """Dies on the n-th save: the step before it (a completed model call) is not in the saved state."""

    def __init__(self, die_on_save: int) -> None:
        super().__init__()
        self.saves, self.die_on_save = 0, die_on_save

    def save(self, key, state) -> None:
        self.saves += 1
        if self.saves == self.die_on_save:
            raise Killed()
        super().save(key, state)


def test_bug_fixed_in_three_turns(scripted, model_client, either_pool, minicalc):
    scripted.add("main", [WRONG_FIX, RIGHT_FIX, "The test passes now. <finish/>"])
    counting = CountingPool(either_pool)
    result = asyncio.run(make_editor(model_client, counting, minicalc[0]).run())
    assert result.outcome == "finished" and result.attempts == 3
    assert "+    return total(values) / len(values)" in result.patch and "len(values) - 1" not in result.patch
    assert result.edited_exit_code == 0 and result.original_exit_code == 2
    assert counting.leases == 2  # the seed's original run is reused: only the edited runs happen
    calls = scripted.calls("main")
    system, shared = editing_prefix(CONTEXT, ISSUE)
    assert calls[0][0] == system and system["content"] == EDITING_SYSTEM
    # The shared prefix ends with the context + issue message, marked for the provider's cache.
    assert calls[0][1]["content"] == [{"type": "text", "text": shared["content"], "cache_control": {"type": "ephemeral"}}]
    assert "<code>" in shared["content"] and STATS in shared["content"]
    after_wrong, after_right = last_user_text(calls[1]), last_user_text(calls[2])
    assert "len(values) - 1" in after_wrong and "mean([2, 4]) = 6.0" in after_wrong
    assert "ORIGINAL repository:\nExit code: 2" in after_wrong and "EDITED repository:\nExit code: 2" in after_wrong
    assert "EDITED repository:\nExit code: 0 (the issue is fixed)" in after_right
    # The repro test lives outside the repository, so it never enters the patch.
    assert "repro_test" not in result.patch


def test_edit_errors_reach_the_model(scripted, model_client, pool, minicalc):
    wrong_search = edit("    return sum(values) / len(values) + 1", "    return total(values) / len(values)")
    scripted.add("main", [wrong_search, RIGHT_FIX, "<finish/>"])
    counting = CountingPool(pool)
    result = asyncio.run(make_editor(model_client, counting, minicalc[0]).run())
    assert result.outcome == "finished" and result.edited_exit_code == 0
    feedback = last_user_text(scripted.calls("main")[1])
    assert feedback.startswith("The edit was rejected and nothing was applied")
    assert "minicalc/stats.py" in feedback
    assert counting.leases == 1  # a rejected edit never reaches a sandbox


def test_create_and_delete_files_and_a_new_test(scripted, model_client, pool, minicalc):
    new_test = (
        "import os, sys\nfrom minicalc import mean\nfrom minicalc.util import count\n"
        "print('legacy exists:', os.path.exists('minicalc/legacy.py'))\n"
        "sys.exit(0 if mean([2, 4]) == 3 and count([1, 2]) == 2 else 2)\n"
    )
    change = (
        "<edit>\nminicalc/util.py\n<<<<<<< SEARCH\n=======\ndef count(values):\n    return len(values)\n"
        ">>>>>>> REPLACE\n</edit>\n"
        + edit(BUGGY_LINE, "    from minicalc.util import count\n    return total(values) / count(values)")
        + "<delete>minicalc/legacy.py</delete>\n"
    )
    scripted.add("main", [change, reply_with_test(new_test), "<finish/>"])
    result = asyncio.run(make_editor(model_client, pool, minicalc[0]).run())
    assert result.outcome == "finished" and result.test_code == new_test
    assert "new file mode" in result.patch and "deleted file mode" in result.patch
    # The new test ran on both trees: it cannot import the helper on the original one.
    assert result.original_exit_code == 1 and "ModuleNotFoundError" in result.original_output
    assert result.edited_exit_code == 0 and "legacy exists: False" in result.edited_output
    assert (minicalc[0] / "minicalc" / "legacy.py").exists()  # the host checkout stays pristine


def test_finish_without_an_edit_and_patch_failures(scripted, model_client, pool, minicalc, tmp_path):
    # A host checkout that differs from the image: the edit is valid here but does not apply there.
    drifted = tmp_path / "drifted"
    (drifted / "minicalc").mkdir(parents=True)
    (drifted / "minicalc" / "stats.py").write_text(STATS.replace("(len(values) + 1)", "(len(values) + 2)"))
    drift_fix = edit("    return total(values) / (len(values) + 2)", "    return total(values) / len(values)")
    scripted.add("main", [drift_fix, "<finish/>"])
    result = asyncio.run(make_editor(model_client, pool, drifted).run())
    assert result.outcome == "no_edit" and result.patch is None
    assert "could not be applied in the test environment" in last_user_text(scripted.calls("main")[1])


def test_resume_after_a_kill_repeats_no_model_call(scripted, pool, minicalc):
    scripted.add("main", [WRONG_FIX, RIGHT_FIX, "<finish/>"])
    client = client_with_store(scripted)
    # Saves: 1 after the first ask, 2 after its run, 3 after the second ask -> dies with that call done.
    store = KillingStore(die_on_save=3)
    with pytest.raises(Killed):
        asyncio.run(make_editor(client, pool, minicalc[0], store=store).run())
    assert len(scripted.calls("main")) == 2 and store.load("inst/editing/0")["phase"] == "ask"
    result = asyncio.run(make_editor(client, pool, minicalc[0], store=store).run())
    assert result.outcome == "finished" and result.edited_exit_code == 0
    # The second call was read back from the call store; only the third reached the model.
    assert len(scripted.calls("main")) == 3 and scripted.remaining("main") == 0
    assert result.attempts == 3 and result.cost_usd > 0


def test_without_a_seed_test_the_model_may_write_one(scripted, model_client, pool, minicalc):
    scripted.add("main", [reply_with_test(), RIGHT_FIX, "<finish/>"])
    result = asyncio.run(make_editor(model_client, pool, minicalc[0], seed=None).run())
    assert result.outcome == "finished" and result.original_exit_code == 2 and result.edited_exit_code == 0
    assert "No reproduction test is available" in last_user_text(scripted.calls("main")[0])
    assert "No edit is in place yet" in last_user_text(scripted.calls("main")[1])
