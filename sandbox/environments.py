"""Environment images: a repository at one commit, set up once (with network), cached by content hash.

Setup (e.g. `pip install -e .[test]`) runs at build time with network; sandboxes made from the image
run without. After setup the whole /repo tree becomes one fresh commit, so `reset()` restores build
artefacts too and no history of the source repository exists inside.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from pathlib import Path

import docker
from docker.errors import APIError
from pydantic import BaseModel, Field

from sandbox.base_image import VENV, ensure_base_image, image_exists, suite_for_python
from sandbox.engine import remove_container
from sandbox.errors import ImageBuildError, ImageError
from sandbox.labels import KIND_ENV_BUILD, LABEL_KIND
from sandbox.locks import file_lock
from sandbox.manager import owner_labels
from sandbox.quota import LayerWatch, watch_layer
from sandbox.repos import DEFAULT_CACHE, RepoSource, archive_commit, local_git_dir, resolve_commit
from sandbox.sandbox import REPO_DIR, SANDBOX_USER

BUILD_FORMAT = 2  # bump when the build recipe changes, so old cached images are not reused
DEFAULT_EXCLUDES = "__pycache__/\n*.pyc\n.pytest_cache/\n"
SCRUB_SCRIPT = (
    f"cd {REPO_DIR} && rm -rf .git && git init -q && printf '{DEFAULT_EXCLUDES}' >> .git/info/exclude "
    "&& git add -A -f && git commit -q --no-verify --allow-empty -m base"
)
# Run as root after setup: whatever the sandbox user owns outside /repo and its home directory (the venv,
# what setup left in $HOME or /tmp) becomes root's, so no command can change the environment that later
# commands run in (e.g. a .pth file in site-packages) and reset() only needs to restore /repo and clear
# the user's own new files. pip's cache goes first, so tools can still create ~/.cache at test time.
LOCK_SCRIPT = (
    'home=$(getent passwd 1000 | cut -d: -f6); home=${home:-/home/sandbox}; '
    'rm -rf "$home/.cache/pip"; rmdir "$home/.cache" 2>/dev/null; '
    f'find / -xdev -path {REPO_DIR} -prune -o -user 1000 ! -path "$home" -exec chown -h 0:0 {{}} +'
)


class EnvSpec(BaseModel):
    """How to turn a checkout into a runnable environment."""

    base_image: str | None = Field(None, description="Image to start from; default: the patchswarm base image whose Python is nearest to `python`.")
    python: str | None = Field(None, description="Wanted Python version, e.g. '3.11'. The nearest available is used and recorded.")
    setup: list[str] = Field(default_factory=list, description="Shell commands run in /repo as the sandbox user, with network, e.g. 'pip install -e .[test]'.")
    root_setup: list[str] = Field(default_factory=list, description="Shell commands run as root, with network, before the repository is copied in (system packages, symlinks).")
    test_cmd: str | None = Field(None, description="The repository's own test command, used for regression checks.")
    setup_timeout_s: float = Field(1800, description="Time limit for all setup commands together.")
    disk_limit_mb: int | None = Field(8192, description="The most a build may write into its layer (the engine's disk); past it the build is killed and fails naming the limit. Our largest environment images hold 1.5 GB. None: unbounded.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables for setup and for every container of the image (e.g. SETUPTOOLS_SCM_PRETEND_VERSION).")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels of the image (what it is for; not part of its identity).")
    setup_as_root: bool = Field(False, description="Run `setup` as root (the files it leaves in /repo are then given to the sandbox user). For a layer on an environment image: its locked venv is written in place instead of being copied whole into the layer to be unlocked.")


class EnvImage(BaseModel):
    """A built (or reused) environment image and the facts a result should record."""

    tag: str
    base_image: str
    python: str | None
    repo_sha: str
    test_cmd: str | None = None
    built: bool = False
    build_log: str | None = None
    build_s: float = Field(0.0, description="Seconds this call spent building (0 when the cached image was reused).")


def use_existing_image(client: docker.DockerClient, name: str) -> str:
    """An image used as it is (e.g. an official SWE-bench instance image): present locally or pullable."""
    if image_exists(client, name):
        return name
    try:
        client.images.pull(name)
        return name
    except APIError as exc:
        raise ImageError(f"unknown image {name}: not present locally and pulling failed ({exc.explanation})") from None


def _resolve_base(client: docker.DockerClient, env: EnvSpec) -> tuple[str, str | None]:
    if env.base_image:
        return use_existing_image(client, env.base_image), env.python
    suite, python = suite_for_python(env.python)
    return ensure_base_image(client, suite), python


def env_image_tag(base_image_id: str, repo_sha: str, env: EnvSpec) -> str:
    spec = {"format": BUILD_FORMAT, "base": base_image_id, "sha": repo_sha, "setup": env.setup}
    # Each only when used, so images built before the field existed keep their tags.
    for field in ("root_setup", "env", "setup_as_root"):
        if getattr(env, field):
            spec[field] = getattr(env, field)
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]
    return f"patchswarm-env:{digest}"


def _disk_hint(text: str) -> str:
    """Say so when the engine's disk ran full: the fix is space, not the setup command."""
    if "no space left on device" in text.lower():
        return " (the Docker engine's disk is full: free space under its data root, then build again)"
    return ""


