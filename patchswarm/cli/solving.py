"""`patchswarm solve | batch | demo`: run the pipeline on one issue, many issues, or the bundled demo."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from patchswarm.cli.common import (
    ConfigOpt,
    ModelNameOpt,
    ModelOpt,
    PresetOpt,
    ScriptedOpt,
    SetOpt,
    budget_overrides,
    check_models,
    config_or_fail,
    console,
    error,
    executor_or_fail,
    exit_for_errors,
    fail,
    run_or_exit,
    scripted_or_fail,
)
from patchswarm.paths import safe_name
from patchswarm.tasks import TaskError
from sandbox.errors import SandboxError


def solve(
    ctx: typer.Context,
    repo: str = typer.Option(..., "--repo", help="Local path or git URL of the repository."),
    commit: str = typer.Option("HEAD", "--commit", help="Commit to solve the issue at."),
    issue: str = typer.Option(..., "--issue", help="Issue text, or @FILE to read it from a file."),
    setup: list[str] = typer.Option(None, "--setup", help="Environment setup command (repeatable), e.g. 'pip install -e .'."),
    test_cmd: str | None = typer.Option(None, "--test-cmd", help="The repository's own test command."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Where the run lives (default runs/<task id>)."),
    apply: bool = typer.Option(False, "--apply", help="Write the chosen patch to the local checkout at --repo."),
    model: str | None = ModelOpt, model_name: str | None = ModelNameOpt,
    preset: str = PresetOpt, config_file: Path | None = ConfigOpt, overrides: list[str] = SetOpt,
    scripted: list[str] = ScriptedOpt,
    max_cost: float | None = typer.Option(None, "--max-cost", help="USD limit of the run."),
    redo: bool = typer.Option(False, "--redo", help="Recompute even finished work."),
    quiet: bool = typer.Option(False, "--quiet", help="Line-oriented output (automatic when not a TTY)."),
) -> None:
    """Solve one issue on any repository; prints the chosen patch, how it was chosen, the cost and the run."""
    from patchswarm.tasks import Task, task_id_for

    if issue.startswith("@"):
        try:
            issue = Path(issue[1:]).read_text()
        except OSError as exc:
            fail(f"cannot read issue file {issue[1:]}: {exc.strerror}")
    if not issue.strip():
        fail("the issue text is empty")
    providers = scripted_or_fail(ctx, scripted)
    config = config_or_fail(preset, config_file, overrides, budget_overrides(max_cost, None, None), model)
    check_models(config)
    if "://" not in repo and not repo.startswith("git@"):
        repo = str(Path(repo).resolve())
    task = Task(instance_id=task_id_for(repo, commit, issue), repo=repo, commit=commit, issue=issue,
                setup=setup or [], test_cmd=test_cmd)
    run_dir = run_dir or Path("runs") / safe_name(task.instance_id)
    (result,) = run_or_exit([task], config, run_dir, redo, quiet, model_name=model_name, providers=providers)
    _print_result(result, run_dir)
    if apply and result.patch:
        import subprocess

        done = subprocess.run(["git", "apply", "-"], input=result.patch, text=True, cwd=repo, capture_output=True)
        if done.returncode != 0:
            fail(f"--apply: the patch does not apply to {repo}: {done.stderr.strip().splitlines()[0]}")
        console.print(f"applied the patch to {repo}")
    if result.status in ("error", "failed"):
        error(f"instance {result.instance_id} ended in {result.status}: it is not final; "
              f"rerun the same command to retry it")
        raise typer.Exit(1)


def _print_result(result, run_dir: Path) -> None:
    from rich.syntax import Syntax

    out = Console(soft_wrap=True)  # one record per line, whatever the width
    if result.patch:
        out.print(Syntax(result.patch, "diff", theme="ansi_dark"))
    out.print(f"instance: {result.instance_id}  status: {result.status}", highlight=False)
    if result.selection_method:
        out.print(f"chosen by: {result.selection_method} ({result.selection_reason})", highlight=False, markup=False)
    else:
        out.print("chosen by: nothing was chosen (the instance did not reach selection)", highlight=False)
    if result.budget_stopped:
        out.print("budget: stopped by a budget; this is the best candidate found so far", highlight=False)
    unknown = f" + {result.unknown_cost_calls} call(s) of unknown cost" if result.unknown_cost_calls else ""
    out.print(f"cost: ${result.cost_usd:.4f}{unknown}  tokens: {result.input_tokens} in / {result.output_tokens} out",
              highlight=False)
    for problem in result.errors[:5]:
        out.print(f"error: {problem}", highlight=False, markup=False)
    out.print(f"run: {run_dir}", highlight=False)



def batch(
    ctx: typer.Context,
    tasks_file: Path | None = typer.Option(None, "--tasks", help="JSONL: one issue per line (repo, commit, issue, optional setup/test_cmd)."),
    dataset: str | None = typer.Option(None, "--dataset", help="SWE-bench dataset name or local .json/.jsonl/.parquet file."),
    split: str = typer.Option("test", "--split", help="Dataset split."),
    repo_url: str = typer.Option("https://github.com/{owner}/{name}.git", "--repo-url", help="Repository URL template for SWE-bench instances."),
    with_hints: bool = typer.Option(False, "--with-hints", help="Show SWE-bench hints_text to the models too."),
    skip_env_broken: list[Path] = typer.Option(None, "--skip-env-broken", help="summary.json of `patchswarm eval --gold/--empty`: skip the instances it found env_broken (repeatable)."),
    spec_table: Path | None = typer.Option(None, "--spec-table", help="Your own SWE-bench environment spec table (JSON)."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Where the run lives (default runs/<tasks file name>)."),
    workers: int | None = typer.Option(None, "--workers", help="Instances solved concurrently."),
    filter_: str | None = typer.Option(None, "--filter", help="Regex on instance ids."),
    slice_: str | None = typer.Option(None, "--slice", help="Python-style slice of the (filtered) tasks, e.g. 0:10."),
    shuffle: int | None = typer.Option(None, "--shuffle", help="Shuffle with this seed before slicing."),
    model: str | None = ModelOpt, model_name: str | None = ModelNameOpt,
    preset: str = PresetOpt, config_file: Path | None = ConfigOpt, overrides: list[str] = SetOpt,
    scripted: list[str] = ScriptedOpt,
    max_cost: float | None = typer.Option(None, "--max-cost", help="USD limit of the whole run, across workers."),
    max_cost_per_instance: float | None = typer.Option(None, "--max-cost-per-instance", help="USD limit per instance."),
    redo: bool = typer.Option(False, "--redo", help="Recompute even finished instances."),
    quiet: bool = typer.Option(False, "--quiet", help="Line-oriented output (automatic when not a TTY)."),
    executor_name: str = typer.Option("local", "--executor", help="Where instances run: local (this machine) or ray (a Ray cluster whose nodes each have a Docker engine)."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Ray cluster to join, e.g. HOST:6379 (default: RAY_ADDRESS, else a cluster on this machine, else a new local one)."),
) -> None:
    """Solve many issues; writes predictions.jsonl (SWE-bench format) and one result JSON per instance.

    Exit code: 0 every instance has a result, 1 none has, 3 some ended in error (rerun to retry them).
    """
    from patchswarm.tasks import TaskError, load_tasks_jsonl, select_tasks

    if (tasks_file is None) == (dataset is None):
        fail("give exactly one of --tasks FILE.jsonl or --dataset NAME_OR_FILE")
    providers = scripted_or_fail(ctx, scripted)
    executor = executor_or_fail(executor_name, ray_address, scripted)
    config = config_or_fail(preset, config_file, overrides, budget_overrides(max_cost, max_cost_per_instance, workers),
                     model)
    try:
        if tasks_file is not None:
            tasks = load_tasks_jsonl(tasks_file)
            name = tasks_file.stem
        else:
            from patchswarm.swebench.tasks import tasks_from_dataset

            assert dataset is not None  # exactly one of the two, checked above
            tasks = tasks_from_dataset(dataset, split, repo_url, with_hints=with_hints, spec_table=spec_table)
            name = Path(dataset).stem if Path(dataset).exists() else dataset.replace("/", "__")
        tasks = select_tasks(tasks, pattern=filter_, slice_spec=slice_, shuffle_seed=shuffle)
        broken = _env_broken_ids(skip_env_broken or [])
        if broken:
            skipped = [t.instance_id for t in tasks if t.instance_id in broken]
            tasks = [t for t in tasks if t.instance_id not in broken]
            console.print(f"skipping {len(skipped)} instance(s) with broken environments", highlight=False)
    except (TaskError, ValueError, SandboxError) as exc:
        fail(str(exc))
    if not tasks:
        fail("no tasks left after --filter/--slice/--skip-env-broken")
    check_models(config)
    run_dir = run_dir or Path("runs") / safe_name(name)
    results = run_or_exit(tasks, config, run_dir, redo, quiet, executor, model_name, providers)
    out = Console(soft_wrap=True)  # one record per line, whatever the width
    for r in results:
        out.print(f"{r.instance_id:40} {r.status:9} {r.selection_method or '-':18} ${r.cost_usd:.4f} "
                  f"{(r.errors[0][:80] if r.errors else '')}", highlight=False, markup=False)
    out.print(f"predictions: {run_dir / 'predictions.jsonl'}", highlight=False)
    exit_for_errors([r.status for r in results])


def _env_broken_ids(summaries: list[Path]) -> set[str]:
    import json

    broken: set[str] = set()
    for path in summaries:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise TaskError(f"--skip-env-broken {path}: not a readable eval summary ({exc})") from None
        if not isinstance(data, dict) or "env_broken_ids" not in data:
            raise TaskError(f"--skip-env-broken {path}: no env_broken_ids (use the summary.json of `patchswarm eval`)")
        broken.update(data["env_broken_ids"])
    return broken


def demo(
    ctx: typer.Context,
    run_dir: Path = typer.Option(Path("runs/demo"), "--run-dir", help="Where the demo run lives."),
    redo: bool = typer.Option(True, "--redo/--resume", help="Start afresh (default) or resume an earlier demo run."),
    quiet: bool = typer.Option(False, "--quiet", help="Line-oriented output."),
) -> None:
    """Fully offline demo: the real pipeline in real sandboxes on a bundled repository, with a scripted model."""
    from patchswarm.demo.run import demo_config, demo_task, print_selection

    providers = scripted_or_fail(ctx, ["demo=patchswarm.demo.script:DemoScript"])
    config = demo_config()
    task = demo_task(run_dir)
    console.print("patchswarm demo: scripted model (no key needed), real Docker sandboxes, real tests")
    (result,) = run_or_exit([task], config, run_dir, redo, quiet, providers=providers)
    print_selection(result)
    _print_result(result, run_dir)
    if result.status != "solved":
        raise typer.Exit(1)



def register(app: typer.Typer) -> None:
    app.command()(solve)
    app.command()(batch)
    app.command()(demo)
