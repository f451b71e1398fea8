"""Selection benchmark: 10 tests x 10 candidates, with duplicates among both.

Prints two ratios measured in one run:
  1. executions performed / distinct (test, patch-or-original) pairs   (expect 1.0, plus one flake rerun
     per distinct test on the original; both numbers are printed)
  2. parallel efficiency = (sum of execution durations / usable cores) / wall time   (target >= 0.8),
     usable cores = pool size bounded by os.cpu_count()
and checks that selecting again performs zero executions (everything comes from the on-disk cache).

    python scripts/bench_selection.py [--pool-size N] [--test-seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox.base_image import ensure_base_image  # noqa: E402
from sandbox.engine import docker_client  # noqa: E402
from sandbox.environments import EnvSpec, build_env_image  # noqa: E402
from sandbox.manager import SandboxManager, SandboxPool  # noqa: E402
from sandbox.repos import RepoSource  # noqa: E402
from selection import Candidate, GeneratedTest, SelectionConfig, select_patch  # noqa: E402

SOURCE = "def value(x):\n    return x\n"
DISTINCT_PATCHES = 6
DISTINCT_TESTS = 7


def make_repo(root: Path) -> tuple[Path, str]:
    repo = root / "calc"
    repo.mkdir()
    (repo / "calc.py").write_text(SOURCE)
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@b"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "base"], cwd=repo, check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    return repo, sha


def patch(new_line: str) -> str:
    return ("diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n"
            f" def value(x):\n-    return x\n+{new_line}\n")


def candidates() -> list[Candidate]:
    distinct = [Candidate(id=f"p{k}", patch=patch(f"    return x + {k}")) for k in range(1, DISTINCT_PATCHES + 1)]
    copies = [Candidate(id=f"p{k}-copy", patch=patch(f"    return  x +{k}   ")) for k in range(1, 5)]
    return distinct + copies


def tests(seconds: float) -> list[GeneratedTest]:
    def code(number: int) -> str:
        # Burns CPU for a fixed wall time, then passes only for the patch adding `number`.
        return (f"import sys, time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"
                f"import calc\nsys.exit(0 if calc.value(0) == {number} else 2)\n")

    distinct = [GeneratedTest(id=f"t{n}", code=code(n)) for n in range(1, DISTINCT_TESTS + 1)]
    copies = [GeneratedTest(id=f"t{n}-copy", code=code(n) + "   \n\n") for n in range(1, 4)]
    return distinct + copies


async def warm(pool: SandboxPool) -> None:
    """Start every sandbox of the pool first: a pipeline's pool is warm by the time it selects."""
    async with AsyncExitStack() as stack:
        await asyncio.gather(*(stack.enter_async_context(pool.lease()) for _ in range(pool.size)))


async def bench(pool: SandboxPool, repo: Path, cache_dir: Path, seconds: float) -> None:
    config = SelectionConfig(selector_enabled=False, regression_enabled=False, cache_dir=cache_dir)
    cands, cases = candidates(), tests(seconds)
    await warm(pool)
    started = time.monotonic()
    result = await select_patch(cands, pool=pool, repo_dir=repo, tests=cases, config=config)
    wall = time.monotonic() - started
    again = await select_patch(cands, pool=pool, repo_dir=repo, tests=cases, config=config)

    pairs = DISTINCT_TESTS * (DISTINCT_PATCHES + 1)  # every distinct test on every distinct patch + original
    reruns = DISTINCT_TESTS  # the second run of each distinct test on the original (flake check)
    cores = min(pool.size, os.cpu_count() or 1)
    efficiency = result.execution_seconds / cores / wall
    print(f"inputs: {len(cases)} tests ({DISTINCT_TESTS} distinct) x {len(cands)} candidates "
          f"({DISTINCT_PATCHES} distinct); pool size {pool.size}, usable cores {cores}")
    print(f"chosen: {result.chosen_id} ({result.method})")
    print(f"executions performed: {result.executions_performed}; distinct (test, patch|original) pairs: {pairs}")
    print(f"  ratio performed / distinct pairs: {result.executions_performed / pairs:.3f}"
          f"  (with the {reruns} flake reruns on the original expected: {(pairs + reruns) / pairs:.3f})")
    print(f"  ratio excluding the flake reruns: {(result.executions_performed - reruns) / pairs:.3f}  (expect 1.000)")
    print(f"parallel efficiency: ({result.execution_seconds:.2f}s of executions / {cores} cores) / "
          f"{wall:.2f}s wall = {efficiency:.1%}  (target >= 80%)")
    print(f"second selection: {again.executions_performed} executions performed, {again.executions_cached} cached")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool-size", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--test-seconds", type=float, default=0.4, help="CPU time each test burns")
    args = parser.parse_args()
    client = docker_client()
    ensure_base_image(client)
    with tempfile.TemporaryDirectory() as tmp, SandboxManager(client, run_id="bench-selection") as manager:
        repo, sha = make_repo(Path(tmp))
        image = build_env_image(client, RepoSource(location=str(repo), commit=sha), EnvSpec()).tag
        pool = SandboxPool(manager, image, size=args.pool_size)
        asyncio.run(bench(pool, repo, Path(tmp) / "cache", args.test_seconds))
        pool.close()


if __name__ == "__main__":
    main()
