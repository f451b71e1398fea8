"""Which files of a checkout the context stage may read: vendored, generated, binary, huge and hidden files
are skipped, each with its reason (the prefilter reports them). Used by `agent.context.prefilter` and
scripts/bench_context.py (which reads blobs from git instead of a checkout).
"""

from __future__ import annotations

import os
from pathlib import Path

# Vendored or generated code: never the place of a fix, and large enough to crowd out real sources.
_SKIP_DIRS = frozenset({"node_modules", "vendor", "_vendor", "third_party", "site-packages", "__pycache__"})
# Only at the root: nested `build` packages are real sources (e.g. pip's operations/build/).
_SKIP_ROOT_DIRS = frozenset({"build", "dist"})
_LOCK_FILES = frozenset({"package-lock.json", "pnpm-lock.yaml", "Pipfile.lock", "go.sum"})
_GENERATED_SUFFIXES = (".lock", ".min.js", ".min.css", ".map", "_pb2.py", "_pb2_grpc.py", ".pb2.py")


def skip_reason(rel_path: str, size: int, max_bytes: int) -> str | None:
    """Why a file (by its repo-relative path and size) is not indexed, or None; the content is checked later."""
    parts = rel_path.split("/")
    for depth, name in enumerate(parts[:-1]):
        if name.startswith("."):
            return "hidden"
        if name in _SKIP_DIRS or name.endswith(".egg-info") or (depth == 0 and name in _SKIP_ROOT_DIRS):
            return "vendored/generated"
    name = parts[-1]
    if name.startswith("."):
        return "hidden"
    if name in _LOCK_FILES or name.endswith(_GENERATED_SUFFIXES):
        return "vendored/generated"
    if size > max_bytes:
        return f"over {max_bytes} bytes"
    return None


def decode_text(data: bytes) -> tuple[str | None, str | None]:
    """(text, None) for content worth indexing, else (None, reason)."""
    if b"\0" in data:
        return None, "binary"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "binary"
    return (text, None) if text.strip() else (None, "empty")


def _dir_skip_reason(name: str, at_root: bool) -> str | None:
    if name.startswith("."):
        return "hidden"
    if name in _SKIP_DIRS or name.endswith(".egg-info") or (at_root and name in _SKIP_ROOT_DIRS):
        return "vendored/generated"
    return None


def scan_checkout(repo_dir: Path, max_bytes: int) -> tuple[dict[str, str], dict[str, list[str]]]:
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
            path, rel = Path(root) / name, (rel_root / name).as_posix()
            text, reason = _read_text(path, rel, max_bytes)
            if text is None:
                skipped.setdefault(reason or "skipped", []).append(rel)
            else:
                files[rel] = text
    return files, skipped


def _read_text(path: Path, rel: str, max_bytes: int) -> tuple[str | None, str | None]:
    if path.is_symlink():
        return None, "symlink"
    try:
        reason = skip_reason(rel, path.stat().st_size, max_bytes)
        if reason is not None:
            return None, reason
        data = path.read_bytes()
    except OSError:
        return None, "unreadable"
    return decode_text(data)
