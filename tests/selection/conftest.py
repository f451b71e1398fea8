"""Selection fixtures: the `selection_stats` repo as an env image, its candidate patches, tests and issue."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.environments import EnvSpec, build_env_image
from sandbox.local import LocalPool
from sandbox.manager import SandboxPool
from sandbox.repos import RepoSource
from selection import Candidate, GeneratedTest
from tests.conftest import FIXTURES, fixture_repo

CASES = FIXTURES / "selection_stats_cases"


@pytest.fixture(scope="session")
def stats_repo(tmp_path_factory) -> tuple[Path, str]:
    return fixture_repo("selection_stats", tmp_path_factory.mktemp("selection"))


@pytest.fixture(scope="session")
def stats_image(docker_client, base_image, stats_repo) -> str:
    path, sha = stats_repo
    return build_env_image(docker_client, RepoSource(location=str(path), commit=sha), EnvSpec()).tag


@pytest.fixture
def pool(stats_repo, bare_venv):
    """In-process sandboxes (the port's fake): selection's logic, tested without Docker."""
    pool = LocalPool(stats_repo[0], size=2, bin_dir=bare_venv)
    yield pool
    pool.close()


@pytest.fixture
def docker_pool(manager, stats_image):
    """Two sandboxes at most: other developers run Docker tests on the same two cores."""
    pool = SandboxPool(manager, stats_image, size=2)
    yield pool
    pool.close()


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def either_pool(request):
    """End to end on real Docker sandboxes as well as on the fake."""
    return request.getfixturevalue("pool" if request.param == "local" else "docker_pool")


@pytest.fixture(scope="session")
def issue() -> str:
    return (CASES / "issue.md").read_text()


def candidate(name: str, candidate_id: str | None = None) -> Candidate:
    return Candidate(id=candidate_id or name, patch=(CASES / "candidates" / f"{name}.diff").read_text(),
                     source=f"fixture:{name}")


def repro_test(name: str, test_id: str | None = None, suffix: str = "") -> GeneratedTest:
    return GeneratedTest(id=test_id or name, code=(CASES / "tests" / f"{name}.py").read_text() + suffix,
                         source=f"fixture:{name}")
