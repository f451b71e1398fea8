"""Selector state machine: the model writes tests that tell finalists apart, sees the results, then picks.

    phase | what happens                                                | next
    ------+-------------------------------------------------------------+-----------------------------------
    ask   | the model replies <test> or <choice>X</choice>              | run · end "chosen" · ask (feedback)
    run   | the test runs on the original and with every finalist       | ask, with every exit code and output

A reply that is no single action, or names no finalist, is told so and costs a reply; with no reply
left the machine ends "no_choice" (a test on the last reply is not run). The prompt holds the issue,
the original files, the labelled diffs, the evidence so far and an example test. The state is saved
after every step, so a rerun continues the conversation without repeating a completed call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from pydantic import BaseModel, Field
from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from agent.actions import Action, ConversationMachine, MachineState
from agent.budget import Budget, Spend
from agent.model import ModelClient
from agent.prompts import user
from agent.templates import render
from agent.text import clip_middle
from agent.types import EXIT_ERROR, EXIT_FIXED, EXIT_ISSUE_PRESENT, InMemoryStateStore, StateStore
from selection.candidates import DistinctPatch, touched_files
from selection.matrix import CachedJobRunner, run_single_tests
from selection.models import Outcome, TranscriptMessage
from selection.voting import describe

LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MAX_FILE_CHARS = 24_000  # per original file; larger files are shown around the changed lines
MAX_FILES_CHARS = 80_000
MAX_DIFF_CHARS = 16_000
MAX_RESULT_CHARS = 3_000
WINDOW_LINES = 40

SYSTEM_PROMPT = render("selector_system", package="selection")

SelectorEnd = Literal["chosen", "no_choice", "attempts_exhausted", "budget_exhausted", "model_error", "crashed"]


class SelectorTestRun(BaseModel):
    code: str
    original: Outcome
    by_patch: dict[str, Outcome] = Field(description="patch key → outcome")


class SelectorState(MachineState):
    test_code: str | None = Field(None, description="The test waiting for its run.")
    test_runs: list[SelectorTestRun] = Field(default_factory=list)
    chosen: str | None = Field(None, description="The label the model chose.")


class SelectorOutcome(Spend):
    chosen_key: str | None = None
    outcome: SelectorEnd
    reason: str
    transcript: list[TranscriptMessage] = Field(default_factory=list)
    test_runs: list[SelectorTestRun] = Field(default_factory=list)
    calls: int = Field(0, description="Model calls made, a failed one included.")


class SelectorMachine(ConversationMachine[SelectorState]):
    state_type = SelectorState
    role = "selector"
    accepts = MappingProxyType({"test": "<test>…</test> holding a complete Python script",
                                "choice": "<choice>X</choice> naming one candidate label"})

    def __init__(self, model: ModelClient, executor: CachedJobRunner, *, prefix: list[dict[str, str]],
                 finalists: Sequence[DistinctPatch], store: StateStore, key: str, budget: Budget | None,
                 max_attempts: int, timeout: float) -> None:
        self.executor, self.finalists, self.timeout = executor, list(finalists), timeout
        self.labels = list(LABELS[: len(finalists)])
        super().__init__(model, prefix=prefix, store=store, key=key, budget=budget, max_attempts=max_attempts)

    def tell(self, text: str) -> None:
        remaining = self.max_attempts - self.state.attempts
        if remaining <= 0:
            problem = text.split("\n\n", 1)[0]
            self.state.outcome = "no_choice"
            self.state.error = f"no valid choice after {self.max_attempts} selector replies (last reply: {problem})"
            return
        if remaining == 1:
            text += "\n\nThis is your last reply: answer with <choice>X</choice> now."
        else:
            text += f"\n\nWrite another <test> or answer with <choice>X</choice> ({remaining} replies left)."
        self.state.turns.append(user(text))

    def act(self, action: Action) -> None:
        if action.kind == "choice":
            if action.body in self.labels:
                self.state.chosen, self.state.outcome = action.body, "chosen"
            else:
                self.tell(f"'{action.body}' is not a candidate label; use one of {', '.join(self.labels)}.")
        elif self.state.attempts >= self.max_attempts:
            self.tell("a test on the last reply, where a <choice> was required")
        else:
            self.state.test_code, self.state.phase = action.body, "run"

    async def run_step(self) -> None:
        code = self.state.test_code or ""
        original, by_patch = await run_single_tests(self.executor, code, self.finalists, self.timeout)
        run = SelectorTestRun(code=code, original=original, by_patch=by_patch)
        self.state.test_runs.append(run)
        self.state.test_code, self.state.phase = None, "ask"
        self.tell(results_message(run, self.finalists, self.labels))

    def result(self) -> SelectorOutcome:
        state = self.state
        outcome: SelectorEnd = state.outcome  # type: ignore[assignment]  # set by this machine or the loop
        if state.chosen is not None:
            reason = (f"the selector chose {state.chosen} on turn {state.attempts} "
                      f"after {len(state.test_runs)} test(s)")
        elif outcome in ("model_error", "budget_exhausted"):
            reason = f"selector call {state.attempts + 1} failed: {state.error}"
        elif outcome == "crashed":
            reason = f"the selector crashed: {state.error}"
        else:
            reason = state.error or f"no valid choice after {self.max_attempts} selector replies"
        return SelectorOutcome(
            chosen_key=self.finalists[self.labels.index(state.chosen)].key if state.chosen else None,
            outcome=outcome, reason=reason, transcript=[TranscriptMessage(**m) for m in self.messages],
            test_runs=state.test_runs, **dict(state.spend()),
            calls=state.attempts + (outcome == "model_error"))


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
    return clip_middle(text, limit // 3, limit - limit // 3)


def first_prompt(issue: str, files: str, finalists: Sequence[DistinctPatch], labels: Sequence[str],
                 evidence: Mapping[str, str], example_test: str | None, max_attempts: int) -> str:
    parts = [f"<issue>\n{issue.strip()}\n</issue>", f"<original_files>\n{files}\n</original_files>"]
    for label, patch in zip(labels, finalists, strict=True):
        parts.append(f'<candidate label="{label}">\n{_clip(patch.candidate.patch, MAX_DIFF_CHARS)}\n</candidate>\n'
                     f"Evidence so far for {label}: {evidence.get(patch.key, 'none')}")
    if example_test:
        parts.append(f"An example reproduction test (exit {EXIT_ISSUE_PRESENT} = issue present, {EXIT_FIXED} = fixed, "
                     f"{EXIT_ERROR} = other error):\n"
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


async def run_selector(model: ModelClient, budget: Budget | None, executor: CachedJobRunner, *, issue: str,
                       finalists: Sequence[DistinctPatch], repo_dir: Path, evidence: Mapping[str, str],
                       example_test: str | None, max_attempts: int, timeout: float,
                       store: StateStore | None = None, key: str = "selector") -> SelectorOutcome:
    """Ask the selector to choose among `finalists`; a machine with the same `store` and `key` resumes."""
    labels = LABELS[: len(finalists)]
    prefix = [{"role": "system", "content": SYSTEM_PROMPT},
              user(first_prompt(issue, original_files(repo_dir, finalists), finalists, labels, evidence,
                                example_test, max_attempts))]
    machine = SelectorMachine(model, executor, prefix=prefix, finalists=finalists, store=store or InMemoryStateStore(),
                              key=key, budget=budget, max_attempts=max_attempts, timeout=timeout)
    return await machine.run()
