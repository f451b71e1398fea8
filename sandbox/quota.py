"""Disk quota of a sandbox: its writable places are size-limited tmpfs volumes; the rest of its root is
read-only (for a non-root sandbox user), so nothing it writes can fill the host's disk.

Why this design (measured on Docker 20.10, overlay2 on ext4, cgroup v1):
- `--storage-opt size=` is refused: overlay2 supports it only on xfs with project quotas.
- `--tmpfs` mounts exist only in the container's mount namespace; the archive API (put_archive /
  get_archive) then reads and writes the hidden directory beneath them.
- A volume of the local driver with `type=tmpfs,o=size=` is mounted by the daemon on its own side, so
  the archive API sees it, and it needs no root on the client (a loop-mounted ext4 image does: the local
  driver refuses `o=loop`, so the client would have to run losetup itself and clean loop devices after crashes).
- Pages written to tmpfs are charged to the writer's memory cgroup: what a sandbox writes also counts
  against its memory limit, so together all its areas stay within `memory_mb` of host memory.
- Root may write anywhere (official SWE-bench eval scripts reinstall into the image's own environment),
  so a root sandbox's root cannot be read-only; and an image build writes its layer wherever setup puts
  files. For both, `LayerWatch` polls the container's writable layer (`SizeRw`, what it wrote outside its
  volumes, on the engine's disk) and kills it past its limit: the overshoot is what it writes in one poll.
- Docker copies the image's content into an empty volume when the container is created, but mounts the
  volume only for the copy; a tmpfs loses it at the unmount. A short-lived holder container keeps every
  volume mounted from before the copy until the sandbox runs.
"""

from __future__ import annotations

import contextlib
import posixpath
import threading
import uuid

import docker
from docker.errors import APIError, DockerException, NotFound
from docker.types import Mount
from requests.exceptions import RequestException

from sandbox.engine import remove_container
from sandbox.labels import KIND_QUOTA_HOLDER, LABEL_KIND, LABEL_VOLUME_OF

SCRATCH_AREAS = ("/tmp", "/var/tmp")


def copy_margin_kb(content_kb: int) -> int:
    """Room beyond the copied content: du counts the same 4 KiB blocks tmpfs takes; a little slack for rounding."""
    return content_kb // 50 + 1024

_PROBE = 'du -sk "$1" 2>/dev/null | cut -f1; getent passwd "$2" | cut -d: -f6'


class ImageFacts:
    """What sizing the volumes of one (image, user, workdir) needs: the workdir's size and the user's home."""

    def __init__(self, workdir_kb: int, home: str | None):
        self.workdir_kb, self.home = workdir_kb, home


def probe_image(client: docker.DockerClient, image: str, uid: int, workdir: str, labels: dict[str, str]) -> ImageFacts:
    """One throwaway container of `image` measures its workdir and finds the user's home directory."""
    raw = client.containers.run(image, ["sh", "-c", _PROBE, "probe", workdir, str(uid)], remove=True,
                                labels=labels, network_mode="none", user="0:0", entrypoint=[])
    lines = raw.decode("utf-8", errors="replace").splitlines() + ["", ""]
    size = int(lines[0]) if lines[0].strip().isdigit() else 0
    home = lines[1].strip() or ("/root" if uid == 0 else None)
    return ImageFacts(size, home)


def writable_areas(workdir: str, home: str | None) -> list[str]:
    """The places a sandbox may write to, outermost only (a home inside the repository is covered by it)."""
    areas: list[str] = []
    for path in (workdir, *SCRATCH_AREAS, home):
        path = posixpath.normpath(path) if path else ""
        if not path.startswith("/") or path == "/" or path.startswith("/proc") or path.startswith("/dev"):
            continue
        if any(path == a or path.startswith(a + "/") for a in areas):
            continue
        areas = [a for a in areas if not a.startswith(path + "/")] + [path]
    return areas


