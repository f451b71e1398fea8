"""Budget shares across a batch: what easy instances leave, hard ones may draw, never past a limit."""

from __future__ import annotations

import threading

import pytest

from agent.allocation import SharePool


def test_unspent_shares_flow_to_instances_that_ask_within_the_cap():
    pool = SharePool(total_usd=10.0, instances=4, cap_usd=4.0)
    assert pool.allowance("easy") == 2.5
    assert pool.grant("hard", 1.0) == 0.0  # nothing released yet
    assert pool.release("easy", 0.5) == pytest.approx(2.0)
    assert pool.release("easy", 0.0) == 0.0  # released once only
    assert pool.allowance("easy") == pytest.approx(0.5)
    assert pool.grant("hard", 5.0) == pytest.approx(1.5)  # cap 4.0 - share 2.5
    assert pool.allowance("hard") == pytest.approx(4.0)
    assert pool.pool_usd() == pytest.approx(0.5)


def test_no_total_means_the_cap_alone_and_no_sharing():
    pool = SharePool(total_usd=None, instances=3, cap_usd=1.0)
    assert pool.allowance("a") == 1.0 and pool.grant("a", 1.0) == 0.0
    unlimited = SharePool(total_usd=None, instances=3)
    assert unlimited.allowance("a") is None and unlimited.release("a", 2.0) == 0.0
    with pytest.raises(ValueError, match="at least one instance"):
        SharePool(1.0, 0)


def test_concurrent_grants_never_hand_out_more_than_the_total():
    instances = 20
    pool = SharePool(total_usd=20.0, instances=instances, cap_usd=5.0)
    for i in range(10):
        pool.release(f"easy{i}", 0.25)  # 7.5 back in the pool
    barrier = threading.Barrier(10)

    def draw(name: str) -> None:
        barrier.wait()
        for _ in range(50):
            pool.grant(name, 0.1)

    threads = [threading.Thread(target=draw, args=(f"hard{i}",)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    allowances = [pool.allowance(f"easy{i}") for i in range(10)] + [pool.allowance(f"hard{i}") for i in range(10)]
    assert sum(allowances) + pool.pool_usd() == pytest.approx(20.0)
    assert max(allowances) <= 5.0 + 1e-9
    assert pool.granted_usd == pytest.approx(7.5)
