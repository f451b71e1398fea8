"""`patchswarm runs | clean`: the runs on disk, and the containers a run left behind."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from patchswarm.cli.common import fail
from sandbox.errors import SandboxError


def runs(root: Path = typer.Option(Path("runs"), "--root", help="Directory holding run directories.")) -> None:
    """List runs with status, instances and cost."""
    from rich.table import Table

    from patchswarm.store import RunStore, run_dir_in_use

    table = Table("run", "status", "instances", "solved", "errors", "cost (USD)")
    for db in sorted(root.glob("*/run.sqlite")):
        store = RunStore(db.parent)
        try:
            items = store.instances()
            status = str(store.get_meta("status", "?"))
            if status == "running" and not run_dir_in_use(db.parent):
                status = "interrupted"  # its process died without saying so (kill -9, power loss)
            table.add_row(db.parent.name, status, str(len(items)),
                          str(sum(i["status"] == "solved" for i in items)),
                          str(sum(i["status"] in ("error", "failed") for i in items)), f"{store.totals().cost_usd:.4f}")
        finally:
            store.close()
    Console().print(table)



def clean(
    run: str | None = typer.Option(None, "--run", help="Only this run's containers: its run directory, or the "
                                   "sandbox run id its run store records (sandbox_run_id)."),
    orphans: bool = typer.Option(False, help="Only containers whose owning process is gone."),
) -> None:
    """Remove leftover sandbox containers (all patchswarm ones by default)."""
    from sandbox.engine import docker_client
    from sandbox.manager import remove_containers

    run_id = _sandbox_run_id(run) if run else None
    try:
        removed = remove_containers(docker_client(), run_id, only_orphans=orphans)
    except SandboxError as exc:
        fail(str(exc))
    typer.echo(f"removed {removed} container(s)")


def _sandbox_run_id(run: str) -> str:
    """The label id of a run given by its directory (read from its store), else the id as given."""
    from patchswarm.run_context import SANDBOX_RUN_ID
    from patchswarm.store import RunStore

    if not (Path(run) / "run.sqlite").is_file():
        return run
    store = RunStore(Path(run))
    try:
        recorded = store.get_meta(SANDBOX_RUN_ID)
    finally:
        store.close()
    if not recorded:
        fail(f"run directory {run} records no sandbox run id (an older patchswarm made it); "
             "give the id from `docker ps --filter label=patchswarm.run`")
    return str(recorded)


def register(app: typer.Typer) -> None:
    app.command()(runs)
    app.command()(clean)
