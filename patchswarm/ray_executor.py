"""`batch --executor ray`: instances run as Ray tasks on a cluster, each node with its own Docker engine.

The driver keeps what a local run has: the one SQLite run store, the run budget, the progress view.
Each instance goes through `lifecycle.run_instance` on the driver, as a local one does; its work is one
streaming Ray task (`ray_node.solve_on_node`): it gets the instance's rows from the driver's store, runs
`pipeline.solve_attempt` on its node and streams the rows it writes back, which the driver merges into its
store as they come; the lifecycle then takes totals and writes result files and predictions from them.
The run budget's tally is one `agent.budget.Tally` actor that every node reserves on before a call and
charges after it; adaptive sampling's budget shares are one `SharePool` actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from pathlib import Path
from typing import Any

from agent.allocation import RemoteSharePool, SharePool
from agent.budget import Tally
from patchswarm.lifecycle import run_instance
from patchswarm.ray_node import SHIP_EVERY_S, NodeJob, ray, solve_on_node  # ray: guarded there
from patchswarm.results import InstanceResult
from patchswarm.run_context import RunContext, share_pool
from patchswarm.store import RunStore
from patchswarm.tasks import Task

STOP_WAIT_S = 30.0


class RayExecutor:
    """Runs each instance of a batch as a Ray task; `workers` bounds the instances in flight."""

    def __init__(self, address: str | None = None, *, scripted: list[str] | None = None,
                 cpus_per_instance: float = 1.0, ship_every_s: float = SHIP_EVERY_S) -> None:
        # address None: RAY_ADDRESS, else a cluster running on this machine, else a new local one.
        self.address, self.cpus_per_instance, self.ship_every_s = address, cpus_per_instance, ship_every_s
        self.scripted_specs, self.scripted_yaml = _portable_scripts(scripted or [])

    async def run_all(self, run: RunContext, tasks: list[Task], workers: int) -> list[InstanceResult]:
        joined_here = not ray.is_initialized()  # a caller (a test, a notebook) may have joined already
        if joined_here:
            _check_reachable(self.address)
            ray.init(address=self.address, logging_level=logging.WARNING)
        try:
            tally = ray.remote(num_cpus=0)(Tally).remote(run.budget.tally.totals())
            # Adaptive sampling's budget shares: one SharePool actor, as the tally, for every node.
            local = share_pool(run.config, len(tasks))
            shares = None if local is None else ray.remote(num_cpus=0)(SharePool).remote(
                local.total_usd, len(tasks), local.cap_usd)
            node_shares = None if shares is None else RemoteSharePool(shares)  # the driver's handle on it
            # No retries: a retried task would start from stale seeds and repeat paid calls; a failed
            # instance is resumed from the merged rows by rerunning the command instead.
            remote = ray.remote(solve_on_node).options(num_returns="streaming", num_cpus=self.cpus_per_instance,
                                                       max_retries=0)
            slots = asyncio.Semaphore(workers)

            async def one(task: Task) -> InstanceResult:
                async def work(task: Task, epoch: int) -> InstanceResult:
                    return await self._solve_remotely(run, task, epoch, remote, tally, shares)

                async with slots:
                    return await run_instance(run, task, work, shares=node_shares)

            # Every instance ends before Ray does, also when cancelled: each must stop its node first.
            outcomes = await asyncio.gather(*(one(t) for t in tasks), return_exceptions=True)
            results: list[InstanceResult] = []
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
                results.append(outcome)
            return results
        finally:
            if joined_here:
                ray.shutdown()

    async def _solve_remotely(self, run: RunContext, task: Task, epoch: int, remote: Any, tally: Any,
                              shares: Any) -> InstanceResult:
        """The instance's work on a node, its rows merged here as they come; a lost node is a failed result."""
        store, progress, instance_id = run.store, run.progress, task.instance_id
        job = NodeJob(task=task.model_dump(mode="json"), config=run.config.model_dump(mode="json"),
                      sandbox_run_id=run.sandbox_run_id, epoch=epoch,
                      seed=instance_rows(store, instance_id, run.config_hash), tally=tally,
                      scripted_specs=self.scripted_specs, scripted_yaml=self.scripted_yaml,
                      ship_every_s=self.ship_every_s, shares=shares)
        stream = remote.remote(job)
        shown_trajectories, result, error = 0, None, "the node sent no result"
        try:
            async for ref in stream:
                batch = await ref
                shown_trajectories = _merge(run, batch, shown_trajectories)
                if "result" in batch:
                    result = InstanceResult.model_validate(batch["result"])
        except ray.exceptions.RayError as exc:  # node or worker lost, or the node could not start the instance
            error = f"ray: {str(exc).strip().splitlines()[-1]}"
        except BaseException:  # Ctrl-C: stop the node's work (the lifecycle marks the instance interrupted)
            await _stop(stream, store)
            raise
        finally:
            progress.trajectories_running -= shown_trajectories
        progress.add_spend(store.totals(instance_id))  # the node's calls, which `call` did not see
        if result is None:
            return InstanceResult(instance_id=instance_id, status="failed", issue=task.issue, errors=[error])
        return result


