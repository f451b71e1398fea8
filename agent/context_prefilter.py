"""Lexical prefilter of the context stage: every text file of a checkout, ranked by BM25 against the issue.

Vendored, generated, binary, huge and hidden files are skipped and reported, so the relevance calls
(one per kept file) are spent on sources a fix could touch.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from rank_bm25 import BM25Okapi

# Vendored or generated code: never the place of a fix, and large enough to crowd out real sources.
_SKIP_DIRS = frozenset({"node_modules", "vendor", "_vendor", "third_party", "site-packages", "__pycache__"})
# Only at the root: nested `build` packages are real sources (e.g. pip's operations/build/).
_SKIP_ROOT_DIRS = frozenset({"build", "dist"})
_LOCK_FILES = frozenset({"package-lock.json", "pnpm-lock.yaml", "Pipfile.lock", "go.sum"})
_GENERATED_SUFFIXES = (".lock", ".min.js", ".min.css", ".map", "_pb2.py", "_pb2_grpc.py", ".pb2.py")
_NOTE_EXAMPLES = 5

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def tokenize(text: str, cache: dict[str, list[str]] | None = None) -> list[str]:
    """Lower-cased identifier tokens; snake_case and camelCase identifiers also yield their parts."""
    cache = {} if cache is None else cache
    tokens: list[str] = []
    for identifier in _IDENTIFIER.findall(text):
        parts = cache.get(identifier)
        if parts is None:
            pieces = [p.lower() for chunk in identifier.split("_") for p in _WORD_PART.findall(chunk)]
            whole = identifier.strip("_").lower()
            parts = [p for p in pieces if len(p) > 1]
            if len(pieces) > 1 and len(whole) > 1:
                parts.append(whole)  # the exact identifier is stronger evidence than its parts
            cache[identifier] = parts
        tokens.extend(parts)
    return tokens


def _dir_skip_reason(name: str, at_root: bool) -> str | None:
    if name.startswith("."):
        return "hidden"
    if name in _SKIP_DIRS or name.endswith(".egg-info") or (at_root and name in _SKIP_ROOT_DIRS):
        return "vendored/generated"
    return None


def _read_text(path: Path, name: str, max_bytes: int) -> tuple[str | None, str | None]:
    """(text, None) for a file worth indexing, else (None, reason)."""
    if path.is_symlink():
        return None, "symlink"
    if name in _LOCK_FILES or name.endswith(_GENERATED_SUFFIXES):
        return None, "vendored/generated"
    try:
        if path.stat().st_size > max_bytes:
            return None, f"over {max_bytes} bytes"
        data = path.read_bytes()
    except OSError:
        return None, "unreadable"
    if b"\0" in data:
        return None, "binary"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "binary"
    return (text, None) if text.strip() else (None, "empty")


def _scan(repo_dir: Path, max_bytes: int) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Text files by repo-relative POSIX path (sorted walk), and skipped paths by reason."""
    files: dict[str, str] = {}
    skipped: dict[str, list[str]] = {}
    for root, dirs, names in os.walk(repo_dir):
        rel_root = Path(root).relative_to(repo_dir)
        kept = []
        for name in sorted(dirs):
            reason = _dir_skip_reason(name, at_root=rel_root == Path("."))
            if reason is None:
                kept.append(name)
            else:
                skipped.setdefault(reason, []).append(f"{(rel_root / name).as_posix()}/")
        dirs[:] = kept  # os.walk descends only into these, in this order
        for name in sorted(names):
            text, reason = _read_text(Path(root) / name, name, max_bytes)
            rel = (rel_root / name).as_posix()
            if text is None:
                skipped.setdefault(reason or "skipped", []).append(rel)
            else:
                files[rel] = text
    return files, skipped


def _bm25_order(files: dict[str, str], issue: str) -> list[str]:
    """All paths, best BM25 match for the issue first; ties by path."""
    paths = sorted(files)
    cache: dict[str, list[str]] = {}
    corpus = [tokenize(path, cache) + tokenize(files[path], cache) for path in paths]
    query = sorted(set(tokenize(issue, cache)))  # unique terms: a repeated word must not swamp the rest
    if not query or not any(corpus):
        return paths
    scores = BM25Okapi(corpus).get_scores(query)
    return [paths[i] for i in sorted(range(len(paths)), key=lambda i: (-float(scores[i]), paths[i]))]


def _skip_notes(skipped: dict[str, list[str]]) -> list[str]:
    notes = []
    for reason in sorted(skipped):
        paths = skipped[reason]
        shown = ", ".join(paths[:_NOTE_EXAMPLES]) + (", …" if len(paths) > _NOTE_EXAMPLES else "")
        notes.append(f"prefilter skipped {len(paths)} {reason} path(s): {shown}")
    return notes


def prefilter_with_notes(repo_dir: Path, issue: str, top: int, max_bytes: int) -> tuple[dict[str, str], list[str]]:
    """Texts of the top files in BM25 order, and notes on what was skipped (for the bundle)."""
    files, skipped = _scan(repo_dir, max_bytes)
    ranked = _bm25_order(files, issue)[:top]
    notes = _skip_notes(skipped)
    notes.append(f"prefilter kept {len(ranked)} of {len(files)} text file(s)")
    return {path: files[path] for path in ranked}, notes


def prefilter(repo_dir: Path, issue: str, top: int, *, max_file_bytes: int = 512_000) -> list[str]:
    """Repo-relative paths of the `top` text files that best match the issue lexically, best first."""
    return list(prefilter_with_notes(Path(repo_dir), issue, top, max_file_bytes)[0])
