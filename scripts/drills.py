"""The expensive drills of issue 14 (not CI): real Docker, a scripted provider with faults; prints a table.

    PYTHONPATH=. python scripts/drills.py

Drills: fork bomb (the timeout holds, PID 1 survives), timed-out command (never exit 0), container killed
mid-command (infrastructure, not a result), 30%-fault provider over 20 instances of fanned-out calls under
a run budget, then the same batch again (a resume: nothing paid twice). The counts are read from the run
store: calls answered (by the provider), stored (replayable), billed (call_log rows), repeated (answered
twice for one key); containers left (labelled with the drill's run).

With `--engine` (root; see scripts/drills_engine.py) it also starts a second dockerd of its own and runs
there: engine disk full during an image build, two `batch` processes on one run directory, dockerd killed
mid-batch then the rerun, and a whole Docker batch of 20 fixture instances with 30% provider faults.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.budget import Budget, BudgetExceeded  # noqa: E402
from agent.model import CallScope, ModelCallError, ModelClient, ModelSettings, PriceOverride, RoleModels  # noqa: E402
from agent.pricing import worst_case_usd  # noqa: E402
from agent.scripted import Fault, Reply, ScriptedLLM  # noqa: E402
from patchswarm.store import RunCallStore, RunStore  # noqa: E402
from sandbox.base_image import ensure_base_image  # noqa: E402
from sandbox.engine import docker_client  # noqa: E402
from sandbox.errors import DiskLimitExceeded, SandboxBroken  # noqa: E402
from sandbox.manager import LABEL_RUN, Limits, SandboxManager  # noqa: E402

ROWS: list[tuple[str, str, str, bool]] = []


def row(drill: str, expectation: str, observed: str, passed: bool) -> None:
    ROWS.append((drill, expectation, observed, passed))


def sandbox_drills(client) -> None:
    image = ensure_base_image(client)
    with SandboxManager(client, handle_signals=False) as manager:
        sandbox = manager.create(image, workdir="/tmp", limits=Limits(pids=512))
        sandbox.exec("true")
        init = client.api.top(sandbox.id)["Processes"][0][1]
        worst = 0.0
        for _ in range(3):
            started = time.monotonic()
            result = sandbox.exec("bomb(){ bomb | bomb & }; bomb; sleep 100", timeout=8)
            worst = max(worst, time.monotonic() - started - 8)
        alive = client.api.top(sandbox.id)["Processes"][0][1] == init
        row("fork bomb x3 (timeout 8 s, 512 pids)", "timeout holds to ~1 s, PID 1 lives",
            f"worst overrun {worst:.2f} s, exit {result.exit_code}, PID 1 same: {alive}", worst < 1.0 and alive)
        hung = sandbox.exec("sleep 100", timeout=2)
        row("timed-out command", "never exit 0", f"exit {hung.exit_code}, timed_out={hung.timed_out}",
            hung.exit_code != 0 and hung.timed_out)
        victim = manager.create(image, workdir="/tmp")
        victim.exec("true")
        threading.Timer(1.0, lambda: client.api.kill(victim.id)).start()
        try:
            victim.exec("sleep 30", timeout=60)
            observed, ok = "returned a result", False
        except SandboxBroken as exc:
            observed, ok = f"SandboxBroken: {str(exc)[:60]}", True
        row("container killed mid-command", "infrastructure error, not a result", observed, ok)
        disk_drill(manager, image)
        run_id = manager.run_id
    left = len(client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"}))
    row("sandbox drills: cleanup", "no container left", f"{left} left", left == 0)


def disk_drill(manager: SandboxManager, image: str) -> None:
    """item 1: a test writing 3 GiB into /repo and /tmp of two sandboxes at once (quota 256 MiB each)."""
    free = lambda: os.statvfs("/").f_bavail * os.statvfs("/").f_frsize / 2**20  # noqa: E731
    before = free()
    sandboxes = [manager.create(image, limits=Limits(disk_mb=256)) for _ in range(2)]
    outputs = []
    for sandbox in sandboxes:
        for place in ("/repo", "/tmp"):
            out = sandbox.exec(f"dd if=/dev/zero of={place}/fill bs=1M count=3072 2>&1 | tail -1; du -m {place}/fill",
                               timeout=120).output
            outputs.append(int(out.split()[-2]))
    peak = before - free()
    sizes = [manager.client.api.containers(all=True, size=True, filters={"id": s.id})[0].get("SizeRw", 0)
             for s in sandboxes]
    row("disk filler: 3 GiB into /repo and /tmp, 2 sandboxes, quota 256 MiB", "ENOSPC at the quota; host disk untouched",
        f"written MiB {outputs}; host free space fell {peak:.0f} MiB (others' work included); "
        f"container layers {sizes} B", max(outputs) <= 258 and max(sizes) < 2**20)
    for sandbox in sandboxes:
        manager.discard(sandbox)
    root_disk_drill(manager, image)


def root_disk_drill(manager: SandboxManager, image: str) -> None:
    """item 1, root: grading runs as root, who may write anywhere; 3 GiB outside its volumes (limit 256 MiB)."""
    sandbox = manager.create(image, user="0:0", limits=Limits(disk_mb=256))
    started = time.monotonic()
    try:
        sandbox.exec("dd if=/dev/zero of=/opt/fill bs=1M count=3072 2>/dev/null; sleep 120", timeout=300)
        observed, ok = "returned a result: not bounded", False
    except DiskLimitExceeded as exc:
        observed, ok = f"killed after {time.monotonic() - started:.1f} s: {str(exc).split(': ', 1)[1][:90]}", True
    except SandboxBroken as exc:
        observed, ok = f"SandboxBroken without the reason: {str(exc)[:80]}", False
    manager.discard(sandbox)
    row("disk filler as root: 3 GiB into /opt (outside the volumes), limit 256 MiB",
        "killed at the limit (within a poll), named", observed, ok)


class FlakyProvider:
    """30% of requests fail (rate limit, 5xx, timeout) before answering; counts what it answered per key."""

    def __init__(self, rate: float, seed: int = 7) -> None:
        self.rate, self.rng, self.lock = rate, random.Random(seed), threading.Lock()
        self.answered = 0

    def __call__(self, messages):
        with self.lock:
            draw = self.rng.random()
            if draw < self.rate:
                return [Fault.rate_limit(0.01), Fault.server_error(), Fault.timeout()][int(draw * 1000) % 3]
            self.answered += 1
        return Reply("y" * 400, delay_s=0.02)


async def batch(client: ModelClient, run: Budget, instances: int, calls_each: int) -> int:
    async def instance(number: int) -> int:
        scoped = client.scoped(CallScope(instance_id=f"inst-{number}"))
        budget = run.child(None, f"instance {number}")
        done = 0
        for step in range(calls_each):
            try:
                await scoped.complete("primary", [{"role": "user", "content": f"instance {number} step {step}"}],
                                      budget=budget, max_tokens=150)
                done += 1
            except (BudgetExceeded, ModelCallError):
                return done
        return done

    return sum(await asyncio.gather(*(instance(n) for n in range(instances))))


def provider_drill() -> None:
    handler = ScriptedLLM()
    scripts = {"scripted": handler}
    flaky = FlakyProvider(0.3)
    handler.add("main", flaky)
    price = PriceOverride(input_per_mtok=1000.0, output_per_mtok=1000.0)
    settings = ModelSettings(roles=RoleModels(relevance="scripted/main", primary="scripted/main",
                                              selector="scripted/main"),
                             price_overrides={"scripted/main": price}, retry_base_delay_s=0.01,
                             retry_max_delay_s=0.05, max_retries=6, max_concurrency=16)
    limit = 1.5
    with tempfile.TemporaryDirectory() as scratch:
        store = RunStore(Path(scratch) / "run")
        calls = RunCallStore(store, "drill")
        first = asyncio.run(batch(ModelClient(settings, store=calls, recorder=calls, providers=scripts),
                                  Budget(limit, "run"), 20, 6))
        worst = worst_case_usd("scripted/main", [{"role": "user", "content": "instance 19 step 5"}], 150,
                               settings.price_overrides)
        assert worst is not None, "priced by the override above"
        spent = store.totals().cost_usd
        answered_first = flaky.answered
        # The same batch again, with a larger budget: finished calls are replayed, the rest are made.
        run = Budget(limit * 10, "run")
        run.charge(spent)
        asyncio.run(batch(ModelClient(settings, store=calls, recorder=calls, providers=scripts), run, 20, 6))
        stored = store.count_calls()
        billed = store.totals().calls
        repeated = flaky.answered - stored
        store.close()
    row("30% faults, 20 instances x 6 calls, --max-cost 1.5",
        f"spent <= limit + one call's worst (${worst:.3f})",
        f"${spent:.3f} spent; {first} calls completed; answered {answered_first}",
        spent <= limit + worst)
    row("same batch rerun (resume, larger budget)", "no answered call repeated",
        f"answered {flaky.answered}, stored {stored}, billed {billed}, repeated {repeated}", repeated == 0)


def engine_drills(scratch: Path) -> None:
    from drills_engine import (
        SecondEngine,
        daemon_restart_drill,
        disk_full_build_drill,
        fault_batch_drill,
        two_batches_drill,
    )

    with SecondEngine(scratch) as engine:
        for drill in (disk_full_build_drill, two_batches_drill, daemon_restart_drill, fault_batch_drill):
            drill(engine, scratch / "work", row)


def main() -> int:
    client = docker_client()
    sandbox_drills(client)
    provider_drill()
    if "--engine" in sys.argv:
        sys.path.insert(0, str(Path(__file__).parent))
        engine_drills(Path(os.environ.get("PATCHSWARM_DRILLS_DIR", "/var/tmp/patchswarm-drills")))
    widths = [max(len(str(r[i])) for r in ROWS + [("drill", "expectation", "observed", "")]) for i in range(3)]
    header = ("drill", "expectation", "observed")
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " | result")
    print("-+-".join("-" * w for w in widths) + "-+-------")
    for drill, expectation, observed, passed in ROWS:
        cells = (drill, expectation, observed)
        print(" | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + f" | {'pass' if passed else 'FAIL'}")
    return 0 if all(r[3] for r in ROWS) else 1


if __name__ == "__main__":
    sys.exit(main())
