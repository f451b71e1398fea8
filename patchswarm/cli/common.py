"""What every command shares: the error line, the config and model options, running tasks, and exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from sandbox.errors import SandboxError

console = Console(stderr=True, soft_wrap=True)  # never wrapped: one message per line in logs and pipes


def error(message: str) -> None:
    """One clear line on stderr."""
    from rich.markup import escape

    # escaped: brackets in the message (paths, regexes) are text, not markup.
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)


def fail(message: str, code: int = 1) -> NoReturn:
    """One clear line on stderr, then exit."""
    error(message)
    raise typer.Exit(code)


PresetOpt = typer.Option("default", "--preset", help="Named preset: default (cheap) or codemonkeys (the paper's settings).")
ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config file.")
SetOpt = typer.Option(None, "--set", "-s", help="Override as dotted key=value, e.g. trajectories.num_edits=4 (repeatable).")
ScriptedOpt = typer.Option(None, "--scripted", help="Register a scripted model: NAME=FILE.yaml or NAME=module:callable (repeatable).")
ModelNameOpt = typer.Option(None, "--model-name", help="model_name_or_path in predictions.jsonl (default: the primary model).")
ModelOpt = typer.Option(None, "--model", "-m", help="litellm model name for every role (relevance, primary, selector); "
                        "--set models.roles.ROLE=... still overrides one role.")


def config_or_fail(preset: str, path: Path | None, overrides: list[str] | None, extra: list[str] | None = None,
                   model: str | None = None):
    from patchswarm.config import ConfigError, load_config, model_overrides

    try:
        # -m first, so that a per-role --set given with it wins for that role.
        return load_config(preset, path, [*model_overrides(model), *(extra or []), *(overrides or [])])
    except ConfigError as exc:
        fail(str(exc))


def models_by_name(config) -> dict[str, list[str]]:
    """Each distinct model of the run and the roles it serves."""
    roles: dict[str, list[str]] = {}
    for role, model in config.models.roles.model_dump().items():
        roles.setdefault(model, []).append(role)
    return roles


def model_fix(roles: list[str]) -> str:
    role = roles[0] if len(roles) == 1 else "ROLE"
    return f"pick another with -m MODEL or --set models.roles.{role}=MODEL"


def check_models(config) -> None:
    """Before any paid work: every model routes to a provider litellm knows and has its key."""
    from agent.model_check import model_problem

    for model, roles in models_by_name(config).items():
        problem = model_problem(model)
        if problem:
            fail(f"model {model} ({', '.join(roles)}) {problem}; {model_fix(roles)}")


def scripted_or_fail(ctx: typer.Context, specs: list[str] | None, bad_spec_code: int = 1):
    """The model providers `--scripted` specs make (agent.llm.Providers), handed to the run's model client.

    An in-process caller (a test) may hand in its own `ScriptedLLM` as the command's `obj`
    (`CliRunner().invoke(app, args, obj=handler)`); the specs are added to it.
    """
    from agent.scripted import ScriptedLLM
    from patchswarm.scripted_cli import scripted_providers

    injected = ctx.find_root().obj
    try:
        return scripted_providers(specs or [], injected if isinstance(injected, ScriptedLLM) else None)
    except ValueError as exc:
        fail(str(exc), bad_spec_code)


def budget_overrides(max_cost: float | None, max_cost_per_instance: float | None, workers: int | None) -> list[str]:
    extra = []
    if max_cost is not None:
        extra.append(f"budget.max_cost_usd={max_cost}")
    if max_cost_per_instance is not None:
        extra.append(f"budget.max_cost_per_instance_usd={max_cost_per_instance}")
    if workers is not None:
        extra.append(f"workers={workers}")
    return extra


def executor_or_fail(name: str, ray_address: str | None, scripted: list[str] | None):
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


def run_or_exit(tasks, config, run_dir: Path, redo: bool, quiet: bool, executor=None, model_name: str | None = None,
                providers=None):
    """Run the tasks; a failure of the machinery is one line, Ctrl-C says how to resume."""
    from agent.budget import BudgetUnenforceable
    from patchswarm.pipeline import run_tasks
    from patchswarm.store import RunDirInUse

    try:
        return run_tasks(tasks, config, run_dir, redo=redo, live=False if quiet else None, executor=executor,
                         model_name=model_name, providers=providers)
    except (SandboxError, RunDirInUse, ConnectionError, BudgetUnenforceable) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        console.print(f"interrupted: no containers left behind; rerun the same command to resume ({run_dir})")
        raise typer.Exit(130) from None


def exit_for_errors(statuses: list[str]) -> None:
    """Non-zero when instances ended in error (1: all of them, 3: some), with one line saying how many."""
    from patchswarm.results import exit_code_of

    code = exit_code_of(statuses)
    if code:
        counts = {s: statuses.count(s) for s in ("error", "failed") if s in statuses}
        detail = ", ".join(f"{n} {s}" for s, n in counts.items())
        error(f"{sum(counts.values())} of {len(statuses)} instance(s) ended in error ({detail}); they are not "
              "final: rerun the same command to retry them")
        raise typer.Exit(code)
