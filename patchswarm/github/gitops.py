"""git on the host: clone the repository, commit the chosen patch on a branch, push it.

The token reaches git only through the environment: `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_0`/`GIT_CONFIG_VALUE_0`
set `http.extraheader` for the one command (never argv, never `.git/config`, so neither `ps` nor the
clone on disk shows it). Every message coming back from git is scrubbed before it is raised.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from patchswarm.github.redact import Redactor, basic_auth

BOT_NAME = "patchswarm[bot]"
BOT_EMAIL = "patchswarm-bot@users.noreply.github.com"


class GitError(RuntimeError):
    """A git command failed; the message is already scrubbed."""


class Git:
    """Runs git with the token in the environment and scrubs what comes back."""

    def __init__(self, token: str | None, redactor: Redactor, base_env: Mapping[str, str] | None = None) -> None:
        env = dict(os.environ if base_env is None else base_env)
        # No prompt may hang a CI job: a missing or refused token fails at once.
        env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "GCM_INTERACTIVE": "never", "LC_ALL": "C"})
        if token:
            env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraheader",
                        "GIT_CONFIG_VALUE_0": f"AUTHORIZATION: basic {basic_auth(token)}"})
        self._env = env
        self.redactor = redactor

    def run(self, args: list[str], cwd: Path | None = None, *, input_text: str | None = None,
            timeout: float = 900) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=cwd, env=self._env, input=input_text, text=True,
                                  capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise GitError(f"git {args[0]} timed out after {timeout:.0f}s") from None
        if done.returncode != 0:
            lines = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
            detail = "; ".join(lines[-3:]) or f"exit {done.returncode}"
            raise GitError(self.redactor.scrub(f"git {args[0]} failed: {detail}"))
        return done.stdout

    def clone(self, url: str, dest: Path, ref: str | None) -> str:
        """A fresh clone at `ref` (branch, tag or commit; default branch when None); returns the commit SHA."""
        if ref and ref.startswith("-"):
            raise GitError(f"ref {ref!r} is not a branch, tag or commit")
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.run(["clone", "--quiet", "--no-recurse-submodules", "--", url, str(dest)])
        if ref:
            # Branches live under origin/ after a clone; tags and SHAs resolve as they are.
            for candidate in (f"refs/remotes/origin/{ref}", ref):
                try:
                    sha = self.run(["rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}"], dest).strip()
                except GitError:
                    continue
                self.run(["checkout", "--quiet", "--detach", sha], dest)
                return sha
            raise GitError(f"ref {ref!r} not found in the repository")
        return self.run(["rev-parse", "HEAD"], dest).strip()

    def is_branch(self, dest: Path, ref: str) -> bool:
        try:
            self.run(["rev-parse", "--verify", "--quiet", f"refs/remotes/origin/{ref}"], dest)
        except GitError:
            return False
        return True

    def fetch_branch(self, dest: Path, url: str, branch: str) -> str | None:
        """The tip of `branch` on the remote (fetched into refs/remotes/pushed/), None when it does not exist."""
        branch = self.redactor.scrub_ref(branch)
        listed = self.run(["ls-remote", "--heads", "--", url, f"refs/heads/{branch}"], dest).split()
        if not listed:
            return None
        self.run(["fetch", "--quiet", "--", url, f"+refs/heads/{branch}:refs/remotes/pushed/{branch}"], dest)
        return listed[0]

    def foreign_authors(self, dest: Path, base: str, tip: str) -> list[str]:
        """Authors of the commits in base..tip that are not the bot (the people a force-push would overwrite)."""
        emails = self.run(["log", "--format=%ae", f"{base}..{tip}"], dest).split()
        return sorted({e for e in emails if e != BOT_EMAIL})

    def commit_patch(self, dest: Path, branch: str, patch: str, message: str,
                     files: Mapping[str, str] | None = None, start: str | None = None) -> str:
        """Branch off the checked-out commit, apply `patch`, add `files`, commit; returns the new SHA.

        The message and branch name are scrubbed here, the one place they leave for the remote."""
        branch, message = self.redactor.scrub_ref(branch), self.redactor.scrub(message)
        self.run(["checkout", "--quiet", "--force", "-B", branch, *([start] if start else [])], dest)
        self.run(["apply", "--index", "--whitespace=nowarn", "-"], dest, input_text=patch)
        for relative, text in (files or {}).items():
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            self.run(["add", "--", relative], dest)
        self.run(["-c", f"user.name={BOT_NAME}", "-c", f"user.email={BOT_EMAIL}", "commit", "--quiet",
                  "--no-verify", "-m", message], dest)
        return self.run(["rev-parse", "HEAD"], dest).strip()

    def push(self, dest: Path, url: str, branch: str, *, replace: str | None = None) -> None:
        """Push HEAD to `branch`. `replace`: the remote tip the caller checked holds only the bot's commits;
        the push replaces exactly that tip (a lease), so a commit pushed since by someone else is never lost.
        Without it the push must fast-forward."""
        ref = f"refs/heads/{self.redactor.scrub_ref(branch)}"
        lease = [f"--force-with-lease={ref}:{replace}"] if replace else []
        self.run(["push", "--quiet", *lease, "--", url, f"HEAD:{ref}"], dest)
