"""Ids that become file names: instance ids, candidate ids, system and run names come from task files,
datasets and prediction files, so none may name a path outside the directory it is meant for."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,99}")


class UnsafePath(ValueError):
    """A relative path that would leave its root directory."""


def safe_name(name: str) -> str:
    """One path component for `name`: the name itself where it is plainly safe (SWE-bench ids, model
    names without '/'), else a cleaned name plus a hash of the original, so distinct names never collide."""
    if _SAFE.fullmatch(name):
        return name
    clean = re.sub(r"[^A-Za-z0-9._+-]", "_", name)[:80].lstrip(".") or "id"
    return f"{clean}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"


def inside(root: Path, relative: str | Path) -> Path:
    """`root / relative`, refusing a result that is not below `root` (`..`, absolute paths, symlinks out)."""
    root = Path(root)
    target = root / relative
    resolved_root = root.resolve()
    resolved = target.resolve()
    if resolved == resolved_root or resolved_root not in resolved.parents:
        raise UnsafePath(f"refusing to write {str(relative)!r}: it is outside {root}")
    return target
