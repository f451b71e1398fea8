"""Drill item 8: a test killed on the original (a signal, or the memory limit's SIGKILL) must not vote."""

from __future__ import annotations

import asyncio

from selection import GeneratedTest, SelectionConfig, select_patch
from tests.selection.conftest import candidate, issue, pool, stats_repo  # noqa: F401

# Dies on the original as the kernel's OOM killer kills a process (SIGKILL, exit 137); passes once fixed.
KILLED_ON_ORIGINAL = """\
import os
import signal
import sys

from mathlib.stats import mean

try:
    mean([])
except ZeroDivisionError:
    os.kill(os.getpid(), signal.SIGKILL)
sys.exit(0)
"""


def test_a_test_killed_on_the_original_does_not_vote(pool, stats_repo, issue):  # noqa: F811
    """item 8"""
    repo, _ = stats_repo
    tests = [GeneratedTest(id="killed", code=KILLED_ON_ORIGINAL)]
    result = asyncio.run(select_patch([candidate("right"), candidate("breaker")], pool=pool, repo_dir=repo,
                                      issue=issue, tests=tests, config=SelectionConfig(selector_enabled=False)))
    assert result.matrix["killed"]["original"].exit_code in (137, -9)
    assert result.matrix["killed"]["right"].exit_code == 0  # it would have voted for every fix
    assert result.test("killed").status == "killed", result.test("killed").reason
    assert all(c.votes == 0 for c in result.candidates)
