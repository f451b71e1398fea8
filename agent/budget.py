"""Hierarchical spending limits (trajectory → instance → run).

One `Budget` object is shared by every task that spends against it, across asyncio tasks and
threads alike, so all state sits behind a `threading.Lock`. A budget is checked *before* a call
starts: a call that would start past any limit in the chain is not made. Calls already in flight
when a limit is crossed still finish and are charged, so the overrun is bounded by the in-flight calls.
"""

from __future__ import annotations

import threading


class BudgetExceeded(Exception):
    """Raised by `Budget.check()` when a budget (or one of its ancestors) has no money left."""

    def __init__(self, name: str, spent: float, limit: float) -> None:
        self.name = name
        self.spent = spent
        self.limit = limit
        super().__init__(f"budget '{name}' exhausted: spent ${spent:.4f} of ${limit:.4f}")


class Budget:
    """A spending limit in USD; `limit_usd=None` means unlimited (it still tallies spending)."""

    def __init__(self, limit_usd: float | None, name: str, parent: Budget | None = None) -> None:
        if limit_usd is not None and limit_usd < 0:
            raise ValueError(f"budget '{name}': limit must be >= 0, got {limit_usd}")
        self.limit_usd = limit_usd
        self.name = name
        self.parent = parent
        self._lock = threading.Lock()
        self._spent = 0.0
        self._unknown_cost_calls = 0

    def child(self, limit_usd: float | None, name: str) -> Budget:
        return Budget(limit_usd, name, parent=self)

    def _chain(self) -> list[Budget]:
        chain: list[Budget] = []
        node: Budget | None = self
        while node is not None:
            chain.append(node)
            node = node.parent
        return chain

    def check(self) -> None:
        """Raise `BudgetExceeded` for the nearest budget in the chain that has reached its limit."""
        for node in self._chain():
            spent = node._spent_now()
            if node.limit_usd is not None and spent >= node.limit_usd:
                raise BudgetExceeded(node.name, spent, node.limit_usd)

    def charge(self, cost_usd: float | None) -> None:
        """Add a billed call's cost to this budget and every ancestor.

        An unknown cost (None) is tallied in `unknown_cost_calls` rather than as 0, so reports can
        say "at least $X plus N calls of unknown cost" instead of understating the spend.
        """
        if cost_usd is not None and cost_usd < 0:
            raise ValueError(f"negative cost {cost_usd} charged to budget '{self.name}'")
        for node in self._chain():
            node._add(cost_usd)

    # The two places a node's tally is read and written: a subclass may keep it elsewhere
    # (e.g. in a process shared by several machines).
    def _spent_now(self) -> float:
        with self._lock:
            return self._spent

    def _add(self, cost_usd: float | None) -> None:
        with self._lock:
            if cost_usd is None:
                self._unknown_cost_calls += 1
            else:
                self._spent += cost_usd

    @property
    def spent_usd(self) -> float:
        return self._spent_now()

    @property
    def unknown_cost_calls(self) -> int:
        with self._lock:
            return self._unknown_cost_calls

    @property
    def remaining_usd(self) -> float | None:
        """Money left on this budget alone (ancestors may be tighter); None when unlimited."""
        if self.limit_usd is None:
            return None
        return max(0.0, self.limit_usd - self.spent_usd)

    @property
    def exceeded(self) -> bool:
        """True when this budget or any ancestor has reached its limit."""
        try:
            self.check()
        except BudgetExceeded:
            return True
        return False

    def __repr__(self) -> str:
        limit = "unlimited" if self.limit_usd is None else f"${self.limit_usd:.4f}"
        return f"Budget({self.name!r}, spent=${self.spent_usd:.4f}, limit={limit})"
