from __future__ import annotations

import pytest

from sandbox.base_image import suite_for_python
from sandbox.environments import EnvSpec, build_env_image
from sandbox.errors import ImageBuildError, ImageError
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
