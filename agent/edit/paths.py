"""Path safety and text-file loading for edit blocks (used by `agent.edit.blocks`).

Every path a model names is untrusted. A path is refused when it is absolute or home-relative, has a
`..` component, points into a `.git` directory, contains control characters, or passes through a
symbolic link (the file itself or any parent directory). Symlinks are refused even when they stay
inside the repository because `git apply` will not write through them; the message names the real path.

Files are text only: a NUL byte in the first 8 KiB or bytes that are not valid UTF-8 make a file
binary, and binary files are refused for editing and deletion (a text diff cannot carry them).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict

# How much of a file is sniffed for NUL bytes, like git's own binary detection.
BINARY_SNIFF_BYTES = 8192

UTF8_BOM = "\ufeff"


class TextFile(BaseModel):
    """An original file as the edit sees it; `exists=False` means the path is free."""

    model_config = ConfigDict(frozen=True)

    exists: bool
    text: str = ""  # without a UTF-8 byte-order mark, see `bom`
    bom: bool = False  # the file starts with a UTF-8 BOM (kept on write, hidden from matching)
    mode: str = "100644"


class UnreadableFile(Exception):
    """The path exists but cannot be edited as text (binary, not UTF-8, a directory, ...)."""


def clean_path(raw: str) -> str:
    """Normalise the spelling of a path the model wrote, without judging whether it is safe.

    Strips surrounding whitespace, quotes and backticks, a leading `./`, and repeated slashes, so
    `./src//a.py` and `` `src/a.py` `` both name `src/a.py`.
    """
    path = raw.strip().strip("`'\"").strip()
    parts = [part for part in path.split("/") if part not in ("", ".")]
    prefix = "/" if path.startswith("/") else ""
    return prefix + "/".join(parts)


def unsafe_path_reason(repo_dir: Path, path: str) -> str | None:
    """Why `path` must not be touched, or None when it is a safe repository-relative path."""
    if not path:
        return "An edit names an empty path; write the file path relative to the repository root."
    if path.startswith(("/", "~")) or (len(path) > 1 and path[1] == ":"):
        return f"Refused path '{path}': it is absolute; use a path relative to the repository root."
    if any(ord(char) < 32 or ord(char) == 127 for char in path):
        return f"Refused path {path!r}: it contains control characters."
    if "\\" in path:
        return f"Refused path '{path}': use forward slashes '/' to separate directories."
    parts = PurePosixPath(path).parts
    if ".." in parts:
        return f"Refused path '{path}': '..' components are not allowed; stay inside the repository."
    if any(part.lower() == ".git" for part in parts):
        return f"Refused path '{path}': files inside .git/ cannot be edited."
    return _symlink_reason(repo_dir, path, parts)


def _symlink_reason(repo_dir: Path, path: str, parts: tuple[str, ...]) -> str | None:
    root = repo_dir.resolve()
    for depth in range(1, len(parts) + 1):
        current = repo_dir.joinpath(*parts[:depth])
        if not current.is_symlink():
            continue
        link = "/".join(parts[:depth])
        target = current.resolve()
        if not target.is_relative_to(root):
            return f"Refused path '{path}': '{link}' is a symbolic link that resolves outside the repository."
        real = target.joinpath(*parts[depth:]).relative_to(root).as_posix()
        return f"Refused path '{path}': '{link}' is a symbolic link; edit the real file '{real}' instead."
    return None


def load_text_file(repo_dir: Path, path: str) -> TextFile:
    """Read an original file; raise `UnreadableFile` when it exists but is not editable text.

    Call only for paths that passed `unsafe_path_reason`.
    """
    full = repo_dir / path
    if not full.exists():
        _check_parents_are_directories(repo_dir, path)
        return TextFile(exists=False)
    if full.is_dir():
        raise UnreadableFile(f"'{path}' is a directory, not a file; name a file inside it.")
    if not full.is_file():
        raise UnreadableFile(f"'{path}' is not a regular file.")
    data = full.read_bytes()
    if b"\0" in data[:BINARY_SNIFF_BYTES]:
        raise UnreadableFile(f"'{path}' is a binary file; binary files cannot be edited or deleted here.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableFile(
            f"'{path}' is not valid UTF-8 text; only UTF-8 text files can be edited or deleted here."
        ) from None
    executable = bool(full.stat().st_mode & stat.S_IXUSR)
    bom = text.startswith(UTF8_BOM)
    return TextFile(
        exists=True,
        text=text[len(UTF8_BOM) :] if bom else text,
        bom=bom,
        mode="100755" if executable else "100644",
    )


def _check_parents_are_directories(repo_dir: Path, path: str) -> None:
    # Creating "a.py/b.py" when a.py is a file would make git apply fail with an obscure error.
    parent = PurePosixPath(path).parent
    while parent != PurePosixPath("."):
        if (repo_dir / parent).exists() and not (repo_dir / parent).is_dir():
            raise UnreadableFile(f"Cannot create '{path}': '{parent}' is a file, not a directory.")
        parent = parent.parent


def binary_content_reason(path: str, text: str) -> str | None:
    """Why new content for `path` cannot be written as a text file, or None when it can."""
    if "\0" in text:
        return f"The new content of '{path}' contains a NUL byte; binary content cannot be written."
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return f"The new content of '{path}' is not encodable as UTF-8 text."
    return None


def list_repo_text_files(repo_dir: Path, limit: int) -> list[str]:
    """Up to `limit` regular-file paths under repo_dir (relative, sorted), skipping .git and caches."""
    skipped_dirs = {".git", "node_modules", "__pycache__", ".tox", ".venv", ".mypy_cache"}
    found: list[str] = []
    for directory, subdirs, files in os.walk(repo_dir):
        subdirs[:] = sorted(d for d in subdirs if d not in skipped_dirs)
        base = Path(directory)
        for name in sorted(files):
            full = base / name
            if full.is_symlink():
                continue
            found.append(full.relative_to(repo_dir).as_posix())
            if len(found) >= limit:
                return found
    return found
