"""`patchswarm doctor | models check | config show`: what a run needs, checked before paying for one."""

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
    config_or_fail,
    console,
    error,
    fail,
    model_fix,
    models_by_name,
    scripted_or_fail,
)
from sandbox.errors import SandboxError


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


def config_show(model: str | None = ModelOpt, preset: str = PresetOpt, config_file: Path | None = ConfigOpt,
                overrides: list[str] = SetOpt) -> None:
    """Print the resolved configuration with every field's description."""
    from patchswarm.config import describe

    typer.echo(describe(config_or_fail(preset, config_file, overrides, model=model)))




def models_check(
    ctx: typer.Context,
    model: str | None = ModelOpt, preset: str = PresetOpt, config_file: Path | None = ConfigOpt,
    overrides: list[str] = SetOpt, scripted: list[str] = ScriptedOpt,
    offline: bool = typer.Option(False, "--offline", help="Only check names and keys; make no call."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for each model's answer."),
) -> None:
    """Each model of the config: a provider litellm knows, its key set, and a one-token call that succeeds."""
    from agent.model_check import fixes_sampling, is_priced, model_problem, ping

    providers = scripted_or_fail(ctx, scripted)
    config = config_or_fail(preset, config_file, overrides, model=model)
    out = Console(soft_wrap=True)
    failed = 0
    for name, roles in models_by_name(config).items():
        problem = model_problem(name)
        took = 0.0
        if problem is None and not offline:
            problem, took = ping(name, timeout_s=timeout, providers=providers)
        if problem:
            failed += 1
            error(f"model {name} ({', '.join(roles)}) {problem}; {model_fix(roles)}")
            continue
        price = "" if is_priced(name) or name in config.models.price_overrides else \
            "; litellm has no price for it, so budgets cannot count its calls (set models.price_overrides)"
        answered = "" if offline else f", answered in {took:.1f}s"
        fixed = "; it takes no temperature but its own, so models.temperatures do not apply to it" \
            if fixes_sampling(name) else ""
        out.print(f"ok: {name} ({', '.join(roles)}){answered}{price}{fixed}", highlight=False, markup=False)
    if failed:
        raise typer.Exit(1)



def register(app: typer.Typer) -> None:
    app.command()(doctor)
    config_app = typer.Typer(no_args_is_help=True, help="Show the resolved configuration.")
    app.add_typer(config_app, name="config")
    config_app.command("show")(config_show)
    models_app = typer.Typer(no_args_is_help=True, help="Check the models a run would use, before paying for a run.")
    app.add_typer(models_app, name="models")
    models_app.command("check")(models_check)
