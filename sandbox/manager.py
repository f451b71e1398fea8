"""Create labelled sandboxes, keep warm ones in pools, and make sure none outlive their run.

Every container carries `patchswarm.run=<run id>` plus the owner's pid and its start time, so a
later sweep can tell containers of crashed runs (owner gone) from those of live ones.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from pydantic import BaseModel, ConfigDict, Field
from requests.exceptions import RequestException

from sandbox.engine import remove_container
from sandbox.errors import ImageError, SandboxBroken, SandboxError
from sandbox.labels import (
    KIND_IMAGE_PROBE,
    KIND_SANDBOX,
    LABEL_HOST,
    LABEL_KIND,
    LABEL_PID,
    LABEL_PID_START,
    LABEL_RUN,
)
from sandbox.quota import (
    ImageFacts,
    QuotaVolumes,
    copy_margin_kb,
    probe_image,
    remove_labelled_volumes,
    watch_layer,
    writable_areas,
)
from sandbox.sandbox import REPO_DIR, SANDBOX_USER, Sandbox, owner_ids

# PID 1 of every sandbox: reaps orphans (so killed process trees do not pile up as zombies) and is
# the one process `kill -9 -1` cannot reach, so timeouts never stop the container itself. It must never
# fork: under a fork bomb every pid is taken and a shell init dies of "Cannot fork", taking the sandbox
# (and the timeout) with it. So python3 reaps with wait() when the image has it; the shell loop is the
# fallback for images without python.
_PYTHON_INIT = (
    "import os, signal, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: os._exit(0))\n"
    "while True:\n"
    "    try:\n"
    "        os.wait()\n"
    "    except ChildProcessError:\n"
    "        time.sleep(0.5)\n"
)
INIT_COMMAND = ["sh", "-c", 'command -v python3 >/dev/null 2>&1 && exec python3 -c "$0"; '
                "trap 'exit 0' TERM; while :; do sleep 2 & wait; done", _PYTHON_INIT]


class Limits(BaseModel):
    """Resource limits of one sandbox."""

    model_config = ConfigDict(extra="forbid")  # a typo in the config must not pass silently

    cpus: float = Field(1.0, description="CPU share (docker --cpus).")
    memory_mb: int = Field(2048, description="Memory limit; swap is not allowed beyond it.")
    pids: int = Field(512, description="Maximum number of processes (stops fork bombs).")
    disk_mb: int | None = Field(1024, description=(
        "Disk quota: the most each writable place (the repository beyond its own files, /tmp, /var/tmp, $HOME) "
        "may hold; everything else of a non-root sandbox's root is read-only. The places are tmpfs, so what is "
        "written also counts against `memory_mb`. A root sandbox may also write elsewhere, up to this much "
        "(its container layer, watched; past it the sandbox is killed). None: no quota."))


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def process_start_time(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot; tells a live owner from a reused pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner_labels(run_id: str) -> dict[str, str]:
    """Labels of every container we start: the run, and the owning process so sweeps can tell if it lives."""
    pid = os.getpid()
    return {LABEL_RUN: run_id, LABEL_PID: str(pid), LABEL_PID_START: process_start_time(pid) or "",
            LABEL_HOST: socket.gethostname()}


def owner_alive(labels: dict[str, str]) -> bool:
    if labels.get(LABEL_HOST) != socket.gethostname():
        return True  # another machine's container: not ours to judge
    try:
        pid = int(labels.get(LABEL_PID, "0"))
    except ValueError:
        return False
    return pid > 0 and process_start_time(pid) == labels.get(LABEL_PID_START)


def of_run(label_value: str | None, run_id: str) -> bool:
    """Whether a container's run label belongs to `run_id`: the run itself, or one of its Ray nodes
    (a node labels its sandboxes `<driver run id>-<suffix>`, patchswarm.ray_node)."""
    return label_value is not None and (label_value == run_id or label_value.startswith(f"{run_id}-"))


def remove_containers(client: docker.DockerClient, run_id: str | None = None, only_orphans: bool = False) -> int:
    """Remove labelled containers: of one run (its nodes' too), of every run, or only those whose owner
    process is gone."""
    # Docker's label filter matches whole values only, so a run's node-suffixed labels are picked here
    # (sparse: the listing's own labels, no inspect per container of every run on the engine).
    containers = client.containers.list(all=True, filters={"label": LABEL_RUN}, sparse=True)

    def doomed_labels(labels: dict[str, str]) -> bool:
        return (run_id is None or of_run(labels.get(LABEL_RUN), run_id)) and not (only_orphans and owner_alive(labels))

    doomed = [c for c in containers if doomed_labels(c.attrs.get("Labels") or {})]

    def remove(container) -> None:
        with contextlib.suppress(NotFound, APIError, RequestException):  # RequestException: the wait timed out
            remove_container(client.api, container.id)

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(remove, doomed))
    except RuntimeError:  # at interpreter shutdown (atexit) no new threads may start
        for container in doomed:
            remove(container)
    # Quota volumes go with their containers (a volume in use cannot be removed, so live ones stay).
    remove_labelled_volumes(client, LABEL_RUN, keep=lambda labels: not doomed_labels(labels))
    return len(doomed)


class SandboxManager:
    """Owns every sandbox of one run. Use as a context manager; also cleans up at exit and on SIGTERM."""

    def __init__(self, client: docker.DockerClient, run_id: str | None = None, *, sweep: bool = True,
                 handle_signals: bool = True):
        self.client = client
        self.run_id = run_id or new_run_id()
        self._sandboxes: dict[str, Sandbox] = {}
        self._image_facts: dict[tuple[str, int, str], ImageFacts] = {}
        self._lock = threading.Lock()
        self.closed = False
        self.labels = owner_labels(self.run_id)
        if sweep:
            remove_containers(client, only_orphans=True)
        atexit.register(self.close_all)
        if handle_signals:
            install_termination_handler()

    def create(self, image: str, *, network: bool = False, limits: Limits | None = None,
               user: str = SANDBOX_USER, workdir: str = REPO_DIR, exec_server: bool = True,
               cap_add: tuple[str, ...] = (), hosts: dict[str, str] | None = None) -> Sandbox:
        """Start an isolated container: no network unless asked, non-root, no capabilities, limited.

        `cap_add`: capabilities kept anyway, e.g. for root grading in an image whose files it does not own.
        `hosts`: name → address lines for the container's /etc/hosts (e.g. a host served on loopback)."""
        if self.closed:
            raise SandboxBroken(f"sandbox manager of run {self.run_id} is closed")
        limits = limits or Limits()
        volumes = None
        try:
            uid = owner_ids(user)[0]
            if limits.disk_mb is not None:
                volumes = self._quota_volumes(image, uid, workdir, limits.disk_mb)
            container = self.client.containers.run(
                image, INIT_COMMAND, detach=True, labels={**self.labels, LABEL_KIND: KIND_SANDBOX}, user=user,
                working_dir=workdir,
                network_mode="bridge" if network else "none", cap_drop=["ALL"], cap_add=list(cap_add) or None,
                extra_hosts=dict(hosts) if hosts else None,
                security_opt=["no-new-privileges"], pids_limit=limits.pids,
                mem_limit=f"{limits.memory_mb}m", memswap_limit=f"{limits.memory_mb}m",
                nano_cpus=int(limits.cpus * 1e9), environment={}, stop_signal="SIGKILL",
                # Root may write anywhere: official SWE-bench eval scripts reinstall the package into the
                # image's own environment, so for root the rest of its root is bounded by a LayerWatch.
                read_only=volumes is not None and uid != 0, mounts=volumes.mounts() if volumes else None,
            )
            watch = watch_layer(self.client.api, container.id, limits.disk_mb if uid == 0 else None)
        except ImageNotFound:
            self._drop(volumes)
            raise ImageError(f"unknown image {image}: build it first (patchswarm images build-base)") from None
        except APIError as exc:
            self._drop(volumes)
            # docker-py tries a pull for a missing image; without a registry that fails with a 500.
            if not self._image_exists(image):
                raise ImageError(f"unknown image {image}: not present locally and not pullable") from None
            raise SandboxError(f"cannot start a sandbox from {image}: {exc.explanation}") from None
        except (DockerException, RequestException, OSError) as exc:  # the engine itself went away
            with contextlib.suppress(Exception):
                self._drop(volumes)
            raise SandboxBroken(f"cannot start a sandbox from {image}: engine unreachable ({type(exc).__name__})") from None
        except BaseException:
            self._drop(volumes)
            raise
        if volumes is not None:
            volumes.release_holder()
        sandbox = Sandbox(container, image, user=user, workdir=workdir, use_server=exec_server,
                          on_close=volumes.remove if volumes else None, layer_watch=watch)
        with self._lock:
            self._sandboxes[container.id] = sandbox
        return sandbox

    def _quota_volumes(self, image: str, uid: int, workdir: str, disk_mb: int) -> QuotaVolumes:
        """Size-limited volumes for the sandbox's writable places, filled with the image's content there."""
        key = (image, uid, workdir)
        facts = self._image_facts.get(key)
        if facts is None:
            facts = self._image_facts[key] = probe_image(self.client, image, uid, workdir,
                                                               {**self.labels, LABEL_KIND: KIND_IMAGE_PROBE})
        sizes = {path: disk_mb * 1024 for path in writable_areas(workdir, facts.home)}
        sizes[workdir] = sizes.get(workdir, 0) + facts.workdir_kb + copy_margin_kb(facts.workdir_kb)
        volumes = QuotaVolumes(self.client, image, self.labels, sizes)
        try:
            volumes.prepare()
        except BaseException:
            volumes.remove()
            raise
        return volumes

    @staticmethod
    def _drop(volumes: QuotaVolumes | None) -> None:
        if volumes is not None:
            volumes.remove()

    def _image_exists(self, image: str) -> bool:
        try:
            self.client.images.get(image)
            return True
        except ImageNotFound:
            return False

    def discard(self, sandbox: Sandbox) -> None:
        with self._lock:
            self._sandboxes.pop(sandbox.id, None)
        sandbox.close()

    def close_all(self) -> None:
        """Remove every container of this run, also ones we lost track of (e.g. created mid-crash)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._sandboxes.clear()
        with contextlib.suppress(Exception):
            remove_containers(self.client, self.run_id)
        atexit.unregister(self.close_all)

    def __enter__(self) -> SandboxManager:
        return self

    def __exit__(self, *exc) -> None:
        self.close_all()


def install_termination_handler() -> None:
    """Turn SIGTERM into SystemExit so `with` blocks and atexit run; SIGINT already raises KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _raise_system_exit)


