"""Search/replace edit blocks → a validated unified diff that `git apply` accepts.

The format and its parser are `agent.edit.parse` (re-exported here); this module applies parsed edits to
the ORIGINAL files in memory: every SEARCH must equal whole lines and match exactly one place, pairs of a
file apply top to bottom, an empty SEARCH creates a file, `<delete>` removes one.

Replacement lines take the file's line ending (CRLF files stay CRLF); a file without a final newline
keeps that property when its last line is replaced; a UTF-8 BOM is kept and hidden from matching.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from agent.edit.diff import diff_stats, normalize_patch, render_file_diff, split_keepends
from agent.edit.hints import MismatchExplainer, find_matches, line_content, line_list
from agent.edit.parse import (
    EDIT_FORMAT_INSTRUCTIONS,
    EditError,
    EditFormatError,
    FileEdit,
    SearchReplace,
    parse_edits,
)
from agent.edit.paths import (
    UTF8_BOM,
    TextFile,
    UnreadableFile,
    binary_content_reason,
    load_text_file,
    unsafe_path_reason,
)

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
