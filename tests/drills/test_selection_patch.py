"""Drill item 9: `select` writes exactly what was tested, in a form `git apply` (and the harness) accept."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

from selection import Candidate, SelectionConfig, select_patch
from tests.selection.conftest import candidate, issue, pool, stats_repo  # noqa: F401


def _git_apply(repo, patch: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "apply", *extra, "-"], cwd=repo, input=patch, text=True, capture_output=True)


def test_a_patch_that_applies_only_with_fuzz_is_written_as_the_tree_it_made(pool, stats_repo, issue, tmp_path):  # noqa: F811
    """item 9"""
    repo, _ = stats_repo
    right = candidate("right").patch
    # The hunk's first context line is stale: git apply refuses it, `patch --fuzz` (the sandbox) takes it.
    stale = right.replace("@@ -3,11 +3,17 @@\n \n", "@@ -3,11 +3,17 @@\n # a comment that is not there\n", 1)
    assert stale != right and _git_apply(repo, stale, "--check").returncode != 0
    result = asyncio.run(select_patch([Candidate(id="stale", patch=stale)], pool=pool, repo_dir=repo, issue=issue,
                                      config=SelectionConfig(selector_enabled=False)))
    assert result.chosen_id == "stale" and result.patch_rediffed
    checkout = tmp_path / "checkout"
    shutil.copytree(repo, checkout)
    assert _git_apply(checkout, result.patch).returncode == 0, result.patch
    fixed = tmp_path / "fixed"
    shutil.copytree(repo, fixed)
    assert _git_apply(fixed, right).returncode == 0
    # Exactly the tree that was tested: the one the fuzzy hunk produced (= the right fix here).
    assert (checkout / "mathlib" / "stats.py").read_text() == (fixed / "mathlib" / "stats.py").read_text()