def _tail(path: Path, lines: int = 20) -> str:
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def _stream_exec(client: docker.DockerClient, container_id: str, command: str, log, user: str,
                 env: dict[str, str] | None = None) -> int | None:
    api = client.api
    exec_id = api.exec_create(container_id, ["bash", "-c", command], user=user, workdir=REPO_DIR,
                              environment=env or None)["Id"]
    for chunk in api.exec_start(exec_id, stream=True):
        log.write(chunk)
    log.flush()
    return api.exec_inspect(exec_id).get("ExitCode")


def build_env_image(
    client: docker.DockerClient, repo: RepoSource | None, env: EnvSpec, *, run_id: str = "build",
    log_dir: Path | None = None, cache_dir: Path = DEFAULT_CACHE,
) -> EnvImage:
    """Build (or reuse) the image for `repo` at its commit with `env`'s setup. Safe to call concurrently.

    `repo=None` builds a layer without a repository (only `root_setup`: system packages shared by
    the environments built on it)."""
    git_dir, sha = None, ""
    if repo:
        git_dir = local_git_dir(repo, cache_dir)
        sha = resolve_commit(git_dir, repo.commit, repo.location)
    base, python = _resolve_base(client, env)
    tag = env_image_tag(client.images.get(base).id, sha, env)
    log_dir = log_dir or cache_dir.parent / "build-logs"  # one log per image, kept beside the cache
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"env-{tag.split(':')[1]}.log"
    result = EnvImage(tag=tag, base_image=base, python=python, repo_sha=sha, test_cmd=env.test_cmd,
                      build_log=str(log_path))
    cache_dir.mkdir(parents=True, exist_ok=True)
    # One builder per tag; a second worker waits and then reuses the image.
    with file_lock(cache_dir / f".lock-{tag.split(':')[1]}"):
        if image_exists(client, tag):
            return result
        started = time.monotonic()
        _build(client, git_dir, sha, base, tag, env, run_id, log_path)
    result.built, result.build_s = True, round(time.monotonic() - started, 1)
    return result


