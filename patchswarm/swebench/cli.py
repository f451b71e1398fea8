"""`patchswarm eval`: grade SWE-bench predictions like the official harness, in patchswarm sandboxes."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.table import Table

from patchswarm.phases import PhaseBoard
from patchswarm.swebench.specs import DEFAULT_REPO_URL

eval_app = typer.Typer(add_completion=False, help=__doc__)


def _fail(console: Console, message: str) -> NoReturn:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(1)


def _split_ids(values: list[str] | None) -> list[str] | None:
    ids = [part.strip() for value in values or [] for part in value.split(",") if part.strip()]
    return ids or None


def result_line(report) -> str:
    """One instance's outcome: status, time (build included), and the cause when it failed."""
    line = f"{report.instance_id}: {report.status} ({report.duration_s:.0f}s)"
    if report.network:
        line += " [graded with network]"
    if report.stand_ins:  # graded with loopback stand-ins for the network: say so where the verdict is read
        line += f" [stand-ins: {', '.join(s.split(':')[0] for s in report.stand_ins)}]"
    if report.error:
        line += f": {report.error}"
    return line


def print_summary(console: Console, run) -> None:
    """A table per repository, the totals, and any broken environments."""
    s = run.summary
    table = Table(title=f"{s.model_name_or_path} — run {s.run_id}")
    for column in ("repository", "instances", "resolved", "%"):
        table.add_column(column, justify="left" if column == "repository" else "right")
    for repo, tally in s.per_repo.items():
        table.add_row(repo, str(tally.total), str(tally.resolved), f"{tally.resolved_pct:.1f}")
    table.add_row("[bold]total[/]", str(s.total_instances), str(s.resolved_instances), f"{s.resolved_pct:.1f}")
    console.print(table)
    console.print(f"submitted {s.submitted_instances} · unresolved {s.unresolved_instances} · "
                  f"patch failed {s.patch_failed_instances} · empty {s.empty_patch_instances} · "
                  f"errors {s.error_instances} · incomplete {len(s.incomplete_ids)}", highlight=False)
    for report in run.instances:
        if report.error:
            console.print(f"[yellow]{report.instance_id}[/]: {report.status}: {report.error}", highlight=False)
        if report.env_broken:
            console.print(f"[red]environment broken[/] {report.instance_id}: {report.env_broken_reason}",
                          highlight=False)
    console.print(f"reports: {run.run_dir}", highlight=False)


