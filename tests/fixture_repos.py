"""Git repositories built from test fixtures, for the tests and for scripts/drills_engine.py.

Commits carry fixed names and dates, so a fixture's SHAs (hence its environment image's cache key) are the
same on every run and machine. Plain functions, no pytest: the drills import them too.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import MappingProxyType

FIXTURES = Path(__file__).parent / "fixtures"
GIT_ENV = MappingProxyType({
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
    "GIT_AUTHOR_DATE": "2025-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2025-01-01T00:00:00Z",
})


def make_git_repo(path: Path, commits: list[dict[str, str | None]]) -> list[str]:
    """A git repo whose successive commits set (or, with None, delete) files; returns the commit SHAs."""
    path.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    shas = []
    for number, files in enumerate(commits):
        for name, content in files.items():
            target = path / name
            if content is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
        subprocess.run(["git", "add", "-A"], cwd=path, check=True, env=env)
        subprocess.run(["git", "-c", "commit.gpgsign=false", "commit", "-q", "--allow-empty", "-m", f"commit {number}"],
                       cwd=path, check=True, env=env)
        shas.append(subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True,
                                   check=True).stdout.strip())
    return shas


def fixture_repo(name: str, dest: Path) -> tuple[Path, str]:
    """Copy tests/fixtures/<name>/ into a one-commit git repo dest/<name>; returns (path, sha)."""
    source = FIXTURES / name
    files: dict[str, str | None] = {str(p.relative_to(source)): p.read_text()
                                    for p in sorted(source.rglob("*")) if p.is_file()}
    repo = dest / name
    return repo, make_git_repo(repo, [files])[0]
