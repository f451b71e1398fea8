"""The run store: SQLite (WAL) in the run directory, plus files for logs and patches.

Everything a run does is written as it happens, each write committed at once, so `kill -9` loses at
most the step in flight. State-machine states and completed model calls are keyed by a hash of the
config that affects results: rerunning the same command resumes, a changed config starts afresh.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.budget import Spend
from agent.call_records import CallRecord
from agent.text import storable, storable_data
from patchswarm.paths import inside
from sandbox.locks import file_lock, is_locked

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
  instance_id TEXT NOT NULL, config_hash TEXT NOT NULL, status TEXT NOT NULL,
  cost_usd REAL DEFAULT 0, result TEXT, error TEXT, started_at REAL, finished_at REAL,
  PRIMARY KEY (instance_id, config_hash));
CREATE TABLE IF NOT EXISTS states (key TEXT PRIMARY KEY, state TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS calls (
  key TEXT PRIMARY KEY, call_id TEXT, instance_id TEXT, role TEXT, model TEXT, cost_usd REAL,
  input_tokens INTEGER, output_tokens INTEGER, record TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS call_log (
  id INTEGER PRIMARY KEY AUTOINCREMENT, call_id TEXT, instance_id TEXT, role TEXT, model TEXT,
  cost_usd REAL, input_tokens INTEGER, output_tokens INTEGER, cache_read_tokens INTEGER,
  cache_write_tokens INTEGER, latency_s REAL, error TEXT, reused INTEGER DEFAULT 0, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT, kind TEXT NOT NULL, data TEXT, created_at REAL NOT NULL);
"""



class CallTotals(Spend):
    """Billed (not replayed) model calls: their number, tokens and `Spend`."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

class RunDirInUse(RuntimeError):
    """Another live process is running in the same run directory."""


@contextlib.contextmanager
def exclusive_run_dir(run_dir: Path) -> Iterator[None]:
    """One process per run directory: two would redo (and pay for) the same work. The lock holds the
    owner's pid, for the message another process gets."""
    lock, held = Path(run_dir) / ".lock", contextlib.ExitStack()
    try:
        fd = held.enter_context(file_lock(lock, blocking=False))
    except BlockingIOError:
        owner = lock.read_text().strip() if lock.exists() else ""
        raise RunDirInUse(f"run directory {run_dir} is in use by another patchswarm process"
                          f"{f' (pid {owner})' if owner else ''}; wait for it or pick another --run-dir") from None
    with held:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield


def run_dir_in_use(run_dir: Path) -> bool:
    """Whether a live process holds the run directory (see `exclusive_run_dir`)."""
    return is_locked(Path(run_dir) / ".lock")


