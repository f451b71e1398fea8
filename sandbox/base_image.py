"""The base sandbox image: Debian + python3 + venv + git + patch, a non-root user, the host's CA bundle.

Two ways to get its root filesystem: pull an official `python:<ver>-slim-<suite>` image where a registry
answers, else build it offline with `debootstrap` and `docker import`. Either way the same finishing
step adds the user, the venv and the CA bundle, so both paths give the same sandbox.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import docker
from docker.errors import APIError, ImageNotFound

from sandbox.engine import remove_container
from sandbox.errors import ImageBuildError, ImageError
from sandbox.execution import one_file_tar
from sandbox.labels import KIND_BASE_BUILD, LABEL_KIND
from sandbox.locks import file_lock
from sandbox.manager import owner_labels

SUITE_PYTHON = {"bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13"}
DEFAULT_SUITE = "bookworm"
# iproute2: a grading sandbox may route an address into lo (an offline stand-in for an unroutable host).
DEBOOTSTRAP_PACKAGES = "python3,python3-pip,python3-venv,git,patch,ca-certificates,procps,iproute2"
CA_PATH_IN_IMAGE = "/usr/local/share/patchswarm/host-ca.pem"
VENV = "/opt/venv"

FINISH_SCRIPT = f"""
set -e
if ! command -v git >/dev/null || ! command -v patch >/dev/null || ! command -v ip >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git patch procps iproute2 >/dev/null
fi
getent passwd 1000 >/dev/null || {{
  echo 'sandbox:x:1000:1000:sandbox:/home/sandbox:/bin/bash' >> /etc/passwd
  echo 'sandbox:x:1000:' >> /etc/group
}}
mkdir -p /home/sandbox /repo
python3 -m venv {VENV}
printf '[global]\\ncert = {CA_PATH_IN_IMAGE}\\n' > /etc/pip.conf
git config --system user.name patchswarm
git config --system user.email patchswarm@localhost
git config --system init.defaultBranch main
git config --system safe.directory '*'
git config --system advice.detachedHead false
chown -R 1000:1000 /home/sandbox /repo {VENV}
"""


# A base image built by another recipe (an older patchswarm) is rebuilt, not silently used without what
# this one adds.
BASE_RECIPE = hashlib.sha256(f"{DEBOOTSTRAP_PACKAGES}\n{FINISH_SCRIPT}".encode()).hexdigest()[:16]
LABEL_BASE_RECIPE = "patchswarm.base-recipe"


def base_image_tag(suite: str = DEFAULT_SUITE) -> str:
    return f"patchswarm-base:{suite}"


def suite_for_python(version: str | None) -> tuple[str, str]:
    """The Debian suite whose Python is nearest to `version` (exact when one matches)."""
    if not version:
        return DEFAULT_SUITE, SUITE_PYTHON[DEFAULT_SUITE]

    def key(item: tuple[str, str]) -> tuple[int, int]:
        major, minor = (int(x) for x in item[1].split(".")[:2])
        want_major, want_minor = (int(x) for x in version.split(".")[:2])
        return abs((major - want_major) * 100 + minor - want_minor), minor  # ties: the older Python

    suite, python = min(SUITE_PYTHON.items(), key=key)
    return suite, python


def host_ca_bundle() -> Path | None:
    """The CA bundle pip should trust inside containers: what the host's own tools are told to use."""
    for var in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        value = os.environ.get(var)
        if value and Path(value).is_file():
            return Path(value)
    default = Path("/etc/ssl/certs/ca-certificates.crt")
    return default if default.is_file() else None


def image_exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except ImageNotFound:
        return False


def _host_debian_mirror() -> str | None:
    """The host's own apt mirror, so the offline builder uses whatever mirror or proxy the host reaches."""
    override = os.environ.get("PATCHSWARM_DEBIAN_MIRROR")
    if override:
        return override
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    sources = Path("/etc/apt/sources.list")
    if sources.is_file():
        for line in sources.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1]:
                return parts[1] if not parts[1].startswith("[") else parts[2]
    return None  # debootstrap's own default


def debootstrap_rootfs_image(client: docker.DockerClient, suite: str, log) -> str:
    """Build a minimal Debian root filesystem offline and import it as an image; returns its tag."""
    if shutil.which("debootstrap") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "debootstrap"], check=False, stdout=log, stderr=log,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if shutil.which("debootstrap") is None:
            raise ImageBuildError("debootstrap is not installed and could not be installed", log.name)
    tag = f"patchswarm-rootfs:{suite}"
    with tempfile.TemporaryDirectory(prefix="patchswarm-rootfs-") as root:
        cmd = ["debootstrap", "--variant=minbase", f"--include={DEBOOTSTRAP_PACKAGES}", suite, root]
        mirror = _host_debian_mirror()
        if mirror:
            cmd.append(mirror)
        log.write(f"$ {' '.join(cmd)}\n".encode())
        log.flush()
        if subprocess.run(cmd, stdout=log, stderr=log).returncode != 0:
            raise ImageBuildError(f"debootstrap of Debian {suite} failed", log.name)
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(["docker", "import", "-", tag], stdin=tar.stdout, stdout=log, stderr=log)
        tar.wait()
        if imported.returncode != 0:
            raise ImageBuildError(f"docker import of the Debian {suite} rootfs failed", log.name)
    return tag


