"""Line matching for SEARCH sections and the explanations shown when a SEARCH does not match.

The explanations are written for the model: they quote the file's real lines so the next attempt can
copy them. Checks, in order: the lines were changed by an earlier block of the same edit; they match
when whitespace is ignored ("did you mean"); they appear exactly in another file; the most similar
region of the file (difflib ratio over windows of the same line count).
"""

from __future__ import annotations

import difflib
from pathlib import Path

from agent.edit.paths import list_repo_text_files

# Below this similarity a "closest region" would only distract the model.
NEAR_MISS_MIN_RATIO = 0.5
# Past this many line comparisons only promising windows are scored (keeps big files fast).
FULL_SCAN_LINE_BUDGET = 40_000
MAX_SCANNED_FILES = 20_000
MAX_SCANNED_FILE_BYTES = 2_000_000
MAX_LISTED = 10


def line_content(line: str) -> str:
    """A line without its ending ("\\n" or "\\r\\n")."""
    line = line.removesuffix("\n")
    return line.removesuffix("\r")


def find_matches(contents: list[str], search: list[str]) -> list[int]:
    """0-based start indices where `search` equals consecutive whole lines of `contents`."""
    size = len(search)
    first = search[0]
    return [
        start
        for start in range(len(contents) - size + 1)
        if contents[start] == first and contents[start : start + size] == search
    ]


def _squash(line: str) -> str:
    return "".join(line.split())


def numbered(contents: list[str], start: int, end: int) -> str:
    """Lines start..end (0-based, end exclusive) with 1-based line numbers, for quoting."""
    return "\n".join(f"{number + 1:>5} | {contents[number]}" for number in range(start, end))


def fenced(lines: list[str]) -> str:
    return "```\n" + "\n".join(lines) + "\n```"


def line_list(starts: list[int]) -> str:
    shown = ", ".join(str(start + 1) for start in starts[:MAX_LISTED])
    return shown + (", ..." if len(starts) > MAX_LISTED else "")


class MismatchExplainer:
    """Explains SEARCH sections that match nothing; lists repository files lazily, once per edit."""

    def __init__(self, repo_dir: Path) -> None:
        self._repo_dir = repo_dir
        self._files: list[str] | None = None

    def repo_files(self) -> list[str]:
        if self._files is None:
            self._files = list_repo_text_files(self._repo_dir, MAX_SCANNED_FILES)
        return self._files

    def explain_no_match(
        self, where: str, path: str, search: list[str], contents: list[str], original: list[str]
    ) -> str:
        """Why `search` is not in `contents` (the file as earlier blocks left it; `original` before them)."""
        intro = f"{where}: the SEARCH lines were not found in '{path}'."
        if contents != original and find_matches(original, search):
            return (
                f"{intro} They are in the original file, but an earlier SEARCH/REPLACE block of this edit "
                "already changed them. Blocks apply top to bottom: merge the two blocks into one, or "
                "search for the text as the earlier block leaves it."
            )
        squashed = [_squash(line) for line in contents]
        loose = find_matches(squashed, [_squash(line) for line in search])
        if loose:
            start = loose[0]
            count = f" ({len(loose)} such places; first shown)" if len(loose) > 1 else ""
            return (
                f"{intro} They differ only in whitespace (indentation, spaces or blank characters) from "
                f"lines {start + 1}-{start + len(search)}{count}. Did you mean these lines? Copy them "
                f"exactly:\n{fenced(contents[start : start + len(search)])}"
            )
        elsewhere = self.files_containing(search, exclude=path)
        if elsewhere:
            places = ", ".join(f"'{other}' (line {line})" for other, line in elsewhere)
            return f"{intro} They do appear exactly in {places}. Did you mean to edit that file?"
        closest = closest_region(contents, search)
        if closest is None:
            return (
                f"{intro} No similar lines exist in the file either. Re-read the file and copy the "
                "SEARCH lines exactly, or check the path."
            )
        start, end, ratio = closest
        return (
            f"{intro} The closest region ({ratio:.0%} similar) is lines {start + 1}-{end}; SEARCH must "
            f"repeat the file's lines exactly (without the line numbers):\n{numbered(contents, start, end)}"
        )

    def explain_missing_file(self, where: str, path: str, search: list[str]) -> str:
        message = (
            f"{where}: the file does not exist. To create a new file, leave the SEARCH section empty "
            "and put the whole file content in REPLACE."
        )
        elsewhere = self.files_containing(search, exclude=path)
        if elsewhere:
            places = ", ".join(f"'{other}' (line {line})" for other, line in elsewhere)
            return f"{message} The SEARCH lines appear exactly in {places}; did you mean that file?"
        similar = difflib.get_close_matches(path, self.repo_files(), n=3, cutoff=0.6)
        if similar:
            message += (
                " Existing files with similar paths: " + ", ".join(f"'{name}'" for name in similar) + "."
            )
        return message

    def files_containing(self, search: list[str], exclude: str, limit: int = 3) -> list[tuple[str, int]]:
        """Other files holding `search` as exact whole lines, with the 1-based first line of the match."""
        # The longest line is a cheap byte-level prefilter before decoding and matching whole lines.
        needle = max((line.strip() for line in search), key=len).encode("utf-8", "replace")
        if not needle:
            return []
        found: list[tuple[str, int]] = []
        for name in self.repo_files():
            if name == exclude:
                continue
            full = self._repo_dir / name
            try:
                if full.stat().st_size > MAX_SCANNED_FILE_BYTES:
                    continue
                data = full.read_bytes()
            except OSError:
                continue
            if needle not in data:
                continue
            text = data.decode("utf-8", "replace").removeprefix("\ufeff")
            matches = find_matches([line_content(line) for line in text.split("\n")], search)
            if matches:
                found.append((name, matches[0] + 1))
                if len(found) >= limit:
                    break
        return found