class RunStore:
    """One SQLite database per run directory; safe to use from many threads."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "run.sqlite"
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _exec(self, sql: str, params: tuple = ()) -> list[tuple]:
        params = tuple(storable(p) if isinstance(p, str) else p for p in params)  # any text is storable
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -- meta ------------------------------------------------------------------------------------

    def set_meta(self, key: str, value: Any) -> None:
        self._exec("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, _json(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self._exec("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    # -- instances -------------------------------------------------------------------------------

    def instance_status(self, instance_id: str, config_hash: str) -> tuple[str, dict | None] | None:
        rows = self._exec("SELECT status, result FROM instances WHERE instance_id = ? AND config_hash = ?",
                          (instance_id, config_hash))
        if not rows:
            return None
        return rows[0][0], (json.loads(rows[0][1]) if rows[0][1] else None)

    def mark_instance(self, instance_id: str, config_hash: str, status: str, *, result: dict | None = None,
                      error: str | None = None, cost_usd: float | None = None) -> None:
        now = time.time()
        self._exec(
            """INSERT INTO instances (instance_id, config_hash, status, cost_usd, result, error, started_at, finished_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (instance_id, config_hash) DO UPDATE SET status = excluded.status,
                 cost_usd = COALESCE(excluded.cost_usd, instances.cost_usd),
                 result = COALESCE(excluded.result, instances.result), error = excluded.error,
                 finished_at = excluded.finished_at""",
            (instance_id, config_hash, status, cost_usd, _json(result) if result is not None else None, error,
             now, now if status not in ("running", "pending") else None),
        )

    def instances(self) -> list[dict[str, Any]]:
        rows = self._exec("SELECT instance_id, config_hash, status, cost_usd, error, started_at, finished_at, result "
                          "FROM instances ORDER BY started_at")
        keys = ("instance_id", "config_hash", "status", "cost_usd", "error", "started_at", "finished_at", "result")
        out = []
        for row in rows:
            item = dict(zip(keys, row, strict=True))
            item["result"] = json.loads(item["result"]) if item["result"] else None
            out.append(item)
        return out

    # -- state machines (agent.types.StateStore) --------------------------------------------------

    def load(self, key: str) -> dict[str, Any] | None:
        rows = self._exec("SELECT state FROM states WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None

    def save(self, key: str, state: dict[str, Any]) -> None:
        self._exec("INSERT OR REPLACE INTO states VALUES (?, ?, ?)", (key, _json(state), time.time()))

    # -- events ----------------------------------------------------------------------------------

    def event(self, kind: str, instance_id: str | None = None, **data: Any) -> None:
        self._exec("INSERT INTO events (instance_id, kind, data, created_at) VALUES (?, ?, ?, ?)",
                   (instance_id, kind, _json(data), time.time()))

    def events(self, instance_id: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT instance_id, kind, data, created_at FROM events WHERE 1=1"
        params: list[str] = []
        if instance_id is not None:
            sql, params = sql + " AND instance_id = ?", [*params, instance_id]
        if kind is not None:
            sql, params = sql + " AND kind = ?", [*params, kind]
        rows = self._exec(sql + " ORDER BY id", tuple(params))
        return [{"instance_id": r[0], "kind": r[1], "data": json.loads(r[2]), "created_at": r[3]} for r in rows]

    # -- model calls -----------------------------------------------------------------------------

    def log_call(self, record: CallRecord, instance_id: str | None, reused: bool = False) -> None:
        u = record.usage
        self._exec(
            "INSERT INTO call_log (call_id, instance_id, role, model, cost_usd, input_tokens, output_tokens, "
            "cache_read_tokens, cache_write_tokens, latency_s, error, reused, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.call_id, instance_id, record.role, record.model, record.cost_usd, u.input_tokens,
             u.output_tokens, u.cache_read_tokens, u.cache_write_tokens, record.latency_s, record.error,
             int(reused), time.time()),
        )

    def totals(self, instance_id: str | None = None) -> CallTotals:
        """Cost and tokens of billed (not replayed) calls, overall or for one instance."""
        sql = ("SELECT COUNT(*), COALESCE(SUM(cost_usd), 0), COALESCE(SUM(input_tokens), 0), "
               "COALESCE(SUM(output_tokens), 0), SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END) "
               "FROM call_log WHERE reused = 0")
        params: tuple = ()
        if instance_id is not None:
            sql, params = sql + " AND instance_id = ?", (instance_id,)
        calls, cost, tokens_in, tokens_out, unknown = self._exec(sql, params)[0]
        return CallTotals(calls=calls, cost_usd=cost, input_tokens=tokens_in, output_tokens=tokens_out,
                          unknown_cost_calls=unknown or 0)

    def call_outcomes(self, instance_id: str, after_id: int) -> dict[str, tuple[int, int, str | None]]:
        """Per role, the billed calls of `instance_id` logged after row `after_id`: (calls, failed, first error).

        A row id, not a time: rows merged from other machines' stores get new ids but keep their clocks."""
        rows = self._exec(
            "SELECT role, COUNT(*), SUM(CASE WHEN error IS NULL THEN 0 ELSE 1 END), "
            "(SELECT error FROM call_log AS e WHERE e.instance_id = c.instance_id AND e.role = c.role "
            " AND e.id > ? AND e.error IS NOT NULL ORDER BY id LIMIT 1) "
            "FROM call_log AS c WHERE instance_id = ? AND reused = 0 AND id > ? GROUP BY role",
            (after_id, instance_id, after_id))
        return {role: (calls, failed or 0, first) for role, calls, failed, first in rows}

    def cost_by_role(self, instance_id: str | None = None) -> dict[str, float]:
        sql = "SELECT role, COALESCE(SUM(cost_usd), 0) FROM call_log WHERE reused = 0"
        params: tuple = ()
        if instance_id is not None:
            sql, params = sql + " AND instance_id = ?", (instance_id,)
        return dict(self._exec(sql + " GROUP BY role", params))

    def usage_by_role_and_model(self) -> list[tuple[str, str, int, int, float, int, int, int]]:
        """(role, model, billed calls, replayed calls, USD, billed calls of unknown cost, input tokens,
        output tokens) per role and model, from the call log."""
        return self._exec(
            "SELECT COALESCE(role, '?'), COALESCE(model, '?'), SUM(reused = 0), SUM(reused != 0), "
            "COALESCE(SUM(CASE WHEN reused = 0 THEN cost_usd END), 0), "
            "SUM(CASE WHEN reused = 0 AND cost_usd IS NULL THEN 1 ELSE 0 END), "
            "COALESCE(SUM(CASE WHEN reused = 0 THEN input_tokens END), 0), "
            "COALESCE(SUM(CASE WHEN reused = 0 THEN output_tokens END), 0) "
            "FROM call_log GROUP BY 1, 2 ORDER BY 1, 2")

    def get_call(self, key: str) -> CallRecord | None:
        rows = self._exec("SELECT record FROM calls WHERE key = ?", (key,))
        return CallRecord.model_validate_json(rows[0][0]) if rows else None

    def put_call(self, record: CallRecord, instance_id: str | None = None) -> None:
        self._exec(
            "INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.key, record.call_id, instance_id, record.role, record.model, record.cost_usd,
             record.usage.input_tokens, record.usage.output_tokens, _json(record.model_dump(mode="json")), time.time()),
        )

    def count_calls(self) -> int:
        return self._exec("SELECT COUNT(*) FROM calls")[0][0]

    # -- copying rows between stores (instances solved on other machines) -------------------------

    def export_rows(self, table: str, *, after_rowid: int = 0, where: str = "1",
                    params: tuple = ()) -> tuple[list[dict[str, Any]], int]:
        """Rows of `table` written after `after_rowid` (and matching `where`), and the last rowid returned.

        Every write, INSERT OR REPLACE included, gets a rowid above all existing ones and nothing here
        deletes the newest row, so the rowid is a cursor over "what was written since".
        """
        _check_table(table)
        with self._lock:
            cursor = self._db.execute(f"SELECT rowid AS _rowid, * FROM {table} WHERE rowid > ? AND ({where}) "
                                      "ORDER BY rowid", (after_rowid, *params))
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        last = rows[-1][0] if rows else after_rowid
        return [dict(zip(names[1:], row[1:], strict=True)) for row in rows], last

    def last_rowid(self, table: str) -> int:
        _check_table(table)
        return self._exec(f"SELECT COALESCE(MAX(rowid), 0) FROM {table}")[0][0]

    def import_rows(self, tables: dict[str, list[dict[str, Any]]]) -> None:
        """Write rows exported from another store, all in one transaction.

        Keyed rows replace; log rows (call_log, events) are appended under new ids.
        """
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for table, rows in tables.items():
                    _check_table(table)
                    if not rows:
                        continue
                    columns = [c for c in rows[0] if c != "id"]
                    self._db.executemany(
                        f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                        [tuple(row[c] for c in columns) for row in rows])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # -- files -----------------------------------------------------------------------------------

    def write_file(self, relative: str, text: str) -> Path:
        """Write `text` atomically at `relative` below the run directory, never outside it."""
        path = inside(self.run_dir, relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(storable(text), encoding="utf-8")
        tmp.replace(path)  # atomic: a crash never leaves half a file
        return path


def _json(value: Any) -> str:
    """JSON that SQLite and pydantic read back: no unpaired surrogate survives (see agent.text)."""
    return json.dumps(storable_data(value), default=str)


TABLES = ("meta", "instances", "states", "calls", "call_log", "events")


def _check_table(table: str) -> None:
    if table not in TABLES:  # table names go into SQL text: only ours
        raise ValueError(f"unknown run store table {table!r}")


class RunCallStore:
    """The ModelClient's CallStore and CallRecorder, namespaced by config hash; each call is filed under
    the instance its record names (the client's `CallScope`)."""

    def __init__(self, store: RunStore, namespace: str):
        self.store, self.namespace = store, namespace

    def _key(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    def get(self, key: str) -> CallRecord | None:
        return self.store.get_call(self._key(key))

    def put(self, record: CallRecord) -> None:
        if record.key:
            self.store.put_call(record.model_copy(update={"key": self._key(record.key)}), record.instance_id)

    def record(self, record: CallRecord) -> None:
        self.store.log_call(record, record.instance_id)


class NamespacedStateStore:
    """agent.types.StateStore over the run store, with keys prefixed by instance and config hash."""

    def __init__(self, store: RunStore, prefix: str):
        self.store, self.prefix = store, prefix

    def load(self, key: str) -> dict[str, Any] | None:
        return self.store.load(f"{self.prefix}:{key}")

    def save(self, key: str, state: dict[str, Any]) -> None:
        self.store.save(f"{self.prefix}:{key}", state)
