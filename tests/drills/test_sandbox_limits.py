"""Drills of issue 14 on the sandbox's own limits: timeouts (item 2), fork bombs (item 7), disk (item 1)."""

from __future__ import annotations

import asyncio
import time

from patchswarm.report.build import _trajectory
from sandbox.manager import Limits
from tests.agent.test_editing import BUGGY_LINE, edit, make_editor
from tests.agent.test_testing import client_with_store, minicalc, pool  # noqa: F401


def test_timed_out_command_never_reads_as_success(sandbox):
    """item 2: through the exec server a killed command reported exit code 0."""
    result = sandbox.exec("sleep 100", timeout=2)
    assert result.timed_out and result.exit_code == 137 and not result.ok
    ran = sandbox.run("sleep 100", timeout=2)
    assert ran.timed_out and ran.exit_code == 137


def test_hung_edited_test_is_recorded_as_timeout_not_fixed(scripted, pool, minicalc):  # noqa: F811
    """item 2: a hung reproduction test was stored as `edited_exit_code: 0` and shown green in the report."""
    hang = edit(BUGGY_LINE, "    import time\n    time.sleep(100)")
    scripted.add("main", [hang, "<finish/>"])
    editor = make_editor(client_with_store(scripted), pool, minicalc[0], test_timeout_s=2)
    result = asyncio.run(editor.run())
    assert result.edited_exit_code != 0 and result.edited_timed_out
    feedback = scripted.calls("main")[1][-1]["content"]
    assert "timed out" in (feedback if isinstance(feedback, str) else str(feedback))
    view = _trajectory({"index": 0, "editing": result.model_dump()})
    assert [run.tone for run in view.machines[0].runs] == ["issue", "timeout"]


def test_fork_bomb_keeps_init_and_timeout_holds(manager, calc_image):
    """item 7: a fork bomb killed the sandbox's init and the timeout kill took 8-17 s longer."""
    sandbox = manager.create(calc_image, limits=Limits(pids=256))
    init_before = manager.client.api.top(sandbox.id)["Processes"][0][1]
    sandbox.exec("true", timeout=30)  # starts the exec server: its start-up is not part of any timeout
    for bomb in ("bomb(){ bomb | bomb & }; bomb; sleep 100", "while :; do sleep 1000 & done"):
        started = time.monotonic()
        result = sandbox.exec(bomb, timeout=4)
        took = time.monotonic() - started
        assert result.timed_out and result.exit_code == 137
        assert took < 4 + 1.5, f"timeout of 4 s took {took:.1f} s"
    sandbox.container.reload()
    assert sandbox.container.status == "running"
    assert manager.client.api.top(sandbox.id)["Processes"][0][1] == init_before  # same PID 1
    assert sandbox.exec("echo alive", timeout=5).output == "alive\n"
