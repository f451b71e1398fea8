"""Progress of a run: counters updated by the pipeline, shown live (rich) or as plain lines (CI logs)."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table


class Progress:
    """Thread-safe counters plus a JSON-lines log of every event of the run."""

    def __init__(self, total: int, log_path: Path, *, live: bool | None = None, max_cost_usd: float | None = None):
        self.total = total
        self.done = self.failed = self.running = 0
        self.trajectories_running = 0
        self.executions = 0
        self.cost_usd = 0.0
        self.max_cost_usd = max_cost_usd
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._log = open(log_path, "a", buffering=1)  # noqa: SIM115 - closed in close()
        self.live_mode = sys.stderr.isatty() if live is None else live
        self.console = Console(stderr=True)
        self._live: Live | None = None

    # -- updates ---------------------------------------------------------------------------------

    def event(self, kind: str, instance_id: str | None = None, **data: Any) -> None:
        record = {"ts": round(time.time(), 3), "kind": kind, "instance": instance_id, **data}
        with self._lock:
            if kind == "instance_started":
                self.running += 1
            elif kind in ("instance_done", "instance_failed"):
                self.running -= 1
                if kind == "instance_done":
                    self.done += 1
                else:
                    self.failed += 1
            elif kind == "instance_skipped":
                self.done += 1
            self._log.write(json.dumps(record, default=str) + "\n")
        if not self.live_mode and kind.startswith("instance_"):
            detail = " ".join(f"{k}={v}" for k, v in data.items() if v is not None and k != "error")
            error = f" error={data['error']}" if data.get("error") else ""
            self.console.print(f"[{self.done + self.failed}/{self.total}] {kind.removeprefix('instance_')} "
                               f"{instance_id} {detail}{error}", highlight=False, markup=False, soft_wrap=True)
        self.refresh()

    def add_cost(self, cost: float | None) -> None:
        with self._lock:
            self.cost_usd += cost or 0.0

    # -- display ---------------------------------------------------------------------------------

    def eta_s(self) -> float | None:
        finished = self.done + self.failed
        if not finished:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed / finished * (self.total - finished)

    def table(self) -> Table:
        finished = self.done + self.failed
        projected = self.cost_usd / finished * self.total if finished else None
        eta = self.eta_s()
        table = Table(show_header=False, box=None)
        table.add_row("instances", f"{self.done} done, {self.running} running, {self.failed} failed of {self.total}")
        table.add_row("trajectories running", str(self.trajectories_running))
        table.add_row("sandbox executions", str(self.executions))
        cost = f"${self.cost_usd:.4f}" + (f" (projected ${projected:.4f})" if projected is not None else "")
        if self.max_cost_usd is not None:
            cost += f" of ${self.max_cost_usd:.2f}"
        table.add_row("cost", cost)
        table.add_row("elapsed / ETA", f"{time.monotonic() - self.started:.0f}s / " + (f"{eta:.0f}s" if eta else "?"))
        return table

    def __enter__(self) -> Progress:
        if self.live_mode:
            self._live = Live(self.table(), console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self.table())

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.update(self.table())
            self._live.__exit__(*exc)
        self._log.close()
