"""The scripted model of the offline demo: several trajectories, some wrong, one malformed, one right.

It answers from what it is shown (which stage, which earlier reply), so the real pipeline runs
unchanged: relevance and ranking calls, testing and editing conversations, the selector.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from agent.scripted import text_of

ISSUE_PRESENT_TEST = '''import sys
from textkit import slugify

cases = {CASES}
wrong = {{text: slugify(text) for text, want in cases.items() if slugify(text) != want}}
print("wrong slugs:", wrong if wrong else "none")
sys.exit(2 if wrong else 0)
'''
WHITESPACE_CASES = {"Hello  World": "hello-world", "Hello\tWorld": "hello-world"}
PUNCTUATION_CASES = {"Hello  World": "hello-world", "Hello, World!": "hello-world", "a - b": "a-b"}

ORIGINAL_LINES = '''    words = ascii_text.lower().strip().split(" ")
    return "-".join(words)'''
FIXES = {
    # Popular but incomplete: collapses whitespace, keeps punctuation.
    "whitespace": '''    words = ascii_text.lower().split()
    return "-".join(words)''',
    # Wrong: handles two spaces only.
    "double-space": '''    words = ascii_text.lower().strip().replace("  ", " ").split(" ")
    return "-".join(words)''',
    # Right: any run of non-alphanumerics becomes one dash.
    "right": '''    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower())
    return slug.strip("-")''',
}
# What each editing trajectory does, in the order their first calls arrive.
EDIT_PLAN = ["whitespace", "malformed", "right", "whitespace", "double-space"]


def _edit(fix: str) -> str:
    imports = "import unicodedata\n" if fix != "right" else "import re\nimport unicodedata\n"
    return (f"I will change how words are separated.\n<edit>\ntextkit/slug.py\n<<<<<<< SEARCH\nimport unicodedata\n"
            f"=======\n{imports.rstrip()}\n>>>>>>> REPLACE\n<<<<<<< SEARCH\n{ORIGINAL_LINES}\n=======\n"
            f"{FIXES[fix]}\n>>>>>>> REPLACE\n</edit>")


def _text(message: dict[str, Any]) -> str:
    return text_of(message.get("content"))


class DemoScript:
    """A callable script; counters hand out trajectory roles in arrival order (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tests = 0
        self._edits = 0

    def _next(self, kind: str) -> int:
        with self._lock:
            value = getattr(self, kind)
            setattr(self, kind, value + 1)
            return value

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        system = _text(messages[0])
        user = _text(messages[1]) if len(messages) > 1 else ""
        mine = [_text(m) for m in messages if m.get("role") == "assistant"]
        if "<relevant>" in system:
            relevant = "def slugify" in user and "unittest" not in user
            return (f"<relevant>{'yes' if relevant else 'no'}</relevant>"
                    f"<summary>{'Implements slugify, the function the issue is about.' if relevant else 'Unrelated.'}</summary>")
        if "<ranking>" in system:
            paths = re.findall(r"^(?:- )?(\S+\.py)", user, flags=re.M)
            return "<ranking>\n" + "\n".join(sorted(set(paths), key=lambda p: "slug" not in p)) + "\n</ranking>"
        if "<choice>" in system:
            return self._select(messages)
        if "<approve/>" in system:
            if mine:
                return "The test fails on the original code as it should.\n<approve/>"
            cases = WHITESPACE_CASES if self._next("_tests") % 2 == 0 else PUNCTUATION_CASES
            return f"<test>\n{ISSUE_PRESENT_TEST.format(CASES=cases)}</test>"
        if "<finish/>" in system:
            return self._edit_turn(mine)
        return "I am not sure what to do."

    def _edit_turn(self, mine: list[str]) -> str:
        if not mine:
            plan = EDIT_PLAN[self._next("_edits") % len(EDIT_PLAN)]
            return "Let me think... the words should be split differently." if plan == "malformed" else _edit(plan)
        first = mine[0]
        if "<edit>" not in first:
            return "Hmm, maybe the problem is elsewhere."  # the malformed trajectory never recovers
        return "The edit is in place.\n<finish/>"

    def _select(self, messages: list[dict[str, Any]]) -> str:
        if len(messages) <= 2:
            cases = {"Hello, World!": "hello-world", "a - b": "a-b", "Tab\tand  spaces": "tab-and-spaces"}
            return ("A test with punctuation tells the candidates apart.\n<test>\n"
                    f"{ISSUE_PRESENT_TEST.format(CASES=cases)}</test>")
        results = _text(messages[-1])
        passing = re.findall(r"### Candidate (\w+): exit 0", results)
        return f"Only this candidate handles punctuation.\n<choice>{passing[0] if passing else 'A'}</choice>"
