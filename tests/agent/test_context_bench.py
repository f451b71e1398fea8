"""scripts/bench_context.py end to end on a bare mirror made from the `context_shapes` fixture."""

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "context_shapes"
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_context", ROOT / "scripts" / "bench_context.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_context"] = module
    spec.loader.exec_module(module)
    return module


def patch_of(path: str) -> str:
    return f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-x\n+y\n"


@pytest.fixture
def mirrors(tmp_path: Path) -> tuple[Path, str]:
    work = Path(shutil.copytree(FIXTURE / "repo", tmp_path / "work"))
    (work / "data.bin").write_bytes(b"\0\1binary")
    subprocess.run([*GIT, "init", "-q", str(work)], check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=work, check=True)
    subprocess.run([*GIT, "commit", "-qm", "base"], cwd=work, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True).stdout.strip()
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(tmp_path / "mirrors" / "fix__shapes.git")],
                   check=True)
    return tmp_path / "mirrors", commit


def dataset(tmp_path: Path, commit: str, rows: list[tuple[str, str, str]]) -> Path:
    path = tmp_path / "rows.jsonl"
    issue = (FIXTURE / "issue.md").read_text()
    path.write_text("".join(json.dumps({
        "repo": repo, "instance_id": iid, "base_commit": commit, "patch": patch, "problem_statement": issue,
        "created_at": "2024-01-01",
    }) + "\n" for repo, iid, patch in rows))
    return path


def test_bench_reports_ranks_tiers_tokens_and_the_goal(mirrors, tmp_path, capsys):
    root, commit = mirrors
    new_file = "diff --git a/src/shapes/new.py b/src/shapes/new.py\n--- /dev/null\n+++ b/src/shapes/new.py\n"
    rows = dataset(tmp_path, commit, [
        ("fix/shapes", "fix-1", patch_of("src/shapes/units.py") + new_file),
        ("fix/shapes", "fix-2", patch_of("src/shapes/geometry.py")),
        ("gone/repo", "gone-1", patch_of("a.py")),
    ])
    details = tmp_path / "details.jsonl"
    bench = load_bench()
    code = bench.main(["--dataset", str(rows), "--repo-url", f"file://{root}/{{owner}}__{{name}}.git",
                       "--details", str(details), "--ablations"])
    out = capsys.readouterr().out
    assert code == 0 and "goal MET" in out
    assert re.search(r"gone/repo\s+1 \| unavailable: no mirror", out)
    records = [json.loads(line) for line in details.read_text().splitlines()]
    first = records[0]
    assert first["created_files"] == ["src/shapes/new.py"]  # created files are not counted as lost
    assert [g["path"] for g in first["gold"]] == ["src/shapes/units.py"]
    assert first["gold"][0]["rank_after"] == 2 and first["gold"][0]["tier"] == "full"
    assert first["after_kept"] and first["tokens_after"] > 0 and first["files"] == 10  # data.bin skipped
    assert first["skipped"] == {"binary/empty": 1}
    # The old BM25 ranking (path + text) puts the changelog above units.py.
    assert first["gold"][0]["rank_before"] > 2
    assert out.rstrip().endswith("goal MET")


def test_bench_fails_when_a_gold_file_is_dropped(mirrors, tmp_path, capsys):
    root, commit = mirrors
    rows = dataset(tmp_path, commit, [("fix/shapes", "fix-1", patch_of("src/shapes/colors.py"))])
    bench = load_bench()
    code = bench.main(["--dataset", str(rows), "--repo-url", f"{root}/{{owner}}__{{name}}.git",
                       "--set", "prefilter_top_files=1", "--set", "prefilter_skeleton_files=0"])
    out = capsys.readouterr().out
    assert code == 1 and "goal NOT met" in out
    assert "fix-1" in out and "src/shapes/colors.py" in out  # listed among the lost gold files


def test_bench_rejects_a_remote_url_and_a_bad_setting(tmp_path):
    bench = load_bench()
    rows = dataset(tmp_path, "0" * 40, [("fix/shapes", "fix-1", patch_of("a.py"))])
    with pytest.raises(SystemExit, match="local bare mirrors"):
        bench.main(["--dataset", str(rows), "--repo-url", "https://github.com/{owner}/{name}.git"])
    with pytest.raises(SystemExit, match="ContextConfig field"):
        bench.main(["--dataset", str(rows), "--repo-url", "x", "--set", "nope=1"])
