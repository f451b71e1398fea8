"""Reading search/replace edit blocks from a model message (applying them: `agent.edit.blocks`).

The edit format (CodeMonkeys-style search/replace, extended with file creation and deletion):

    <edit>
    path/to/file.py
    <<<<<<< SEARCH
    exact original lines
    =======
    replacement lines
    >>>>>>> REPLACE
    </edit>

- The first non-blank line inside `<edit>` is the path, relative to the repository root. Any text
  file can be edited, not only Python.
- One or more SEARCH/REPLACE pairs follow. They apply top to bottom to the progressively edited text of
  that file; each SEARCH must equal whole lines of the file exactly and match exactly one place.
- An empty (or blank-only) SEARCH creates the file: REPLACE is its whole content, written with a final
  newline. The file must not exist yet (an existing empty file may also be filled this way).
- `<delete>path/to/file.py</delete>` on a line of its own deletes a file.
- Several files: several `<edit>` blocks (a later non-marker line inside a block also starts a new file).
  Pairs for the same path in different blocks are concatenated in order.
- Text outside the blocks is ignored, and so are Markdown fence lines (```) between the pairs.
  Markers may have 5-9 angle brackets; the divider is exactly seven '='.
- An edit is always applied to the ORIGINAL files: a new edit replaces the previous one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, field_validator

from agent.edit.paths import clean_path
from agent.templates import render

EDIT_FORMAT_INSTRUCTIONS = render("edit_format")  # what the editing prompt shows of the format

_EDIT_OPEN = re.compile(r"^\s*<edit>(?P<path>.*)$")
_EDIT_CLOSE = re.compile(r"^\s*</edit>\s*$")
_DELETE = re.compile(r"^\s*<delete>(?P<path>.*?)</delete>\s*$")
_SEARCH = re.compile(r"^\s*<{5,9}\s*SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={7}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9}\s*REPLACE\s*$")
_FENCE = re.compile(r"^\s*```")


class SearchReplace(BaseModel):
    """One pair; `search_lines == []` means "create the file with replace_lines as its content"."""

    model_config = ConfigDict(frozen=True)

    search_lines: list[str]
    replace_lines: list[str]


class FileEdit(BaseModel):
    """Everything one edit does to one file: SEARCH/REPLACE pairs in order, or a deletion."""

    model_config = ConfigDict(frozen=True)

    path: str
    blocks: list[SearchReplace] = []
    delete: bool = False

    @field_validator("path")
    @classmethod
    def _normalise_path(cls, path: str) -> str:
        return clean_path(path)


class EditError(Exception):
    """An edit was rejected and nothing applied; `.message` is written for the model to read."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        self.message = self._compose(self.problems)
        super().__init__(self.message)

    @staticmethod
    def _compose(problems: list[str]) -> str:
        header = (
            "The edit was rejected and nothing was applied. Fix the problems below and send the "
            "complete edit again (it replaces the previous one):"
        )
        if len(problems) == 1:
            return f"{header}\n\n{problems[0]}"
        return header + "".join(f"\n\n{number}. {problem}" for number, problem in enumerate(problems, 1))


class EditFormatError(EditError):
    """The edit message could not be parsed; `.message` says where and what to fix."""

    def __init__(self, problem: str) -> None:
        super().__init__([problem])

    @staticmethod
    def _compose(problems: list[str]) -> str:
        return (
            f"The edit could not be read: {problems[0]}\n\nExpected format:\n<edit>\npath/to/file\n"
            "<<<<<<< SEARCH\nexact original lines\n=======\nreplacement lines\n>>>>>>> REPLACE\n</edit>"
        )


class _Collected:
    """Pairs and deletions in the order they were written, merged by path."""

    def __init__(self) -> None:
        self.blocks: dict[str, list[SearchReplace]] = {}
        self.deletes: dict[str, int] = {}  # path → line number of the <delete>

    def add_block(self, path: str, block: SearchReplace) -> None:
        self.blocks.setdefault(path, []).append(block)

    def add_delete(self, raw_path: str, line_number: int) -> None:
        path = clean_path(raw_path)
        if not path:
            raise EditFormatError(f"line {line_number}: <delete></delete> names no path.")
        self.deletes.setdefault(path, line_number)

    def file_edits(self) -> list[FileEdit]:
        for path, line_number in self.deletes.items():
            if path in self.blocks:
                raise EditFormatError(
                    f"'{path}' is both deleted (line {line_number}) and edited; do one or the other."
                )
        edits = [FileEdit(path=path, blocks=blocks) for path, blocks in self.blocks.items()]
        return edits + [FileEdit(path=path, delete=True) for path in self.deletes]


