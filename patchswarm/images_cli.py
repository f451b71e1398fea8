"""`patchswarm images list` and `patchswarm images prune`: the environment images patchswarm built."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.console import Console


def _fail(message: str) -> None:
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(1)


def _label(labels: dict[str, str]) -> str:
    what = labels.get("patchswarm.instance") or labels.get("patchswarm.repo") or ""
    layer = labels.get("patchswarm.layer", "env")
    return f"{layer} {what}".strip()


def images_list() -> None:
    """patchswarm's environment images, oldest first, with the disk only each holds and the total."""
    from sandbox.engine import docker_client
    from sandbox.errors import SandboxError
    from sandbox.image_store import human_size, list_images

    try:
        images = list_images(docker_client())
    except SandboxError as exc:
        _fail(str(exc))
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
    from sandbox.errors import SandboxError
    from sandbox.image_store import human_size, parse_age, parse_size, prune_images

    if older_than is None and max_size is None:
        _fail("say what to prune: --older-than AGE and/or --max-size SIZE")
    try:
        age = parse_age(older_than) if older_than else None
        size = parse_size(max_size) if max_size else None
    except ValueError as exc:
        _fail(str(exc))
    try:
        result = prune_images(docker_client(), older_than_s=age, max_total_bytes=size, dry_run=dry_run)
    except SandboxError as exc:
        _fail(str(exc))
    verb = "would remove" if dry_run else "removed"
    for image in result.removed:
        typer.echo(f"{verb} {image.tags[0] if image.tags else image.id[7:19]}  {human_size(image.size)}")
    for image_id, why in result.skipped.items():
        typer.echo(f"kept {image_id[7:19]}: {why}")
    typer.echo(f"{verb} {len(result.removed)} image(s), {human_size(result.freed)}; "
               f"{len(result.kept)} left, {human_size(sum(i.size for i in result.kept))}")


def register(images_app: typer.Typer) -> None:
    images_app.command("list")(images_list)
    images_app.command("prune")(images_prune)
