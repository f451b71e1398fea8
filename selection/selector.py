"""Selector state machine: the model writes tests that tell finalists apart, sees the results, then picks.

    prompt (issue, original files, labelled diffs, evidence, example test)
      → reply <test>…</test>  → run on original + every finalist → results back → next reply
      → reply <choice>B</choice> → done
    anything else → corrected once per turn; no valid choice after `max_attempts` turns → failure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, Field
from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from agent.budget import Budget, BudgetExceeded
from agent.model import ModelCallError, ModelClient, call_key
from selection.candidates import DistinctPatch, touched_files
from selection.matrix import Executor, run_single_tests
from selection.models import Outcome, TranscriptMessage
from selection.voting import describe

LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MAX_FILE_CHARS = 24_000  # per original file; larger files are shown around the changed lines
MAX_FILES_CHARS = 80_000
MAX_DIFF_CHARS = 16_000
MAX_RESULT_CHARS = 3_000
WINDOW_LINES = 40
_TEST = re.compile(r"<test>(.*?)</test>", flags=re.S)
_CHOICE = re.compile(r"<choice>\s*(?:candidate\s+)?([^<\s]*)\s*</choice>", flags=re.I)

SYSTEM_PROMPT = """\
You choose which candidate patch best resolves a GitHub issue. The candidates were written \
independently and may all look plausible; your job is to find the differences that matter.

You may write a Python test script to tell the candidates apart. It runs as `python test.py` from the \
repository root (the repository is importable) on the ORIGINAL code and separately with EACH candidate \
applied, and you then see every exit code and output. Good tests exercise the behaviour the issue \
asks for, including edge cases where the candidates differ, and print the values they observe.