async def _stop(stream: Any, store: RunStore) -> None:
    """Cancel a node's instance and give it time to remove its sandboxes before Ray ends its worker;
    rows it sends meanwhile are kept (they may hold paid calls)."""
    with contextlib.suppress(Exception):
        ray.cancel(stream)

    async def drain() -> None:
        async for ref in stream:
            store.import_rows((await ref)["rows"])

    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(drain(), STOP_WAIT_S)


def instance_rows(store: RunStore, instance_id: str, config_hash: str) -> dict[str, list[dict[str, Any]]]:
    """What a node needs of the driver's store to resume one instance (states of the current epoch only)."""
    epoch_key = f"epoch:{instance_id}"
    states = f"{instance_id}:{config_hash}:{store.get_meta(epoch_key, 0)}:"
    calls = f"{config_hash}:"
    starts_with = "substr(key, 1, length(?)) = ?"
    return {
        "meta": store.export_rows("meta", where="key = ?", params=(epoch_key,))[0],
        "instances": store.export_rows("instances", where="instance_id = ? AND config_hash = ?",
                                       params=(instance_id, config_hash))[0],
        "states": store.export_rows("states", where=starts_with, params=(states, states))[0],
        "calls": store.export_rows("calls", where=f"instance_id = ? AND {starts_with}",
                                   params=(instance_id, calls, calls))[0],
        "call_log": store.export_rows("call_log", where="instance_id = ?", params=(instance_id,))[0],
    }


def _merge(run: RunContext, batch: dict[str, Any], shown_trajectories: int) -> int:
    """Write a node's batch into the driver's store and progress; returns the trajectories now shown."""
    rows = batch["rows"]
    run.store.import_rows(rows)
    for relative, text in batch.get("files", {}).items():
        parts = Path(relative).parts
        if parts and parts[0] == "logs" and ".." not in parts:
            run.store.write_file(relative, text)
    progress = run.progress
    progress.executions += sum(event["kind"] == "execution" for event in rows.get("events", []))
    progress.trajectories_running += batch["trajectories_running"] - shown_trajectories
    progress.refresh()
    return batch["trajectories_running"]


def _check_reachable(address: str | None) -> None:
    """Fail in seconds on a wrong HOST:PORT: ray.init would wait for it for minutes."""
    host, _, port = (address or "").rpartition(":")
    if not host or not port.isdigit() or "://" in host:
        return  # None, "auto", "local", ray:// client addresses: Ray's own business
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as exc:
        raise ConnectionError(f"no Ray cluster answers at {address} ({exc.strerror or exc})") from None


def _portable_scripts(specs: list[str]) -> tuple[list[str], dict[str, str]]:
    """`--scripted` specs as nodes can use them: module specs as they are, script files by their text."""
    modules, texts = [], {}
    for spec in specs:
        name, _, target = spec.partition("=")
        if target.endswith((".yaml", ".yml")):
            texts[name] = Path(target).read_text()
        else:
            modules.append(spec)
    return modules, texts
