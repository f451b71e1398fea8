"""Resolve software issues with many sandboxed LLM trajectories and test-based patch selection.

Quick start (MODEL: any litellm model name; the defaults: `patchswarm config show`):

    patchswarm demo                                   offline, no key needed
    patchswarm models check -m MODEL                  key set, model answers
    patchswarm solve --repo . --issue @issue.md -m MODEL --max-cost 5
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from pathlib import Path  # noqa: E402

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from typer.core import TyperGroup  # noqa: E402

from patchswarm.benchselect.cli import register as register_bench_select  # noqa: E402
from patchswarm.github import register as register_github  # noqa: E402
from patchswarm.images_cli import register as register_images  # noqa: E402
from patchswarm.paths import safe_name  # noqa: E402
from patchswarm.report import register as register_report  # noqa: E402
from patchswarm.swebench.cli import register as register_eval  # noqa: E402
from patchswarm.tasks import TaskError  # noqa: E402
from sandbox.errors import SandboxError  # noqa: E402

# The order a user meets the commands in: try it, run it, look at the results, then the rest.
COMMAND_ORDER = ("demo", "solve", "batch", "eval", "report", "runs", "predictions", "select", "github",
                 "models", "config", "doctor", "images", "clean")


class _UserOrder(TyperGroup):
    def list_commands(self, ctx) -> list[str]:
        rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(super().list_commands(ctx), key=lambda name: rank.get(name, len(rank)))


app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__, cls=_UserOrder,
                  context_settings={"help_option_names": ["-h", "--help"]})
images_app = typer.Typer(no_args_is_help=True, help="Build and inspect sandbox images.")
app.add_typer(images_app, name="images")
register_images(images_app)
register_report(app)
register_eval(app)
register_bench_select(app)
register_github(app)
console = Console(stderr=True, soft_wrap=True)  # never wrapped: one message per line in logs and pipes


def _print_version(value: bool) -> None:
    if value:
        from patchswarm import __version__

        typer.echo(f"patchswarm {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the version and exit."),
) -> None:
    pass


def error(message: str) -> None:
    """One clear line on stderr."""
    from rich.markup import escape

    # escaped: brackets in the message (paths, regexes) are text, not markup.
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)


def fail(message: str, code: int = 1) -> None:
    """One clear line on stderr, then exit."""
    error(message)
    raise typer.Exit(code)


@app.command()
def doctor(
    fix: bool = typer.Option(False, "--fix", help="Install and start what is missing (Docker engine, base image)."),
    suite: str = typer.Option("bookworm", help="Debian suite of the base image."),
) -> None:
    """Check (and with --fix, repair) what patchswarm needs: a Docker engine and the base sandbox image."""
    from sandbox.base_image import base_image_tag, ensure_base_image, image_exists
    from sandbox.engine import docker_client, ensure_engine

    try:
        if fix:
            console.print(f"docker engine: {ensure_engine()}")
        client = docker_client()
        console.print(f"docker engine: answers (server {client.version().get('Version')})")
        tag = base_image_tag(suite)
        if fix:
            ensure_base_image(client, suite)
        if not image_exists(client, tag):
            fail(f"base image {tag} is missing; run `patchswarm doctor --fix`")
        console.print(f"base image: {tag} present")
    except SandboxError as exc:
        fail(str(exc))


@images_app.command("build-base")
def images_build_base(
    suite: str = typer.Option("bookworm", help="Debian suite: bullseye (Python 3.9), bookworm (3.11), trixie (3.13)."),
    source: str = typer.Option("auto", help="auto (pull an official Python image, else debootstrap), pull, debootstrap."),
    rebuild: bool = typer.Option(False, help="Build even when the image exists."),
    log_dir: Path = typer.Option(Path("/tmp/patchswarm-logs"), help="Where the build log goes."),
) -> None:
    """Build the base sandbox image (offline with debootstrap when no registry answers)."""
    from sandbox.base_image import ensure_base_image
    from sandbox.engine import docker_client

    try:
        tag = ensure_base_image(docker_client(), suite, source, log_dir=log_dir, rebuild=rebuild)
    except SandboxError as exc:
        fail(str(exc))
    typer.echo(tag)


@app.command()
def clean(
    run: str | None = typer.Option(None, "--run", help="Only this run's containers."),
    orphans: bool = typer.Option(False, help="Only containers whose owning process is gone."),
) -> None:
    """Remove leftover sandbox containers (all patchswarm ones by default)."""
    from sandbox.engine import docker_client
    from sandbox.manager import remove_containers

    try:
        removed = remove_containers(docker_client(), run, only_orphans=orphans)
    except SandboxError as exc:
        fail(str(exc))
    typer.echo(f"removed {removed} container(s)")



config_app = typer.Typer(no_args_is_help=True, help="Show the resolved configuration.")
app.add_typer(config_app, name="config")

PresetOpt = typer.Option("default", "--preset", help="Named preset: default (cheap) or codemonkeys (the paper's settings).")
ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config file.")
SetOpt = typer.Option(None, "--set", "-s", help="Override as dotted key=value, e.g. trajectories.num_edits=4 (repeatable).")
ScriptedOpt = typer.Option(None, "--scripted", help="Register a scripted model: NAME=FILE.yaml or NAME=module:callable (repeatable).")
ModelNameOpt = typer.Option(None, "--model-name", help="model_name_or_path in predictions.jsonl (default: the primary model).")
ModelOpt = typer.Option(None, "--model", "-m", help="litellm model name for every role (relevance, primary, selector); "
                        "--set models.roles.ROLE=... still overrides one role.")


def _config(preset: str, path: Path | None, overrides: list[str] | None, extra: list[str] | None = None,
            model: str | None = None):
    from patchswarm.config import ConfigError, load_config, model_overrides

    try:
        # -m first, so that a per-role --set given with it wins for that role.
        return load_config(preset, path, [*model_overrides(model), *(extra or []), *(overrides or [])])
    except ConfigError as exc:
        fail(str(exc))


def _models_by_name(config) -> dict[str, list[str]]:
    """Each distinct model of the run and the roles it serves."""
    roles: dict[str, list[str]] = {}
    for role, model in config.models.roles.model_dump().items():
        roles.setdefault(model, []).append(role)
    return roles


def _model_fix(roles: list[str]) -> str:
    role = roles[0] if len(roles) == 1 else "ROLE"
    return f"pick another with -m MODEL or --set models.roles.{role}=MODEL"


def _check_models(config) -> None:
    """Before any paid work: every model routes to a provider litellm knows and has its key."""
    from agent.model_check import model_problem

    for model, roles in _models_by_name(config).items():
        problem = model_problem(model)
        if problem:
            fail(f"model {model} ({', '.join(roles)}) {problem}; {_model_fix(roles)}")


def _register_scripted(specs: list[str] | None) -> None:
    from patchswarm.scripted_cli import register_scripted_specs

    try:
        register_scripted_specs(specs or [])
    except ValueError as exc:
        fail(str(exc))


def _budget_overrides(max_cost: float | None, max_cost_per_instance: float | None, workers: int | None) -> list[str]:
    extra = []
    if max_cost is not None:
        extra.append(f"budget.max_cost_usd={max_cost}")
    if max_cost_per_instance is not None:
        extra.append(f"budget.max_cost_per_instance_usd={max_cost_per_instance}")
    if workers is not None:
        extra.append(f"workers={workers}")
    return extra


def _run(tasks, config, run_dir: Path, redo: bool, quiet: bool, executor=None, model_name: str | None = None):
    from agent.budget import BudgetUnenforceable
    from patchswarm.pipeline import run_tasks
    from patchswarm.store import RunDirInUse

    try:
        return run_tasks(tasks, config, run_dir, redo=redo, live=False if quiet else None, executor=executor,
                         model_name=model_name)
    except (SandboxError, RunDirInUse, ConnectionError, BudgetUnenforceable) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        console.print(f"interrupted: no containers left behind; rerun the same command to resume ({run_dir})")
        raise typer.Exit(130) from None


@app.command()
def solve(
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
    _register_scripted(scripted)
    config = _config(preset, config_file, overrides, _budget_overrides(max_cost, None, None), model)
    _check_models(config)
    if "://" not in repo and not repo.startswith("git@"):
        repo = str(Path(repo).resolve())
    task = Task(instance_id=task_id_for(repo, commit, issue), repo=repo, commit=commit, issue=issue,
                setup=setup or [], test_cmd=test_cmd)
    run_dir = run_dir or Path("runs") / safe_name(task.instance_id)
    (result,) = _run([task], config, run_dir, redo, quiet, model_name=model_name)
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


def _executor(name: str, ray_address: str | None, scripted: list[str] | None):
    """None for the local executor; Ray is imported only when asked for (an optional dependency)."""
    if name == "local":
        if ray_address:
            fail("--ray-address needs --executor ray")
        return None
    if name != "ray":
        fail(f"unknown executor {name!r}; choose local or ray")
    try:
        from patchswarm.ray_executor import RayExecutor
    except ImportError as exc:
        fail(str(exc))
    return RayExecutor(ray_address, scripted=scripted)


@app.command()
def batch(
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
    _register_scripted(scripted)
    executor = _executor(executor_name, ray_address, scripted)
    config = _config(preset, config_file, overrides, _budget_overrides(max_cost, max_cost_per_instance, workers),
                     model)
    try:
        if tasks_file is not None:
            tasks = load_tasks_jsonl(tasks_file)
            name = tasks_file.stem
        else:
            from patchswarm.swebench.tasks import tasks_from_dataset

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
    _check_models(config)
    run_dir = run_dir or Path("runs") / safe_name(name)
    results = _run(tasks, config, run_dir, redo, quiet, executor, model_name)
    out = Console(soft_wrap=True)  # one record per line, whatever the width
    for r in results:
        out.print(f"{r.instance_id:40} {r.status:9} {r.selection_method or '-':18} ${r.cost_usd:.4f} "
                  f"{(r.errors[0][:80] if r.errors else '')}", highlight=False, markup=False)
    out.print(f"predictions: {run_dir / 'predictions.jsonl'}", highlight=False)
    _exit_for_errors([r.status for r in results])


def _exit_for_errors(statuses: list[str]) -> None:
    """Non-zero when instances ended in error (1: all of them, 3: some), with one line saying how many."""
    from patchswarm.pipeline import exit_code_of

    code = exit_code_of(statuses)
    if code:
        counts = {s: statuses.count(s) for s in ("error", "failed") if s in statuses}
        detail = ", ".join(f"{n} {s}" for s, n in counts.items())
        error(f"{sum(counts.values())} of {len(statuses)} instance(s) ended in error ({detail}); they are not "
              "final: rerun the same command to retry them")
        raise typer.Exit(code)


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


@app.command()
def demo(
    run_dir: Path = typer.Option(Path("runs/demo"), "--run-dir", help="Where the demo run lives."),
    redo: bool = typer.Option(True, "--redo/--resume", help="Start afresh (default) or resume an earlier demo run."),
    quiet: bool = typer.Option(False, "--quiet", help="Line-oriented output."),
) -> None:
    """Fully offline demo: the real pipeline in real sandboxes on a bundled repository, with a scripted model."""
    from patchswarm.demo.run import demo_config, demo_task, print_selection

    _register_scripted(["demo=patchswarm.demo.script:DemoScript"])
    config = demo_config()
    task = demo_task(run_dir)
    console.print("patchswarm demo: scripted model (no key needed), real Docker sandboxes, real tests")
    (result,) = _run([task], config, run_dir, redo, quiet)
    print_selection(result)
    _print_result(result, run_dir)
    if result.status != "solved":
        raise typer.Exit(1)


@app.command("select")
def select_cmd(
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
    from patchswarm.ensemble import select_candidates
    from patchswarm.tasks import TaskError, load_tasks_jsonl
    from selection import load_patch_dir, load_prediction_files

    if (tasks_file is None) == (dataset is None):
        fail("give exactly one of --tasks FILE.jsonl or --dataset NAME_OR_FILE")
    if not predictions and patch_dir is None:
        fail("give candidates: --predictions FILE (repeatable) and/or --patch-dir DIR")
    _register_scripted(scripted)
    config = _config(preset, config_file, overrides, model=model)
    try:
        candidates = load_prediction_files(predictions or [])
        if patch_dir is not None:
            for instance, more in load_patch_dir(patch_dir).items():
                candidates.setdefault(instance, []).extend(more)
        if tasks_file is not None:
            tasks = load_tasks_jsonl(tasks_file)
        else:
            from patchswarm.swebench.tasks import tasks_from_dataset

            tasks = tasks_from_dataset(dataset, split, repo_url)
    except (TaskError, ValueError, OSError) as exc:
        fail(str(exc))
    unknown = sorted(set(candidates) - {t.instance_id for t in tasks})
    if unknown:
        console.print(f"warning: no task for {len(unknown)} instance(s) with candidates, e.g. {unknown[0]}")
    if config.selection.selector_enabled or generate_tests:
        _check_models(config)
    try:
        results = select_candidates(tasks, candidates, config, run_dir, out, generate_tests=generate_tests,
                                    live=False if quiet else None)
    except (SandboxError, ValueError) as exc:  # ValueError: e.g. a budget that cannot be enforced
        fail(str(exc))
    view = Console()
    for instance, result in results.items():
        view.print(f"{instance:40} {result.method:18} {result.chosen_id or '-':20} {result.reason[:80]}",
                   highlight=False, markup=False)
    view.print(f"predictions: {out}", highlight=False)


predictions_app = typer.Typer(no_args_is_help=True, help="Combine prediction files (SWE-bench format).")
app.add_typer(predictions_app, name="predictions")


@predictions_app.command("merge")
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


@config_app.command("show")
def config_show(model: str | None = ModelOpt, preset: str = PresetOpt, config_file: Path | None = ConfigOpt,
                overrides: list[str] = SetOpt) -> None:
    """Print the resolved configuration with every field's description."""
    from patchswarm.config import describe

    typer.echo(describe(_config(preset, config_file, overrides, model=model)))


