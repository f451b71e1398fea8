"""Unified diffs in git's format, patch statistics and patch normalisation (used by `agent.edit.blocks`).

`render_file_diff` writes what `git diff` would write for one file, minus the `index` line, so that
`git apply` accepts it: `diff --git` headers with `a/` and `b/` prefixes, `new file mode` /
`deleted file mode` with `/dev/null` sides, 3 lines of context, `\\ No newline at end of file` after a
last line without a newline (on either side), CR characters of CRLF files kept verbatim. The diff is
a `str` whose lines end in "\\n" only where the files have them: write it as UTF-8 bytes, without
newline translation.
"""

from __future__ import annotations

import difflib

from pydantic import BaseModel, ConfigDict
from unidiff import PatchSet

CONTEXT_LINES = 3
NO_NEWLINE_MARKER = "\\ No newline at end of file\n"


class FileDiff(BaseModel):
    """The diff of one file plus its size; `text` is empty when the file did not change."""

    model_config = ConfigDict(frozen=True)

    text: str
    lines_added: int
    lines_removed: int


def split_keepends(text: str) -> list[str]:
    """Split on "\\n" only, keeping it (str.splitlines would also split on \\r, \\f, \\u2028 ...)."""
    pieces = text.split("\n")
    lines = [piece + "\n" for piece in pieces[:-1]]
    if pieces[-1]:
        lines.append(pieces[-1])
    return lines


def render_file_diff(path: str, old: str | None, new: str | None, old_mode: str = "100644") -> FileDiff:
    """Diff one file; `old=None` creates it, `new=None` deletes it."""
    a_name = _git_quote(f"a/{path}")
    b_name = _git_quote(f"b/{path}")
    header = [f"diff --git {a_name} {b_name}\n"]
    source, target = a_name, b_name
    if old is None:
        header.append("new file mode 100644\n")
        source = "/dev/null"
    elif new is None:
        header.append(f"deleted file mode {old_mode}\n")
        target = "/dev/null"
    old_lines = split_keepends(old or "")
    new_lines = split_keepends(new or "")
    hunks, added, removed = _hunks(old_lines, new_lines)
    if not hunks:
        # Creating or deleting an empty file is a header-only diff, exactly as git writes it.
        is_header_only = old is None or new is None
        return FileDiff(text="".join(header) if is_header_only else "", lines_added=0, lines_removed=0)
    # git ends a name containing a space with a tab so the name's end is unambiguous.
    header.append(f"--- {source}{_tab_if_space(source)}\n")
    header.append(f"+++ {target}{_tab_if_space(target)}\n")
    return FileDiff(text="".join(header + hunks), lines_added=added, lines_removed=removed)


def _hunks(old_lines: list[str], new_lines: list[str]) -> tuple[list[str], int, int]:
    # Lines keep their endings, so a change of only the final newline still shows as a change.
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    out: list[str] = []
    added = removed = 0
    for group in matcher.get_grouped_opcodes(CONTEXT_LINES):
        i1, i2, j1, j2 = group[0][1], group[-1][2], group[0][3], group[-1][4]
        out.append(f"@@ -{_hunk_range(i1, i2 - i1)} +{_hunk_range(j1, j2 - j1)} @@\n")
        for tag, a1, a2, b1, b2 in group:
            if tag == "equal":
                out.extend(_body_line(" ", line) for line in old_lines[a1:a2])
                continue
            out.extend(_body_line("-", line) for line in old_lines[a1:a2])
            out.extend(_body_line("+", line) for line in new_lines[b1:b2])
            removed += a2 - a1
            added += b2 - b1
    return out, added, removed


def _hunk_range(start: int, length: int) -> str:
    # Same convention as diff/git: a one-line range omits the count; an empty range names the line before.
    if length == 1:
        return f"{start + 1}"
    if length == 0:
        return f"{start},0"
    return f"{start + 1},{length}"


def _body_line(prefix: str, line: str) -> str:
    if line.endswith("\n"):
        return prefix + line
    return prefix + line + "\n" + NO_NEWLINE_MARKER


def _tab_if_space(name: str) -> str:
    return "\t" if " " in name else ""


