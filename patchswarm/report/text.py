"""Model and tool text cut into blocks a page can show: prose, exit-code lines, code, diffs, edits, outputs.

Nothing is dropped: a long block is folded (rendered inside a closed <details>), never shortened.
Every block is plain text; escaping is the templates' job (autoescape), so no markup is built here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

FOLD_LINES = 20  # blocks longer than this start folded

# The tags our prompts and feedback use around code, diffs and outputs, plus Markdown fences.
_BLOCK = re.compile(
    r"<(?P<tag>test|edit|diff|output|issue|file|candidate)(?P<attrs>\s[^>]*)?>\n?(?P<body>.*?)</(?P=tag)>"
    r"|```(?P<lang>[^\n`]*)\n(?P<fence>.*?)```",
    re.S,
)
_ATTR = re.compile(r'(?P<name>path|label)="(?P<value>[^"]*)"')
_EXIT_LINE = re.compile(r"^(?:Exit code: (?P<a>-?\d+|None)|###[^\n]*?: exit (?P<b>-?\d+|\w+)).*$", re.M)


@dataclass
class Line:
    tone: str  # css class: add, del, hunk, meta, ctx
    text: str


@dataclass
class Block:
    kind: str  # text, exit, code, diff, edit, output, quote
    text: str
    label: str = ""
    tone: str = ""
    lines: list[Line] = field(default_factory=list)

    @property
    def line_count(self) -> int:
        return self.text.count("\n") + (0 if self.text.endswith("\n") else 1)

    @property
    def folded(self) -> bool:
        return self.line_count > FOLD_LINES


def message_text(content: Any) -> str:
    """A chat message's content as text (providers' content-part lists are joined)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(message_text(part) for part in content)
    if isinstance(content, dict):
        return str(content.get("text", "")) if "text" in content else json.dumps(content, indent=2)
    return "" if content is None else str(content)


def exit_tone(code: int | str | None, timed_out: bool = False) -> str:
    """Colour of an exit code under the reproduction-test convention (2 issue, 0 fixed, 1 error)."""
    if timed_out:
        return "timeout"
    if code in (0, "0"):
        return "pass"
    if code in (2, "2"):
        return "issue"
    return "unknown" if code in (None, "None") else "error"


def diff_lines(patch: str) -> list[Line]:
    lines = []
    for text in patch.splitlines():
        if text.startswith(("diff --git", "--- ", "+++ ", "index ", "new file", "deleted file")):
            tone = "meta"
        elif text.startswith("@@"):
            tone = "hunk"
        elif text.startswith("+"):
            tone = "add"
        elif text.startswith("-"):
            tone = "del"
        else:
            tone = "ctx"
        lines.append(Line(tone, text))
    return lines


def edit_lines(body: str) -> list[Line]:
    """A search/replace edit: searched lines as removed, replacements as added, markers as meta."""
    lines, tone = [], "meta"
    for text in body.splitlines():
        marker = text.strip()
        if marker.startswith("<<<<<<<"):
            lines.append(Line("hunk", text))
            tone = "del"
        elif marker == "=======" and tone == "del":
            lines.append(Line("hunk", text))
            tone = "add"
        elif marker.startswith(">>>>>>>"):
            lines.append(Line("hunk", text))
            tone = "meta"
        else:
            lines.append(Line(tone, text))
    return lines


def split_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    position = 0
    for match in _BLOCK.finditer(text):
        _prose(text[position:match.start()], blocks)
        blocks.append(_tagged(match))
        position = match.end()
    _prose(text[position:], blocks)
    return blocks


def _prose(text: str, blocks: list[Block]) -> None:
    """Plain text, with the exit-code lines of test feedback pulled out so they can be coloured."""
    position = 0
    for match in _EXIT_LINE.finditer(text):
        _plain(text[position:match.start()], blocks)
        blocks.append(Block("exit", match.group(0), tone=exit_tone(match["a"] or match["b"])))
        position = match.end()
    _plain(text[position:], blocks)


def _plain(text: str, blocks: list[Block]) -> None:
    if text.strip():
        blocks.append(Block("text", text.strip("\n")))


def _tagged(match: re.Match[str]) -> Block:
    if match["fence"] is not None:
        body, lang = match["fence"], match["lang"].strip()
        if lang == "diff" or body.startswith(("diff --git", "--- ")):
            return Block("diff", body, label=lang or "diff", lines=diff_lines(body))
        return Block("output", body, label=lang or "output")
    tag, body = match["tag"], match["body"]
    attrs = {m["name"]: m["value"] for m in _ATTR.finditer(match["attrs"] or "")}
    if tag == "diff" or tag == "candidate":
        label = f"candidate {attrs['label']}" if "label" in attrs else "diff"
        return Block("diff", body, label=label, lines=diff_lines(body))
    if tag == "edit":
        return Block("edit", body, label="edit", lines=edit_lines(body))
    if tag == "output":
        return Block("output", body, label="output")
    if tag == "issue":
        return Block("quote", body, label="issue")
    return Block("code", body, label=attrs.get("path", tag))