def eval_command(
    predictions: Path | None = typer.Argument(None, help="Predictions (.json/.jsonl: instance_id, model_patch, model_name_or_path)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset file (.json/.jsonl/.parquet) or Hugging Face name."),
    split: str = typer.Option("test", help="Split of a Hugging Face dataset."),
    gold: bool = typer.Option(False, "--gold", help="Grade the gold patches (validates environments: all must resolve)."),
    empty: bool = typer.Option(False, "--empty", help="Grade the empty patch (validates tests: none may resolve)."),
    official: bool = typer.Option(False, "--official", help="Run the official harness (python -m swebench.harness.run_evaluation) instead."),
    instance_ids: list[str] | None = typer.Option(None, "--instance-ids", "-i", help="Only these instances (repeat or comma-separate)."),
    repo_url: str = typer.Option(DEFAULT_REPO_URL, "--repo-url", help="Where repositories come from, e.g. file:///mirrors/{owner}__{name}.git."),
    report_dir: Path = typer.Option(Path("logs/patchswarm-eval"), "--report-dir", help="Where logs and reports go."),
    spec_table: Path | None = typer.Option(None, "--spec-table", help="Your own install spec table (JSON), laid over the packaged one."),
    workers: int = typer.Option(1, "--workers", "-w", help="Instances graded at once."),
    timeout: int = typer.Option(1800, "--timeout", help="Seconds allowed for one instance's tests."),
    system: bool = typer.Option(True, "--system/--no-system", help="Install the official base image's apt packages in local builds."),
    official_images: bool = typer.Option(True, "--official-images/--no-official-images", help="Use the row's official image when present or pullable."),
    run_id: str | None = typer.Option(None, "--run-id", help="Name of this run (default: unique)."),
    network: bool = typer.Option(False, "--network/--no-network", help="Grade with network, as the official harness's containers have it: the patches' code reaches the internet (use for patches you trust), and a reinstall may fetch a dependency a patch adds. Off: no network, with stand-ins."),
    stand_ins: bool = typer.Option(True, "--stand-ins/--no-stand-ins", help="Serve the internet some repositories' tests reach (httpbin for psf/requests) from loopback in the no-network grading sandbox; each report names what stood in."),
) -> None:
    """Grade predictions for SWE-bench instances exactly as the official harness grades them."""
    console = Console(stderr=True)
    from patchswarm.swebench.dataset import DatasetError, load_instances, load_predictions
    from patchswarm.swebench.evaluation import Mode, evaluate, new_eval_run_id, official_command, run_official
    from patchswarm.swebench.grading import InstanceReport
    from patchswarm.swebench.specs import SpecError, load_spec_table
    from sandbox.errors import SandboxError

    ids = _split_ids(instance_ids)
    if not (gold or empty) and predictions is None:
        _fail(console, "pass a predictions file, or --gold / --empty")
    if (gold or empty) and predictions is not None:
        _fail(console, "--gold and --empty grade the dataset's own patches: leave out the predictions file")
    if official:
        if empty:
            _fail(console, "--empty is not supported by the official harness (it skips empty patches)")
        source = str(predictions.resolve()) if predictions is not None else "gold"  # None: --gold (checked above)
        data = str(Path(dataset).resolve()) if Path(dataset).exists() else dataset
        command = official_command(data, source, run_id=run_id or new_eval_run_id(), split=split, instance_ids=ids,
                                   max_workers=workers, timeout=timeout, report_dir=str(report_dir))
        console.print("$ " + " ".join(command), highlight=False)
        raise typer.Exit(run_official(command))
    try:
        instances = load_instances(dataset, split, ids)
        preds = load_predictions(predictions) if predictions is not None else None
        unknown = sorted({p.instance_id for p in preds or []} - {i.instance_id for i in instances})
        if unknown and not ids:  # as the harness does: predictions must belong to the dataset
            _fail(console, f"{len(unknown)} prediction(s) not in the dataset: {', '.join(unknown[:5])}")
        table = load_spec_table(spec_table)
        from sandbox.engine import docker_client

        client = docker_client()
        modes: list[Mode] = []
        if gold:
            modes.append("gold")
        if empty:
            modes.append("empty")
        modes = modes or ["predictions"]
        base_id = run_id or new_eval_run_id()
        broken = False
        for mode in modes:
            total = len(instances) if mode != "predictions" else len({p.instance_id for p in preds or []}
                                                                      & {i.instance_id for i in instances})
            with PhaseBoard(total, title=f"eval {mode}", console=console) as board:
                def on_result(r: InstanceReport, board: PhaseBoard = board) -> None:
                    board.finish(r.instance_id, r.status, result_line(r))

                run = evaluate(
                    client, instances, preds, mode=mode, spec_table=table, repo_url_template=repo_url,
                    report_dir=report_dir, run_id=base_id if len(modes) == 1 else f"{base_id}-{mode}",
                    workers=workers, timeout=timeout, system=system, prefer_official=official_images,
                    on_phase=board.phase, on_result=on_result, stand_ins=stand_ins, network=network,
                )
            print_summary(console, run)
            broken = broken or bool(run.summary.env_broken_ids)
    except (DatasetError, SpecError, SandboxError) as exc:
        _fail(console, str(exc))
    if broken:
        raise typer.Exit(3)  # validation failed: do not spend on these environments


eval_app.command("eval")(eval_command)


def register(app: typer.Typer) -> None:
    """Add `eval` to the main `patchswarm` command line."""
    app.command("eval")(eval_command)
