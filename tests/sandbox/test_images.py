from __future__ import annotations

import threading
import time
import uuid

import pytest

from sandbox import base_image as base_image_module
from sandbox.base_image import (
    BASE_RECIPE,
    LABEL_BASE_RECIPE,
    base_image_tag,
    ensure_base_image,
    suite_for_python,
)
from sandbox.engine import remove_container
from sandbox.environments import EnvSpec, build_env_image
from sandbox.errors import ImageBuildError, ImageError
from sandbox.labels import KIND_ENV_BUILD, LABEL_KIND, LABEL_RUN
from sandbox.repos import RepoSource


def test_nearest_python_suite():
    assert suite_for_python("3.11") == ("bookworm", "3.11")
    assert suite_for_python("3.9") == ("bullseye", "3.9")
    assert suite_for_python("3.8") == ("bullseye", "3.9")
    assert suite_for_python("3.12") == ("bookworm", "3.11")
    assert suite_for_python(None) == ("bookworm", "3.11")


def test_base_image_has_user_venv_and_ca_bundle(manager, base_image):
    sb = manager.create(base_image)
    out = sb.exec("id -un; which python3; git --version; patch --version | head -1; cat /etc/pip.conf; echo $PIP_CERT").output
    assert out.splitlines()[0] == "sandbox"
    assert "/opt/venv/bin/python3" in out
    assert "cert = /usr/local/share/patchswarm/host-ca.pem" in out


def test_env_image_is_cached_by_content(docker_client, calc_repo, tmp_path):
    path, shas = calc_repo
    spec = EnvSpec(setup=["echo built > build-marker.txt"])
    first = build_env_image(docker_client, RepoSource(location=str(path), commit=shas[0]), spec, log_dir=tmp_path)
    again = build_env_image(docker_client, RepoSource(location=str(path), commit=shas[0]), spec, log_dir=tmp_path)
    other = build_env_image(docker_client, RepoSource(location=str(path), commit=shas[1]), spec, log_dir=tmp_path)
    assert first.tag == again.tag and not again.built
    assert other.tag != first.tag


def test_setup_artefacts_survive_reset(manager, docker_client, calc_repo, tmp_path):
    path, shas = calc_repo
    spec = EnvSpec(setup=["mkdir -p build && echo artefact > build/out.txt"])
    image = build_env_image(docker_client, RepoSource(location=str(path), commit=shas[0]), spec, log_dir=tmp_path)
    sb = manager.create(image.tag)
    sb.exec("rm -rf build")
    sb.reset()
    assert sb.read_file("build/out.txt") == "artefact\n"


def test_build_failure_gives_one_line_error_with_log(docker_client, calc_repo, tmp_path):
    path, shas = calc_repo
    spec = EnvSpec(setup=["echo about to fail; exit 7"])
    with pytest.raises(ImageBuildError) as err:
        build_env_image(docker_client, RepoSource(location=str(path), commit=shas[0]), spec, log_dir=tmp_path)
    message = str(err.value)
    assert "\n" not in message and "exit 7" in message and err.value.log_path in message
    assert "about to fail" in err.value.tail


def test_unknown_image_is_named(manager):
    with pytest.raises(ImageError, match="unknown image no-such-image:1"):
        manager.create("no-such-image:1")


def test_setup_timeout_is_enforced(docker_client, calc_repo, tmp_path):
    path, shas = calc_repo
    spec = EnvSpec(setup=[f"echo started; sleep 60  # {uuid.uuid4().hex}"], setup_timeout_s=2)
    with pytest.raises(ImageBuildError) as err:
        build_env_image(docker_client, RepoSource(location=str(path), commit=shas[0]), spec, log_dir=tmp_path)
    assert "environment setup timed out after 2s" in str(err.value) and err.value.log_path in str(err.value)
    assert "started" in err.value.tail


