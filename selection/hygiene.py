"""Hygiene of a candidate patch: what its text alone shows, plus whether the touched Python files compile.

Fatal: a touched Python file does not compile, or the patch edits only tests (it cannot fix the code).
Penalties (one each): debug prints or breakpoints added to source files; files added that the fix does
not need (scratch scripts at the repository root, reproduction scripts, backups, rejects).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from pathlib import PurePosixPath

from pydantic import BaseModel, Field
from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from selection.candidates import DistinctPatch, sha256, touched_files
from selection.matrix import CachedJobRunner, Job

_DEBUG = re.compile(r"^\s*(print\(|breakpoint\(\)|import pdb|pdb\.set_trace\(|import ipdb)")
_SCRATCH = re.compile(r"^(reproduce|repro|debug|scratch|test_issue|temp|tmp)[\w-]*\.py$|\.(orig|rej|bak|pyc)$")
TEST_PARTS = {"tests", "test", "testing"}


def is_test_path(path: str) -> bool:
    pure = PurePosixPath(path)
    return (pure.name.startswith("test_") or pure.name.endswith("_test.py") or pure.name == "conftest.py"
            or any(part in TEST_PARTS for part in pure.parts[:-1]))


class Hygiene(BaseModel):
    fatal: str | None = Field(None, description="Why this candidate cannot be the fix, if it cannot.")
    penalties: list[str] = Field(default_factory=list)


def static_hygiene(patch: str) -> Hygiene:
    """What the patch text shows (no execution)."""
    result = Hygiene()
    paths = touched_files(patch)
    if paths and all(is_test_path(p) for p in paths):
        result.fatal = "edits only tests"
    try:
        files = list(PatchSet(patch.splitlines(keepends=True)))
    except (UnidiffParseError, ValueError):
        return result
    for file in files:
        path = file.path
        if file.is_added_file and (_SCRATCH.search(PurePosixPath(path).name) or "/" not in path and path.endswith(".py")):
            result.penalties.append(f"adds unrelated file {path}")
        if is_test_path(path) or not path.endswith(".py"):
            continue
        added = [line.value for hunk in file for line in hunk if line.is_added]
        removed = {line.value.strip() for hunk in file for line in hunk if line.is_removed}
        debug = [line for line in added if _DEBUG.match(line) and line.strip() not in removed]
        if debug:
            result.penalties.append(f"debug output added to {path} ({debug[0].strip()[:60]})")
    return result


def compile_command(paths: Sequence[str]) -> str:
    """Byte-compile the touched Python files that exist after the patch (deleted ones are skipped)."""
    quoted = " ".join(shlex.quote(p) for p in paths)
    return f'for f in {quoted}; do [ -f "$f" ] || continue; python -m py_compile "$f" || exit 3; done'



async def check_hygiene(executor: CachedJobRunner, patches: Sequence[DistinctPatch]) -> dict[str, Hygiene]:
    """patch key → hygiene, the compile check included (one cheap execution per patch with Python files)."""
    out = {p.key: static_hygiene(p.candidate.patch) for p in patches}
    jobs = []
    for patch in patches:
        py = [p for p in touched_files(patch.candidate.patch) if p.endswith(".py")]
        if py:
            command = compile_command(py)
            jobs.append(Job(patch_key=patch.key, patch=patch.candidate.patch, test_key=sha256("compile\0" + command),
                            command=command, timeout=120))
    results = await executor.run(jobs)
    for job in jobs:
        outcome = results[(job.patch_key, job.test_key, 0)]
        if outcome.exit_code == 3 and out[job.patch_key].fatal is None:
            tail = outcome.output.strip().splitlines()[-1:] or ["?"]
            out[job.patch_key].fatal = f"a touched file does not compile ({tail[0][:120]})"
    return out
