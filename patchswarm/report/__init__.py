"""`patchswarm report`: a run directory as a static HTML site that opens offline.

Only the command lives here (importing this is cheap); the renderer is imported when it runs.
"""

from __future__ import annotations

from pathlib import Path

import typer


def report_command(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="The run directory (holds run.sqlite)."),
    open_: bool = typer.Option(False, "--open", help="Open the report in the default browser."),
    eval_report: Path | None = typer.Option(None, "--eval-report", help="Evaluation report JSON (instance id → {resolved: bool}); default RUN_DIR/eval/report.json when present."),
    out: Path | None = typer.Option(None, "--out", help="Where the site goes (default RUN_DIR/report)."),
    figure: list[Path] = typer.Option(None, "--figure", help="A PNG to show on the run page, e.g. benchmarks/adaptive/accuracy_vs_compute.png (its results.md beside it too); repeatable."),
) -> None:
    """Write a static HTML report of a run into RUN_DIR/report/: run page, one page per instance."""
    from patchswarm.report.build import build_report
    from patchswarm.report.load import ReportError

    try:
        index = build_report(run_dir, out_dir=out, eval_report=eval_report, figure_paths=list(figure or []))
    except ReportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(str(index))
    if open_:
        import webbrowser

        webbrowser.open(index.resolve().as_uri())


def register(app: typer.Typer) -> None:
    """Add `report` to the main `patchswarm` command line."""
    app.command("report")(report_command)
