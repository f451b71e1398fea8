"""Hygiene of a candidate patch: what its text alone shows, plus whether the touched Python files compile.

Fatal: a touched Python file does not compile, or the patch edits only tests (it cannot fix the code).
Penalties (one each): debug prints or breakpoints added to source files; files added that the fix does
not need (scratch scripts at the repository root or in a new top-level directory, reproduction scripts,
backups, rejects). Scratch files are also cut from the patch before anything runs (`without_scratch`):
a reproduction script or a fake package the probe imports must not count as a fix.
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Collection, Sequence
from pathlib import PurePosixPath

from pydantic import BaseModel, Field
from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from selection.candidates import DistinctPatch, sha256, touched_files
from selection.matrix import CachedJobRunner, Job
from selection.models import Candidate

_BREAKPOINT = re.compile(r"^\s*(breakpoint\(\)|import pdb|pdb\.set_trace\(|import ipdb)")
_PRINT = re.compile(r"^\s*print\(")
_SCRATCH = re.compile(r"^(reproduce|repro|replicate|debug|scratch|test_issue|temp|tmp)[\w-]*\.py$|\.(orig|rej|bak|pyc)$")
# The issue asks for something to be printed (a usage tip, an error message): then an added print of a
# message is the fix, not debug output.
_ASKS_FOR_OUTPUT = re.compile(r"\b(print(s|ed|ing)?|usage|(error|warning|help)\s+message)\b", re.I)
_SELF_DOCUMENTING = re.compile(r"\{\s*[\w.\[\]'\"()]+\s*=\s*[!:}]")  # f"{x=}"
TEST_PARTS = {"tests", "test", "testing"}


def is_test_path(path: str) -> bool:
    pure = PurePosixPath(path)
    return (pure.name.startswith("test_") or pure.name.endswith("_test.py") or pure.name == "conftest.py"
            or any(part in TEST_PARTS for part in pure.parts[:-1]))


class Hygiene(BaseModel):
    fatal: str | None = Field(None, description="Why this candidate cannot be the fix, if it cannot.")
    penalties: list[str] = Field(default_factory=list)


# -- scratch files ---------------------------------------------------------------------------------

class _FileSection(BaseModel):
    path: str | None = Field(description="Path after the patch; None for text before the first file.")
    added: bool = False
    text: str


_GIT_HEADER = re.compile(r"^diff --git a/\S+ b/(\S+)")
_NEW_PATH = re.compile(r"^\+\+\+ (?:b/)?(\S+)")


def _sections(patch: str) -> list[_FileSection]:
    """The patch cut into one section per file (git headers, else `---`/`+++` pairs), text kept exact."""
    lines = patch.splitlines(keepends=True)
    starts: list[int] = []
    paired = True  # the current section already has its ---/+++ pair (or there is none yet)
    for i, line in enumerate(lines):
        if line.startswith("diff --git "):
            starts.append(i)
            paired = False
        elif line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            if paired:  # a plain diff's file, or one after a git section: a section of its own
                starts.append(i)
            paired = True
    bounds = [0, *starts, len(lines)]
    sections = []
    for begin, end in zip(bounds, bounds[1:], strict=False):
        chunk = lines[begin:end]
        if not chunk:
            continue
        if begin < (starts[0] if starts else len(lines)):
            sections.append(_FileSection(path=None, text="".join(chunk)))
            continue
        header = [line for line in chunk if not line.startswith(("@@", " ", "+", "-")) or line.startswith(("---", "+++"))]
        path = next((m.group(1) for line in chunk if (m := _NEW_PATH.match(line)) and m.group(1) != "/dev/null"), None)
        if path is None and (git := _GIT_HEADER.match(chunk[0])):
            path = git.group(1)
        added = any(line.startswith(("new file mode", "--- /dev/null")) for line in header)
        sections.append(_FileSection(path=path, added=added, text="".join(chunk)))
    return sections


def is_scratch(path: str, top_level: Collection[str] | None) -> bool:
    """A new file no fix needs: a script at the repository root, a reproduction/backup file, or anything
    in a top-level directory the repository does not have (`a/a.py` recreating an issue's example)."""
    pure = PurePosixPath(path)
    if is_test_path(path):
        return False
    if _SCRATCH.search(pure.name) or (len(pure.parts) == 1 and pure.suffix == ".py"):
        return True
    return top_level is not None and len(pure.parts) > 1 and pure.parts[0] not in top_level


def scratch_files(patch: str, top_level: Collection[str] | None = None) -> list[str]:
    """Paths of the scratch files a patch adds (`is_scratch`), in patch order."""
    return [s.path for s in _sections(patch) if s.added and s.path and is_scratch(s.path, top_level)]


def without_scratch(patch: str, top_level: Collection[str] | None = None) -> tuple[str, list[str]]:
    """The patch with its scratch files cut out, and their paths; the patch unchanged if it has none."""
    sections = _sections(patch)
    cut = [s for s in sections if s.added and s.path and is_scratch(s.path, top_level)]
    if not cut:
        return patch, []
    kept = "".join(s.text for s in sections if s not in cut)
    return (kept if any(s.path for s in sections if s not in cut) else ""), [s.path for s in cut if s.path]


def runnable_candidates(candidates: Sequence[Candidate], top_level: Collection[str] | None,
                        notes: list[str]) -> list[Candidate]:
    """Candidates as they run: scratch files cut out, so a reproduction script or a recreated example
    package cannot change what probes and tests see (pylint-7114: a patch of only `a/a.py`, `a/b.py` and
    `r.py` "fixed" the issue's `from a import b`). What is cut goes to `notes`."""
    out = []
    for candidate in candidates:
        patch, cut = without_scratch(candidate.patch, top_level)
        if cut:
            notes.append(f"{candidate.id}: scratch file(s) not run or written: {', '.join(cut[:5])}")
        out.append(candidate.model_copy(update={"patch": patch}) if cut else candidate)
    return out


# -- debug output ----------------------------------------------------------------------------------

def is_debug_print(line: str, issue: str = "") -> bool:
    """An added `print(...)` that is debug output: it prints only values (`print(x)`, `print(obj.help())`),
    says "debug", or uses `f"{x=}"`; or it prints a message to stdout although the issue asks for no
    output. A message to stderr, or one the issue asks for (it mentions printing, a usage tip, an error
    message), is the fix talking to its user."""
    text = line.strip()
    if "debug" in text.lower() or _SELF_DOCUMENTING.search(text):
        return True
    try:
        call = ast.parse(text).body[0].value  # type: ignore[attr-defined]
    except (SyntaxError, IndexError, AttributeError, ValueError):
        call = None  # a print spread over several lines: judge its first line's text
    if isinstance(call, ast.Call):
        message = any(_has_words(arg) for arg in call.args)
        stderr = any(k.arg == "file" and "stderr" in ast.unparse(k.value) for k in call.keywords)
    else:
        message = bool(re.search(r"""["'][^"']*[A-Za-z]{2,}""", text))
        stderr = "stderr" in text
    if not message:
        return True
    return not (stderr or _ASKS_FOR_OUTPUT.search(issue))


def _has_words(node: ast.expr) -> bool:
    """A string literal (or f-string) with a word in its literal text."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return bool(re.search(r"[A-Za-z]{2,}", node.value))
    if isinstance(node, ast.JoinedStr):
        return any(_has_words(part) for part in node.values if isinstance(part, ast.Constant))
    if isinstance(node, ast.BinOp):
        return _has_words(node.left) or _has_words(node.right)
    return False


def static_hygiene(patch: str, issue: str = "", top_level: Collection[str] | None = None) -> Hygiene:
    """What the patch text shows (no execution). `top_level`: the repository's top-level names (None =
    unknown); `issue`: its text, which says whether printed output is asked for."""
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
        if file.is_added_file and is_scratch(path, top_level):
            result.penalties.append(f"adds unrelated file {path}")
            continue  # a scratch script may print: one penalty for it is enough
        if is_test_path(path) or not path.endswith(".py"):
            continue
        added = [line.value for hunk in file for line in hunk if line.is_added]
        removed = {line.value.strip() for hunk in file for line in hunk if line.is_removed}
        debug = [line for line in added if line.strip() not in removed
                 and (_BREAKPOINT.match(line) or (_PRINT.match(line) and is_debug_print(line, issue)))]
        if debug:
            result.penalties.append(f"debug output added to {path} ({debug[0].strip()[:60]})")
    return result


def compile_command(paths: Sequence[str]) -> str:
    """Byte-compile the touched Python files that exist after the patch (deleted ones are skipped)."""
    quoted = " ".join(shlex.quote(p) for p in paths)
    return f'for f in {quoted}; do [ -f "$f" ] || continue; python -m py_compile "$f" || exit 3; done'


async def check_hygiene(executor: CachedJobRunner, patches: Sequence[DistinctPatch], *, issue: str = "",
                        texts: dict[str, str] | None = None,
                        top_level: Collection[str] | None = None) -> dict[str, Hygiene]:
    """patch key → hygiene, the compile check included (one cheap execution per patch with Python files).
    `texts`: patch key → the text as submitted (scratch files included), read for the static checks."""
    out = {p.key: static_hygiene((texts or {}).get(p.key, p.candidate.patch), issue, top_level) for p in patches}
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
