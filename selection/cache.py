"""On-disk cache of executions, so selecting again (or with more candidates) repeats nothing.

Key: (image id, `patch_key` (sha256 of the near-exact patch text) or "" for the original, sha256 of what
ran and how (test, command, time limit: see `Job.cache_test_key`), run index).
The image *id* (not the tag) is used: a tag rebuilt with other content must not hit old results.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from selection.models import Outcome

CellKey = tuple[str, str, str, int]
CACHE_FILE = "selection-outcomes.sqlite3"
SCHEMA = """CREATE TABLE IF NOT EXISTS outcomes (
    image TEXT NOT NULL, patch TEXT NOT NULL, test TEXT NOT NULL, run INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (image, patch, test, run))"""


class OutcomeCache:
    """SQLite under `cache_dir` (safe to share between processes), or a dict when `cache_dir` is None."""

    def __init__(self, cache_dir: Path | None) -> None:
        self._lock = threading.Lock()
        self._memory: dict[CellKey, str] = {}
        self._db: sqlite3.Connection | None = None
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(cache_dir / CACHE_FILE, timeout=60, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(SCHEMA)

    def get(self, key: CellKey) -> Outcome | None:
        with self._lock:
            if self._db is None:
                data = self._memory.get(key)
            else:
                row = self._db.execute(
                    "SELECT data FROM outcomes WHERE image=? AND patch=? AND test=? AND run=?", key
                ).fetchone()
                data = row[0] if row else None
        return None if data is None else Outcome.model_validate_json(data)

    def put(self, key: CellKey, outcome: Outcome) -> None:
        data = outcome.model_dump_json()
        with self._lock:
            if self._db is None:
                self._memory[key] = data
            else:
                self._db.execute("INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?, ?, ?)", (*key, data))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
