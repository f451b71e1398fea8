"""Hierarchical spending limits (trajectory → instance → run).

One `Budget` object is shared by every task that spends against it, across asyncio tasks and
threads alike, so its `Tally` keeps all state behind a `threading.Lock`. Before a call starts it *reserves* its
worst case (agent.pricing) on every budget in the chain, and settles to the real cost afterwards.
A call starts only if its worst case fits next to what is spent and held, or if nothing else is in
flight and money is left (the one call allowed to cross the limit); otherwise it waits for others to
settle, or is refused once the budget is spent. So the overrun is at most one call's worst case,
however many workers (or Ray nodes, see patchswarm.ray_node) share the budget.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import BaseModel, Field

Hold = Literal["held", "wait", "exceeded"]


class BudgetExceeded(Exception):
    """Raised by `Budget.check()` when a budget (or one of its ancestors) has no money left."""

    def __init__(self, name: str, spent: float, limit: float) -> None:
        self.name = name
        self.spent = spent
        self.limit = limit
        super().__init__(f"budget '{name}' exhausted: spent ${spent:.4f} of ${limit:.4f}")


class BudgetUnenforceable(ValueError):
    """A budget is set but some model's calls have no price, so they could not be counted against it."""


@dataclass
class Reservation:
    """Money held on each budget of a chain for one call attempt, until `Budget.settle`."""

    amount: float
    nodes: list[Budget] = field(default_factory=list)


class Spend(BaseModel):
    """What a set of model calls cost: the one cost type of every total (a machine's state, a trajectory,
    the selector, an instance, a budget's tally). One call's cost is `float | None` (None: the model has no
    price); a total keeps the known USD and counts the unknown calls apart, never as 0, so reports can say
    "at least $X plus N calls of unknown cost" instead of understating the spend. Results and states
    inherit it, so their JSON keeps the two flat fields.
    """

    cost_usd: float = Field(0.0, description="USD of the calls whose cost is known.")
    unknown_cost_calls: int = Field(0, description="Calls of unknown cost (not in cost_usd).")

    def add_cost(self, cost_usd: float | None) -> None:
        """Count one call's cost (None: unknown)."""
        if cost_usd is None:
            self.unknown_cost_calls += 1
        else:
            self.cost_usd += cost_usd

    def spend(self) -> Spend:
        """These two fields alone (a copy), whatever model inherits them."""
        return Spend(cost_usd=self.cost_usd, unknown_cost_calls=self.unknown_cost_calls)

    @classmethod
    def total(cls, parts: Iterable[Spend]) -> Spend:
        total = Spend()
        for part in parts:
            total.cost_usd += part.cost_usd
            total.unknown_cost_calls += part.unknown_cost_calls
        return total


class Tally:
    """What one budget has spent and holds: the accounting of a `Spend` under a lock.

    A `Budget` keeps its tally here; the Ray executor makes one `Tally` an actor shared by every node
    (patchswarm.ray_node), so a run's spending and reservations are counted by the same code everywhere.
    """

    def __init__(self, spent: Spend | None = None) -> None:
        self._lock = threading.Lock()
        self._spend = spent.spend() if spent is not None else Spend()
        self._reserved = 0.0
        self._holds = 0  # reservations outstanding (a count: float sums never return to exactly 0)

    def add(self, cost_usd: float | None) -> None:
        with self._lock:
            self._spend.add_cost(cost_usd)

    def hold(self, limit_usd: float | None, amount: float) -> Hold:
        with self._lock:
            verdict = hold_verdict(limit_usd, self._spend.cost_usd, self._reserved, self._holds, amount)
            if verdict == "held":
                self._reserved += amount
                self._holds += 1
            return verdict

    def settle(self, amount: float, cost_usd: float | None, billed: bool) -> None:
        with self._lock:
            self._reserved = max(0.0, self._reserved - amount)
            self._holds = max(0, self._holds - 1)
        if billed:
            self.add(cost_usd)

    def totals(self) -> Spend:
        with self._lock:
            return self._spend.spend()


class TallyPort(Protocol):
    """Where a budget's tally lives: a `Tally` here, or a proxy to one in another process."""

    def add(self, cost_usd: float | None) -> None: ...

    def hold(self, limit_usd: float | None, amount: float) -> Hold: ...

    def settle(self, amount: float, cost_usd: float | None, billed: bool) -> None: ...

    def totals(self) -> Spend: ...


class Budget:
    """A spending limit in USD; `limit_usd=None` means unlimited (it still tallies spending)."""

    def __init__(self, limit_usd: float | None, name: str, parent: Budget | None = None,
                 tally: TallyPort | None = None) -> None:
        if limit_usd is not None and limit_usd < 0:
            raise ValueError(f"budget '{name}': limit must be >= 0, got {limit_usd}")
        self.limit_usd = limit_usd
        self.name = name
        self.parent = parent
        self.tally: TallyPort = tally if tally is not None else Tally()

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
            spent = node.spent_usd
            if node.limit_usd is not None and spent >= node.limit_usd:
                raise BudgetExceeded(node.name, spent, node.limit_usd)

    def charge(self, cost_usd: float | None) -> None:
        """Add a billed call's cost to this budget and every ancestor.

        An unknown cost (None) is counted in the tally's `unknown_cost_calls` (`Spend`), not as 0.
        """
        if cost_usd is not None and cost_usd < 0:
            raise ValueError(f"negative cost {cost_usd} charged to budget '{self.name}'")
        for node in self._chain():
            node.tally.add(cost_usd)

    def reserve(self, amount_usd: float) -> Reservation | None:
        """Hold `amount_usd` on every budget of the chain, or None: wait, other calls hold what is left.

        Raises `BudgetExceeded` when a budget of the chain is spent with nothing of it in flight.
        """
        reservation = Reservation(max(amount_usd, 0.0))
        for node in self._chain():
            verdict = node.tally.hold(node.limit_usd, reservation.amount)
            if verdict != "held":
                self.settle(reservation, None, billed=False)
                if verdict == "exceeded":
                    raise BudgetExceeded(node.name, node.spent_usd, node.limit_usd or 0.0)
                return None
            reservation.nodes.append(node)
        return reservation

    def settle(self, reservation: Reservation, cost_usd: float | None, *, billed: bool = True) -> None:
        """Release a reservation; a billed attempt's real cost (None: unknown) is charged in its place."""
        if cost_usd is not None and cost_usd < 0:
            raise ValueError(f"negative cost {cost_usd} charged to budget '{self.name}'")
        nodes, reservation.nodes = reservation.nodes, []
        for node in nodes:
            node.tally.settle(reservation.amount, cost_usd, billed)

    @property
    def spent_usd(self) -> float:
        return self.tally.totals().cost_usd

    @property
    def unknown_cost_calls(self) -> int:
        return self.tally.totals().unknown_cost_calls

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


def hold_verdict(limit: float | None, spent: float, reserved: float, holds: int, amount: float) -> Hold:
    """The reservation rule: fits next to what is held, or is the only call."""
    if limit is None or spent + reserved + amount <= limit:
        return "held"
    if spent >= limit:
        return "exceeded" if holds == 0 else "wait"
    return "held" if holds == 0 else "wait"
