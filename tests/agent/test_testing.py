"""Testing state machine with the scripted model, on in-process sandboxes (and end to end on Docker);
also the shared fixtures of the agent trajectory tests (imported by test_editing and test_trajectory)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.actions import ActionFormatError, parse_action
from agent.budget import Budget
from agent.instance import Instance, TrajectoryConfig
from agent.model import InMemoryCallStore, ModelClient
from agent.prompts import TESTING_SYSTEM, reproduction_prefix
from agent.scripted import Fault, ScriptedLLM
from agent.testing import TestingMachine
from agent.types import InMemoryStateStore
from sandbox.environments import EnvSpec, build_env_image
from sandbox.errors import SandboxBroken
from sandbox.local import LocalPool
from sandbox.manager import SandboxManager, SandboxPool
from sandbox.repos import RepoSource
from tests.conftest import FIXTURES, providers, scripted_settings

ISSUE = "minicalc.mean([2, 4]) returns 2.0 instead of 3.0."
REPRO = (
    "import sys\nfrom minicalc import mean\n\nvalue = mean([2, 4])\nprint('mean([2, 4]) =', value)\n"
    "sys.exit(0 if value == 3 else 2)\n"
)
HANGING = "import time\nprint('starting', flush=True)\ntime.sleep(60)\n"


def reply_with_test(code: str = REPRO) -> str:
    return f"Let me reproduce it.\n<test>\n```python\n{code}```\n</test>\n"


# -- shared fixtures -------------------------------------------------------------------------------

def _git_repo(source: Path, dest: Path) -> str:
    """A one-commit repo of `source` with fixed dates: the same SHA every session, so the image is reused."""
    shutil.copytree(source, dest)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "base"]):
        subprocess.run(["git", *args], cwd=dest, env=env, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=dest, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture(scope="session")
def minicalc(tmp_path_factory) -> tuple[Path, str]:
    """(pristine host checkout, commit) of tests/fixtures/minicalc."""
    repo = tmp_path_factory.mktemp("agent") / "minicalc"
    return repo, _git_repo(FIXTURES / "minicalc", repo)


@pytest.fixture(scope="module")
def pool(minicalc, bare_venv):
    """In-process sandboxes (the port's fake): the machines' logic, tested without Docker."""
    sandboxes = LocalPool(minicalc[0], size=2, bin_dir=bare_venv)
    yield sandboxes
    sandboxes.close()


@pytest.fixture(scope="module")
def docker_pool(docker_client, base_image, minicalc):
    """Two warm Docker sandboxes shared by a module's tests (the machine has 2 cores, shared with others)."""
    repo, sha = minicalc
    image = build_env_image(docker_client, RepoSource(location=str(repo), commit=sha), EnvSpec()).tag
    with SandboxManager(docker_client, handle_signals=False) as manager:
        sandboxes = SandboxPool(manager, image, size=2)
        yield sandboxes
        sandboxes.close()


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def either_pool(request):
    """End to end on real Docker sandboxes as well as on the fake."""
    return request.getfixturevalue("pool" if request.param == "local" else "docker_pool")


class CountingPool:
    """Counts leases of the wrapped pool (how many sandbox steps a machine made)."""

    def __init__(self, pool) -> None:
        self.pool, self.leases = pool, 0

    def lease(self):
        self.leases += 1
        return self.pool.lease()


def client_with_store(scripted: ScriptedLLM, **overrides) -> ModelClient:
    return ModelClient(scripted_settings(**overrides), store=InMemoryCallStore(), providers=providers(scripted))


def last_user_text(messages: list[dict]) -> str:
    content = messages[-1]["content"]
    return content if isinstance(content, str) else "".join(part["text"] for part in content)


def make_tester(client, pool, store=None, *, issue=ISSUE, budget=None, max_attempts=4, **config) -> TestingMachine:
    instance = Instance(client, pool, Path("."), issue, store or InMemoryStateStore())
    config = TrajectoryConfig(max_attempts_testing=max_attempts, **config)
    return TestingMachine(instance, key="inst/testing/0", budget=budget, config=config)


# -- action parsing (no Docker) --------------------------------------------------------------------

ACCEPTS = {"test": "<test>", "edit": "<edit>", "done": "<finish/>"}


def test_parse_action_kinds():
    assert parse_action(reply_with_test(), ACCEPTS).body == REPRO  # Markdown fence stripped
    assert parse_action("done now <approve/>", ACCEPTS).kind == "done"
    edit = "<edit>\na.py\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n</edit>\n<delete>b.py</delete>\n"
    assert parse_action(edit, ACCEPTS).kind == "edit"
    # Tags quoted inside a test are part of the test, not actions.
    assert parse_action("<test>\nprint('<finish/>')\n</test>", ACCEPTS).kind == "test"


@pytest.mark.parametrize("text, problem", [
    ("I will think about it.", "no action"),
    ("<test>\nprint(1)\n</test>\n<finish/>", "several kinds"),
    ("<test>\na = 1\n</test>\n<test>\nb = 2\n</test>", "several tests"),
    ("<test>\nprint(1)\n", "not closed"),
    ("<test>\n```python\n```\n</test>", "empty"),
])
def test_parse_action_format_errors(text, problem):
    with pytest.raises(ActionFormatError) as caught:
        parse_action(text, ACCEPTS)
    assert problem in caught.value.message
    assert "<finish/>" in caught.value.message  # the model is told what it may send


def test_parse_action_refuses_kinds_the_machine_does_not_take():
    with pytest.raises(ActionFormatError, match="not possible"):
        parse_action("<edit>\na.py\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n</edit>", {"test": "<test>"})


def test_empty_issue_makes_no_call(scripted, model_client):
    scripted.add("main", [])
    result = asyncio.run(make_tester(model_client, pool=None, issue="  \n").run())
    assert result.outcome == "empty_issue" and not result.approved and result.error
    assert scripted.calls("main") == []


# -- with sandboxes (the in-process fake unless named) --------------------------------------------------------------------------------

def test_writes_runs_and_approves(scripted, model_client, either_pool):
    scripted.add("main", [reply_with_test(), "The output shows the bug. <approve/>"])
    result = asyncio.run(make_tester(model_client, either_pool).run())
    assert result.outcome == "approved" and result.approved
    assert result.test_code == REPRO and result.original_exit_code == 2
    assert "mean([2, 4]) = 2.0" in result.original_output
    calls = scripted.calls("main")
    assert len(calls) == 2 and result.attempts == 2
    assert calls[0][0]["content"] == TESTING_SYSTEM and len(calls[0]) == 2  # the issue only, no code
    assert [m["role"] for m in calls[1]] == ["system", "user", "assistant", "user"]
    assert "Exit code: 2 (the issue is present)" in last_user_text(calls[1])
    assert result.messages[:2] == reproduction_prefix(ISSUE)
    assert result.cost_usd > 0


def test_rewrites_a_test_after_a_timeout(scripted, model_client, pool):
    scripted.add("main", [reply_with_test(HANGING), reply_with_test(), "<approve/>"])
    result = asyncio.run(make_tester(model_client, pool, test_timeout_s=2).run())
    assert result.outcome == "approved" and result.test_code == REPRO and result.original_exit_code == 2
    feedback = last_user_text(scripted.calls("main")[1])
    assert "timed out" in feedback and "starting" in feedback  # partial output shown
    assert "a correct test exits 2 here" in feedback


def test_format_errors_cost_attempts(scripted, model_client, pool):
    scripted.add("main", ["Hmm.", reply_with_test() + "<approve/>", reply_with_test()])
    result = asyncio.run(make_tester(model_client, pool, max_attempts=3).run())
    # Out of attempts after the third reply; its test still ran and is kept as the best available.
    assert result.outcome == "attempts_exhausted" and not result.approved
    assert result.test_code == REPRO and result.original_exit_code == 2 and result.attempts == 3
    calls = scripted.calls("main")
    assert "no action" in last_user_text(calls[1]) and "several kinds" in last_user_text(calls[2])


def test_approve_without_a_test_is_refused(scripted, model_client, pool):
    scripted.add("main", ["<approve/>", reply_with_test(), "<approve/>"])
    result = asyncio.run(make_tester(model_client, pool).run())
    assert result.outcome == "approved"
    assert "no test yet" in last_user_text(scripted.calls("main")[1])


def test_rate_limit_then_success(scripted, model_client, pool):
    scripted.add("main", [Fault.rate_limit(), reply_with_test(), Fault.rate_limit(retry_after=0), "<approve/>"])
    result = asyncio.run(make_tester(model_client, pool).run())
    assert result.outcome == "approved" and result.attempts == 2
    assert len(scripted.calls("main")) == 4 and scripted.remaining("main") == 0


def test_budget_stop_keeps_state_and_resumes(scripted, pool):
    scripted.add("main", [reply_with_test(), "<approve/>"])
    client = client_with_store(scripted)
    store = InMemoryStateStore()
    tiny = Budget(1e-9, "trajectory-0")  # the first call may start; it spends the budget
    result = asyncio.run(make_tester(client, pool, store, budget=tiny).run())
    assert result.outcome == "budget_exhausted" and "exhausted" in result.error
    assert result.test_code == REPRO and result.original_exit_code == 2  # the work done is kept
    assert len(scripted.calls("main")) == 1
    # More money later: the machine continues from its saved state and makes only the missing call.
    resumed = asyncio.run(make_tester(client, pool, store, budget=Budget(1.0, "more")).run())
    assert resumed.outcome == "approved" and len(scripted.calls("main")) == 2


def test_a_new_max_tokens_never_replays_answers_stored_under_another(scripted):
    scripted.add("main", ["<approve/>"] * 3)
    client = client_with_store(scripted)  # shared call store: replays across machines
    for max_tokens, calls in ((100, 1), (100, 1), (4000, 2), (None, 3)):
        tester = make_tester(client, pool=None, store=InMemoryStateStore(), max_tokens=max_tokens)
        asyncio.run(tester.run(max_calls=1))
        assert len(scripted.calls("main")) == calls, max_tokens


class FlakyPool:
    """The first lease finds its container dead (the pool discards such sandboxes)."""

    def __init__(self, pool) -> None:
        self.pool, self.failed = pool, False

    @contextlib.asynccontextmanager
    async def lease(self):
        if not self.failed:
            self.failed = True
            raise SandboxBroken("sandbox container is gone")
        async with self.pool.lease() as sandbox:
            yield sandbox


def test_a_dead_sandbox_is_replaced_once(scripted, model_client, pool):
    scripted.add("main", [reply_with_test(), "<approve/>"])
    flaky = FlakyPool(pool)
    result = asyncio.run(make_tester(model_client, flaky).run())
    assert result.outcome == "approved" and result.original_exit_code == 2 and flaky.failed
