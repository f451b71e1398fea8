"""Drill of issue 14 item 5: ids from task files, datasets and prediction files never name a path outside
the run directory."""

from __future__ import annotations

import json

import pytest

from patchswarm.paths import UnsafePath, safe_name
from patchswarm.report.build import build_report
from patchswarm.store import RunStore
from tests.patchswarm.test_pipeline import ISSUE, calc_repo, cli, run_cli

HOSTILE = ["../../../escaped", "/etc/passwd", "..", ".", "a/../../b", "x\\..\\y", "", "\udce9", "a" * 300]


def files_below(root):
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.docker  # the pipeline runs in sandboxes
def test_hostile_instance_id_stays_inside_the_run_directory(tmp_path):
    """A task with instance_id "../../../escaped" wrote its result files outside the run directory."""
    repo, sha = calc_repo(tmp_path)
    missing = "0123456789abcdef0123456789abcdef01234567"  # fails before any model call or sandbox
    tasks = tmp_path / "deep" / "er" / "tasks.jsonl"
    tasks.parent.mkdir(parents=True)
    tasks.write_text(json.dumps({"instance_id": "../../../escaped", "repo": str(repo), "commit": missing,
                                 "issue": ISSUE}) + "\n")
    run_dir = tmp_path / "deep" / "er" / "run"
    before = files_below(tmp_path) - {tasks}
    done = run_cli(cli("batch", "--tasks", str(tasks), "--run-dir", str(run_dir)))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr  # 1: every instance failed
    written = files_below(tmp_path) - before - {tasks}
    assert written and all(run_dir in path.parents for path in written), sorted(map(str, written))
    store = RunStore(run_dir)
    try:
        assert [i["instance_id"] for i in store.instances()] == ["../../../escaped"]  # the id itself is kept
    finally:
        store.close()
    index = build_report(run_dir)
    assert all(run_dir in p.parents for p in files_below(index.parent))


def test_every_hostile_name_becomes_one_distinct_component():
    names = [safe_name(name) for name in HOSTILE]
    assert len(set(names)) == len(names)
    for name in names:
        assert "/" not in name and "\\" not in name and name not in ("", ".", "..") and not name.startswith(".")
        assert len(name) <= 100
    assert safe_name("astropy__astropy-12907") == "astropy__astropy-12907"


def test_store_refuses_a_file_outside_the_run_directory(tmp_path):
    store = RunStore(tmp_path / "run")
    try:
        for relative in ("../outside.json", "/tmp/outside.json", "instances/../../outside.json"):
            with pytest.raises(UnsafePath, match="outside"):
                store.write_file(relative, "{}")
    finally:
        store.close()
    assert not (tmp_path / "outside.json").exists()
