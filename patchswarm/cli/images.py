"""`patchswarm images build-base | list | prune`: the base sandbox image, and the environment images patchswarm built."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from patchswarm.cli.common import fail
from sandbox.errors import SandboxError


def _label(labels: dict[str, str]) -> str:
    what = labels.get("patchswarm.instance") or labels.get("patchswarm.repo") or ""
    layer = labels.get("patchswarm.layer", "env")
    return f"{layer} {what}".strip()


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


def images_list() -> None:
    """patchswarm's environment images, oldest first, with the disk only each holds and the total."""
    from sandbox.engine import docker_client
    from sandbox.image_store import human_size, list_images

    try:
        images = list_images(docker_client())
    except SandboxError as exc:
        fail(str(exc))
    for image in images:
        created = datetime.fromtimestamp(image.created, UTC).strftime("%Y-%m-%d %H:%M")
        name = image.tags[0] if image.tags else image.id[7:19]
        typer.echo(f"{name}  {created}  {human_size(image.size):>9}  {_label(image.labels)}")
    typer.echo(f"{len(images)} image(s), {human_size(sum(i.size for i in images))}")


def images_prune(
    older_than: str | None = typer.Option(None, "--older-than", help="Remove images built longer ago than this (e.g. 7d, 12h)."),
    max_size: str | None = typer.Option(None, "--max-size", help="Then remove the oldest until the rest take at most this (e.g. 40G)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be removed."),
) -> None:
    """Remove patchswarm's environment images by age or total size (never any other image)."""
    from sandbox.engine import docker_client
    from sandbox.image_store import human_size, parse_age, parse_size, prune_images

    if older_than is None and max_size is None:
        fail("say what to prune: --older-than AGE and/or --max-size SIZE")
    try:
        age = parse_age(older_than) if older_than else None
        size = parse_size(max_size) if max_size else None
    except ValueError as exc:
        fail(str(exc))
    try:
        result = prune_images(docker_client(), older_than_s=age, max_total_bytes=size, dry_run=dry_run)
    except SandboxError as exc:
        fail(str(exc))
    verb = "would remove" if dry_run else "removed"
    for image in result.removed:
        typer.echo(f"{verb} {image.tags[0] if image.tags else image.id[7:19]}  {human_size(image.size)}")
    for image_id, why in result.skipped.items():
        typer.echo(f"kept {image_id[7:19]}: {why}")
    typer.echo(f"{verb} {len(result.removed)} image(s), {human_size(result.freed)}; "
               f"{len(result.kept)} left, {human_size(sum(i.size for i in result.kept))}")


def register(app: typer.Typer) -> None:
    images_app = typer.Typer(no_args_is_help=True, help="Build and inspect sandbox images.")
    app.add_typer(images_app, name="images")
    images_app.command("build-base")(images_build_base)
    images_app.command("list")(images_list)
    images_app.command("prune")(images_prune)
