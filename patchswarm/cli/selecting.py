"""`patchswarm select | predictions merge`: choose among candidates from any source, combine prediction files."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from patchswarm.cli.common import (
    ConfigOpt,
    ModelOpt,
    PresetOpt,
    ScriptedOpt,
    SetOpt,
    check_models,
    config_or_fail,
    console,
    fail,
    scripted_or_fail,
)
from sandbox.errors import SandboxError


def select_cmd(
    ctx: typer.Context,
    predictions: list[Path] = typer.Option(None, "--predictions", "-p", help="SWE-bench prediction file (repeatable)."),
    patch_dir: Path | None = typer.Option(None, "--patch-dir", help="Directory of <instance_id>/*.patch|*.diff files."),
    tasks_file: Path | None = typer.Option(None, "--tasks", help="JSONL tasks the candidates belong to."),
    dataset: str | None = typer.Option(None, "--dataset", help="SWE-bench dataset the candidates belong to."),
    split: str = typer.Option("test", "--split", help="Dataset split."),
    repo_url: str = typer.Option("https://github.com/{owner}/{name}.git", "--repo-url", help="Repository URL template."),
    out: Path = typer.Option(Path("selected.jsonl"), "--out", help="The prediction file to write."),
    generate_tests: bool = typer.Option(True, "--generate-tests/--no-generate-tests", help="Write reproduction tests with the testing state machine (off: LLM-free when the selector is off too)."),
    run_dir: Path = typer.Option(Path("runs/select"), "--run-dir", help="Where the selection run lives."),
    model: str | None = ModelOpt,
    preset: str = PresetOpt, config_file: Path | None = ConfigOpt, overrides: list[str] = SetOpt,
    scripted: list[str] = ScriptedOpt,
    quiet: bool = typer.Option(False, "--quiet", help="Line-oriented output."),
) -> None:
    """Choose one patch per instance among candidates from any source; writes predictions with provenance."""
    from patchswarm.candidate_selection import select_candidates
    from patchswarm.tasks import TaskError, load_tasks_jsonl
    from selection import load_patch_dir, load_prediction_files

    if (tasks_file is None) == (dataset is None):
        fail("give exactly one of --tasks FILE.jsonl or --dataset NAME_OR_FILE")
    if not predictions and patch_dir is None:
        fail("give candidates: --predictions FILE (repeatable) and/or --patch-dir DIR")
    providers = scripted_or_fail(ctx, scripted)
    config = config_or_fail(preset, config_file, overrides, model=model)
    try:
        candidates = load_prediction_files(predictions or [])
        if patch_dir is not None:
            for instance, more in load_patch_dir(patch_dir).items():
                candidates.setdefault(instance, []).extend(more)
        if tasks_file is not None:
            tasks = load_tasks_jsonl(tasks_file)
        else:
            from patchswarm.swebench.tasks import tasks_from_dataset

            assert dataset is not None  # exactly one of the two, checked above
            tasks = tasks_from_dataset(dataset, split, repo_url)
    except (TaskError, ValueError, OSError) as exc:
        fail(str(exc))
    unknown = sorted(set(candidates) - {t.instance_id for t in tasks})
    if unknown:
        console.print(f"warning: no task for {len(unknown)} instance(s) with candidates, e.g. {unknown[0]}")
    if config.selection.selector_enabled or generate_tests:
        check_models(config)
    try:
        results = select_candidates(tasks, candidates, config, run_dir, out, generate_tests=generate_tests,
                                    live=False if quiet else None, providers=providers)
    except (SandboxError, ValueError) as exc:  # ValueError: e.g. a budget that cannot be enforced
        fail(str(exc))
    view = Console()
    for instance, result in results.items():
        view.print(f"{instance:40} {result.method:18} {result.chosen_id or '-':20} {result.reason[:80]}",
                   highlight=False, markup=False)
    view.print(f"predictions: {out}", highlight=False)


def predictions_merge(
    files: list[Path] = typer.Argument(..., metavar="FILE_OR_RUN_DIR...", help="predictions.jsonl files or run directories; later ones win for an instance in several."),
    out: Path = typer.Option(..., "--out", "-o", help="The merged file to write."),
) -> None:
    """Merge prediction files from several machines or runs into one, one line per instance."""
    from patchswarm import predictions

    paths = [path / predictions.FILE_NAME if path.is_dir() else path for path in files]
    try:
        written, repeated = predictions.merge(paths, out)
    except predictions.PredictionsError as exc:
        fail(str(exc))
    more = f" ({repeated} in more than one file: the later file's line kept)" if repeated else ""
    typer.echo(f"{out}: {written} instance(s){more}")



def register(app: typer.Typer) -> None:
    app.command("select")(select_cmd)
    predictions_app = typer.Typer(no_args_is_help=True, help="Combine prediction files (SWE-bench format).")
    app.add_typer(predictions_app, name="predictions")
    predictions_app.command("merge")(predictions_merge)
