"""A Ctrl-C that lands while an instance waits for its cancelled context stage must reach the caller."""
from __future__ import annotations

import asyncio

import pytest

from patchswarm.pipeline import cancel_and_wait


def test_cancel_and_wait_swallows_only_the_tasks_own_cancellation():
    async def scenario():
        stage = asyncio.ensure_future(asyncio.Event().wait())
        await cancel_and_wait(stage)
        return stage.cancelled()

    assert asyncio.run(scenario()) is True


def test_a_caller_cancelled_while_waiting_is_not_swallowed():
    reached_after = []

    async def instance(stage_started: asyncio.Event, release: asyncio.Event):
        async def stage():
            stage_started.set()
            try:
                await asyncio.Event().wait()
            finally:  # a context stage that takes a while to wind down (a model call being closed)
                await release.wait()

        context = asyncio.ensure_future(stage())
        await stage_started.wait()
        await cancel_and_wait(context)
        reached_after.append("selection")  # the old code went on to selection after Ctrl-C

    async def scenario():
        started, release = asyncio.Event(), asyncio.Event()
        work = asyncio.ensure_future(instance(started, release))
        await started.wait()
        await asyncio.sleep(0)  # let `instance` enter cancel_and_wait and block on the stage's finally
        work.cancel()  # the Ctrl-C
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await work

    asyncio.run(scenario())
    assert reached_after == []
