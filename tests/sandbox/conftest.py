from __future__ import annotations

import pytest

from sandbox.environments import EnvSpec, build_env_image
from sandbox.repos import RepoSource
from tests.conftest import make_git_repo

BUGGY = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="session")
def calc_repo(tmp_path_factory):
    """A repo whose second commit is the 'future fix' that sandboxes of the first must never see."""
    path = tmp_path_factory.mktemp("repos") / "calc"
    shas = make_git_repo(path, [
        {"calc.py": BUGGY, "README.md": "calc\n", ".gitignore": "build/\n", "notes/keep.txt": "x\n"},
        {"calc.py": FIXED},
    ])
    return path, shas


@pytest.fixture(scope="session")
def calc_image(docker_client, base_image, calc_repo) -> str:
    path, shas = calc_repo
    return build_env_image(docker_client, RepoSource(location=str(path), commit=shas[0]), EnvSpec()).tag


@pytest.fixture
def sandbox(manager, calc_image):
    return manager.create(calc_image)