def test_a_build_whose_container_another_remover_took_fails_with_its_own_error(docker_client, calc_repo, tmp_path):
    """A Ctrl-C sweeps the run's containers while a build runs: the build's own cleanup then met a 404 or a
    409 ("removal already in progress") from the engine, and that docker error replaced the build's own."""
    path, shas = calc_repo
    run_id = f"swept-build-{uuid.uuid4().hex[:8]}"
    spec = EnvSpec(setup=[f"echo started; sleep 60  # {uuid.uuid4().hex}"])
    wanted = {"label": [f"{LABEL_RUN}={run_id}", f"{LABEL_KIND}={KIND_ENV_BUILD}"]}
    swept: list[str] = []

    def sweep() -> None:  # what the run's close does on Ctrl-C, once the setup command is running
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not swept:
            for container in docker_client.containers.list(filters=wanted):
                if container.exec_run(["pgrep", "-f", "sleep 60"]).exit_code == 0:
                    remove_container(docker_client.api, container.id)
                    swept.append(container.id)
            time.sleep(0.2)

    sweeper = threading.Thread(target=sweep)
    sweeper.start()
    try:
        with pytest.raises(ImageBuildError):
            build_env_image(docker_client, RepoSource(location=str(path), commit=shas[0]), spec,
                            run_id=run_id, log_dir=tmp_path)
    finally:
        sweeper.join(timeout=150)
    assert swept
    assert not docker_client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"})


def test_concurrent_base_image_calls_return_the_existing_image(docker_client, base_image, tmp_path):
    results = []
    threads = [threading.Thread(target=lambda: results.append(ensure_base_image(docker_client, log_dir=tmp_path)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [base_image, base_image]
    assert not (tmp_path / "base-image-bookworm.log").exists()  # nothing was built


def test_concurrent_base_image_builds_run_once(monkeypatch, tmp_path):
    """The build steps are stubbed (a real base image build takes minutes); the lock is what is tested."""
    built: set[str] = set()
    builds = []
    monkeypatch.setattr(base_image_module, "_current", lambda client, tag: tag in built)
    monkeypatch.setattr(base_image_module, "_pull_rootfs_image", lambda client, suite, log: "rootfs")

    def finish(client, rootfs, tag, log):
        builds.append(tag)
        time.sleep(0.3)  # long enough for the other worker to arrive while this one builds
        built.add(tag)

    monkeypatch.setattr(base_image_module, "finish_base_image", finish)
    suite = "trixie"
    threads = [threading.Thread(target=ensure_base_image, args=(None, suite), kwargs={"log_dir": tmp_path / str(n)})
               for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert builds == [base_image_tag(suite)]


def test_a_base_image_of_another_recipe_is_rebuilt_and_ours_carries_its_recipe(monkeypatch, tmp_path, docker_client,
                                                                                 base_image):
    assert docker_client.images.get(base_image).labels[LABEL_BASE_RECIPE] == BASE_RECIPE
    labels = {LABEL_BASE_RECIPE: "an-older-recipe"}

    class Images:
        def get(self, tag):
            return type("Image", (), {"labels": labels})()

    client = type("Client", (), {"images": Images()})()
    builds = []
    monkeypatch.setattr(base_image_module, "_build_base_image",
                        lambda client, suite, source, tag, log: builds.append(tag))
    ensure_base_image(client, "trixie", log_dir=tmp_path)
    assert builds == [base_image_tag("trixie")]
    labels[LABEL_BASE_RECIPE] = BASE_RECIPE
    ensure_base_image(client, "trixie", log_dir=tmp_path)
    assert builds == [base_image_tag("trixie")]  # current: used as it is


def test_environment_is_read_only_and_reset_clears_scratch(manager, docker_client, calc_repo, tmp_path):
    path, shas = calc_repo
    spec = EnvSpec(setup=["touch $VIRTUAL_ENV/setup-marker && mkdir -p $HOME/.config/tool "
                          "&& echo cfg > $HOME/.config/tool/rc && pip --version > /dev/null"])
    image = build_env_image(docker_client, RepoSource(location=str(path), commit=shas[0]), spec, log_dir=tmp_path)
    sb = manager.create(image.tag)
    site = sb.exec("python3 -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])'").output.strip()
    assert site.startswith("/opt/venv/")
    dropped = sb.exec(f"echo 'import os' > {site}/evil.pth")
    assert dropped.exit_code != 0 and ("Permission denied" in dropped.output or "Read-only file system" in dropped.output)
    assert sb.exec("test -e $VIRTUAL_ENV/setup-marker").exit_code == 0  # setup could still write there
    sb.exec("echo x > $HOME/x && mkdir /tmp/d && echo y > /tmp/d/y && echo z > /dev/shm/z")
    sb.reset()
    left = sb.exec(f"ls $HOME/x /tmp/d /dev/shm/z {site}/evil.pth 2>&1; cat $HOME/.config/tool/rc")
    assert left.output.count("No such file") == 4 and left.output.rstrip().endswith("cfg")
    assert sb.exec("test -f /tmp/.patchswarm/exec_server.py && echo server-kept").output.strip() == "server-kept"
