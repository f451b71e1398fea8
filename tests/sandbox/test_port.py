"""The sandbox port's contract, checked on the Docker pool and on the in-process `LocalPool` alike.

The layers above are unit-tested on `LocalPool`; these tests are what make that honest: every
behaviour they rely on (reset per run, patch apply and its errors, files outside the repository,
timeouts, output capping, a fresh base state per lease) is asserted on both implementations.
"""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest

from sandbox.errors import PatchApplyError, SandboxBroken
from sandbox.local import LocalPool
from sandbox.manager import SandboxPool
from sandbox.port import PoolPort
from tests.sandbox.conftest import BUGGY

PATCH = "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"
PROBE = "import calc\nprint(calc.add(2, 3))\n"


@pytest.fixture
def base_tree(calc_repo, tmp_path):
    """The calc repo's first commit as plain files (what a LocalPool copies)."""
    path, shas = calc_repo
    tree = tmp_path / "base"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", shas[0]], cwd=path, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def pool(request, base_tree, bare_venv):
    if request.param == "local":
        made: PoolPort = LocalPool(base_tree, size=2, bin_dir=bare_venv)
    else:
        made = SandboxPool(request.getfixturevalue("manager"), request.getfixturevalue("calc_image"), size=2)
    yield made
    made.close()


def lease_and(pool: PoolPort, work):
    async def go():
        async with pool.lease() as sandbox:
            return await asyncio.to_thread(work, sandbox)
    return asyncio.run(go())


def test_run_resets_applies_a_patch_writes_files_and_runs_from_the_repository_root(pool):
    def work(sandbox):
        dirty = sandbox.run("echo 'def add(a, b): return 0' > calc.py && python3 -c 'import calc; print(calc.add(2, 3))'")
        fixed = sandbox.run("PYTHONPATH=$PWD python3 /tmp/probe/t.py", patch=PATCH, files={"/tmp/probe/t.py": PROBE})
        again = sandbox.run("PYTHONPATH=$PWD python3 /tmp/probe/t.py; git status --porcelain", files={"/tmp/probe/t.py": PROBE})
        return dirty, fixed, again

    dirty, fixed, again = lease_and(pool, work)
    assert dirty.output.strip() == "0"
    assert fixed.exit_code == 0 and fixed.output.strip() == "5"
    assert fixed.command == "PYTHONPATH=$PWD python3 /tmp/probe/t.py"
    assert again.output.strip() == "-1"  # the patch and the dirty calc.py are gone; the probe is not in git


def test_reset_false_keeps_the_previous_changes(pool):
    def work(sandbox):
        sandbox.run("echo kept > new.txt")
        return sandbox.run("cat new.txt", reset=False), sandbox.run("cat new.txt")

    kept, reset = lease_and(pool, work)
    assert kept.output.strip() == "kept"
    assert reset.exit_code != 0


def test_a_patch_that_does_not_apply_raises_naming_the_file_and_nothing_runs(pool):
    bad = PATCH.replace("return a - b", "return a * b")

    def work(sandbox):
        with pytest.raises(PatchApplyError) as err:
            sandbox.run("echo ran > ran.txt", patch=bad)
        return err.value, sandbox.run("cat ran.txt", reset=False)

    error, after = lease_and(pool, work)
    assert "calc.py" in str(error) and error.rejected
    assert after.exit_code != 0


def test_stale_context_applies_with_fuzz(pool):
    stale = PATCH.replace(" def add(a, b):", " def add(a, b):  # moved")

    def work(sandbox):
        return sandbox.run("cat calc.py", patch=stale)

    assert "return a + b" in lease_and(pool, work).output


def test_exit_codes_timeouts_and_capped_output_are_data(pool):
    def work(sandbox):
        code = sandbox.run("echo out; echo err >&2; exit 3")
        started = time.monotonic()
        slow = sandbox.run("echo started; sleep 1000", timeout=1.0)
        elapsed = time.monotonic() - started
        flood = sandbox.run("echo FIRST; head -c 200000 /dev/zero | tr '\\0' x; echo; echo LAST", output_cap=10_000)
        return code, slow, elapsed, flood

    code, slow, elapsed, flood = lease_and(pool, work)
    assert code.exit_code == 3 and "out" in code.output and "err" in code.output and not code.timed_out
    assert slow.timed_out and "started" in slow.output and elapsed < 15
    assert flood.output.startswith("FIRST") and flood.output.rstrip().endswith("LAST")
    assert flood.truncated_bytes == flood.output_bytes - 10_000


def test_every_lease_starts_at_the_base_state_and_size_bounds_concurrency(pool):
    assert pool.size == 2
    lease_and(pool, lambda sandbox: sandbox.run("echo x > stray.txt && echo 'broken' > calc.py"))

    async def both():
        async with pool.lease() as one, pool.lease() as two:
            return await asyncio.gather(asyncio.to_thread(one.run, "cat calc.py; ls", reset=False),
                                        asyncio.to_thread(two.run, "cat calc.py; ls", reset=False))

    for result in asyncio.run(both()):
        assert result.output.startswith(BUGGY) and "stray.txt" not in result.output


def test_image_id_names_the_content(pool, tmp_path):
    assert pool.image_id() == pool.image_id() and pool.image_id()


def test_local_image_id_changes_with_the_files(base_tree):
    before = LocalPool(base_tree).image_id()
    (base_tree / "calc.py").write_text("changed\n")
    assert LocalPool(base_tree).image_id() != before


def test_a_closed_local_sandbox_is_broken_and_discarded(base_tree):
    pool = LocalPool(base_tree, size=1)

    async def go():
        with pytest.raises(SandboxBroken):
            async with pool.lease() as sandbox:
                sandbox.close()
                sandbox.run("true")
        async with pool.lease() as fresh:
            return fresh is not sandbox, fresh.run("cat calc.py")

    fresh, result = asyncio.run(go())
    assert fresh and result.output == BUGGY
    pool.close()
