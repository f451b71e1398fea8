"""Shared by the GitHub tests: the stand-in, a bare remote holding the demo repository, issue fixtures."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from patchswarm.demo.script import DemoScript
from patchswarm.github.options import ResolveOptions
from patchswarm.github.redact import basic_auth
from tests.fixture_repos import GIT_ENV
from tests.patchswarm.github_stub import GitHubStub

ROOT = Path(__file__).resolve().parents[2]
DEMO_REPO = ROOT / "patchswarm" / "demo" / "repo"
TOKEN = "ghs_patchswarmTestToken0123456789abcdef"
TOKEN_ENV = "PATCHSWARM_TEST_GH_TOKEN"
REPO = "octo/textkit"
ISSUE = 7
# The repository's own settings: the demo's small configuration with three editing trajectories.
REPO_SETTINGS = {
    "test_cmd": "python -m unittest discover -s tests -v",
    "overrides": {"trajectories": {"num_tests": 2, "num_edits": 3, "max_attempts_editing": 3, "test_timeout_s": 30},
                  "selection": {"top_k": 3}, "sandbox": {"pool_size": 2}, "context": {"ranking_samples": 1}},
}


def model_overrides(name: str) -> list[str]:
    roles = [f"models.roles.{role}=scripted/{name}" for role in ("relevance", "primary", "selector")]
    return [*roles, f"models.price_overrides={{'scripted/{name}': {{input_per_mtok: 3.0, output_per_mtok: 15.0}}}}"]


class NoFixScript(DemoScript):
    """Writes tests, but never an edit: every editing trajectory runs out of attempts."""

    def _edit_turn(self, mine: list[str]) -> str:
        return "I cannot find where to change this."


def git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **GIT_ENV})
    assert done.returncode == 0, done.stderr
    return done.stdout


def make_remote(tmp: Path, name: str = "remote.git") -> Path:
    """A bare repository holding the demo repo plus `.patchswarm.yml`; fixed dates keep its SHA stable."""
    work = tmp / f"{name}-work"
    shutil.copytree(DEMO_REPO, work)
    (work / ".patchswarm.yml").write_text(yaml.safe_dump(REPO_SETTINGS))
    git("init", "-q", "-b", "main", str(work))
    git("add", "-A", cwd=work)
    git("commit", "-qm", "textkit 0.1", cwd=work)
    bare = tmp / name
    git("clone", "-q", "--bare", str(work), str(bare))
    return bare


@pytest.fixture
def stub():
    with GitHubStub(TOKEN) as server:
        yield server


@pytest.fixture
def remote(tmp_path) -> Path:
    return make_remote(tmp_path)


@pytest.fixture
def token_env(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


def add_issue(stub: GitHubStub, remote: Path, *, author: str = "alice", association: str = "OWNER") -> None:
    stub.add_repo(REPO, clone_url=remote.as_uri())
    stub.add_issue(REPO, ISSUE, title="slugify keeps repeated dashes",
                   body=(DEMO_REPO.parent / "issue.md").read_text(), author=author, association=association,
                   labels=["patchswarm"])
    stub.add_comment(REPO, ISSUE, body="Same for tabs, by the way.", author="bob", association="CONTRIBUTOR")


def options(stub: GitHubStub, run_dir: Path, **extra) -> ResolveOptions:
    values = {"repo": REPO, "issue": ISSUE, "api_url": stub.api_url, "token_env": TOKEN_ENV, "run_dir": run_dir,
              "overrides": model_overrides("demo"), "throttle": False, "live": False, **extra}
    return ResolveOptions(**values)


def bot_comments(stub: GitHubStub) -> list[dict]:
    return [c for c in stub.issue_comments(REPO, ISSUE) if c["user"]["login"] == stub.bot_login]


def assert_no_token(stub: GitHubStub, texts: list[str], run_dir: Path | None) -> None:
    secrets = [TOKEN, basic_auth(TOKEN)]
    written = [str(c["body"]) for c in stub.comments.values() if c["user"]["type"] == "Bot"]  # the bot's only
    written += [str(p["body"]) + p["title"] for r in stub.repos.values() for p in r.pulls.values()]
    for text in [*texts, *written]:
        assert not any(s in text for s in secrets)
    if run_dir is not None and run_dir.exists():
        found = subprocess.run(["grep", "-rlaF", "-e", secrets[0], "-e", secrets[1], str(run_dir)],
                               capture_output=True, text=True)
        assert found.stdout == "", f"token found in {found.stdout}"


def commit_on(remote: Path, tmp: Path, branch: str, *, name: str, email: str, path: str, text: str,
              new_branch: bool = False) -> str:
    work = tmp / f"work-{name}-{path.replace('/', '_')}"
    git("clone", "-q", str(remote), str(work))
    git("checkout", "-q", *(["-b", branch] if new_branch else [branch]), cwd=work)
    (work / path).write_text(text)
    git("add", "-A", cwd=work)
    git("commit", "-qm", f"{name} edits {path}", f"--author={name} <{email}>", cwd=work)
    git("push", "-q", "origin", branch, cwd=work)
    return git("rev-parse", "HEAD", cwd=work).strip()
