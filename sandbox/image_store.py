"""The environment images patchswarm built: list them, and prune them by age or by total size.

Only images carrying `patchswarm.kind=env` (what `build_env_image` commits) are ever listed for pruning:
base images, root filesystems and everything else on a shared engine are never touched. `match` narrows
further (e.g. to one test's own label).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import docker
from docker.errors import APIError, ImageNotFound
from pydantic import BaseModel

from sandbox.labels import LABEL_KIND

PRUNABLE_KIND = "env"


class StoredImage(BaseModel):
    id: str
    tags: list[str]
    created: float
    size: int  # bytes of its own layers (what removing it frees, unless other images share them)
    containers: int
    labels: dict[str, str]

    @property
    def age_s(self) -> float:
        return max(0.0, time.time() - self.created)


class PruneResult(BaseModel):
    removed: list[StoredImage] = []
    kept: list[StoredImage] = []
    skipped: dict[str, str] = {}  # image id -> why it could not be removed (in use, has child images)
    freed: int = 0


def list_images(client: docker.DockerClient, match: dict[str, str] | None = None) -> list[StoredImage]:
    """patchswarm's environment images (oldest first), with the bytes only they hold."""
    wanted = {LABEL_KIND: PRUNABLE_KIND, **(match or {})}
    found = []
    for row in client.df().get("Images") or []:
        labels = row.get("Labels") or {}
        if any(labels.get(k) != v for k, v in wanted.items()):
            continue
        shared = max(0, row.get("SharedSize") or 0)
        found.append(StoredImage(
            id=row["Id"], tags=[t for t in row.get("RepoTags") or [] if t != "<none>:<none>"],
            created=float(row.get("Created") or 0), size=max(0, (row.get("Size") or 0) - shared),
            containers=max(0, row.get("Containers") or 0), labels=labels,
        ))
    return sorted(found, key=lambda image: image.created)


def _victims(images: list[StoredImage], older_than_s: float | None, max_total_bytes: int | None) -> list[StoredImage]:
    chosen = {i.id for i in images if older_than_s is not None and i.age_s > older_than_s}
    if max_total_bytes is not None:
        total = sum(i.size for i in images if i.id not in chosen)
        for image in images:  # oldest first, until what is left fits
            if total <= max_total_bytes:
                break
            if image.id not in chosen:
                chosen.add(image.id)
                total -= image.size
    # Newest first: an instance layer goes before the environment layer it was built on.
    return sorted((i for i in images if i.id in chosen), key=lambda i: i.created, reverse=True)


def prune_images(client: docker.DockerClient, *, older_than_s: float | None = None,
                 max_total_bytes: int | None = None, match: dict[str, str] | None = None,
                 dry_run: bool = False) -> PruneResult:
    """Remove patchswarm environment images older than `older_than_s`, then the oldest until the rest
    take at most `max_total_bytes`. Images in use by a container, or that others are built on, stay."""
    images = list_images(client, match)
    victims = _victims(images, older_than_s, max_total_bytes)
    result = PruneResult()
    for image in victims:
        if image.containers:
            result.skipped[image.id] = "used by a container"
            continue
        if not dry_run:
            try:
                _remove(client, image)
            except APIError as exc:
                result.skipped[image.id] = str(exc.explanation or exc).splitlines()[0]
                continue
        result.removed.append(image)
        result.freed += image.size
    gone = {i.id for i in result.removed}
    result.kept = [i for i in images if i.id not in gone]
    return result


def _remove(client: docker.DockerClient, image: StoredImage) -> None:
    names: Iterable[str] = image.tags or [image.id]
    for name in names:  # by tag: an id with several tags would need force, which could hit others' tags
        try:
            client.images.remove(name, noprune=False)
        except ImageNotFound:
            pass


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def parse_size(text: str) -> int:
    """'20G', '500MB', '1.5T', '123' (bytes) as bytes."""
    units = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9, "GB": 10**9,
             "T": 10**12, "TB": 10**12}
    stripped = text.strip().upper()
    number = stripped.rstrip("KMGTB")
    unit = stripped[len(number):]
    try:
        return int(float(number) * units[unit])
    except (ValueError, KeyError):
        raise ValueError(f"not a size: {text!r} (e.g. 20G, 500MB)") from None


def parse_age(text: str) -> float:
    """'7d', '12h', '30m', '45s' as seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    stripped = text.strip().lower()
    try:
        return float(stripped[:-1]) * units[stripped[-1]]
    except (ValueError, KeyError, IndexError):
        raise ValueError(f"not an age: {text!r} (e.g. 7d, 12h, 30m)") from None
