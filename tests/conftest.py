"""Shared fixtures: a real Docker engine (the suite fails clearly without one), the base image, fixture repos."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.model import ModelClient, ModelSettings, PriceOverride, RoleModels  # noqa: E402
from agent.scripted import ScriptedLLM  # noqa: E402
from sandbox.labels import KIND_SANDBOX, LABEL_KIND
from tests.fixture_repos import FIXTURES, fixture_repo, make_git_repo  # noqa: E402, F401 - shared with the test modules


def pytest_collection_modifyitems(items):
    """Tests that reach the Docker engine carry the `docker` mark, so `-m "not docker"` runs the rest alone."""
    for item in items:
        if "docker_client" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def docker_client():
    from sandbox.engine import docker_client as connect
    from sandbox.errors import EngineUnavailable

    try:
        client = connect()
    except EngineUnavailable as exc:
        pytest.fail(f"These tests need a Docker engine: {exc}", pytrace=False)
    return client


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    from sandbox.base_image import ensure_base_image

    return ensure_base_image(docker_client)


@pytest.fixture
def manager(docker_client):
    from sandbox.manager import SandboxManager

    with SandboxManager(docker_client, handle_signals=False) as mgr:
        yield mgr


@pytest.fixture(scope="session")
def bare_venv(tmp_path_factory) -> Path:
    """bin/ of a venv without packages: `LocalPool`'s stand-in for the image's /opt/venv (no host pytest)."""
    venv = tmp_path_factory.mktemp("venv") / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return venv / "bin"


# -- scripted model -------------------------------------------------------------------------------

SCRIPTED_PRICE = PriceOverride(input_per_mtok=1.0, output_per_mtok=5.0)


@pytest.fixture
def scripted() -> ScriptedLLM:
    """A fresh scripted handler for this test, injected where it is used (`providers(scripted)`, or
    `obj=scripted` for the CLI): nothing process-wide, so tests never see each other's scripts."""
    return ScriptedLLM()


def providers(handler: ScriptedLLM) -> dict[str, ScriptedLLM]:
    """The `providers` a ModelClient (or run_tasks) takes to send scripted/<name> to `handler`."""
    return {"scripted": handler}


def scripted_settings(relevance: str = "scripted/rel", primary: str = "scripted/main",
                      selector: str = "scripted/sel", **overrides) -> ModelSettings:
    """Settings whose three roles use scripted models, priced so budgets apply, with fast retries."""
    prices = {name: SCRIPTED_PRICE for name in (relevance, primary, selector)}
    values = {"roles": RoleModels(relevance=relevance, primary=primary, selector=selector),
              "retry_base_delay_s": 0.01, "retry_max_delay_s": 0.05, "price_overrides": prices,
              "warm_prefix_cache": "always"}  # exercise the warm-up path as with a caching provider
    values.update(overrides)
    return ModelSettings(**values)


@pytest.fixture
def model_client(scripted) -> ModelClient:
    return ModelClient(scripted_settings(), providers=providers(scripted))


def settled_sandboxes(containers: list) -> int | None:
    """How many of a run's containers are sandboxes, or None while a quota holder or image probe (labelled
    with the run too, and up for a moment while a sandbox starts) is among them."""
    sandboxes = [c for c in containers if c.labels.get(LABEL_KIND) == KIND_SANDBOX]
    return len(sandboxes) if len(sandboxes) == len(containers) else None