Reply with exactly one of:
<test>
...complete Python script...
</test>
or
<choice>X</choice>
where X is the label of the candidate that best resolves the issue without breaking other behaviour."""


class SelectorTestRun(BaseModel):
    code: str
    original: Outcome
    by_patch: dict[str, Outcome] = Field(description="patch key → outcome")


class SelectorOutcome(BaseModel):
    chosen_key: str | None = None
    reason: str
    transcript: list[TranscriptMessage] = Field(default_factory=list)
    test_runs: list[SelectorTestRun] = Field(default_factory=list)
    cost: float | None = 0.0
    calls: int = 0


def parse_reply(text: str, labels: Sequence[str]) -> tuple[str | None, str | None, str | None]:
    """(chosen label, test code, problem) from a reply that must hold exactly one action.

    Several actions (a test and a choice, two choices, two tests) are a format problem, as in
    `agent.actions`: guessing which one was meant would drop the model's test or its second choice.
    """
    tests = _TEST.findall(text)
    # Choice tags are looked for outside tests only: a test may well print or compare one.
    choices = _CHOICE.findall(_TEST.sub("", text))
    if len(choices) + len(tests) > 1:
        found = ", ".join(f"{len(items)} <{tag}>" for tag, items in (("test", tests), ("choice", choices)) if items)
        return None, None, (f"Your reply contained several actions ({found}); reply with exactly one: "
                            "one <test>...</test> or one <choice>X</choice>.")
    if choices:
        label = choices[0].strip().upper()
        if label in labels:
            return label, None, None
        return None, None, f"'{choices[0]}' is not a candidate label; use one of {', '.join(labels)}."
    if tests:
        code = re.sub(r"^\s*```(?:python)?\s*\n|\n\s*```\s*$", "", tests[0]).strip("\n")
        if code.strip():
            return None, code + "\n", None
        return None, None, "The <test> block was empty."
    return None, None, "Your reply contained neither <test>...</test> nor <choice>X</choice>."


def _windows(text: str, ranges: list[tuple[int, int]]) -> str:
    """Only the lines around changes (1-based inclusive ranges), with markers for what is left out."""
    lines = text.splitlines()
    spans: list[list[int]] = []
    for start, end in sorted(ranges):
        lo, hi = max(1, start - WINDOW_LINES), min(len(lines), end + WINDOW_LINES)
        if spans and lo <= spans[-1][1] + 1:
            spans[-1][1] = max(spans[-1][1], hi)
        else:
            spans.append([lo, hi])
    parts, shown = [], 0
    for lo, hi in spans:
        if lo > shown + 1:
            parts.append(f"... (lines {shown + 1}-{lo - 1} omitted) ...")
        parts.extend(lines[lo - 1 : hi])
        shown = hi
    if shown < len(lines):
        parts.append(f"... (lines {shown + 1}-{len(lines)} omitted) ...")
    return "\n".join(parts)


def _changed_ranges(patches: Sequence[DistinctPatch]) -> dict[str, list[tuple[int, int]]]:
    ranges: dict[str, list[tuple[int, int]]] = {}
    for patch in patches:
        try:
            files = PatchSet(patch.candidate.patch.splitlines(keepends=True))
        except (UnidiffParseError, ValueError):
            continue
        for f in files:
            for hunk in f:
                ranges.setdefault(f.path, []).append((hunk.source_start, hunk.source_start + hunk.source_length))
    return ranges


def original_files(repo_dir: Path, patches: Sequence[DistinctPatch]) -> str:
    """The original text of every file the finalists touch (windows around changes when large)."""
    ranges = _changed_ranges(patches)
    parts, total = [], 0
    for path in dict.fromkeys(p for patch in patches for p in touched_files(patch.candidate.patch)):
        file = (repo_dir / path).resolve()
        if not file.is_relative_to(repo_dir.resolve()):
            continue  # a path escaping the checkout: never send host files to the model
        if not file.is_file():
            parts.append(f'<file path="{path}">\n(does not exist in the original repository)\n</file>')
            continue
        text = file.read_text(encoding="utf-8", errors="replace")
        if len(text) > MAX_FILE_CHARS:
            text = _windows(text, ranges.get(path, [(1, 1)]))
        if total + len(text) > MAX_FILES_CHARS:
            parts.append(f'<file path="{path}">\n(left out: the prompt is already long)\n</file>')
            continue
        total += len(text)
        parts.append(f'<file path="{path}">\n{text.rstrip()}\n</file>')
    return "\n".join(parts)


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[: limit // 3]}\n[... {len(text) - limit} characters cut ...]\n{text[-(2 * limit) // 3 :]}"


def first_prompt(issue: str, files: str, finalists: Sequence[DistinctPatch], labels: Sequence[str],
                 evidence: Mapping[str, str], example_test: str | None, max_attempts: int) -> str:
    parts = [f"<issue>\n{issue.strip()}\n</issue>", f"<original_files>\n{files}\n</original_files>"]
    for label, patch in zip(labels, finalists, strict=True):
        parts.append(f'<candidate label="{label}">\n{_clip(patch.candidate.patch, MAX_DIFF_CHARS)}\n</candidate>\n'
                     f"Evidence so far for {label}: {evidence.get(patch.key, 'none')}")
    if example_test:
        parts.append("An example reproduction test (exit 2 = issue present, 0 = fixed, 1 = other error):\n"
                     f"<example_test>\n{example_test.rstrip()}\n</example_test>")
    if max_attempts == 1:
        parts.append("You have a single reply: answer with <choice>X</choice> now.")
    else:
        parts.append(f"You have at most {max_attempts} replies; the last one must be a <choice>. "
                     "Write a <test> first unless the answer is already clear.")
    return "\n\n".join(parts)


def results_message(run: SelectorTestRun, finalists: Sequence[DistinctPatch], labels: Sequence[str]) -> str:
    parts = ["Your test was run on the original code and with each candidate applied."]
    rows = [("Original code", run.original)] + [
        (f"Candidate {label}", run.by_patch[p.key]) for label, p in zip(labels, finalists, strict=True)]
    for title, outcome in rows:
        parts.append(f"### {title}: {describe(outcome)}\n```\n{_clip(outcome.output, MAX_RESULT_CHARS).rstrip()}\n```")
    return "\n\n".join(parts)


async def run_selector(model: ModelClient, budget: Budget | None, executor: Executor, *, issue: str,
                       finalists: Sequence[DistinctPatch], repo_dir: Path, evidence: Mapping[str, str],
                       example_test: str | None, max_attempts: int, timeout: float) -> SelectorOutcome:
    labels = list(LABELS[: len(finalists)])
    messages = [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": first_prompt(issue, original_files(repo_dir, finalists), finalists,
                                                         labels, evidence, example_test, max_attempts)}]
    result = SelectorOutcome(reason=f"no valid choice after {max_attempts} selector replies")
    model_name = model.settings.model_for("selector")
    for turn in range(1, max_attempts + 1):
        try:
            completion = await model.complete("selector", messages, budget=budget, temperature=0.0,
                                              key=call_key(model_name, messages, 0.0))
        except (ModelCallError, BudgetExceeded) as exc:
            if isinstance(exc, ModelCallError):
                result.calls += 1
                _add_cost(result, exc.record.cost_usd)
            result.reason = f"selector call {turn} failed: {exc}"
            break
        result.calls += 1
        _add_cost(result, completion.record.cost_usd)
        messages.append({"role": "assistant", "content": completion.text})
        label, code, problem = parse_reply(completion.text, labels)
        if label is not None:
            result.chosen_key = finalists[labels.index(label)].key
            result.reason = f"the selector chose {label} on turn {turn} after {len(result.test_runs)} test(s)"
            break
        remaining = max_attempts - turn
        if code is not None and remaining == 0:
            problem = "a test on the last reply, where a <choice> was required"
        if remaining == 0:
            result.reason = f"no valid choice after {max_attempts} selector replies (last reply: {problem})"
            break
        if code is not None and problem is None:
            original, by_patch = await run_single_tests(executor, code, finalists, timeout)
            run = SelectorTestRun(code=code, original=original, by_patch=by_patch)
            result.test_runs.append(run)
            feedback = results_message(run, finalists, labels)
        else:
            feedback = f"{problem}"
        if remaining == 1:
            feedback += "\n\nThis is your last reply: answer with <choice>X</choice> now."
        else:
            feedback += f"\n\nWrite another <test> or answer with <choice>X</choice> ({remaining} replies left)."
        messages.append({"role": "user", "content": feedback})
    result.transcript = [TranscriptMessage(**m) for m in messages]
    return result


def _add_cost(result: SelectorOutcome, cost: float | None) -> None:
    # Unknown stays unknown: a made-up 0 would understate the spend.
    result.cost = None if cost is None or result.cost is None else result.cost + cost
