from __future__ import annotations

import hashlib

import pytest

from sandbox.errors import PatchApplyError, RepoError
from sandbox.repos import RepoSource, local_git_dir, resolve_commit

PATCH = """--- a/calc.py
+++ b/calc.py
@@ -1,2 +1,2 @@
 def add(a, b):
-    return a - b
+    return a + b
"""


def test_history_is_scrubbed(sandbox, calc_repo):
    _, shas = calc_repo
    log = sandbox.exec("git log --oneline | wc -l; git remote; git tag; git reflog | wc -l")
    assert log.output.split() == ["1", "1"]
    missing = sandbox.exec(f"git cat-file -e {shas[1]}")
    assert missing.exit_code != 0
    # The fix's blob itself is absent, not just unreachable.
    blob = sandbox.exec("printf 'def add(a, b):\\n    return a + b\\n' | git hash-object --stdin | xargs git cat-file -e")
    assert blob.exit_code != 0


def test_apply_diff_reset_round_trip(sandbox):
    sandbox.apply_patch(PATCH)
    sandbox.write_file("new_dir/new.txt", "hello\n")
    diff = sandbox.diff()
    assert "+    return a + b" in diff and "new_dir/new.txt" in diff
    sandbox.reset()
    assert sandbox.diff() == ""
    assert sandbox.exec("test -e new_dir").exit_code != 0
    assert "a - b" in sandbox.read_file("calc.py")


def test_diff_round_trips_through_apply(sandbox):
    sandbox.apply_patch(PATCH)
    diff = sandbox.diff()
    sandbox.reset()
    sandbox.apply_patch(diff)
    assert sandbox.diff() == diff


def test_reset_removes_ignored_files_too(sandbox):
    sandbox.exec("mkdir -p build && echo junk > build/x && echo y > untracked.txt && echo z >> README.md")
    sandbox.reset()
    assert sandbox.exec("ls build untracked.txt 2>&1; git status --porcelain --ignored").output.count("No such") == 2
    assert sandbox.read_file("README.md") == "calc\n"


def test_run_resets_applies_writes_and_runs_in_one_call(sandbox):
    sandbox.exec("echo dirty > calc.py")
    result = sandbox.run("python3 t.py", patch=PATCH, files={"t.py": "import calc\nprint(calc.add(2, 3))\n"})
    assert result.output.strip() == "5" and result.exit_code == 0
    again = sandbox.run("python3 t.py; echo $?", files={"t.py": "import calc\nprint(calc.add(2, 3))\n"})
    assert again.output.split()[0] == "-1"


def test_patch_that_does_not_apply_names_rejected_hunk(sandbox):
    bad = PATCH.replace("return a - b", "return a * b")
    with pytest.raises(PatchApplyError) as err:
        sandbox.apply_patch(bad)
    assert "calc.py" in str(err.value)
    assert err.value.rejected
    assert sandbox.exec("echo usable").output.strip() == "usable"
    with pytest.raises(PatchApplyError):
        sandbox.run("true", patch=bad)


def test_fuzzy_fallback_applies_stale_context(sandbox):
    sandbox.write_file("long.py", "".join(f"line{i}\n" for i in range(30)))
    sandbox.exec("git add long.py && git commit -qm tmp")  # a test-only base with more lines
    stale = """--- a/long.py
+++ b/long.py
@@ -10,7 +10,7 @@
 lineX
 line10
 line11
-line12
+changed12
 line13
 line14
 line15
"""
    sandbox.apply_patch(stale)
    assert "changed12" in sandbox.read_file("long.py")


def test_binary_patch_is_refused(sandbox):
    binary = "diff --git a/x.bin b/x.bin\nnew file mode 100644\nGIT binary patch\nliteral 3\nKcmZ?wb`TUk\n\nliteral 0\n"
    with pytest.raises(PatchApplyError, match="binary patches are not supported: x.bin"):
        sandbox.apply_patch(binary)


def test_missing_commit_and_bad_sources_are_named(calc_repo, tmp_path):
    path, _ = calc_repo
    with pytest.raises(RepoError, match="commit deadbeef not found"):
        resolve_commit(local_git_dir(RepoSource(location=str(path), commit="deadbeef")), "deadbeef", str(path))
    with pytest.raises(RepoError, match="does not exist"):
        local_git_dir(RepoSource(location=str(tmp_path / "nope"), commit="HEAD"))
    with pytest.raises(RepoError, match="cannot fetch commit HEAD from file:///nonexistent/repo.git"):
        local_git_dir(RepoSource(location="file:///nonexistent/repo.git", commit="HEAD"), cache_dir=tmp_path)


@pytest.mark.parametrize("exec_server", [True, False], ids=["exec-server", "plain-docker-exec"])
def test_payloads_beyond_the_argument_limit_work(manager, calc_image, exec_server):
    """Linux caps one argument at 128 KiB; big files and patches must still arrive intact."""
    sb = manager.create(calc_image, exec_server=exec_server)
    blob = bytes(range(256)) * 1200  # 300 KB, all byte values
    sb.write_file("blob.bin", blob)
    assert sb.read_bytes("blob.bin") == blob

    text = "".join(f"data line {i:06d} {'x' * 40}\n" for i in range(6000))  # ~340 KB
    added = [f"generated line {i:06d} {'y' * 40}" for i in range(3500)]  # ~220 KB patch
    patch = PATCH + f"--- /dev/null\n+++ b/gen.txt\n@@ -0,0 +1,{len(added)} @@\n" + "".join(f"+{a}\n" for a in added)
    assert len(patch) > 200_000
    result = sb.run("python3 -c 'import calc; print(calc.add(2, 3))' && sha256sum data/big.txt gen.txt",
                    patch=patch, files={"data/big.txt": text})
    assert result.exit_code == 0, result.output
    lines = result.output.split()
    assert lines[0] == "5"
    assert lines[1] == hashlib.sha256(text.encode()).hexdigest()
    assert lines[3] == hashlib.sha256("".join(f"{a}\n" for a in added).encode()).hexdigest()
    long_command = sb.exec(f"# {'z' * 200_000}\necho long command ran")
    assert long_command.output.strip() == "long command ran"
