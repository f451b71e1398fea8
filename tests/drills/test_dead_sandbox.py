"""Drill of issue 14 item 6: a sandbox that died mid-command was reported as a test result (no exit code)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from agent.testing import in_sandbox
from sandbox.errors import SandboxBroken
from sandbox.manager import SandboxPool


def test_container_killed_mid_command_is_infrastructure_not_a_result(manager, calc_image):
    sandbox = manager.create(calc_image)
    sandbox.exec("true")  # the exec server is up
    killer = threading.Timer(1.0, lambda: manager.client.api.kill(sandbox.id))
    killer.start()
    try:
        with pytest.raises(SandboxBroken, match="died|gone|lost"):
            sandbox.exec("sleep 30", timeout=60)
    finally:
        killer.cancel()


def test_step_on_a_dead_sandbox_is_retried_on_a_fresh_one(manager, calc_image):
    pool = SandboxPool(manager, calc_image, size=1)
    seen: list[str] = []

    def work(sandbox):
        seen.append(sandbox.id)
        if len(seen) == 1:  # the first sandbox dies under the command (engine restart, OOM of init ...)
            threading.Timer(1.0, lambda: manager.client.api.kill(sandbox.id)).start()
            return sandbox.run("sleep 30", timeout=60)
        return sandbox.run("python calc.py; echo ran", timeout=60)

    try:
        result = asyncio.run(in_sandbox(pool, work))
    finally:
        pool.close()
    assert len(set(seen)) == 2 and pool.created == 2
    assert result.exit_code == 0 and "ran" in result.output