def closest_region(contents: list[str], search: list[str]) -> tuple[int, int, float] | None:
    """(start, end, ratio) of the window most similar to `search`, or None if nothing is similar enough."""
    if not contents:
        return None
    size = min(len(search), len(contents))
    target = "\n".join(line.strip() for line in search)
    matcher = difflib.SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(target)  # difflib caches analysis of seq2, so the fixed side goes there
    best_start, best_ratio = -1, 0.0
    for start in _candidate_starts(contents, search, size):
        matcher.set_seq1("\n".join(line.strip() for line in contents[start : start + size]))
        if matcher.real_quick_ratio() <= best_ratio or matcher.quick_ratio() <= best_ratio:
            continue
        ratio = matcher.ratio()
        if ratio > best_ratio:
            best_start, best_ratio = start, ratio
    if best_start < 0 or best_ratio < NEAR_MISS_MIN_RATIO:
        return None
    return best_start, best_start + size, best_ratio


def _candidate_starts(contents: list[str], search: list[str], size: int) -> list[int]:
    last_start = len(contents) - size
    if (last_start + 1) * size <= FULL_SCAN_LINE_BUDGET:
        return list(range(last_start + 1))
    # Big file: score windows by how many of their lines occur in the search (a sliding count), and
    # add windows aligned with lines resembling the first and last search lines.
    wanted = {line.strip() for line in search if line.strip()}
    hits = [1 if line.strip() in wanted else 0 for line in contents]
    scores: list[tuple[int, int]] = []
    running = sum(hits[:size])
    for start in range(last_start + 1):
        if running:
            scores.append((running, start))
        if start + size < len(hits):
            running += hits[start + size] - hits[start]
    starts = {start for _, start in sorted(scores, reverse=True)[:200]}
    positions: dict[str, list[int]] = {}
    for index, line in enumerate(contents):
        positions.setdefault(line.strip(), []).append(index)
    for offset, probe in ((0, search[0].strip()), (size - 1, search[-1].strip())):
        for close in difflib.get_close_matches(probe, list(positions), n=5, cutoff=0.6):
            starts.update(
                index - offset for index in positions[close][:20] if 0 <= index - offset <= last_start
            )
    return sorted(starts)
