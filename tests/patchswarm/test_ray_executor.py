"""`batch --executor ray`: instances solved as Ray tasks, results, calls and budgets held by the driver.

A Ray head runs on loopback in this process for the module (2 CPUs: two instances at a time). The
scripted model answers inside the Ray workers; `LoggedDemoScript` appends one line per answered call to
the file named by PATCHSWARM_RAY_TEST_CALL_LOG, which the workers inherit from the head's environment.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import ray
from typer.testing import CliRunner

from agent.scripted import Reply
from patchswarm.config import load_config
from patchswarm.demo.run import demo_task
from patchswarm.demo.script import DemoScript
from patchswarm.pipeline import run_tasks
from patchswarm.ray_executor import RayExecutor, _check_reachable
from patchswarm.store import RunStore
from patchswarm.tasks import Task

ROOT = Path(__file__).resolve().parents[2]
CALL_LOG_ENV = "PATCHSWARM_RAY_TEST_CALL_LOG"
SCRIPT = "demo=tests.patchswarm.test_ray_executor:LoggedDemoScript"
SECOND = "Seen again on textkit 0.1.1."  # only in the second instance's issue: tells their calls apart
# Small on purpose: two cores are shared with other developers' Docker tests.
OVERRIDES = [
    "models.roles.relevance=scripted/demo", "models.roles.primary=scripted/demo",
    "models.roles.selector=scripted/demo",
    "models.price_overrides={'scripted/demo': {input_per_mtok: 3.0, output_per_mtok: 15.0}}",
    "models.retry_base_delay_s=0.01", "trajectories.num_tests=1", "trajectories.num_edits=3",
    "trajectories.max_attempts_editing=3", "trajectories.test_timeout_s=30", "selection.test_timeout_s=30",
    "selection.selector_enabled=false", "sandbox.pool_size=2", "context.ranking_samples=1",
]


class LoggedDemoScript(DemoScript):
    """The demo's scripted model, logging which process answered which instance's call."""

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        reply = super().__call__(messages)
        second = any(SECOND in str(m.get("content")) for m in messages)
        with open(os.environ[CALL_LOG_ENV], "a") as log:
            log.write(json.dumps({"pid": os.getpid(), "second": second}) + "\n")
        return reply


class SlowDemoScript(LoggedDemoScript):
    """Every answer takes a while, so that a run can be interrupted while its nodes are busy."""

    def __call__(self, messages: list[dict[str, Any]]) -> Reply:
        return Reply(super().__call__(messages), delay_s=1.0)


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    call_log = tmp_path_factory.mktemp("ray-calls") / "calls.jsonl"
    temp_dir = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must stay under 108 characters
    with pytest.MonkeyPatch.context() as env:
        env.setenv(CALL_LOG_ENV, str(call_log))  # before the head starts: its workers inherit it
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(address="local", include_dashboard=False, num_cpus=2, _node_ip_address="127.0.0.1",
                 _temp_dir=temp_dir, logging_level="WARNING")
        try:
            yield SimpleNamespace(address=ray.get_runtime_context().gcs_address, call_log=call_log)
        finally:
            ray.shutdown()
            shutil.rmtree(temp_dir, ignore_errors=True)


def two_tasks(src: Path) -> list[Task]:
    first = demo_task(src)
    second = first.model_copy(update={"instance_id": "textkit-slugify-again", "issue": f"{first.issue}\n{SECOND}\n"})
    return [first, second]


def logged_calls(call_log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in call_log.read_text().splitlines()] if call_log.exists() else []


def store_rows(run_dir: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(run_dir / "run.sqlite")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def batch_command(tasks_file: Path, run_dir: Path, address: str) -> list[str]:
    sets = [item for o in OVERRIDES for item in ("--set", o)]
    return [sys.executable, "-m", "patchswarm.cli", "batch", "--tasks", str(tasks_file), "--run-dir", str(run_dir),
            "--workers", "2", "--executor", "ray", "--ray-address", address, "--scripted", SCRIPT, *sets, "--quiet"]


def run_batch(command: list[str]) -> tuple[subprocess.CompletedProcess, int]:
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = process.communicate(timeout=180)
    return subprocess.CompletedProcess(command, process.returncode, out, err), process.pid


def test_batch_on_ray_lands_in_the_driver_store_and_resumes(tmp_path, ray_head, docker_client, base_image):
    tasks = two_tasks(tmp_path / "src")
    tasks_file = tmp_path / "tasks.jsonl"
    tasks_file.write_text("".join(t.model_dump_json() + "\n" for t in tasks))
    run_dir = tmp_path / "run"
    command = batch_command(tasks_file, run_dir, ray_head.address)
    before = len(logged_calls(ray_head.call_log))

    done, driver_pid = run_batch(command)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("] done textkit-slugify") == 2, done.stderr  # the driver's progress lines

    # Results and predictions are the driver's, as for a local run.
    statuses = dict(store_rows(run_dir, "SELECT instance_id, status FROM instances"))
    assert statuses == {"textkit-slugify": "solved", "textkit-slugify-again": "solved"}
    predictions = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert {p["instance_id"] for p in predictions} == set(statuses)
    assert all("re.sub" in p["model_patch"] or ".split()" in p["model_patch"] for p in predictions)
    for instance_id in statuses:
        result = json.loads((run_dir / "instances" / instance_id / "result.json").read_text())
        assert result["status"] == "solved" and result["cost_usd"] > 0
        assert store_rows(run_dir, f"SELECT COUNT(*) FROM events WHERE kind = 'execution' "
                                   f"AND instance_id = '{instance_id}'")[0][0] > 0

    # Every model call was answered in a Ray worker, and the driver's store logged each one, per instance.
    calls = logged_calls(ray_head.call_log)[before:]
    assert calls and driver_pid not in {c["pid"] for c in calls}
    logged = dict(store_rows(run_dir, "SELECT instance_id, COUNT(*) FROM call_log GROUP BY instance_id"))
    assert logged == {"textkit-slugify": sum(not c["second"] for c in calls),
                      "textkit-slugify-again": sum(c["second"] for c in calls)}
    assert store_rows(run_dir, "SELECT COUNT(*) FROM calls")[0][0] == len(calls)

    # The same command again: both instances are done, nothing is asked.
    again, _ = run_batch(command)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("] skipped textkit-slugify") == 2, again.stderr
    assert len(logged_calls(ray_head.call_log)) == before + len(calls)

    # As if Ctrl-C had hit after every call: the nodes get the saved states and calls and ask nothing.
    store = RunStore(run_dir)
    config_hash = store.get_meta("config_hash")
    for instance_id in statuses:
        store.mark_instance(instance_id, config_hash, "interrupted")
    store.close()
    config = load_config(overrides=[*OVERRIDES, "workers=2"])
    resumed = run_tasks(tasks, config, run_dir, live=False, executor=RayExecutor(scripted=[SCRIPT]))
    assert [r.status for r in resumed] == ["solved", "solved"]
    assert {r.instance_id: r.patch for r in resumed} == {p["instance_id"]: p["model_patch"] for p in predictions}
    assert len(logged_calls(ray_head.call_log)) == before + len(calls)
    assert store_rows(run_dir, "SELECT COUNT(*) FROM call_log")[0][0] == len(calls)


def test_ctrl_c_stops_the_nodes_and_leaves_no_container(tmp_path, ray_head, docker_client, base_image):
    tasks_file = tmp_path / "tasks.jsonl"
    tasks_file.write_text("".join(t.model_dump_json() + "\n" for t in two_tasks(tmp_path / "src")))
    run_dir = tmp_path / "ctrl-c-run"
    command = batch_command(tasks_file, run_dir, ray_head.address)
    command[command.index(SCRIPT)] = SCRIPT.replace("LoggedDemoScript", "SlowDemoScript")
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "run.sqlite").exists() or store_rows(
                run_dir, "SELECT COUNT(DISTINCT instance_id) FROM call_log")[0][0] < 2:  # both nodes busy
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert dict(store_rows(run_dir, "SELECT instance_id, status FROM instances")) == {
        "textkit-slugify": "interrupted", "textkit-slugify-again": "interrupted"}
    containers = docker_client.containers.list(all=True, filters={"label": "patchswarm.run"}, ignore_removed=True)
    assert not [c for c in containers if c.labels["patchswarm.run"].startswith(f"{run_dir.name}-")]


def test_max_cost_holds_across_workers(tmp_path, ray_head, docker_client, base_image):
    limit = 0.01  # about a third of what one instance spends: each alone would pass it
    config = load_config(overrides=[*OVERRIDES, "workers=2", "models.max_concurrency=1",
                                    f"budget.max_cost_usd={limit}"])
    run_dir = tmp_path / "run"
    results = run_tasks(two_tasks(tmp_path / "src"), config, run_dir, live=False,
                        executor=RayExecutor(scripted=[SCRIPT]))

    assert all(r.budget_stopped for r in results), [r.errors for r in results]
    costs = [cost for (cost,) in store_rows(run_dir, "SELECT cost_usd FROM call_log ORDER BY id")]
    assert sum(costs) == pytest.approx(sum(r.cost_usd for r in results))
    # One call in flight per worker when the shared total crossed the limit, and nothing started after.
    assert limit <= sum(costs) < limit + 2 * max(costs)
    reached = next(i for i in range(len(costs)) if sum(costs[:i + 1]) >= limit)
    assert len(costs) - reached - 1 <= 1


def test_adaptive_shares_are_one_pool_across_nodes(tmp_path, ray_head, docker_client, base_image):
    from tests.patchswarm.adaptive_scripts import difficulty_issue
    from tests.patchswarm.test_adaptive import ADAPTIVE
    from tests.patchswarm.test_pipeline import ISSUE, calc_repo

    repo, sha = calc_repo(tmp_path)
    tasks = [Task(instance_id=d, repo=str(repo), commit=sha, issue=difficulty_issue(ISSUE, d)) for d in ("easy", "hard")]
    total = 14.0  # shares of $7: the easy instance leaves ~$2.6, which the hard one needs for its fourth sample
    config = load_config(overrides=[*ADAPTIVE, f"budget.max_cost_usd={total}", "workers=1"])
    easy, hard = run_tasks(tasks, config, tmp_path / "run", live=False,
                           executor=RayExecutor(scripted=["calc=tests.patchswarm.adaptive_scripts:PaddedDifficultyScript"]))

    assert easy.adaptive.stop_reason == "decisive" and easy.adaptive.released_usd > 0
    assert hard.adaptive.stop_reason == "max_samples" and hard.adaptive.samples == 4
    assert 0 < hard.adaptive.granted_usd <= easy.adaptive.released_usd
    assert hard.cost_usd > total / 2 > easy.cost_usd
    assert easy.cost_usd + hard.cost_usd <= total


def test_cli_names_the_extra_when_ray_is_missing(monkeypatch, tmp_path):
    from patchswarm.cli import app

    monkeypatch.setitem(sys.modules, "ray", None)  # None: `import ray` raises ImportError
    for module in ("patchswarm.ray_executor", "patchswarm.ray_node"):
        monkeypatch.delitem(sys.modules, module)  # imported afresh, as in a process without Ray
    tasks_file = tmp_path / "tasks.jsonl"
    tasks_file.write_text("")
    result = CliRunner().invoke(app, ["batch", "--tasks", str(tasks_file), "--executor", "ray"])
    assert result.exit_code == 1
    assert "pip install patchswarm[ray]" in result.output


def test_a_wrong_ray_address_fails_fast():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionError, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
        _check_reachable(f"127.0.0.1:{port}")


def test_store_rows_move_between_stores(tmp_path):
    source, target = RunStore(tmp_path / "node"), RunStore(tmp_path / "driver")
    source.save("a", {"v": 1})
    source.save("b", {"v": 2})
    first, cursor = source.export_rows("states")
    source.save("a", {"v": 3})  # rewritten after the first export: news again
    source.event("execution", "i1", exit_code=0)
    newer, _ = source.export_rows("states", after_rowid=cursor)
    assert [row["key"] for row in newer] == ["a"]
    target.event("execution", "i0", exit_code=1)
    target.import_rows({"states": first + newer, "events": source.export_rows("events")[0]})
    assert (target.load("a"), target.load("b")) == ({"v": 3}, {"v": 2})
    assert [e["instance_id"] for e in target.events()] == ["i0", "i1"]  # log rows are appended
    with pytest.raises(ValueError, match="unknown run store table"):
        source.export_rows("sqlite_master")
    source.close()
    target.close()