def _raise_system_exit(signum, frame) -> None:
    raise SystemExit(128 + signum)


class SandboxPool:
    """Warm sandboxes of one image, reused across tasks; at most `size` exist at once."""

    def __init__(self, manager: SandboxManager, image: str, size: int = 4, *, network: bool = False,
                 limits: Limits | None = None, user: str = SANDBOX_USER, workdir: str = REPO_DIR):
        self.manager, self.image, self.size = manager, image, size
        self.network, self.limits = network, limits
        self.user, self.workdir = user, workdir  # official SWE-bench images: root at /testbed
        self._idle: list[Sandbox] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)
        self._async_slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
        self.created = 0

    def _take(self) -> Sandbox:
        with self._lock:
            sandbox = self._idle.pop() if self._idle else None
        if sandbox is None:
            sandbox = self.manager.create(self.image, network=self.network, limits=self.limits, user=self.user,
                                          workdir=self.workdir)
            self.created += 1
        elif sandbox.dirty:
            try:
                sandbox.reset()
            except SandboxBroken:
                self.manager.discard(sandbox)
                return self._take()
        return sandbox

    def _give(self, sandbox: Sandbox, broken: bool) -> None:
        if broken or sandbox.closed:
            self.manager.discard(sandbox)
            return
        with self._lock:
            self._idle.append(sandbox)

    @contextlib.contextmanager
    def _returned_after_use(self, sandbox: Sandbox) -> Iterator[Sandbox]:
        broken = False
        try:
            yield sandbox
        except SandboxBroken:
            broken = True
            raise
        finally:
            self._give(sandbox, broken)

    @contextlib.contextmanager
    def acquire(self) -> Iterator[Sandbox]:
        """A sandbox at the base state; blocks while `size` are in use."""
        with self._slots, self._returned_after_use(self._take()) as sandbox:
            yield sandbox

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[Sandbox]:
        """Async variant: waits on an asyncio semaphore, never blocking an executor thread while queued."""
        loop = asyncio.get_running_loop()
        slots = self._async_slots.setdefault(loop, asyncio.Semaphore(self.size))
        async with slots:
            with self._returned_after_use(await asyncio.to_thread(self._take)) as sandbox:
                yield sandbox

    def image_id(self) -> str:
        """The image's content id; the tag alone may be rebuilt with other content."""
        try:
            return self.manager.client.images.get(self.image).id
        except Exception:  # noqa: BLE001 - an unreachable engine shows up later as sandbox failures
            return self.image

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for sandbox in idle:
            self.manager.discard(sandbox)