def _pull_rootfs_image(client: docker.DockerClient, suite: str, log) -> str:
    ref = f"python:{SUITE_PYTHON[suite]}-slim-{suite}"
    log.write(f"pulling {ref}\n".encode())
    client.images.pull(ref)
    return ref


def finish_base_image(client: docker.DockerClient, rootfs: str, tag: str, log) -> None:
    """User 1000, a venv on PATH, git identity, and the host CA bundle trusted by pip, git and requests."""
    container = client.containers.create(rootfs, ["sleep", "infinity"],
                                         labels={**owner_labels("base-build"), LABEL_KIND: KIND_BASE_BUILD})
    try:
        container.start()
        bundle = host_ca_bundle()
        if bundle:
            container.put_archive("/", one_file_tar(CA_PATH_IN_IMAGE, bundle.read_bytes()))
        exit_code, output = container.exec_run(["bash", "-c", FINISH_SCRIPT])
        log.write(output)
        if exit_code != 0:
            tail = output.decode(errors="replace")[-2000:]
            raise ImageBuildError(f"finishing base image {tag} failed (exit {exit_code})", log.name, tail)
        env = [f"PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               f"VIRTUAL_ENV={VENV}", "HOME=/home/sandbox", "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1"]
        if bundle:
            env += [f"PIP_CERT={CA_PATH_IN_IMAGE}", f"SSL_CERT_FILE={CA_PATH_IN_IMAGE}",
                    f"REQUESTS_CA_BUNDLE={CA_PATH_IN_IMAGE}", f"GIT_SSL_CAINFO={CA_PATH_IN_IMAGE}"]
        repo, _, version = tag.partition(":")
        container.stop(timeout=1)
        container.commit(repository=repo, tag=version, changes=[
            *(f"ENV {e}" for e in env), "WORKDIR /repo", 'CMD ["sleep", "infinity"]',
            f"LABEL {LABEL_KIND}=base", f"LABEL {LABEL_BASE_RECIPE}={BASE_RECIPE}",
        ])
    finally:
        remove_container(client.api, container.id)


def ensure_base_image(
    client: docker.DockerClient, suite: str = DEFAULT_SUITE, source: str = "auto",
    log_dir: Path | None = None, rebuild: bool = False,
) -> str:
    """Make `patchswarm-base:<suite>` exist; idempotent and safe to call concurrently (one builder per suite).

    `source`: auto (pull, else debootstrap), pull, debootstrap.
    """
    if suite not in SUITE_PYTHON:
        raise ImageError(f"unknown Debian suite {suite!r}; choose one of {', '.join(SUITE_PYTHON)}")
    if source not in ("auto", "pull", "debootstrap"):
        raise ImageError(f"unknown base image source {source!r}; choose auto, pull or debootstrap")
    tag = base_image_tag(suite)
    if _current(client, tag) and not rebuild:
        return tag
    log_dir = log_dir or Path(tempfile.gettempdir()) / "patchswarm-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    # Concurrent workers (whatever their log_dir): one builds, the others wait here, then find the image.
    with file_lock(Path(tempfile.gettempdir()) / f"patchswarm-base-{suite}.lock"):
        if _current(client, tag) and not rebuild:
            return tag
        _build_base_image(client, suite, source, tag, log_dir / f"base-image-{suite}.log")
    return tag


def _current(client: docker.DockerClient, tag: str) -> bool:
    """The image exists and was built by this recipe."""
    try:
        labels = client.images.get(tag).labels or {}
    except ImageNotFound:
        return False
    return labels.get(LABEL_BASE_RECIPE) == BASE_RECIPE


def _build_base_image(client: docker.DockerClient, suite: str, source: str, tag: str, log_path: Path) -> None:
    with open(log_path, "wb") as log:
        rootfs = None
        if source in ("auto", "pull"):
            try:
                rootfs = _pull_rootfs_image(client, suite, log)
            except APIError as exc:
                log.write(f"pull failed: {exc}\n".encode())
                if source == "pull":
                    raise ImageError(f"cannot pull the official Python image for {suite}: {exc.explanation}") from None
        if rootfs is None:
            rootfs = debootstrap_rootfs_image(client, suite, log)
        finish_base_image(client, rootfs, tag, log)