def parse_edits(text: str) -> list[FileEdit]:
    """Parse every `<edit>` and `<delete>` block of a model message; raise `EditFormatError` if malformed."""
    lines = text.replace("\r\n", "\n").split("\n")
    collected = _Collected()
    index = 0
    while index < len(lines):
        line = lines[index]
        if match := _DELETE.match(line):
            collected.add_delete(match["path"], index + 1)
            index += 1
        elif match := _EDIT_OPEN.match(line):
            index = _parse_edit_block(lines, index, match["path"], collected)
        elif _SEARCH.match(line) or _REPLACE.match(line) or _EDIT_CLOSE.match(line):
            raise EditFormatError(
                f"line {index + 1}: '{line.strip()}' appears outside an <edit> block; every SEARCH/REPLACE "
                "pair must be inside <edit> ... </edit>, after the file path line."
            )
        else:
            index += 1
    edits = collected.file_edits()
    if not edits:
        raise EditFormatError("no <edit> or <delete> blocks were found in your message.")
    return edits


def _parse_edit_block(lines: list[str], open_index: int, inline_path: str, collected: _Collected) -> int:
    """Parse one `<edit>` block starting at lines[open_index]; return the index after `</edit>`."""
    opened = f"the <edit> block opened at line {open_index + 1}"
    path = clean_path(inline_path) or None
    pairs_for_path = 0
    index = open_index + 1
    while index < len(lines):
        line = lines[index]
        number = index + 1
        if _EDIT_CLOSE.match(line):
            if path is None:
                raise EditFormatError(f"{opened} has no file path; put the path on the line after <edit>.")
            if pairs_for_path == 0:
                raise EditFormatError(f"{opened} for '{path}' contains no SEARCH/REPLACE pair.")
            return index + 1
        if _EDIT_OPEN.match(line):
            raise EditFormatError(
                f"line {number}: a new <edit> starts before {opened} was closed with </edit>."
            )
        if match := _DELETE.match(line):
            collected.add_delete(match["path"], number)
            index += 1
        elif _SEARCH.match(line):
            if path is None:
                raise EditFormatError(
                    f"{opened} has no file path: the line after <edit> must be the path, before "
                    "'<<<<<<< SEARCH'."
                )
            block, index = _parse_pair(lines, index, path)
            collected.add_block(path, block)
            pairs_for_path += 1
        elif _DIVIDER.match(line) or _REPLACE.match(line):
            raise EditFormatError(
                f"line {number}: '{line.strip()}' without a '<<<<<<< SEARCH' line before it."
            )
        elif not line.strip() or _FENCE.match(line):
            index += 1
        elif path is not None and pairs_for_path == 0:
            raise EditFormatError(
                f"line {number}: expected '<<<<<<< SEARCH' after the path line '{path}' in {opened}, "
                f"found '{line.strip()}'."
            )
        else:
            path = clean_path(line)  # a new path line: the following pairs edit that file
            pairs_for_path = 0
            index += 1
    where = f"for '{path}' " if path else ""
    raise EditFormatError(f"{opened} {where}is not closed: add '</edit>' after its last '>>>>>>> REPLACE'.")


def _parse_pair(lines: list[str], search_index: int, path: str) -> tuple[SearchReplace, int]:
    """Parse SEARCH ... ======= ... REPLACE starting at the SEARCH marker; return it and the next index."""
    opened = f"the SEARCH section at line {search_index + 1} (file '{path}')"
    search: list[str] = []
    index = search_index + 1
    while True:
        if index >= len(lines):
            raise EditFormatError(f"{opened} never reaches its '=======' divider.")
        line = lines[index]
        if _DIVIDER.match(line):
            break
        if _SEARCH.match(line) or _REPLACE.match(line) or _EDIT_CLOSE.match(line):
            raise EditFormatError(
                f"line {index + 1}: expected the '=======' divider of {opened}, found '{line.strip()}'."
            )
        search.append(line)
        index += 1
    replace: list[str] = []
    index += 1
    while True:
        if index >= len(lines):
            raise EditFormatError(f"{opened} is not closed: its REPLACE section needs '>>>>>>> REPLACE'.")
        line = lines[index]
        if _REPLACE.match(line):
            break
        if _SEARCH.match(line) or _EDIT_CLOSE.match(line):
            raise EditFormatError(
                f"line {index + 1}: expected '>>>>>>> REPLACE' to close {opened}, found '{line.strip()}'."
            )
        replace.append(line)
        index += 1
    if not any(line.strip() for line in search):
        search = []  # a blank-only SEARCH means "create"
    return SearchReplace(search_lines=search, replace_lines=replace), index + 1
