"""The `patchswarm` command line."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from pathlib import Path  # noqa: E402

import typer  # noqa: E402
from rich.console import Console  # noqa: E402

from sandbox.errors import SandboxError  # noqa: E402

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
images_app = typer.Typer(no_args_is_help=True, help="Build and inspect sandbox images.")
app.add_typer(images_app, name="images")
console = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    """One clear line on stderr, then exit."""
    console.print(f"[bold red]error:[/] {message}", highlight=False)
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


if __name__ == "__main__":
    app()
