"""Many instances of one repository resolve their sources at once: clones and checkouts must not collide."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor

from sandbox.repos import RepoSource, checkout_tree, local_git_dir, resolve_commit


def test_concurrent_clones_and_checkouts_of_one_repo(calc_repo, tmp_path):
    path, shas = calc_repo
    bare = tmp_path / "calc.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(path), str(bare)], check=True)
    source = RepoSource(location=f"file://{bare}", commit=shas[0])
    cache = tmp_path / "cache"

    def resolve(_: int) -> str:
        git_dir = local_git_dir(source, cache_dir=cache)
        sha = resolve_commit(git_dir, source.commit, source.location)
        dest = checkout_tree(git_dir, sha, tmp_path / "checkouts" / sha)
        return (dest / "calc.py").read_text()

    with ThreadPoolExecutor(max_workers=6) as pool:
        texts = list(pool.map(resolve, range(6)))
    assert texts == ["def add(a, b):\n    return a - b\n"] * 6
    assert len(list(cache.glob("*.git"))) == 1
    assert not [p for p in (tmp_path / "checkouts").iterdir() if p.name.startswith(".") and p.is_dir()]