models_app = typer.Typer(no_args_is_help=True, help="Check the models a run would use, before paying for a run.")
app.add_typer(models_app, name="models")


@models_app.command("check")
def models_check(
    model: str | None = ModelOpt, preset: str = PresetOpt, config_file: Path | None = ConfigOpt,
    overrides: list[str] = SetOpt, scripted: list[str] = ScriptedOpt,
    offline: bool = typer.Option(False, "--offline", help="Only check names and keys; make no call."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for each model's answer."),
) -> None:
    """Each model of the config: a provider litellm knows, its key set, and a one-token call that succeeds."""
    from agent.model_check import fixes_sampling, is_priced, model_problem, ping

    _register_scripted(scripted)
    config = _config(preset, config_file, overrides, model=model)
    out = Console(soft_wrap=True)
    failed = 0
    for name, roles in _models_by_name(config).items():
        problem = model_problem(name)
        took = 0.0
        if problem is None and not offline:
            problem, took = ping(name, timeout_s=timeout)
        if problem:
            failed += 1
            error(f"model {name} ({', '.join(roles)}) {problem}; {_model_fix(roles)}")
            continue
        price = "" if is_priced(name) or name in config.models.price_overrides else \
            "; litellm has no price for it, so budgets cannot count its calls (set models.price_overrides)"
        answered = "" if offline else f", answered in {took:.1f}s"
        fixed = "; it takes no temperature but its own, so models.temperatures do not apply to it" \
            if fixes_sampling(name) else ""
        out.print(f"ok: {name} ({', '.join(roles)}){answered}{price}{fixed}", highlight=False, markup=False)
    if failed:
        raise typer.Exit(1)


@app.command()
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
                          str(sum(i["status"] in ("error", "failed") for i in items)), f"{store.totals()['cost_usd']:.4f}")
        finally:
            store.close()
    Console().print(table)


if __name__ == "__main__":
    app()
