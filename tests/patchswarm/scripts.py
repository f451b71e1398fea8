"""Scripted models for the pipeline and CLI tests: `--scripted calc=tests.patchswarm.scripts:CalcScript`.

`CalcScript` answers every stage of the pipeline on the `pipeline_calc` fixture from what it is shown
(relevance, ranking, testing and editing conversations, the selector). Editing trajectories are handed
the edits of `PLAN` in the order their first calls arrive, counted per issue, so concurrent instances
of a batch do not share a counter.

Knobs, read from the environment when the script is created (a CLI subprocess is configured through its
environment) or given to the constructor:

- `PATCHSWARM_TEST_CALL_LOG`: file that gets one JSON line per answered call, `{"sha", "kind", "pid"}`,
  written before the answer is returned. The plan counter resumes from it, so a resumed run hands out
  the edits a fresh run would.
- `PATCHSWARM_TEST_GATE_AFTER` = N: after N answered calls in this process every further call is held
  (an hour-long asyncio-friendly delay, never answered) and `PATCHSWARM_TEST_GATE_FILE` is created. The
  test waits for that file, then for the run store to hold every answered call, then kills the process.
- `PATCHSWARM_TEST_PAD` = characters of padding (outside the action tags) in test and edit replies, so
  that their output tokens, hence their cost, are large and predictable.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

from agent.scripted import Reply

REPRO_TEST = '''import sys

from calc import average

try:
    empty = average([])
except ZeroDivisionError as exc:
    print("average([]) raised", repr(exc))
    sys.exit(2)
pair = average([1, 2])
print("average([]) =", repr(empty), "average([1, 2]) =", repr(pair))
sys.exit(0 if empty == 0.0 and pair == 1.5 else 2)
'''

ORIGINAL = '''    total = sum(values)
    return total / len(values)'''
FIXES = {
    "none": '''    if not values:
        return None
    total = sum(values)
    return total / len(values)''',
    "right": '''    if not values:
        return 0.0
    total = sum(values)
    return total / len(values)''',
    "nan": '''    if not values:
        return float("nan")
    total = sum(values)
    return total / len(values)''',
}
# Wrong first, so a pipeline that took the first candidate would fail the tests.
PLAN = ("none", "right", "nan")
RIGHT_FIX = FIXES["right"]


def edit_reply(fix: str, pad: str = "") -> str:
    return (f"{pad}Handle the empty list before dividing.\n<edit>\ncalc/ops.py\n<<<<<<< SEARCH\n{ORIGINAL}\n"
            f"=======\n{FIXES[fix]}\n>>>>>>> REPLACE\n</edit>")


def text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def message_sha(messages: list[dict[str, Any]]) -> str:
    """Hash of what the model was sent, ignoring cache marks (they do not change what is asked)."""
    plain = [{"role": m.get("role"), "content": text_of(m)} for m in messages]
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]


def kind_of(messages: list[dict[str, Any]]) -> str:
    system = text_of(messages[0])
    first = not any(m.get("role") == "assistant" for m in messages)
    for marker, kind in (("<relevant>", "relevance"), ("<ranking>", "ranking"), ("<choice>", "selector"),
                         ("<approve/>", "testing"), ("<finish/>", "editing")):
        if marker in system:
            return f"{kind}-first" if first and kind in ("testing", "editing") else kind
    return "other"


def read_call_log(path: Path) -> list[dict[str, Any]]:
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _issue_key(messages: list[dict[str, Any]]) -> str:
    user = text_of(messages[1]) if len(messages) > 1 else ""
    match = re.search(r"<issue>(.*?)</issue>", user, re.S)
    return hashlib.sha256((match.group(1) if match else user).strip().encode()).hexdigest()[:12]


class CalcScript:
    """A callable script (messages → reply); thread-safe."""

    def __init__(self, call_log: str | Path | None = None, gate_after: int | None = None,
                 gate_file: str | Path | None = None, pad: int | None = None) -> None:
        env = os.environ
        call_log = call_log or env.get("PATCHSWARM_TEST_CALL_LOG")
        gate_file = gate_file or env.get("PATCHSWARM_TEST_GATE_FILE")
        self.call_log = Path(call_log) if call_log else None
        self.gate_after = gate_after if gate_after is not None else (
            int(env["PATCHSWARM_TEST_GATE_AFTER"]) if env.get("PATCHSWARM_TEST_GATE_AFTER") else None)
        self.gate_file = Path(gate_file) if gate_file else None
        pad = pad if pad is not None else int(env.get("PATCHSWARM_TEST_PAD", "0"))
        self.pad = "." * pad + "\n" if pad else ""
        self._lock = threading.Lock()
        self.answered = 0
        self._edits_by_issue: dict[str, int] | None = None

    def __call__(self, messages: list[dict[str, Any]]) -> str | Reply:
        kind = kind_of(messages)
        with self._lock:  # held while answering: the plan counter and the log stay in step
            if self.gate_after is not None and self.answered >= self.gate_after:
                if self.gate_file is not None:
                    self.gate_file.touch()
                return Reply("held by the gate; never delivered", delay_s=3600)
            text = self._answer(kind, messages)
            self.answered += 1
            if self.call_log is not None:
                with open(self.call_log, "a") as log:
                    log.write(json.dumps({"sha": message_sha(messages), "kind": kind, "issue": _issue_key(messages),
                                          "pid": os.getpid()}) + "\n")
            return text

    def _next_edit(self, messages: list[dict[str, Any]]) -> str:
        if self._edits_by_issue is None:
            # Resume the counter from earlier processes' answers (same log file).
            self._edits_by_issue = {}
            for entry in read_call_log(self.call_log) if self.call_log else []:
                if entry["kind"] == "editing-first":
                    key = entry.get("issue", "")
                    self._edits_by_issue[key] = self._edits_by_issue.get(key, 0) + 1
        key = _issue_key(messages)
        index = self._edits_by_issue.get(key, 0)
        self._edits_by_issue[key] = index + 1
        return PLAN[index % len(PLAN)]

    def _answer(self, kind: str, messages: list[dict[str, Any]]) -> str:
        user = text_of(messages[1]) if len(messages) > 1 else ""
        if kind == "relevance":
            relevant = "def average" in user and "unittest" not in user
            return (f"<relevant>{'yes' if relevant else 'no'}</relevant>"
                    f"<summary>{'Defines average().' if relevant else 'Unrelated.'}</summary>")
        if kind == "ranking":
            paths = re.findall(r"^(?:- )?(\S+\.py)", user, flags=re.M)
            return "<ranking>\n" + "\n".join(sorted(set(paths), key=lambda p: "ops" not in p)) + "\n</ranking>"
        if kind == "selector":
            return self._select(messages)
        if kind == "testing-first":
            return f"{self.pad}A script that calls average([]).\n<test>\n{REPRO_TEST}</test>"
        if kind == "testing":
            return "It exits 2 on the original code, as it should.\n<approve/>"
        if kind == "editing-first":
            return edit_reply(self._next_edit(messages), self.pad)
        if kind == "editing":
            return "The edit is in place.\n<finish/>"
        return "I do not know what to do."

    @staticmethod
    def _select(messages: list[dict[str, Any]]) -> str:
        if len(messages) <= 2:
            return f"The reproduction test tells them apart.\n<test>\n{REPRO_TEST}</test>"
        passing = re.findall(r"### Candidate (\w+): exit 0", text_of(messages[-1]))
        return f"This one returns 0.0.\n<choice>{passing[0] if passing else 'A'}</choice>"


class HangingTestScript:
    """Every reproduction test it writes runs for ten minutes: for interrupting a run mid-execution."""

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        system = text_of(messages[0])
        if "<relevant>" in system:
            return "<relevant>no</relevant><summary>-</summary>"
        if "<approve/>" in system and len(messages) <= 2:
            return "<test>\nimport time\ntime.sleep(600)\n</test>"
        return "<approve/>"
