"""Repository sources on the host: a local path or a git URL, resolved to one commit's tree.

Sandboxes never see the source repository's history: images get `git archive` of one commit,
so no later fix can be read from objects, refs or reflogs.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from pydantic import BaseModel, Field

from sandbox.errors import RepoError
from sandbox.locks import file_lock

DEFAULT_CACHE = Path.home() / ".cache" / "patchswarm" / "repos"


class RepoSource(BaseModel):
    """Where a repository comes from and which commit to use."""

    location: str = Field(description="Local path to a git repository, or a git URL (https://, ssh, file://).")
    commit: str = Field(description="Commit SHA (or any revision git understands) to provision.")

    @property
    def is_local_path(self) -> bool:
        return "://" not in self.location and not self.location.startswith("git@")


def _git(args: list[str], cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _is_full_sha(commit: str) -> bool:
    return len(commit) == 40 and all(c in "0123456789abcdef" for c in commit.lower())


def _fetch_commit(mirror: Path, location: str, commit: str) -> subprocess.CompletedProcess:
    """Fetch one commit (its tree, no history) from `location` into `mirror`.

    A shallow fetch by commit needs only that commit's objects, so it works on partial mirrors that lack
    blobs no wanted commit uses, and costs a fraction of a clone on long histories. Local and file://
    servers refuse unadvertised commits unless told they may serve any object (GitHub always may).
    """
    args = ["fetch", "--quiet", "--depth", "1", "--no-tags"]
    if location.startswith("file://") or "://" not in location:
        args += ["--upload-pack", "git -c uploadpack.allowAnySHA1InWant=true upload-pack"]
    done = _git([*args, location, commit], cwd=mirror)
    if done.returncode == 0 and not _is_full_sha(commit):  # a branch or tag name: remember where it points
        _git(["update-ref", "HEAD" if commit == "HEAD" else f"refs/heads/{commit}", "FETCH_HEAD"], cwd=mirror)
    return done


def _fetch_failure(location: str, commit: str, stderr: str) -> str:
    """Why a fetch failed, in one line: the object a partial mirror lacks (and its path, for local mirrors)
    rather than git's last words ("invalid index-pack output")."""
    missing = re.search(r"unable to read ([0-9a-f]{40})", stderr)
    if not missing:
        return _last_line(stderr)
    blob = missing.group(1)
    path = ""
    if location.startswith("file://") or "://" not in location:
        tree = _git(["ls-tree", "-r", commit], cwd=Path(location.removeprefix("file://")))
        path = next((line.split("\t", 1)[1] for line in tree.stdout.splitlines() if blob in line), "")
    return (f"the source lacks {path + ' ' if path else ''}(object {blob[:12]}) of this commit's tree"
            " (a partial snapshot missing a file the commit needs)")


def local_git_dir(source: RepoSource, cache_dir: Path = DEFAULT_CACHE) -> Path:
    """A git directory on the host holding `source.commit`: the path itself, or a cache of the URL's commits.

    URLs are fetched commit by commit (shallow), never cloned whole: each commit asked for is added to one
    cached bare repository per URL.
    """
    if source.is_local_path:
        path = Path(source.location).expanduser().resolve()
        if not path.exists():
            raise RepoError(f"repository path does not exist: {source.location}")
        if _git(["rev-parse", "--git-dir"], cwd=path).returncode != 0:
            raise RepoError(f"not a git repository: {source.location}")
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    mirror = cache_dir / (hashlib.sha256(source.location.encode()).hexdigest()[:16] + ".git")
    # Instances of one repository are solved concurrently: one fetch per cached repository at a time.
    with file_lock(mirror.with_suffix(".lock")):
        if not mirror.exists():
            # Made beside it and renamed, so a crash never leaves a half repository that looks complete.
            partial = Path(tempfile.mkdtemp(prefix=mirror.name + ".", dir=cache_dir))
            _git(["init", "--quiet", "--bare", str(partial / "repo.git")])
            (partial / "repo.git").rename(mirror)
            shutil.rmtree(partial, ignore_errors=True)
        if _git(["cat-file", "-e", f"{source.commit}^{{commit}}"], cwd=mirror).returncode != 0:
            done = _fetch_commit(mirror, source.location, source.commit)
            if done.returncode != 0:
                raise RepoError(f"cannot fetch commit {source.commit} from {source.location}: "
                                f"{_fetch_failure(source.location, source.commit, done.stderr)}")
    return mirror


def resolve_commit(git_dir: Path, commit: str, location: str) -> str:
    done = _git(["rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"], cwd=git_dir)
    if done.returncode != 0:
        raise RepoError(f"commit {commit} not found in {location}")
    return done.stdout.strip()


def archive_commit(git_dir: Path, sha: str) -> bytes:
    """A tar of the commit's tree (tracked files only), nothing of its history."""
    done = subprocess.run(["git", "archive", "--format=tar", sha], cwd=git_dir, capture_output=True, timeout=600)
    if done.returncode != 0:
        raise RepoError(f"git archive of {sha} failed: {_last_line(done.stderr.decode(errors='replace'))}")
    return done.stdout


def checkout_tree(git_dir: Path, sha: str, dest: Path) -> Path:
    """Extract the commit's tree into `dest` on the host (the agent's read-only view for context and edits)."""
    import io
    import tarfile

    dest.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(dest.parent / f".{dest.name}.lock"):  # two tasks at one commit share the checkout
        if dest.exists():
            return dest
        partial = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        with tarfile.open(fileobj=io.BytesIO(archive_commit(git_dir, sha))) as tar:
            tar.extractall(partial, filter="tar")
        partial.rename(dest)  # complete or absent, never half there
    return dest
