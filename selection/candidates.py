"""Collapse candidates and tests that are the same thing, so each distinct one runs once."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from pydantic import BaseModel, Field
from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from agent.edit.blocks import diff_stats
from agent.edit.diff import loose_patch_text, normalize_patch
from selection.models import Candidate, GeneratedTest

# A patch unidiff cannot read still gets a size, just the worst one, so it never wins a size tie.
UNKNOWN_SIZE = 10**9


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical_test(code: str) -> str:
    """Test text with trailing whitespace (per line and at the end) removed."""
    return "\n".join(line.rstrip() for line in code.rstrip().splitlines()) + "\n"


def patch_key(patch: str) -> str:
    """sha256 of the near-exact patch text (`normalize_patch`); '' for a blank patch (the original tree).

    This decides which candidates run once and keys the on-disk result cache, so it keeps everything
    that can change behaviour (indentation, inner spaces, renames, modes): only CRs and trailing
    whitespace are ignored.
    """
    normal = normalize_patch(patch)
    return sha256(normal) if normal else ""


def agreement_key(patch: str) -> str:
    """Key under which candidates count as proposing the same change up to whitespace and context.

    For reporting agreement (`support`) only, never for running or caching: see `loose_patch_text`.
    Patches it cannot read or without line changes (renames, modes) agree only with exact copies.
    """
    try:
        loose = loose_patch_text(patch)
    except (UnidiffParseError, ValueError):
        loose = ""
    return "loose:" + sha256(loose) if loose else patch_key(patch)


def lines_changed(patch: str) -> int:
    try:
        _, added, removed = diff_stats(patch)
    except (UnidiffParseError, ValueError):
        return UNKNOWN_SIZE
    return added + removed


_SYSTEM_SPLIT = re.compile(r"[_#/\s]+")


def system_of(candidate_id: str) -> str:
    """The system a candidate comes from: the first `_`-separated word of its id that has a letter
    (`swefixer_lite_no_p2p` and `swefixer_verified#2` are one system, `20240620_sweagent_x` is `sweagent`;
    `sys-a` and `sys-b`, or the pipeline's `t0`, `t1`, are distinct).

    Agreement between runs of one system is not independent evidence: on real pools one system's
    variants often submit the same wrong patch, so consensus counts systems, not submissions.
    """
    words = [w for w in _SYSTEM_SPLIT.split(candidate_id) if any(c.isalpha() for c in w)]
    return words[0].lower() if words else candidate_id


def touched_files(patch: str) -> list[str]:
    """Paths a patch changes (new paths of renames), in patch order."""
    try:
        return [f.path for f in PatchSet(patch.splitlines(keepends=True))]
    except (UnidiffParseError, ValueError):
        paths = re.findall(r"^\+\+\+ b/(\S+)", patch, flags=re.M)
        return list(dict.fromkeys(paths))


class DistinctPatch(BaseModel):
    """Candidates whose patches are equal up to CRs and trailing whitespace: one behaviour, run once.

    Their texts may still differ in those, so one may apply where another does not (git apply compares
    context lines exactly): the first variant that applies is the one that runs and represents the group.
    """

    key: str = Field(description="`patch_key`: sha256 of the near-exact patch text; '' = no change.")
    variants: list[Candidate] = Field(description="Every candidate with this key, in input order.")
    candidate: Candidate = Field(description="The variant that runs (the first that applies).")
    failed: dict[str, str] = Field(default_factory=dict, description="Variant id → why its own text does not apply.")
    lines_changed: int = 0

    @property
    def id(self) -> str:
        return self.candidate.id

    @property
    def members(self) -> list[str]:
        return [c.id for c in self.variants]

    @property
    def empty(self) -> bool:
        return self.key == ""

    def promote_next(self, error: str) -> bool:
        """The current variant does not apply: mark every variant with its text, switch to the next one."""
        for variant in self.variants:
            if variant.patch == self.candidate.patch:
                self.failed[variant.id] = error
        for variant in self.variants:
            if variant.id not in self.failed:
                self.candidate = variant
                self.lines_changed = lines_changed(variant.patch)
                return True
        return False


class DistinctTest(BaseModel):
    key: str = Field(description="sha256 of the canonical test text.")
    test: GeneratedTest
    code: str = Field(description="Canonical text; this is what runs.")
    members: list[str]

    @property
    def id(self) -> str:
        return self.test.id


def _unique_ids(ids: Sequence[str], what: str) -> None:
    seen: set[str] = set()
    for item in ids:
        if item in seen:
            raise ValueError(f"two {what} share the id {item!r}; ids must be unique")
        seen.add(item)


def distinct_patches(candidates: Sequence[Candidate]) -> list[DistinctPatch]:
    """Group candidates by `patch_key`, keeping input order."""
    _unique_ids([c.id for c in candidates], "candidates")
    by_key: dict[str, DistinctPatch] = {}
    for candidate in candidates:
        key = patch_key(candidate.patch)
        if key in by_key:
            by_key[key].variants.append(candidate)
        else:
            size = lines_changed(candidate.patch) if key else 0
            by_key[key] = DistinctPatch(key=key, variants=[candidate], candidate=candidate, lines_changed=size)
    return list(by_key.values())


def distinct_tests(tests: Sequence[GeneratedTest]) -> list[DistinctTest]:
    """Group tests whose text differs only in trailing whitespace, keeping input order."""
    _unique_ids([t.id for t in tests], "tests")
    by_key: dict[str, DistinctTest] = {}
    for test in tests:
        code = canonical_test(test.code)
        key = sha256(code)
        if key in by_key:
            by_key[key].members.append(test.id)
        else:
            by_key[key] = DistinctTest(key=key, test=test, code=code, members=[test.id])
    return list(by_key.values())
