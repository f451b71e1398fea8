"""Live progress of many items that each pass through named phases (clone, build, run tests, grade...).

Small on purpose, and free of any one command's types, so `eval`, `batch` and `select` can share it:
callers say when an item enters a phase and when it ends. On a terminal a rich live table shows each
running item's phase and elapsed time with the totals and an ETA; elsewhere (CI logs, pipes) every
change is one plain line.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

from rich.console import Console
from rich.live import Live
from rich.table import Table


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class PhaseBoard:
    """Thread-safe: workers call `phase` and `finish`; the board renders (live table or plain lines)."""

    def __init__(self, total: int, *, title: str = "", console: Console | None = None, live: bool | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.title = total, title
        self.console = console or Console(stderr=True)
        self.live_mode = sys.stderr.isatty() if live is None else live
        self._clock = clock
        self.started = clock()
        self.done = 0
        self.outcomes: dict[str, int] = {}
        self._running: dict[str, tuple[str, float, float]] = {}  # item -> (phase, item start, phase start)
        self._lock = threading.Lock()
        self._live: Live | None = None

    def __enter__(self) -> PhaseBoard:
        if self.live_mode:
            self._live = Live(self._table(), console=self.console, refresh_per_second=2, transient=True,
                              get_renderable=self._table)
            self._live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._live:
            self._live.stop()
            self._live = None

    def phase(self, item: str, name: str) -> None:
        """`item` enters phase `name` (its first phase starts its clock)."""
        now = self._clock()
        with self._lock:
            _, item_start, _ = self._running.get(item, (name, now, now))
            self._running[item] = (name, item_start, now)
        if not self.live_mode:
            self._print(f"{item}: {name} ({self.totals()})")

    def finish(self, item: str, outcome: str, line: str | None = None) -> None:
        """`item` is done with `outcome` (e.g. resolved, error); `line` is printed above the live table."""
        with self._lock:
            self._running.pop(item, None)
            self.done += 1
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self._print(f"{line or f'{item}: {outcome}'} ({self.totals()})")

    def eta_s(self) -> float | None:
        """Seconds left at the mean pace so far (items done per second of wall time), None before the first."""
        if not self.done:
            return None
        elapsed = self._clock() - self.started
        return elapsed / self.done * (self.total - self.done)

    def totals(self) -> str:
        outcomes = " ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        eta = self.eta_s()
        parts = [f"{self.done}/{self.total} done", outcomes, f"elapsed {_clock(self._clock() - self.started)}",
                 f"ETA {_clock(eta)}" if eta is not None else ""]
        return " · ".join(p for p in parts if p)

    def _print(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def _table(self) -> Table:
        table = Table(title=f"{self.title} — {self.totals()}" if self.title else self.totals(), title_justify="left")
        for column in ("item", "phase", "in phase", "elapsed"):
            table.add_column(column, justify="left" if column in ("item", "phase") else "right")
        now = self._clock()
        with self._lock:
            running = sorted(self._running.items(), key=lambda kv: kv[1][1])
        for item, (name, item_start, phase_start) in running:
            table.add_row(item, name, _clock(now - phase_start), _clock(now - item_start))
        return table
