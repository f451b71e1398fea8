"""`patchswarm bench-select CANDIDATES.jsonl --dataset FILE`: grade, select, and print how well selection did."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

DEFAULT_GRADES = Path("benchmarks/selection_real/grades.jsonl")
BENCH_SETTINGS = [
    "selection.regression_max_candidates=40",  # LLM-free: every candidate's regressions are evidence
    "selection.regression_max_files=1",  # the nearest test file: a 2-core machine runs it for every candidate
    "sandbox.pool_size=2",
]


def _split(values: list[str] | None) -> list[str]:
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def bench_select_command(
    ctx: typer.Context,
    candidates_file: Path = typer.Argument(..., help="Candidates JSONL: instance_id, system, model_patch (a `resolved` hint is ignored)."),
    datasets: list[str] = typer.Option(..., "--dataset", "-d", help="SWE-bench dataset file the instances come from (repeatable; first row wins)."),
    repo_url: str = typer.Option("https://github.com/{owner}/{name}.git", "--repo-url", help="Repository URL template, e.g. file:///mirrors/{owner}__{name}.git."),
    grades_file: Path = typer.Option(DEFAULT_GRADES, "--grades", help="Ground-truth grades JSONL (read, and appended to by --grade)."),
    instance_ids: list[str] = typer.Option(None, "--instance-ids", "-i", help="Only these instances (repeat or comma-separate)."),
    repos: list[str] = typer.Option(None, "--repo", help="Only instances of these repositories (e.g. sympy/sympy; repeatable)."),
    limit: int | None = typer.Option(None, "--limit", help="At most this many instances (in file order)."),
    grade: bool = typer.Option(False, "--grade/--no-grade", help="Grade candidates that have no grade yet (Docker-heavy)."),
    model: str | None = typer.Option(None, "--model", help="LLM mode: this litellm model writes reproduction tests and runs the selector (default: LLM-free)."),
    ablation: bool = typer.Option(False, "--ablation", help="Also run with each evidence kind off in turn (re-uses the cached executions)."),
    spec_table: Path | None = typer.Option(None, "--spec-table", help="Your own install spec table (JSON), laid over the packaged one."),
    run_dir: Path = typer.Option(Path("runs/bench-select"), "--run-dir", help="Where the selection runs and the execution cache live."),
    preset: str = typer.Option("default", "--preset"),
    overrides: list[str] = typer.Option(None, "--set", help="Config override key=value (repeatable)."),
    scripted: list[str] = typer.Option(None, "--scripted", help="Register a scripted model NAME=script.yaml|module:callable."),
) -> None:
    """Selection measured on real candidates against graded truth: per instance and in total."""
    from patchswarm.benchselect.grades import GradeBook, grade_all, load_candidates
    from patchswarm.benchselect.run import ABLATIONS, graded, score_one, totals
    from patchswarm.benchselect.table import markdown, print_scores
    from patchswarm.cli.common import config_or_fail, fail, scripted_or_fail
    from patchswarm.swebench.dataset import DatasetError, SweInstance, load_instances
    from patchswarm.swebench.tasks import tasks_from_dataset
    from patchswarm.tasks import Task

    console = Console()
    try:
        rows = load_candidates(candidates_file)
        instances: dict[str, SweInstance] = {}
        tasks: dict[str, Task] = {}
        for dataset in datasets:
            for instance in load_instances(dataset):
                instances.setdefault(instance.instance_id, instance)
            for task in tasks_from_dataset(dataset, "test", repo_url, prefer_official_images=False,
                                           spec_table=spec_table):
                tasks.setdefault(task.instance_id, task)
    except (DatasetError, ValueError, OSError) as exc:
        fail(str(exc))
    wanted = set(_split(instance_ids))
    chosen = [i for i in rows if i in instances and (not wanted or i in wanted)
              and (not repos or instances[i].repo in repos)]
    missing = sorted(set(rows) - set(instances))
    if missing:
        console.print(f"warning: {len(missing)} instance(s) not in the dataset(s), e.g. {missing[0]}", highlight=False)
    chosen = chosen[:limit] if limit else chosen
    book = GradeBook(grades_file)
    if grade:
        grade_all([instances[i] for i in chosen], rows, book, repo_url_template=repo_url, spec_table=spec_table,
                  errors_path=run_dir / "grade-errors.jsonl", log_dir=run_dir / "grade-logs",
                  on_event=lambda m: console.print(m, highlight=False, markup=False))
    ready = [i for i in chosen if graded(i, rows[i], book)]
    if len(ready) < len(chosen):
        console.print(f"{len(chosen) - len(ready)} instance(s) not fully graded yet: skipped (use --grade)",
                      highlight=False)
    providers = scripted_or_fail(ctx, scripted)
    extra = list(BENCH_SETTINGS) + [f"selection.cache_dir={run_dir / 'exec-cache'}"]
    if model:
        extra += [f"models.roles.{role}={model}" for role in ("relevance", "primary", "selector")]
    else:
        extra += ["selection.selector_enabled=false"]
    modes = ABLATIONS if ablation else {"all": {}}
    summary: dict[str, object] = {}
    all_scores, all_totals = {}, {}
    for name, off in modes.items():
        config = config_or_fail(preset, None, overrides, extra + [f"selection.{k}={str(v).lower()}" for k, v in off.items()])
        scores = []
        for instance_id in ready:
            score = score_one(tasks[instance_id], rows[instance_id], book, config, run_dir / name,
                              generate_tests=model is not None, providers=providers)
            scores.append(score)
            if name == "all":
                console.print(f"{instance_id}: {score.chosen} correct={score.correct} "
                              f"({score.confidence_level}, {score.wall_s:.0f}s)", highlight=False, markup=False)
        out = run_dir / name / "scores.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(s.model_dump_json() + "\n" for s in scores))
        total = totals(scores)
        summary[name] = total.model_dump() if total else None
        all_scores[name], all_totals[name] = scores, total
        print_scores(console, name, scores, total)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    (run_dir / "results.md").write_text(markdown(all_scores, all_totals))
    console.print(f"scores: {run_dir}/<mode>/scores.jsonl, summary: {run_dir / 'summary.json'}, "
                  f"table: {run_dir / 'results.md'}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("bench-select")(bench_select_command)
