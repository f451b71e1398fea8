"""Connect to a Docker engine, starting one when this machine has none running.

The offline machines this project runs on ship a docker client but no engine; `ensure_engine`
installs Debian's `docker.io` when missing and starts `dockerd` in the background.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import docker
from docker.errors import APIError, DockerException, NotFound

from sandbox.errors import EngineUnavailable

DEFAULT_DOCKERD_LOG = Path("/var/log/patchswarm-dockerd.log")


def docker_client(timeout: int = 300) -> docker.DockerClient:
    """A client whose engine answered a ping, or `EngineUnavailable` with a one-line fix."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except (DockerException, OSError) as exc:
        raise EngineUnavailable(
            f"no Docker engine answers at {host} ({type(exc).__name__}); "
            "run `patchswarm doctor --fix` (or scripts/bootstrap.sh) to install and start one"
        ) from None
    return client


def remove_container(api: docker.APIClient, container_id: str, wait_s: float = 60) -> None:
    """Force-remove a container and return once it is gone. When another remover (a pool thread, a sweep,
    the run's close) got there first, the engine answers 409 "removal already in progress" at once: then
    wait for that removal to finish, so "nothing left" holds when this returns (and its volumes can go)."""
    try:
        api.remove_container(container_id, force=True)
    except NotFound:
        return
    except APIError as exc:
        if exc.status_code != 409 or "in progress" not in str(exc.explanation or ""):
            raise
        try:
            api.wait(container_id, timeout=wait_s, condition="removed")
        except NotFound:
            pass


def engine_answers() -> bool:
    try:
        docker_client(timeout=10).close()
        return True
    except EngineUnavailable:
        return False


def _apt_install(packages: list[str], log) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, stdout=log, stderr=log, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, stdout=log, stderr=log, env=env)


def ensure_engine(wait_s: float = 90, log_path: Path = DEFAULT_DOCKERD_LOG, install: bool = True) -> str:
    """Make a Docker engine answer; returns a short description of what was done.

    Idempotent: when an engine already answers, nothing happens.
    """
    if engine_answers():
        return "engine already running"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    actions = []
    with open(log_path, "ab") as log:
        if shutil.which("dockerd") is None:
            if not install or shutil.which("apt-get") is None:
                raise EngineUnavailable("no Docker engine and no `dockerd` binary; install Docker first")
            _apt_install(["docker.io"], log)
            actions.append("installed docker.io")
        # A session of its own so Ctrl-C in the caller's terminal does not stop the engine.
        subprocess.Popen(["dockerd"], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        actions.append(f"started dockerd (log: {log_path})")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if engine_answers():
            return "; ".join(actions)
        time.sleep(0.5)
    raise EngineUnavailable(f"dockerd did not answer within {wait_s:.0f}s; see {log_path}")
