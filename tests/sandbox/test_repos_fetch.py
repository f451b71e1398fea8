"""Sources are fetched commit by commit: a partial mirror (objects no wanted commit needs are missing) works."""

import subprocess
from pathlib import Path

import pytest

from sandbox.errors import RepoError
from sandbox.repos import RepoSource, archive_commit, local_git_dir, resolve_commit


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def partial_mirror(tmp_path) -> tuple[Path, str, str]:
    """A bare repository whose first commit's large blob is gone (as in snapshots that drop big files)."""
    work = tmp_path / "work"
    work.mkdir()
    _git(work, "init", "-q", "-b", "main")
    (work / "big.bin").write_bytes(b"x" * 100_000)
    (work / "a.py").write_text("A = 1\n")
    _git(work, "add", "-A")
    _git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    blob = _git(work, "rev-parse", "HEAD:big.bin")
    (work / "big.bin").unlink()
    (work / "a.py").write_text("A = 2\n")
    _git(work, "add", "-A")
    _git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "two")
    head = _git(work, "rev-parse", "HEAD")
    bare = tmp_path / "mirror.git"
    _git(tmp_path, "clone", "-q", "--bare", "--no-local", str(work), str(bare))
    # Unpack so one object can be removed, then remove the big blob.
    for pack in (bare / "objects" / "pack").glob("*.pack"):
        moved = tmp_path / pack.name
        pack.rename(moved)
        pack.with_suffix(".idx").unlink()
        subprocess.run(["git", "unpack-objects", "-q"], cwd=bare, stdin=moved.open("rb"), check=True)
    (bare / "objects" / blob[:2] / blob[2:]).unlink()
    return bare, head, blob


def test_a_commit_of_a_partial_mirror_is_fetched_without_its_history(partial_mirror, tmp_path):
    bare, head, _ = partial_mirror
    url = f"file://{bare}"
    assert subprocess.run(["git", "clone", "-q", "--bare", url, str(tmp_path / "full.git")],
                          capture_output=True).returncode != 0  # a whole clone wants every object
    git_dir = local_git_dir(RepoSource(location=url, commit=head), cache_dir=tmp_path / "cache")
    assert resolve_commit(git_dir, head, url) == head
    assert archive_commit(git_dir, head)  # the tree is complete
    assert _git(git_dir, "rev-list", "--count", head) == "1"  # no history came with it
    # Asking again reuses the cache; a branch name works too.
    assert local_git_dir(RepoSource(location=url, commit="main"), cache_dir=tmp_path / "cache") == git_dir
    assert resolve_commit(git_dir, "main", url) == head


def test_an_unknown_commit_names_the_commit_and_the_source(partial_mirror, tmp_path):
    bare, _, _ = partial_mirror
    with pytest.raises(RepoError, match=f"cannot fetch commit {'ab' * 20} from file://{bare}"):
        local_git_dir(RepoSource(location=f"file://{bare}", commit="ab" * 20), cache_dir=tmp_path / "cache")


def test_a_commit_whose_file_the_mirror_lacks_names_that_file(partial_mirror, tmp_path):
    bare, head, blob = partial_mirror
    first = _git(bare, "rev-parse", f"{head}~1")  # the commit whose tree has big.bin
    with pytest.raises(RepoError, match=rf"cannot fetch commit {first} .*: the source lacks big\.bin \(object {blob[:12]}\)"):
        local_git_dir(RepoSource(location=f"file://{bare}", commit=first), cache_dir=tmp_path / "cache")
