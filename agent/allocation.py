"""Budget shares across a batch: easy instances give back what they did not spend, hard ones draw it.

With `--max-cost` B over n instances each instance starts with an allowance of B / n (never above
`--max-cost-per-instance`). An instance that stops early releases the unspent part of its allowance into
a pool; an instance that wants another sample beyond its allowance asks for a grant from that pool. The
allowances never add up to more than B and none exceeds the per-instance cap, so sharing can never break
a budget (the run and instance `Budget`s still check every call on top).

`SharePool` keeps plain state behind a lock and has only plain-data methods, so the same class serves a
local batch and, as a Ray actor, a cluster (`RemoteSharePool` is its node-side handle).
"""

from __future__ import annotations

import threading
from typing import Any, Protocol


class Shares(Protocol):
    """What an instance needs of the batch's shares (a local `SharePool` or a `RemoteSharePool`)."""

    def allowance(self, instance_id: str) -> float | None: ...

    def grant(self, instance_id: str, amount_usd: float) -> float: ...

    def release(self, instance_id: str, spent_usd: float) -> float: ...


class SharePool:
    """Allowances of a batch's instances and the pool of unspent shares; thread-safe."""

    def __init__(self, total_usd: float | None, instances: int, cap_usd: float | None = None) -> None:
        if instances < 1:
            raise ValueError(f"a share pool needs at least one instance, got {instances}")
        share = None if total_usd is None else total_usd / instances
        if cap_usd is not None:
            share = cap_usd if share is None else min(share, cap_usd)
        self.share_usd, self.cap_usd, self.total_usd = share, cap_usd, total_usd
        self._lock = threading.Lock()
        self._allowance: dict[str, float] = {}
        self._released: set[str] = set()
        self._pool = 0.0
        self.granted_usd = 0.0
        self.returned_usd = 0.0

    def allowance(self, instance_id: str) -> float | None:
        """The instance's spending limit now: its share plus what it was granted (None: unlimited)."""
        if self.share_usd is None:
            return None
        with self._lock:
            return self._allowance.setdefault(instance_id, self.share_usd)

    def grant(self, instance_id: str, amount_usd: float) -> float:
        """Raise the instance's allowance by up to `amount_usd` from the pool; returns what was granted."""
        if self.share_usd is None or amount_usd <= 0:
            return 0.0
        with self._lock:
            current = self._allowance.setdefault(instance_id, self.share_usd)
            room = amount_usd if self.cap_usd is None else max(0.0, self.cap_usd - current)
            given = max(0.0, min(amount_usd, room, self._pool))
            self._allowance[instance_id] = current + given
            self._pool -= given
            self.granted_usd += given
            return given

    def release(self, instance_id: str, spent_usd: float) -> float:
        """The instance is done: the unspent part of its allowance goes to the pool (once); returns it."""
        if self.share_usd is None:
            return 0.0
        with self._lock:
            if instance_id in self._released:
                return 0.0
            self._released.add(instance_id)
            current = self._allowance.setdefault(instance_id, self.share_usd)
            unspent = max(0.0, current - spent_usd)
            self._allowance[instance_id] = current - unspent
            self._pool += unspent
            self.returned_usd += unspent
            return unspent

    def pool_usd(self) -> float:
        with self._lock:
            return self._pool

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"share_usd": self.share_usd, "cap_usd": self.cap_usd, "pool_usd": round(self._pool, 6),
                    "granted_usd": round(self.granted_usd, 6), "returned_usd": round(self.returned_usd, 6),
                    "allowances": {k: round(v, 6) for k, v in self._allowance.items()}}


class RemoteSharePool:
    """A node's handle on the batch's `SharePool` running as a Ray actor (each call waits for the actor)."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor

    def _call(self, method: str, *args: Any) -> Any:
        import ray  # only nodes of a Ray batch get here

        return ray.get(getattr(self._actor, method).remote(*args))

    def allowance(self, instance_id: str) -> float | None:
        return self._call("allowance", instance_id)

    def grant(self, instance_id: str, amount_usd: float) -> float:
        return self._call("grant", instance_id, amount_usd)

    def release(self, instance_id: str, spent_usd: float) -> float:
        return self._call("release", instance_id, spent_usd)