def _git_quote(name: str) -> str:
    """C-quote a path the way git does when it holds quotes, backslashes or non-ASCII characters."""
    if all(32 <= ord(char) < 127 and char not in '"\\' for char in name):
        return name
    escapes = {"\a": "\\a", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r"}
    quoted = []
    for char in name:
        if char in '"\\':
            quoted.append("\\" + char)
        elif char in escapes:
            quoted.append(escapes[char])
        elif 32 <= ord(char) < 127:
            quoted.append(char)
        else:
            quoted.extend(f"\\{byte:03o}" for byte in char.encode("utf-8"))
    return '"' + "".join(quoted) + '"'


def diff_stats(diff: str) -> tuple[int, int, int]:
    """(files changed, lines added, lines removed) of a unified diff; (0, 0, 0) for an empty one."""
    if not diff.strip():
        return 0, 0, 0
    patch = PatchSet(split_keepends(diff))
    return len(patch), sum(f.added for f in patch), sum(f.removed for f in patch)


def normalize_patch(diff: str) -> str:
    """Near-exact canonical text of a patch: what decides which candidates run once, and caches results.

    Only what copies of one patch pick up in transit is dropped: the CR of CRLF line endings, trailing
    whitespace of every line, and blank lines around the whole text. Everything else is kept as written:
    indentation and spaces inside lines (Python is whitespace-sensitive), context lines, hunk headers and
    the extended headers (paths, renames, modes, binary markers), so a rename-only, mode-only,
    indentation-only or binary patch is never "" (no change); only a blank diff is.
    Trailing whitespace is dropped even on added lines, so it is not told apart inside a multi-line string.
    """
    lines = [line.rstrip() for line in diff.split("\n")]
    text = "\n".join(lines).strip("\n")
    return text + "\n" if text else ""


def loose_patch_text(diff: str) -> str:
    """Canonical text of a patch, equal for patches that differ only in whitespace: for REPORTING agreement.

    Never use it to decide what runs or what is cached: patches it equates can behave differently
    (indentation in Python), and it is "" for patches without line changes (renames, mode changes,
    binary patches, whitespace-only changes). What is normalised, exactly:
    - all whitespace is removed from every line (indentation, spaces inside the line, trailing spaces,
      the CR of CRLF); lines that become empty (blank lines) are dropped, so adding or removing blank
      lines is no change;
    - between two unchanged lines, a removed and an added line that are then equal cancel out (a
      re-indented or re-spaced line is no change) and count as unchanged;
    - what remains is listed per file, files sorted by path: each removed line with its number in the
      ORIGINAL file, each added line with the original line number where its run of changes starts
      (whitespace-only changes cannot shift original line numbers);
    - context text, hunk boundaries, new-side line numbers and "\\ No newline" markers are ignored;
    - a created or deleted file is kept even when no line change remains.
    """
    if not diff.strip():
        return ""
    sections: list[tuple[str, list[str]]] = []
    for patched_file in PatchSet(split_keepends(diff)):
        changes: list[tuple[int, int, int, str]] = []
        for hunk in patched_file:
            changes.extend(_hunk_changes(hunk, first_order=len(changes)))
        status = "added" if patched_file.is_added_file else "removed" if patched_file.is_removed_file else ""
        if changes or status:
            lines = [f"file {patched_file.path} {status}".rstrip()] + [
                change[3] for change in sorted(changes)
            ]
            sections.append((patched_file.path, lines))
    return "".join(line + "\n" for _, lines in sorted(sections) for line in lines)


def _hunk_changes(hunk, first_order: int) -> list[tuple[int, int, int, str]]:
    """Remaining changes of one hunk as sortable (old line, kind, order, text) tuples."""
    changes: list[tuple[int, int, int, str]] = []
    anchor = hunk.source_start
    removed: list[tuple[int, str]] = []
    added: list[str] = []

    def flush() -> None:
        nonlocal anchor
        matcher = difflib.SequenceMatcher(None, [text for _, text in removed], added, autojunk=False)
        for tag, a1, a2, b1, b2 in matcher.get_opcodes():
            if tag == "equal":
                # A re-spaced line is an unchanged line: later additions are anchored after it.
                anchor = removed[a2 - 1][0] + 1
                continue
            for number, text in removed[a1:a2]:
                changes.append((number, 0, first_order + len(changes), f"-{number} {text}"))
            for text in added[b1:b2]:
                changes.append((anchor, 1, first_order + len(changes), f"+{anchor} {text}"))
        removed.clear()
        added.clear()

    for line in hunk:
        text = "".join(line.value.split())
        if line.line_type == "\\" or not text:
            continue  # "No newline" markers and blank lines carry no content
        if line.line_type == "-":
            removed.append((line.source_line_no, text))
        elif line.line_type == "+":
            added.append(text)
        else:
            flush()
            anchor = line.source_line_no + 1
    flush()
    return changes
