"""A scripted model whose instances have known difficulty, for the adaptive-sampling tests.

The difficulty is written in the issue (`Difficulty: easy|close|hard`); everything else is `CalcScript`'s.
- easy: every editing trajectory makes the right fix at once (two agreeing passing candidates decide);
- close: the first edits raise ValueError (the test goes from exit 2 to exit 1: nearly there) until the
  trajectory has been extended; then the right fix;
- hard: every trajectory makes the same wrong fix (returns None), so no candidate ever passes.
Only the first reply of each trajectory is padded (`pad`), so trajectories cost about the same.
"""

from __future__ import annotations

import re
from typing import Any

from tests.patchswarm.scripts import FIXES, ORIGINAL, CalcScript, text_of

RAISES = '''    if not values:
        raise ValueError("average of an empty list")
    total = sum(values)
    return total / len(values)'''


def edit_block(body: str, pad: str = "") -> str:
    return f"{pad}Handle the empty list.\n<edit>\ncalc/ops.py\n<<<<<<< SEARCH\n{ORIGINAL}\n=======\n{body}\n>>>>>>> REPLACE\n</edit>"


def difficulty_issue(issue: str, difficulty: str) -> str:
    return f"{issue.rstrip()}\n\nDifficulty: {difficulty}\n"


class DifficultyScript(CalcScript):
    # A trajectory that raises keeps trying the same edit for this many replies (it runs out of attempts).
    close_edits = 2

    def _answer(self, kind: str, messages: list[dict[str, Any]]) -> str:
        if kind not in ("editing-first", "editing"):
            return super()._answer(kind, messages)
        user = text_of(messages[1]) if len(messages) > 1 else ""
        match = re.search(r"Difficulty: (\w+)", user)
        difficulty = match.group(1) if match else "easy"
        replies = sum(1 for m in messages if m.get("role") == "assistant")
        if difficulty == "easy":
            return edit_block(FIXES["right"], self.pad) if kind == "editing-first" else "Done.\n<finish/>"
        if difficulty == "hard":
            return edit_block(FIXES["none"], self.pad) if kind == "editing-first" else "Done.\n<finish/>"
        if replies < self.close_edits:
            return edit_block(RAISES, self.pad if kind == "editing-first" else "")
        last = text_of(messages[-2]) if len(messages) >= 2 else ""
        return "Done.\n<finish/>" if "return 0.0" in last else edit_block(FIXES["right"])


class PaddedDifficultyScript(DifficultyScript):
    """As above with padded first replies, for `--scripted NAME=module:callable` (e.g. on Ray nodes)."""

    def __init__(self) -> None:
        super().__init__(pad=4000)
