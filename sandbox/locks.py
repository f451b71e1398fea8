"""One file-lock protocol (flock) for everything that must happen once at a time across processes.

The kernel drops a flock when its process dies, even by SIGKILL, so a crashed holder never blocks the
next one. Used by image builds, repository mirrors and checkouts, and the application's run directories.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path, *, blocking: bool = True) -> Iterator[int]:
    """Hold an exclusive lock on `path` (created if missing) and yield its file descriptor.

    Without `blocking`, raises `BlockingIOError` when another process holds it. A lock file another
    user created is opened read-only: flock needs no write access.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:
        fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        yield fd
    finally:
        os.close(fd)


def is_locked(path: Path) -> bool:
    """Whether a live process holds the lock on `path` (never waits, never creates the file)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