class QuotaVolumes:
    """The tmpfs volumes of one sandbox. `prepare()` before the container is created, `release_holder()`
    once it runs, `remove()` after it is gone."""

    def __init__(self, client: docker.DockerClient, image: str, labels: dict[str, str], sizes_kb: dict[str, int]):
        self.client, self.image = client, image
        self.key = uuid.uuid4().hex[:12]
        self.labels = {**labels, LABEL_VOLUME_OF: self.key}
        self.sizes_kb = sizes_kb
        self.names = {path: f"patchswarm-{self.key}-{i}" for i, path in enumerate(sizes_kb)}
        self._holder = None
        self._lock = threading.Lock()

    def prepare(self) -> None:
        for path, name in self.names.items():
            self.client.volumes.create(name, driver="local", labels=self.labels, driver_opts={
                "type": "tmpfs", "device": "tmpfs", "o": f"size={self.sizes_kb[path]}k"})
        mounts = [Mount(f"/patchswarm-hold/{i}", name, type="volume") for i, name in enumerate(self.names.values())]
        self._holder = self.client.containers.run(
            self.image, ["sleep", "600"], detach=True, labels={**self.labels, LABEL_KIND: KIND_QUOTA_HOLDER}, mounts=mounts,
            network_mode="none",
            user="0:0", entrypoint=[], stop_signal="SIGKILL")

    def mounts(self) -> list[Mount]:
        return [Mount(path, name, type="volume") for path, name in self.names.items()]

    def release_holder(self) -> None:
        with self._lock:
            holder, self._holder = self._holder, None
        if holder is not None:
            # Waits out a concurrent removal (409) too: the volumes cannot go while the holder exists.
            with contextlib.suppress(DockerException, RequestException, OSError):
                remove_container(self.client.api, holder.id)

    def remove(self) -> None:
        self.release_holder()
        for name in self.names.values():  # an engine gone: the sweep of a later run removes them
            with contextlib.suppress(DockerException, RequestException, OSError):
                self.client.api.remove_volume(name, force=True)


def remove_labelled_volumes(client: docker.DockerClient, label: str, keep) -> int:
    """Remove sandbox volumes carrying `label` (after their containers are gone), except those `keep` spares."""
    removed = 0
    try:
        volumes = client.volumes.list(filters={"label": label})
    except APIError:
        return 0
    for volume in volumes:
        if LABEL_VOLUME_OF not in (volume.attrs.get("Labels") or {}) or keep(volume.attrs.get("Labels") or {}):
            continue
        with contextlib.suppress(NotFound, APIError):
            volume.remove(force=True)
            removed += 1
    return removed


class LayerWatch:
    """Kills a container once its writable layer holds more than `limit_mb` (polled every `interval_s`).

    `exceeded_mb` is then the size seen, and `reason()` says so in one line."""

    def __init__(self, api: docker.APIClient, container_id: str, limit_mb: int, interval_s: float = 1.0,
                 what: str = "sandbox"):
        self.api, self.container_id, self.limit_mb = api, container_id, limit_mb
        self.interval_s, self.what = interval_s, what
        self.exceeded_mb: float | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name=f"layer-watch-{container_id[:12]}")

    def start(self) -> LayerWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()

    def reason(self) -> str | None:
        if self.exceeded_mb is None:
            return None
        return (f"disk limit exceeded: the {self.what} wrote {self.exceeded_mb:.0f} MiB outside its volumes "
                f"(limit {self.limit_mb} MiB)")

    def _watch(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                rows = self.api.containers(all=True, size=True, filters={"id": self.container_id})
            except (DockerException, RequestException, OSError):
                continue  # the engine is away for a moment: look again
            if not rows:
                return  # removed: nothing left to watch
            size = rows[0].get("SizeRw") or 0  # the engine omits a zero size
            if size > self.limit_mb * 2**20:
                self.exceeded_mb = size / 2**20
                with contextlib.suppress(DockerException, RequestException, OSError):
                    self.api.kill(self.container_id)
                return


def watch_layer(api: docker.APIClient, container_id: str, limit_mb: int | None, *, what: str = "sandbox",
                interval_s: float = 1.0) -> LayerWatch | None:
    return LayerWatch(api, container_id, limit_mb, interval_s, what).start() if limit_mb is not None else None

