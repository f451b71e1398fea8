"""Drill of issue 14 item 6: a sandbox that died mid-command was reported as a test result (no exit code)."""

from __future__ import annotations

import asyncio
import contextlib
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


def test_selection_executions_lost_to_dead_sandboxes_are_counted_never_results(manager, calc_image, tmp_path):
    """A matrix cell whose sandbox dies under it, again on the fresh one, is a sandbox failure the caller
    sees (`sandbox_failures`, which keeps a pipeline or `select` from taking the choice as final), and
    nothing of it is cached."""
    from sandbox.labels import LABEL_RUN
    from selection.cache import OutcomeCache
    from selection.matrix import CachedJobRunner, Job

    pool = SandboxPool(manager, calc_image, size=1)
    cache = OutcomeCache(tmp_path)
    runner = CachedJobRunner(pool, cache, "image")
    done = threading.Event()

    def kill_every_sandbox() -> None:  # the engine keeps losing this run's containers
        while not done.wait(0.3):
            for container in manager.client.containers.list(filters={"label": f"{LABEL_RUN}={manager.run_id}"}):
                with contextlib.suppress(Exception):
                    container.kill()

    killer = threading.Thread(target=kill_every_sandbox, daemon=True)
    killer.start()
    try:
        job = Job(patch_key="", patch=None, test_key="t", command="sleep 30", timeout=60)
        outcome = asyncio.run(runner.run([job]))[("", "t", 0)]
    finally:
        done.set()
        killer.join()
        pool.close()
    assert outcome.exit_code is None and outcome.error and outcome.error.startswith("sandbox failure")
    assert len(runner.sandbox_failures) == 1 and runner.performed == 0
    assert cache.get(runner.key("", "t", 0)) is None
    cache.close()
