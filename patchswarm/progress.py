"""Progress of a run: a row per running item (its stage, calls, cost so far, elapsed) and totals (done,
resolved so far, cost, ETA), shown live with `rich.progress` on a TTY, as plain lines otherwise (CI logs),
and written as JSON lines to the run's event log.

Small on purpose so that any batch of items can use it (solving, evaluation): `event(...)` for an item's
start and end, `stage(...)` for where it is, `call(...)` for each paid call.

    with Progress(len(items), run_dir / "events.jsonl", title="eval") as progress:
        progress.event("instance_started", "x")
        progress.stage("x", "testing 1/4")
        progress.event("instance_done", "x", status="resolved")
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress as RichProgress
from rich.progress import TaskID, TextColumn, TimeElapsedColumn

from agent.budget import Spend

# Statuses that count as "resolved so far" in the totals (a solve run's and an evaluation's word for it).
RESOLVED = ("solved", "resolved")
ENDED = ("instance_done", "instance_failed", "instance_skipped")


@dataclass
class Row:
    """One running item."""

    stage: str = "starting"
    calls: int = 0
    spent: Spend = field(default_factory=Spend)
    started: float = field(default_factory=time.monotonic)


def _usd(spent: Spend) -> str:
    return f"${spent.cost_usd:.4f}" + (f" +{spent.unknown_cost_calls}?" if spent.unknown_cost_calls else "")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Thread-safe counters and rows, plus a JSON-lines log of every event of the run."""

    def __init__(self, total: int, log_path: Path | None = None, *, live: bool | None = None,
                 max_cost_usd: float | None = None, title: str = "instances", console: Console | None = None,
                 clock: Callable[[], float] = time.monotonic, refresh_per_second: float = 2):
        self.total, self.title, self.max_cost_usd = total, title, max_cost_usd
        self.done = self.failed = self.running = self.skipped = self.resolved = 0
        self.trajectories_running = 0
        self.executions = 0
        self.spent = Spend()
        self.rows: dict[str, Row] = {}
        self._clock = clock
        self.started = clock()
        self._ran_s: list[float] = []  # wall time of items that really ran (not skipped): the ETA's rate
        self._lock = threading.RLock()
        self._log = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115 - closed in close()
        self.console = console or Console(stderr=True)
        self.live_mode = (self.console.is_terminal if console else sys.stderr.isatty()) if live is None else live
        self._view: RichProgress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._total_task: TaskID | None = None
        self._refresh_per_second = refresh_per_second

    # -- updates ---------------------------------------------------------------------------------

    def event(self, kind: str, instance_id: str | None = None, **data: Any) -> None:
        record = {"ts": round(time.time(), 3), "kind": kind, "instance": instance_id, **data}
        with self._lock:
            if kind == "instance_started":
                self.running += 1
                self.rows[instance_id or "?"] = Row(started=self._clock())
            elif kind in ENDED:
                row = self.rows.pop(instance_id or "?", None)
                if kind != "instance_skipped":
                    self.running -= 1
                    if row is not None:
                        self._ran_s.append(self._clock() - row.started)
                if kind == "instance_failed":
                    self.failed += 1
                else:
                    self.done += 1
                    self.skipped += kind == "instance_skipped"
                self.resolved += data.get("status") in RESOLVED
            if self._log is not None:
                self._log.write(json.dumps(record, default=str) + "\n")
        if not self.live_mode and kind.startswith("instance_"):
            detail = " ".join(f"{k}={v}" for k, v in data.items() if v is not None and k != "error")
            error = f" error={data['error']}" if data.get("error") else ""
            self._line(f"[{self.done + self.failed}/{self.total}] {kind.removeprefix('instance_')} "
                       f"{instance_id} {detail}{error}".rstrip())
        self.refresh()

    def stage(self, instance_id: str | None, stage: str) -> None:
        """Where a running item is now (context, testing k/n, editing k/n, matrix, selector, ...)."""
        with self._lock:
            row = self.rows.get(instance_id or "?")
            if row is None or row.stage == stage:
                return
            row.stage = stage
        if not self.live_mode:
            self._line(f"  {instance_id}: {stage} · {row.calls} call(s) · {_usd(row.spent)}"
                       f" · {_duration(self._clock() - row.started)}")
        self.refresh()

    def call(self, instance_id: str | None, cost_usd: float | None) -> None:
        """A paid call finished (or failed); None = its cost is unknown."""
        with self._lock:
            self.spent.add_cost(cost_usd)
            row = self.rows.get(instance_id or "?")
            if row is not None:
                row.calls += 1
                row.spent.add_cost(cost_usd)
        self.refresh()

    def add_spend(self, spent: Spend) -> None:
        """What was spent elsewhere (e.g. on another machine) that `call` did not see."""
        with self._lock:
            self.spent = Spend.total([self.spent, spent])

    # -- totals ----------------------------------------------------------------------------------

    def eta_s(self) -> float | None:
        """Seconds left: the items still to go at the rate items have really been running (skips excluded)."""
        with self._lock:
            ran = len(self._ran_s)
            if not ran:
                return None
            left = self.total - self.done - self.failed
            return (self._clock() - self.started) / ran * left

    def summary(self) -> str:
        with self._lock:
            finished = self.done + self.failed
            cost = _usd(self.spent)
            if self.max_cost_usd is not None:
                cost += f" of ${self.max_cost_usd:.2f}"
            skipped = f" ({self.skipped} already done)" if self.skipped else ""
            return (f"{finished}/{self.total} done{skipped} · {self.resolved} resolved · {self.failed} error(s) · "
                    f"{self.running} running · {cost} · ETA {_duration(self.eta_s())}")

    # -- display ---------------------------------------------------------------------------------

    def _line(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def __enter__(self) -> Progress:
        if self.live_mode:
            self._view = RichProgress(
                TextColumn("{task.description}"), TextColumn("{task.fields[stage]}"),
                TextColumn("{task.fields[calls]}"), TextColumn("{task.fields[cost]}"), TimeElapsedColumn(),
                console=self.console, get_time=self._clock, refresh_per_second=self._refresh_per_second,
                transient=False)
            self._total_task = self._view.add_task(self.title, stage="", calls="", cost="")
            self._view.start()
            self.refresh()
        return self

    def refresh(self) -> None:
        view, total = self._view, self._total_task
        if view is None or total is None:
            return
        with self._lock:
            for instance_id in [i for i in self._tasks if i not in self.rows]:
                view.remove_task(self._tasks.pop(instance_id))
            for instance_id, row in self.rows.items():
                fields: dict[str, Any] = {"stage": row.stage, "calls": f"{row.calls} call(s)",
                          "cost": _usd(row.spent)}
                if instance_id not in self._tasks:
                    self._tasks[instance_id] = view.add_task(f"  {instance_id}", **fields)
                else:
                    view.update(self._tasks[instance_id], **fields)
            view.update(total, stage=self.summary(), calls=f"{self.executions} execution(s)",
                        cost="")

    def __exit__(self, exc_type, *exc) -> None:
        if self._view is not None:
            self.refresh()
            self._view.stop()
            self._view = None
        elif exc_type is None:
            self._line(self.summary())
        if self._log is not None:
            self._log.close()
