"""Disk used by the fidelity runs' images (each shared layer once) and the machine they ran on."""

from __future__ import annotations

import os
import platform
import subprocess

LAYER_KINDS = ("instance", "env", "system + base")


def union_bytes(histories: dict[str, list[dict]], env_ids: set[str], system_ids: set[str]) -> dict[str, int]:
    """Bytes on disk of a set of images per layer kind, each shared layer counted once.

    `histories`: image -> its Docker history (newest layer first, as the API gives it). Walking down from
    the instance image, layers are the instance's until the environment image's top, then the
    environment's until the system image's top. Layers are keyed by their image id (ours are committed
    containers) or, for pulled ones, by what made them."""
    seen: set[tuple] = set()
    by_kind = dict.fromkeys(LAYER_KINDS, 0)
    for history in histories.values():
        kind = "instance"
        for entry in history:
            image_id = entry.get("Id", "<missing>")
            if image_id in env_ids:
                kind = "env"
            elif image_id in system_ids:
                kind = "system + base"
            key = (image_id,) if image_id != "<missing>" else \
                (entry.get("Created"), entry.get("CreatedBy"), entry.get("Size"))
            if key not in seen:
                seen.add(key)
                by_kind[kind] += entry.get("Size", 0)
    return by_kind


def image_disk(records) -> str:
    """`docker history` of every image the runs graded in (their parents included: env, system, base)."""
    try:
        import docker

        client = docker.from_env()
        histories, missing = {}, 0
        for tag in sorted({r["image"] for r in records if r.get("image")}):
            try:
                histories[tag] = client.api.history(tag)
            except docker.errors.ImageNotFound:
                missing += 1
        ids = {kind: {i.id for i in client.images.list(filters={"label": f"patchswarm.layer=swebench-{kind}"})}
               for kind in ("env", "system")}
    except Exception as exc:  # noqa: BLE001 - the table is still worth writing without Docker
        return f"Not measured ({exc})."
    if not histories:
        return "Not measured (no image of these runs is left)."
    by_kind = union_bytes(histories, ids["env"], ids["system"])
    parts = ", ".join(f"{kind} {size / 2**30:.2f} GiB" for kind, size in by_kind.items())
    return (f"{len(histories)} instance images with their environment, system and base layers, each shared "
            f"layer counted once: **{sum(by_kind.values()) / 2**30:.2f} GiB** ({parts})"
            + (f"; {missing} images already pruned, not counted" if missing else "") + ".")


def machine() -> str:
    cores = os.cpu_count()
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        memory = 0
    docker = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True)
    return (f"{platform.node()} ({platform.system()} {platform.machine()}, {cores} cores shared, "
            f"{memory:.0f} GiB, Docker {docker.stdout.strip() or '?'})")
