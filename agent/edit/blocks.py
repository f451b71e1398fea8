"""Search/replace edit blocks → a validated unified diff that `git apply` accepts.

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

Replacement lines take the file's line ending (CRLF files stay CRLF); a file without a final newline
keeps that property when its last line is replaced; a UTF-8 BOM is kept and hidden from matching.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from agent.edit.diff import diff_stats, normalize_patch, render_file_diff, split_keepends
from agent.edit.hints import MismatchExplainer, find_matches, line_content, line_list
from agent.edit.paths import (
    UTF8_BOM,
    TextFile,
    UnreadableFile,
    binary_content_reason,
    clean_path,
    load_text_file,
    unsafe_path_reason,
)
from agent.templates import render

__all__ = [
    "EDIT_FORMAT_INSTRUCTIONS",
    "EditError",
    "EditFormatError",
    "EditResult",
    "FileChange",
    "FileEdit",
    "SearchReplace",
    "apply_edit_text",
    "apply_edits",
    "diff_stats",
    "normalize_patch",
    "parse_edits",
]

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


ChangeStatus = Literal["modified", "created", "deleted"]


class FileChange(BaseModel):
    path: str
    status: ChangeStatus
    lines_added: int
    lines_removed: int
    new_text: str | None  # full new content (None when deleted), handy for writing files directly


class EditResult(BaseModel):
    diff: str  # git-style unified diff of all files; write it as UTF-8 bytes without newline translation
    files: list[FileChange]


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


def apply_edit_text(repo_dir: Path, text: str) -> EditResult:
    """parse_edits + apply_edits: the model's message straight to a diff (raises EditError)."""
    return apply_edits(repo_dir, parse_edits(text))


def apply_edits(repo_dir: Path, edits: Sequence[FileEdit]) -> EditResult:
    """Apply edits to the ORIGINAL files of repo_dir in memory and return the diff; repo_dir is only read.

    Raises `EditError` listing every problem found (all files are checked before giving up).
    """
    explainer = MismatchExplainer(repo_dir)
    problems: list[str] = []
    changes: list[FileChange] = []
    diffs: list[str] = []
    seen: set[str] = set()
    for edit in edits:
        if edit.path in seen:
            problems.append(f"'{edit.path}' appears in two FileEdits; combine its pairs into one.")
            continue
        seen.add(edit.path)
        reason = unsafe_path_reason(repo_dir, edit.path)
        if reason:
            problems.append(reason)
            continue
        try:
            original = load_text_file(repo_dir, edit.path)
        except UnreadableFile as exc:
            problems.append(str(exc))
            continue
        new_text, file_problems = _new_text(edit, original, explainer)
        problems.extend(file_problems)
        if file_problems:
            continue
        old_text = _with_bom(original) if original.exists else None
        if new_text is not None:
            new_text = UTF8_BOM + new_text if original.bom else new_text
            if reason := binary_content_reason(edit.path, new_text):
                problems.append(reason)
                continue
        file_diff = render_file_diff(edit.path, old_text, new_text, original.mode)
        if not file_diff.text:
            continue  # every REPLACE equalled its SEARCH
        diffs.append(file_diff.text)
        status: ChangeStatus = "deleted" if new_text is None else "modified" if original.exists else "created"
        changes.append(
            FileChange(
                path=edit.path,
                status=status,
                lines_added=file_diff.lines_added,
                lines_removed=file_diff.lines_removed,
                new_text=new_text,
            )
        )
    if problems:
        raise EditError(problems)
    if not changes:
        raise EditError(["The edit changes nothing: every REPLACE section equals its SEARCH section."])
    return EditResult(diff="".join(diffs), files=changes)


def _with_bom(original: TextFile) -> str:
    return UTF8_BOM + original.text if original.bom else original.text


def _new_text(
    edit: FileEdit, original: TextFile, explainer: MismatchExplainer
) -> tuple[str | None, list[str]]:
    """The file's new text (None = deleted) and the problems that stop the edit."""
    if edit.delete:
        if not original.exists:
            return None, [f"Cannot delete '{edit.path}': no such file."]
        return None, []
    if not edit.blocks:
        return None, [f"The edit for '{edit.path}' has no SEARCH/REPLACE pair."]
    original_lines = split_keepends(original.text)
    lines = list(original_lines)
    eol = _dominant_line_ending(lines)
    exists = original.exists
    problems: list[str] = []
    for number, block in enumerate(edit.blocks, 1):
        where = f"'{edit.path}', SEARCH/REPLACE pair {number}" if len(edit.blocks) > 1 else f"'{edit.path}'"
        if not block.search_lines:
            if lines:
                problems.append(
                    f"{where}: the SEARCH section is empty, which creates a new file, but the file already "
                    "exists. To change it, put lines copied from it in SEARCH."
                    if original.exists
                    else f"{where}: an empty SEARCH creates a file, but an earlier pair already created it."
                )
                continue
            lines = [line + eol for line in block.replace_lines]
            exists = True
            continue
        if not exists:
            problems.append(explainer.explain_missing_file(where, edit.path, block.search_lines))
            continue
        contents = [line_content(line) for line in lines]
        starts = find_matches(contents, block.search_lines)
        if len(starts) == 1:
            lines = _splice(lines, starts[0], len(block.search_lines), block.replace_lines, eol)
        elif starts:
            problems.append(
                f"{where}: the SEARCH lines match {len(starts)} places (starting at lines "
                f"{line_list(starts)}). Include more surrounding lines in SEARCH so it matches exactly one place."
            )
        else:
            original_contents = [line_content(line) for line in original_lines]
            problems.append(
                explainer.explain_no_match(where, edit.path, block.search_lines, contents, original_contents)
            )
    return "".join(lines), problems


def _dominant_line_ending(lines: list[str]) -> str:
    crlf = sum(line.endswith("\r\n") for line in lines)
    return "\r\n" if crlf * 2 > len(lines) else "\n"


def _splice(lines: list[str], start: int, size: int, replacement: list[str], eol: str) -> list[str]:
    new_lines = [line + eol for line in replacement]
    # A replaced last line without a newline stays without one, so the edit does not add a newline.
    if new_lines and not lines[start + size - 1].endswith("\n"):
        new_lines[-1] = replacement[-1]
    return lines[:start] + new_lines + lines[start + size :]
