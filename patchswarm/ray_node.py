"""The node side of the Ray executor: one instance's work on this machine, its new run-store rows sent back.

The work (`pipeline.solve_attempt`; the driver runs the lifecycle around it) runs in a scratch run
directory with its own RunStore, seeded with what the driver's store holds about the instance (saved
states of its epoch, completed calls, its call log), so a resumed instance continues where it stopped
and repeats no completed paid call. The rows it writes are streamed to the driver every few
seconds, so a lost node loses only the last seconds of work, as `kill -9` does locally.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import ray
except ImportError:
    raise ImportError("the ray executor needs Ray: pip install patchswarm[ray]") from None

from rich.console import Console  # noqa: E402

from agent.allocation import RemoteSharePool  # noqa: E402
from agent.budget import Hold, Spend  # noqa: E402
from agent.llm import Providers  # noqa: E402
from patchswarm.config import PatchswarmConfig  # noqa: E402
from patchswarm.pipeline import solve_attempt  # noqa: E402
from patchswarm.progress import Progress  # noqa: E402
from patchswarm.run_context import RunContext, open_run  # noqa: E402
from patchswarm.scripted_cli import scripted_providers  # noqa: E402
from patchswarm.tasks import Task  # noqa: E402

SHIP_EVERY_S = 2.0
# What a node writes that the driver keeps (instances rows and result files: the driver writes its own).
STREAMED = ("meta", "states", "calls", "call_log", "events")


class RemoteTally:
    """The run budget's tally on a node: the run's one `Tally`, a Ray actor every node shares, so
    `--max-cost` holds across machines.

    Each reservation and settlement is one round trip to the actor (sub-millisecond next to a model call),
    so the overrun stays bounded by one call's worst case on all nodes together (agent.budget). An actor
    runs one method at a time: each reservation is atomic across all nodes.
    """

    def __init__(self, actor: Any) -> None:
        self._actor = actor

    def add(self, cost_usd: float | None) -> None:
        ray.get(self._actor.add.remote(cost_usd))

    def hold(self, limit_usd: float | None, amount: float) -> Hold:
        return ray.get(self._actor.hold.remote(limit_usd, amount))

    def settle(self, amount: float, cost_usd: float | None, billed: bool) -> None:
        ray.get(self._actor.settle.remote(amount, cost_usd, billed))

    def totals(self) -> Spend:
        return ray.get(self._actor.totals.remote())


@dataclass
class NodeJob:
    """Everything a node needs to solve one instance; plain data plus the tally's actor handle."""

    task: dict[str, Any]
    config: dict[str, Any]  # the driver's resolved config
    sandbox_run_id: str  # the driver's run's sandbox label: this node's label starts with it
    epoch: int  # the instance's epoch (the driver's lifecycle bumped it for --redo)
    seed: dict[str, list[dict[str, Any]]]  # the driver's rows of this instance
    tally: Any
    scripted_specs: list[str] = field(default_factory=list)  # NAME=module:callable
    scripted_yaml: dict[str, str] = field(default_factory=dict)  # NAME -> script text (no shared files)
    ship_every_s: float = SHIP_EVERY_S
    shares: Any = None  # the batch's SharePool actor (adaptive sampling), or None


def solve_on_node(job: NodeJob) -> Iterator[dict[str, Any]]:
    """Solve one instance here; yields batches of new rows, the last one with the result and log files."""
    scratch = Path(tempfile.mkdtemp(prefix="patchswarm-ray-"))
    try:
        providers = _scripted_providers(job, scratch)
        config = PatchswarmConfig.model_validate(job.config)
        task = Task.model_validate(job.task)
        # Sandboxes are labelled `<driver's id>-<suffix>` and a closing run removes all of its label: a label
        # unique to this instance keeps two instances on one node apart.
        label = f"{job.sandbox_run_id}-{uuid.uuid4().hex[:8]}"
        with Progress(1, scratch / "events.jsonl", live=False) as progress:
            progress.console = Console(quiet=True)  # the driver shows progress: no second set of lines
            opened = open_run(config, scratch / "run", progress, tally=RemoteTally(job.tally), sandbox_run_id=label,
                              shares=RemoteSharePool(job.shares) if job.shares is not None else None,
                              providers=providers)
            run = opened.__enter__()
            try:
                run.store.import_rows(job.seed)
                cursors = {table: run.store.last_rowid(table) for table in STREAMED}  # seeds are not news
                yield from _solve_streaming(run, task, job.epoch, cursors, job.ship_every_s)
            finally:
                with _uninterrupted():  # closing removes the node's sandboxes
                    opened.__exit__(None, None, None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _solve_streaming(run: RunContext, task: Task, epoch: int, cursors: dict[str, int],
                     every_s: float) -> Iterator[dict[str, Any]]:
    # Our own loop, driven in slices, so the generator can hand rows to Ray between them.
    loop = asyncio.new_event_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=64, thread_name_prefix="patchswarm"))
    solving = loop.create_task(solve_attempt(run, task, epoch))
    try:
        while not solving.done():
            loop.run_until_complete(asyncio.wait([solving], timeout=every_s))
            if not solving.done():
                yield _batch(run, cursors)
        result = solving.result()
    finally:
        with _uninterrupted():
            if not solving.done():  # cancelled by the driver (Ctrl-C there): let the instance unwind
                solving.cancel()
                with contextlib.suppress(BaseException):
                    loop.run_until_complete(solving)
            loop.close()
    yield {**_batch(run, cursors), "result": result.model_dump(mode="json"), "files": _log_files(run.run_dir)}


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Clean-up that a second interrupt must not cut short: a Ctrl-C reaches workers started by the
    driver's shell as well as the driver's cancel, and sandboxes left running would outlive the run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # also mutes Ray's cancel, which simulates SIGINT
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _batch(run: RunContext, cursors: dict[str, int]) -> dict[str, Any]:
    rows = {}
    for table in STREAMED:
        rows[table], cursors[table] = run.store.export_rows(table, after_rowid=cursors[table])
    return {"rows": rows, "trajectories_running": run.progress.trajectories_running}


def _log_files(run_dir: Path) -> dict[str, str]:
    """Build logs, by path relative to the run directory (the driver keeps them under its own)."""
    logs = run_dir / "logs"
    files = sorted(p for p in logs.rglob("*") if p.is_file()) if logs.is_dir() else []
    return {str(p.relative_to(run_dir)): p.read_text(errors="replace") for p in files}


def _scripted_providers(job: NodeJob, scratch: Path) -> Providers:
    """The scripted models of the driver's `--scripted`, made again on this node: a script is code and
    state (its next reply) in one process, and a node runs in another, so its specs travel, not its handler."""
    specs = list(job.scripted_specs)
    for name, text in job.scripted_yaml.items():
        path = scratch / "scripted" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        specs.append(f"{name}={path}")
    return scripted_providers(specs)