def _build(client, git_dir: Path | None, sha: str, base: str, tag: str, env: EnvSpec, run_id: str, log_path: Path) -> None:
    container = client.containers.create(
        base, ["sleep", "infinity"], user="0", working_dir="/",
        labels={**owner_labels(run_id), LABEL_KIND: KIND_ENV_BUILD},
    )
    # One deadline for all setup commands together: past it a watchdog kills the build container,
    # which ends the running command (and frees the per-tag lock the caller holds).
    expired = threading.Event()
    watchdog = threading.Timer(env.setup_timeout_s, _expire, (container, expired))
    layer: LayerWatch | None = None
    try:
        container.start()
        # A setup that writes without end (or a host disk smaller than the build) meets this limit first.
        layer = watch_layer(client.api, container.id, env.disk_limit_mb, what="image build", interval_s=2.0)
        with open(log_path, "wb") as log:
            watchdog.start()
            try:
                _setup(client, container, git_dir, sha, env, log, log_path)
                code = _stream_exec(client, container.id, SCRUB_SCRIPT, log, SANDBOX_USER) if git_dir else 0
                if code != 0:
                    raise ImageBuildError(f"making the base commit failed{_disk_hint(_tail(log_path))}",
                                          str(log_path), _tail(log_path))
                code = _stream_exec(client, container.id, LOCK_SCRIPT, log, "0")
                if code != 0:
                    raise ImageBuildError(f"making the environment read-only failed{_disk_hint(_tail(log_path))}",
                                          str(log_path), _tail(log_path))
            except Exception:
                if not expired.is_set() and not (layer and layer.reason()):
                    raise
            finally:
                watchdog.cancel()
            killed_for = (layer.reason() if layer else None) or (
                f"environment setup timed out after {env.setup_timeout_s:g}s" if expired.is_set() else None)
            if killed_for:
                log.write(f"\n{killed_for}\n".encode())
                log.flush()
                raise ImageBuildError(killed_for, str(log_path), _tail(log_path))
        container.stop(timeout=1)
        repository, _, version = tag.partition(":")
        try:  # the tag is set only by a commit that succeeded: a failed one leaves no half image to reuse
            container.commit(repository=repository, tag=version, changes=[
                f"WORKDIR {REPO_DIR}", 'CMD ["sleep", "infinity"]', f"LABEL {LABEL_KIND}=env",
                f"LABEL patchswarm.repo_sha={sha or 'none'}",
                *(f"LABEL {k}={json.dumps(str(v))}" for k, v in env.labels.items()),
                *(f"ENV {k}={v}" for k, v in env.env.items()),
            ])
        except APIError as exc:
            raise ImageBuildError(f"committing image {tag} failed: {exc.explanation}{_disk_hint(str(exc.explanation))}",
                                  str(log_path), _tail(log_path)) from None
    finally:
        watchdog.cancel()
        if layer is not None:
            layer.stop()
        # Another remover (a Ctrl-C's sweep of the run) may have got there first: a 404 or a 409 from
        # here would replace the build's own error.
        remove_container(client.api, container.id)


def _expire(container, expired: threading.Event) -> None:
    expired.set()
    with contextlib.suppress(Exception):
        container.kill()


def _setup(client, container, git_dir: Path | None, sha: str, env: EnvSpec, log, log_path: Path) -> None:
    """Root setup, the repository at /repo, then setup as the sandbox user (network on)."""
    for command in env.root_setup:
        log.write(f"(root) $ {command}\n".encode())
        code = _stream_exec(client, container.id, command, log, "0", env.env)
        if code != 0:
            raise ImageBuildError(f"environment root setup command {_short(command)!r} failed (exit {code})"
                                  f"{_disk_hint(_tail(log_path))}",
                                  str(log_path), _tail(log_path))
    if git_dir is None:
        return
    container.put_archive(REPO_DIR, archive_commit(git_dir, sha))
    container.exec_run(["chown", "-R", "1000:1000", REPO_DIR])
    if env.setup and not env.setup_as_root:
        # A base that is itself an environment image has a read-only venv (LOCK_SCRIPT): setup, which
        # runs as the sandbox user, may install into it again; LOCK_SCRIPT locks it once more after.
        container.exec_run(["sh", "-c", f"[ ! -d {VENV} ] || chown -R 1000:1000 {VENV}"])
    user = "0" if env.setup_as_root else SANDBOX_USER
    for command in env.setup:
        log.write(f"{'(root) ' if env.setup_as_root else ''}$ {command}\n".encode())
        code = _stream_exec(client, container.id, command, log, user, env.env)
        if code != 0:
            raise ImageBuildError(f"environment setup command {_short(command)!r} failed (exit {code})"
                                  f"{_disk_hint(_tail(log_path))}",
                                  str(log_path), _tail(log_path))
    if env.setup_as_root:  # what setup made in /repo (egg-info, built extensions) is the sandbox user's
        container.exec_run(["sh", "-c", f"chown -R 1000:1000 {REPO_DIR}; rm -rf /root/.cache/pip"])


def _short(command: str, limit: int = 160) -> str:
    """A command as an error names it: its first line, cut (heredocs and long package lists are long)."""
    first = command.strip().splitlines()[0] if command.strip() else command
    return first if len(first) <= limit and "\n" not in command.strip() else first[:limit] + " …"
