"""Regression check: the repository's own tests near the touched files, on the original and on finalists.

A candidate that makes a test fail which passed in both runs on the original has a regression.
Everything that cannot run (import errors on the original, no tests found, sandbox failures) is
"unknown" and says nothing. No benchmark labels (test_patch, FAIL_TO_PASS, ...) are ever used.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, Field

from sandbox.execution import ExecResult
from selection.candidates import DistinctPatch, sha256, touched_files
from selection.matrix import CachedJobRunner, Job
from selection.models import Outcome, RegressionReport, SelectionConfig

SKIP_DIRS = {".git", ".hg", ".svn", ".tox", ".nox", ".venv", "venv", "env", "node_modules", "build", "dist",
             "__pycache__", ".eggs", "site-packages", ".mypy_cache", ".pytest_cache",
             "doc", "docs", "testutils"}  # docs' scripts and test helpers (pylint's lint_module_test.py) are not tests
TEST_DIRS = {"tests", "test", "testing"}
MAX_TEST_FILE_BYTES = 1_000_000
REGRESSION_OUTPUT_CAP = 4 * 1024 * 1024  # per-test lines must survive; head+tail capping would cut them
PYTEST_PROBE = "python -c 'import pytest'"

_PYTEST_LINE = re.compile(r"^(PASSED|FAILED|ERROR|XFAIL|XPASS)\s+(\S+::.+?)(?: - .*)?$", re.M)
_PYTEST_STATUS = {"PASSED": "passed", "FAILED": "failed", "ERROR": "error", "XFAIL": "skipped", "XPASS": "passed"}
_UNITTEST_START = re.compile(r"^(\w+) \(([\w.]+)\)")
_UNITTEST_STATUS = re.compile(r"(?:^|\.\.\. )(ok|FAIL|ERROR|skipped\b.*|expected failure|unexpected success)$")
_UNITTEST_MAP = {"ok": "passed", "FAIL": "failed", "ERROR": "error", "expected failure": "skipped",
                 "unexpected success": "failed"}
NEUTRAL = {"passed", "skipped"}
# sympy's own runner (`bin/test --verbose`): a file header, then one `name status` line per test.
_SYMPY_FILE = re.compile(r"^(\S+\.py)\[\d+\]")
_SYMPY_LINE = re.compile(r"^(test_\w+)\s+(?:\w+\s+)?(ok|F|E|f|s|w|X)\b")
_SYMPY_STATUS = {"ok": "passed", "F": "failed", "E": "error", "f": "skipped", "s": "skipped", "w": "skipped",
                 "X": "failed"}


# -- which tests ---------------------------------------------------------------------------------

def is_test_file(path: PurePosixPath) -> bool:
    name = path.name
    if not name.endswith(".py"):
        return False
    if name.startswith("test_") or name.endswith("_test.py"):
        return True
    # `testfoo.py` and pylint's `unittest_foo.py` count only inside a tests folder.
    return name.startswith(("test", "unittest_")) and any(part in TEST_DIRS for part in path.parts[:-1])


def _module_of(path: str) -> tuple[str, str, str] | None:
    """(dotted module, parent package, leaf name) of a source file; None for non-Python files."""
    pure = PurePosixPath(path)
    if pure.suffix != ".py":
        return None
    parts = list(pure.with_suffix("").parts)
    if len(parts) > 1 and parts[0] in ("src", "lib"):
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if not parts:
        return None
    return ".".join(parts), ".".join(parts[:-1]), parts[-1]


def _named_after(stem: str, dotted: str, leaf: str) -> float | None:
    """0 for `test_mod`, `mod_test`, `unittest_mod` (pylint) or `test_<anything>_mod` for a module in a
    package (sphinx's test_util_inspect); 0.5 for `test<anything>mod` (pytest's test_assertrewrite)."""
    if (stem in (f"test_{leaf}", f"{leaf}_test", f"test{leaf}", f"unittest_{leaf}")
            or stem.startswith((f"test_{leaf}_", f"unittest_{leaf}_"))
            or (stem.startswith("test_") and stem.endswith(f"_{leaf}") and "." in dotted)):
        return 0
    if stem.startswith("test") and stem.endswith(leaf) and len(leaf) >= 4 and "." in dotted:
        return 0.5
    return None


def _relevance(rel: PurePosixPath, text: str, module: tuple[str, str, str]) -> float | None:
    """0 = named after the module, 1 = imports it by full name, 2 = imports it otherwise,
    3 = named after its package (pytest's `testing/test_mark.py` for `_pytest/mark/evaluate.py`)."""
    dotted, parent, leaf = module
    stem = rel.stem
    named = _named_after(stem, dotted, leaf)
    if named is not None:
        return named
    best: int | None = None
    full = re.compile(rf"(?<![\w.]){re.escape(dotted)}(?!\w)")
    partial = re.compile(rf"^from\s+(?:{re.escape(parent)}|\.+\w*)\s+import\b.*\b{re.escape(leaf)}\b"
                         if parent else rf"^from\s+\.+{re.escape(leaf)}\s+import\b")
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith(("import ", "from ")):
            continue
        if full.search(stripped):
            return 1
        if partial.search(stripped):
            best = 2
    if best is None and parent and stem == f"test_{parent.split('.')[-1].lstrip('_')}":
        return 3
    return best


def find_test_files(repo_dir: Path, touched: Sequence[str], limit: int) -> list[str]:
    """Existing test files that exercise the touched files, nearest first. `touched` is in priority order
    (the files most candidates touch first): a test of the first module beats any test of a later one, so
    one candidate's stray edit (setup.py, a new script) does not pick the tests for all of them."""
    touched_tests = [p for p in touched if is_test_file(PurePosixPath(p)) and (repo_dir / p).is_file()]
    sources = [p for p in touched if p not in touched_tests and (repo_dir / p).is_file()]  # a new file has no tests
    modules = [(touched.index(p), p, m) for p in sources if (m := _module_of(p))]
    scored: list[tuple[int, float, int, str]] = [(touched.index(p), -1, 0, p) for p in touched_tests]
    if modules:
        for path in sorted(repo_dir.rglob("*.py")):
            rel = PurePosixPath(path.relative_to(repo_dir).as_posix())
            if any(part in SKIP_DIRS or part.startswith(".") for part in rel.parts[:-1]):
                continue
            if not is_test_file(rel) or path.stat().st_size > MAX_TEST_FILE_BYTES:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            for rank, source, module in modules:
                score = _relevance(rel, text, module)
                if score is not None:
                    scored.append((rank, score, -_nearness(rel, [source]), str(rel)))
                    break
    return list(dict.fromkeys(entry[-1] for entry in sorted(scored)))[:limit]


def _nearness(test: PurePosixPath, touched: Sequence[str]) -> int:
    """Directories a test file shares with the nearest touched file (a sibling `tests/` counts as its own),
    plus one when it is named exactly after that file: `pkg/sub/tests/test_mod.py` for `pkg/sub/mod.py`."""
    best = 0
    parts = [p for p in test.parts[:-1] if p not in TEST_DIRS]
    for path in touched:
        source = PurePosixPath(path)
        shared = 0
        for a, b in zip(parts, source.parts[:-1], strict=False):
            if a != b:
                break
            shared += 1
        exact = test.stem in (f"test_{source.stem}", f"{source.stem}_test")
        best = max(best, 2 * shared + exact)
    return best


# -- reading results -----------------------------------------------------------------------------

def parse_pytest(output: str) -> dict[str, str]:
    """Per-test statuses from pytest's `-rA` short summary."""
    return {m.group(2).strip(): _PYTEST_STATUS[m.group(1)] for m in _PYTEST_LINE.finditer(output)}


def parse_unittest(output: str) -> dict[str, str]:
    """Per-test statuses from `python -m unittest -v` (a test's own prints may sit before its status)."""
    results: dict[str, str] = {}
    current: str | None = None
    for line in output.splitlines():
        start = _UNITTEST_START.match(line)
        if start:
            name, where = start.groups()
            current = where if where.endswith(f".{name}") else f"{where}.{name}"
        if current is None:
            continue
        status = _UNITTEST_STATUS.search(line)
        if status:
            word = status.group(1)
            results[current] = "skipped" if word.startswith("skipped") else _UNITTEST_MAP[word]
            current = None
    return results


def parse_sympy(output: str) -> dict[str, str]:
    """Per-test statuses from sympy's `bin/test --verbose`."""
    results: dict[str, str] = {}
    current = ""
    for line in output.splitlines():
        header = _SYMPY_FILE.match(line)
        if header:
            current = header.group(1)
            continue
        test = _SYMPY_LINE.match(line)
        if test:
            results[f"{current}::{test.group(1)}"] = _SYMPY_STATUS[test.group(2)]
    return results


def parse_results(result: ExecResult) -> dict[str, str]:
    return parse_pytest(result.output) or parse_unittest(result.output) or parse_sympy(result.output)


def parse_command(result: ExecResult) -> dict[str, str]:
    """A configured command: per-test statuses when its output shows them, else the exit code."""
    parsed = parse_results(result)
    if parsed or result.timed_out or result.exit_code is None:
        return parsed
    return {"<regression command>": "passed" if result.exit_code == 0 else "failed"}


# -- running -------------------------------------------------------------------------------------

class RegressionPlan(BaseModel):
    """What runs for every checked candidate; one plan per selection so all are judged alike."""

    report: RegressionReport
    commands: list[tuple[str, str]] = Field(default_factory=list, description="(name, command) pairs.")


class RegressionCheck(BaseModel):
    regressions: dict[str, list[str]] = Field(default_factory=dict, description="patch key → broken tests.")
    vectors: dict[str, dict[str, str]] = Field(default_factory=dict, description="patch key → test → status.")


def _file_command(runner: str, path: str, prefix: str | None = None) -> str:
    if prefix:
        return f"{prefix} {shlex.quote(path)}"
    if runner == "pytest":
        return f"python -m pytest -q -rA -p no:cacheprovider {shlex.quote(path)}"
    return f"python -m unittest -v {shlex.quote(path)}"


async def plan_regression(executor: CachedJobRunner, repo_dir: Path, patches: Sequence[DistinctPatch],
                          config: SelectionConfig) -> RegressionPlan:
    """The configured command, or the test files near every file any of `patches` touches."""
    report = RegressionReport(enabled=True)
    if config.regression_cmd:
        report.runner, report.command = "command", config.regression_cmd
        return RegressionPlan(report=report, commands=[(config.regression_cmd, config.regression_cmd)])
    counts = Counter(path for p in patches for path in set(touched_files(p.candidate.patch)))
    touched = sorted(counts, key=lambda path: -counts[path])  # stable: first seen wins a tie
    report.test_files = find_test_files(repo_dir, touched, config.regression_max_files)
    if not report.test_files:
        report.notes.append(f"no existing test files exercise the touched files ({', '.join(touched) or 'none'})")
        return RegressionPlan(report=report)
    if config.regression_file_cmd:
        report.runner, report.command = "command", config.regression_file_cmd
    else:
        probe = Job(patch_key="", patch=None, test_key=sha256(PYTEST_PROBE), command=PYTEST_PROBE, timeout=60)
        found = (await executor.run([probe]))[("", probe.test_key, 0)]
        report.runner = "pytest" if found.exit_code == 0 else "unittest"
    commands = [(path, _file_command(report.runner, path, config.regression_file_cmd)) for path in report.test_files]
    return RegressionPlan(report=report, commands=commands)


async def run_regression(executor: CachedJobRunner, plan: RegressionPlan, patches: Sequence[DistinctPatch],
                         config: SelectionConfig) -> RegressionCheck:
    """Run the plan on the original (twice, to drop flaky tests; cached after the first batch) and
    once on each patch. Updates the plan's report (baseline, unknown files)."""
    check = RegressionCheck(regressions={p.key: [] for p in patches}, vectors={p.key: {} for p in patches})
    parse = parse_command if config.regression_cmd else parse_results
    jobs: list[Job] = []
    for _, command in plan.commands:
        key = sha256("regression\0" + command)
        jobs.append(Job(patch_key="", patch=None, test_key=key, command=command, runs=[0, 1],
                        timeout=config.regression_timeout_s, output_cap=REGRESSION_OUTPUT_CAP, parse=parse))
        jobs += [Job(patch_key=p.key, patch=p.candidate.patch, test_key=key, command=command,
                     timeout=config.regression_timeout_s, output_cap=REGRESSION_OUTPUT_CAP, parse=parse)
                 for p in patches]
    results = await executor.run(jobs)
    report = plan.report
    report.baseline_passing, report.unknown = 0, []
    for name, command in plan.commands:
        key = sha256("regression\0" + command)
        first, second = results[("", key, 0)], results[("", key, 1)]
        baseline = _baseline(first, second, name, report)
        for patch in patches:
            _compare(baseline, first, results[(patch.key, key, 0)], patch.key, check)
    return check


def _baseline(first: Outcome, second: Outcome, name: str, report: RegressionReport) -> list[str]:
    """Tests that passed in both runs on the original."""
    if first.error is not None or not first.parsed:
        report.unknown.append(name)
        return []
    passing = [t for t, s in first.parsed.items() if s == "passed" and second.parsed.get(t) == "passed"]
    flaky = [t for t, s in first.parsed.items() if second.parsed.get(t, s) != s]
    note = f"{name}: {len(flaky)} test(s) differ between two runs on the original; ignored"
    if flaky and note not in report.notes:
        report.notes.append(note)
    if not passing:
        report.unknown.append(name)
    report.baseline_passing += len(passing)
    return passing


def _compare(baseline: list[str], original: Outcome, outcome: Outcome, patch_key: str,
             check: RegressionCheck) -> None:
    if not baseline or (outcome.error is not None and not outcome.apply_failed):
        return  # nothing to compare, or the sandbox failed: no evidence either way
    for test in baseline:
        status = outcome.parsed.get(test, "timeout" if outcome.timed_out and not original.timed_out else "missing")
        check.vectors[patch_key][test] = status
        if status not in NEUTRAL:
            check.regressions[patch_key].append(test)


def intended_changes(broken: Mapping[str, Sequence[str]], systems: Mapping[str, set[str]],
                     fixers: set[str], min_systems: int = 2) -> set[str]:
    """Tests whose break is the behaviour the issue changes, not a regression: broken by *every*
    regression-checked candidate that an issue probe shows fixing the issue, when those come from at
    least `min_systems` systems (one system's runs are not independent).

    Why: a candidate that fixes the reported behaviour and breaks a test is direct evidence that the
    test pins the old behaviour; when every such candidate, written independently, breaks it, the test
    encodes what the issue asks to change (pylint-6506, sympy-18532: the tests expect the old output).
    Counting breakers alone cannot tell this from a common wrong approach: after scratch-only patches
    were dropped, sympy-14817's `test_MatrixSymbol_printing` was broken by some candidate of all 7
    systems, and only its right patches kept it passing, the same count as pylint-6506's 7 of 7.
    `broken`: patch key → broken tests for every regression-checked patch; `systems`: patch key → the
    systems submitting it; `fixers`: keys of the patches that fix more probe steps than they break.
    """
    checked = [key for key in broken if key in fixers]
    if len({s for key in checked for s in systems.get(key, set())}) < min_systems:
        return set()
    return set.intersection(*(set(broken[key]) for key in checked))
