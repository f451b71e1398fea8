"""The whole pipeline end to end: real Docker, git and SQLite, the scripted model, the `pipeline_calc` fixture.

CLI runs are subprocesses (`python -m patchswarm.cli`) so that kills and Ctrl-C hit a real process.
Kills are never timed: the scripted model holds every call after N answers and creates a gate file;
the test waits for that file and for the run store to hold every answered call, then signals.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from patchswarm.config import load_config
from patchswarm.pipeline import run_tasks
from patchswarm.store import RunStore
from patchswarm.tasks import Task
from sandbox.manager import owner_labels
from tests.conftest import FIXTURES, providers, settled_sandboxes
from tests.fixture_repos import fixture_repo
from tests.patchswarm.scripts import PLAN, RIGHT_FIX, CalcScript, read_call_log

ROOT = Path(__file__).resolve().parents[2]
ISSUE_FILE = FIXTURES / "pipeline_cases" / "average_empty.md"
ISSUE = ISSUE_FILE.read_text()
SCRIPT = "calc=tests.patchswarm.scripts:CalcScript"
# Small on purpose: two cores are shared with other developers' Docker tests.
OVERRIDES = [
    "models.roles.relevance=scripted/calc", "models.roles.primary=scripted/calc",
    "models.roles.selector=scripted/calc",
    "models.price_overrides={'scripted/calc': {input_per_mtok: 1.0, output_per_mtok: 5.0}}",
    "models.retry_base_delay_s=0.01", "trajectories.num_tests=1", "trajectories.num_edits=2",
    "trajectories.max_attempts_editing=3", "trajectories.test_timeout_s=30", "selection.test_timeout_s=30",
    "selection.selector_enabled=false", "sandbox.pool_size=2", "context.ranking_samples=1",
]
SUBPROCESS_TIMEOUT = 240


def calc_repo(dest: Path) -> tuple[Path, str]:
    """The `pipeline_calc` fixture as a one-commit repository (the same SHA, hence env image, every run)."""
    return fixture_repo("pipeline_calc", dest)


def cli(*args: str, overrides: list[str] = OVERRIDES) -> list[str]:
    sets = [item for o in overrides for item in ("--set", o)]
    return [sys.executable, "-m", "patchswarm.cli", *args, "--scripted", SCRIPT, *sets, "--quiet"]


def run_cli(command: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT)


def solve_command(repo: Path, sha: str, run_dir: Path, *extra: str) -> list[str]:
    return cli("solve", "--repo", str(repo), "--commit", sha, "--issue", f"@{ISSUE_FILE}",
               "--run-dir", str(run_dir), *extra)


def run_containers(docker_client, run_dir: Path) -> list:
    """Labelled containers of runs in `run_dir` (run ids are `<run dir name>-<start time>`)."""
    containers = docker_client.containers.list(all=True, filters={"label": "patchswarm.run"}, ignore_removed=True)
    return [c for c in containers if c.labels["patchswarm.run"].startswith(f"{run_dir.name}-")]


def run_sandboxes(docker_client, run_dir: Path) -> int | None:
    """`settled_sandboxes` of the run's containers, the decoy left out."""
    return settled_sandboxes([c for c in run_containers(docker_client, run_dir)
                              if not c.labels["patchswarm.run"].endswith("-decoy")])


def unique_run_dir(tmp_path: Path, name: str) -> Path:
    return tmp_path / f"{name}-{uuid.uuid4().hex[:8]}"


def wait_for(predicate, what: str, process: subprocess.Popen | None = None, timeout: float = 180) -> None:
    """Poll a condition (not a timing guess); fail early when the process under test died."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"process ended (exit {process.returncode}) while waiting for {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def stored_calls(run_dir: Path) -> int:
    """Completed calls in the replay store (read-only; 0 before the table exists)."""
    path = run_dir / "run.sqlite"
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def start_gated(command: list[str], tmp_path: Path, call_log: Path, gate_after: int) -> tuple[subprocess.Popen, Path]:
    """Start `command`; return once the script holds every call and the store has every answered one."""
    gate = tmp_path / f"gate-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "PATCHSWARM_TEST_CALL_LOG": str(call_log), "PATCHSWARM_TEST_GATE_AFTER": str(gate_after),
           "PATCHSWARM_TEST_GATE_FILE": str(gate)}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = Path(command[command.index("--run-dir") + 1])
    wait_for(gate.exists, "the scripted model's gate", process)
    # Every answer (of this and earlier processes) in the replay store: nothing is between the two.
    wait_for(lambda: stored_calls(run_dir) >= len(read_call_log(call_log)), "every answered call stored", process)
    return process, run_dir


def assert_no_repeated_call(call_log: Path, num_edits: int) -> None:
    """Across every process: each distinct request answered as often as a single uninterrupted run would.

    Parallel editing trajectories share their first request (same prefix, same seed test), so it is
    answered `num_edits` times; every later request of a trajectory is unique (their edits differ).
    """
    counts = Counter((e["sha"], e["kind"]) for e in read_call_log(call_log))
    repeated = {key: n for key, n in counts.items() if n > (num_edits if key[1] == "editing-first" else 1)}
    assert not repeated, f"requests answered more than once: {repeated}"


def result_json(run_dir: Path, instance_id: str) -> dict:
    return json.loads((run_dir / "instances" / instance_id / "result.json").read_text())


def only_instance(run_dir: Path) -> str:
    (instance_dir,) = (run_dir / "instances").iterdir()
    return instance_dir.name


# -- solve --------------------------------------------------------------------------------------------


def test_solve_cli_picks_the_right_patch_and_applies_it(tmp_path, base_image, docker_client):
    repo, sha = calc_repo(tmp_path)
    run_dir = unique_run_dir(tmp_path, "solve")
    done = run_cli(solve_command(repo, sha, run_dir, "--apply"))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # The first editing trajectory gets the wrong edit (returns None); the vote must pick the right one.
    assert PLAN[0] != "right"
    assert "status: solved" in out
    assert "chosen by: vote (" in out
    assert f"run: {run_dir}" in out
    cost_line = next(line for line in out.splitlines() if line.startswith("cost: $"))
    assert float(cost_line.split("$")[1].split()[0]) > 0
    assert f"applied the patch to {repo}" in done.stderr
    assert RIGHT_FIX in (repo / "calc" / "ops.py").read_text()
    result = result_json(run_dir, only_instance(run_dir))
    assert result["status"] == "solved" and result["selection_method"] == "vote"
    assert result["chosen_candidate"] == "t1" and result["votes"] == 1
    applied = subprocess.run(["git", "diff"], cwd=repo, capture_output=True, text=True, check=True).stdout
    assert applied.strip() and "return 0.0" in applied
    # The edited checkout passes the chosen patch's own reproduction test.
    check = subprocess.run([sys.executable, "-c", "import calc; assert calc.average([]) == 0.0"], cwd=repo)
    assert check.returncode == 0
    assert not run_containers(docker_client, run_dir)


# -- batch --------------------------------------------------------------------------------------------


def test_batch_goes_on_past_a_failing_task(tmp_path, base_image, docker_client):
    repo, sha = calc_repo(tmp_path)
    missing = "0123456789abcdef0123456789abcdef01234567"
    rows = [
        {"instance_id": "calc-empty", "repo": "pipeline_calc", "commit": sha, "issue": ISSUE},
        {"instance_id": "calc-missing-commit", "repo": "pipeline_calc", "commit": missing, "issue": ISSUE},
        {"instance_id": "calc-empty-main", "repo": "pipeline_calc", "commit": "main",
         "problem_statement": ISSUE + "\nSeen in production as well.\n"},
    ]
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_dir = unique_run_dir(tmp_path, "batch")
    done = run_cli(cli("batch", "--tasks", str(tasks), "--run-dir", str(run_dir), "--workers", "2"))
    assert done.returncode == 3, done.stderr  # some instances ended in error
    assert "error: 1 of 3 instance(s) ended in error (1 failed)" in done.stderr

    predictions = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    # Every attempted instance is present; one that failed has an empty patch.
    assert sorted(p["instance_id"] for p in predictions) == ["calc-empty", "calc-empty-main", "calc-missing-commit"]
    for prediction in predictions:
        if prediction["instance_id"] == "calc-missing-commit":
            assert prediction["model_patch"] == ""
            continue
        assert set(prediction) == {"instance_id", "model_name_or_path", "model_patch"}
        check = subprocess.run(["git", "apply", "--check", "-"], input=prediction["model_patch"], text=True,
                               cwd=repo, capture_output=True)
        assert check.returncode == 0, check.stderr

    for instance_id in ("calc-empty", "calc-empty-main"):
        assert result_json(run_dir, instance_id)["status"] == "solved"
    failed = result_json(run_dir, "calc-missing-commit")
    assert failed["status"] == "failed" and failed["patch"] == ""
    error = failed["errors"][0]
    assert missing[:7] in error and "\n" not in error
    store = RunStore(run_dir)
    try:
        statuses = {i["instance_id"]: (i["status"], i["error"]) for i in store.instances()}
        assert store.get_meta("status") == "finished"
    finally:
        store.close()
    assert statuses["calc-missing-commit"][0] == "failed" and "\n" not in statuses["calc-missing-commit"][1]
    assert statuses["calc-empty"][0] == statuses["calc-empty-main"][0] == "solved"
    failed_line = next(line for line in done.stdout.splitlines() if line.startswith("calc-missing-commit"))
    assert "failed" in failed_line and missing[:7] in failed_line
    assert not run_containers(docker_client, run_dir)


# -- resume ---------------------------------------------------------------------------------------------


def test_resume_after_kills_repeats_no_call_and_leaves_no_container(tmp_path, base_image, docker_client):
    repo, sha = calc_repo(tmp_path)
    run_dir = unique_run_dir(tmp_path, "kill")
    call_log = tmp_path / "calls.jsonl"
    command = solve_command(repo, sha, run_dir)
    # Killed early (2 calls answered: the context stage and the testing machine run side by side, so
    # the context is not yet saved): the resumed run must replay those two from the call store.
    process, _ = start_gated(command, tmp_path, call_log, gate_after=2)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert len(read_call_log(call_log)) == 2
    # Killed mid-editing: with the 4 relevance calls, the test and its approval answered, the first edit
    # is the only call left to make; the resumed run continues the saved state machines.
    process, _ = start_gated(command, tmp_path, call_log, gate_after=5)
    assert run_containers(docker_client, run_dir), "the killed run should have had live sandboxes"
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    killed = read_call_log(call_log)
    kinds = [e["kind"] for e in killed]
    assert sorted(kinds[:6]) == sorted(["relevance"] * 4 + ["testing-first", "testing"])
    assert kinds[6:] == ["editing-first"]

    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "PATCHSWARM_TEST_CALL_LOG": str(call_log)},
                          capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert "status: solved" in done.stdout
    assert len(read_call_log(call_log)) > len(killed), "the resumed run should have finished the work"
    assert_no_repeated_call(call_log, num_edits=2)
    result = result_json(run_dir, only_instance(run_dir))
    assert result["chosen_candidate"] == "t1" and "+        return 0.0" in result["patch"]
    assert not run_containers(docker_client, run_dir)


def test_the_store_records_the_sandbox_run_id_a_resume_reuses_and_clean_removes(tmp_path, base_image, docker_client):
    repo, sha = calc_repo(tmp_path)
    run_dir = unique_run_dir(tmp_path, "label")
    call_log = tmp_path / "calls.jsonl"
    command = solve_command(repo, sha, run_dir)
    # Another run's container, with this (live) process as its owner: `clean --run` must leave it.
    decoy = docker_client.containers.run(base_image, ["sleep", "600"], detach=True,
                                         labels=owner_labels(f"{run_dir.name}-decoy"))
    try:
        labels = []
        for gate_after in (2, 3):  # a first run, then its resume
            process, _ = start_gated(command, tmp_path, call_log, gate_after=gate_after)
            # Two warm sandboxes (sandbox.pool_size=2); the process is stopped, not killed, so it stays
            # their live owner and no other run's orphan sweep removes them before `clean` does.
            # Holders of quota volumes and image probes carry the run label too, and live for a moment while
            # a sandbox starts: wait until the only ones left are the decoy and two running sandboxes.
            wait_for(lambda: run_sandboxes(docker_client, run_dir) == 2, "two live sandboxes", process)
            process.send_signal(signal.SIGSTOP)
            store = RunStore(run_dir)
            recorded = store.get_meta("sandbox_run_id")
            store.close()
            live = {c.labels["patchswarm.run"] for c in run_containers(docker_client, run_dir)} - {decoy.labels["patchswarm.run"]}
            assert live == {recorded}
            labels.append(recorded)
            cleaned = run_cli([sys.executable, "-m", "patchswarm.cli", "clean", "--run", str(run_dir)])
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=30)
            assert cleaned.returncode == 0 and cleaned.stdout.strip() == "removed 2 container(s)", cleaned.stderr
            assert [c.labels["patchswarm.run"] for c in run_containers(docker_client, run_dir)] == [f"{run_dir.name}-decoy"]
        assert labels[0] == labels[1], "the resumed run should label its sandboxes with the recorded id"
    finally:
        decoy.remove(force=True)


def test_ctrl_c_cleans_up_and_the_same_command_resumes(tmp_path, base_image, docker_client):
    repo, sha = calc_repo(tmp_path)
    run_dir = unique_run_dir(tmp_path, "sigint")
    call_log = tmp_path / "calls.jsonl"
    command = solve_command(repo, sha, run_dir)
    process, _ = start_gated(command, tmp_path, call_log, gate_after=5)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "interrupted" in err and "rerun the same command" in err
    assert not run_containers(docker_client, run_dir)
    store = RunStore(run_dir)
    try:
        assert store.get_meta("status") == "interrupted"
        (instance,) = store.instances()
        assert instance["status"] == "interrupted"
        assert store.count_calls() == 5
        assert store.totals().calls == 5
    finally:
        store.close()

    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "PATCHSWARM_TEST_CALL_LOG": str(call_log)},
                          capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert "status: solved" in done.stdout
    assert_no_repeated_call(call_log, num_edits=2)
    store = RunStore(run_dir)
    try:
        assert store.get_meta("status") == "finished"
        assert [i["status"] for i in store.instances()] == ["solved"]
    finally:
        store.close()
    assert not run_containers(docker_client, run_dir)


# -- in-process: budgets and config changes -------------------------------------------------------------


def calc_task(repo: Path, sha: str) -> Task:
    return Task(instance_id="calc-empty", repo=str(repo), commit=sha, issue=ISSUE)


def test_budget_stop_returns_the_best_candidate_so_far(tmp_path, base_image, scripted, docker_client):
    # Output tokens dominate the cost: ~$1 per padded test or edit reply, cents for the rest.
    script = CalcScript(pad=4000)
    scripted.add("calc", script)
    price = "models.price_overrides={'scripted/calc': {input_per_mtok: 0.0, output_per_mtok: 1000.0}}"
    limit = 1.5
    # As with a caching provider, the first edit is made alone (so exactly one call is in flight there).
    warm = "models.warm_prefix_cache=always"
    config = load_config(overrides=[*OVERRIDES, price, warm, f"budget.max_cost_usd={limit}"])
    repo, sha = calc_repo(tmp_path)
    run_dir = unique_run_dir(tmp_path, "budget")

    (result,) = run_tasks([calc_task(repo, sha)], config, run_dir, live=False, providers=providers(scripted))

    # Context (cents) + the test (~$1) + approve (cents) stay under the limit; the first edit (~$1),
    # made alone to warm the cache, crosses it: its trajectory keeps its edit, the other never starts.
    assert result.budget_stopped
    editing = [t.editing for t in result.trajectories]
    assert [e.outcome for e in editing] == ["budget_exhausted", "budget_exhausted"]
    assert editing[0].patch and not editing[1].patch
    assert result.status == "solved" and result.patch == editing[0].patch
    store = RunStore(run_dir)
    try:
        costs = [row[0] for row in store._exec("SELECT cost_usd FROM call_log WHERE reused = 0")]
        instance = store.instances()[0]
    finally:
        store.close()
    in_flight = config.models.max_concurrency * max(costs)
    assert limit < result.cost_usd <= limit + in_flight
    assert result.cost_usd == pytest.approx(sum(costs))
    assert instance["status"] == "solved" and instance["result"]["budget_stopped"]

    # Rerun with a larger limit: the stopped instance continues (not skipped as finished), and what it
    # spent before counts once: $2.2 spent + $1.1 for the second edit stays under $3.5.
    calls = script.answered
    raised = 3.5
    config = load_config(overrides=[*OVERRIDES, price, warm, f"budget.max_cost_usd={raised}"])
    (resumed,) = run_tasks([calc_task(repo, sha)], config, run_dir, live=False, providers=providers(scripted))
    assert script.answered > calls
    assert not resumed.budget_stopped
    assert [t.editing.outcome for t in resumed.trajectories] == ["finished", "finished"]
    assert resumed.chosen_candidate == "t1" and "return 0.0" in resumed.patch
    assert result.cost_usd < resumed.cost_usd <= raised
    assert not run_containers(docker_client, run_dir)


def test_config_change_invalidates_reuse(tmp_path, base_image, scripted, docker_client):
    first, other = CalcScript(), CalcScript()
    scripted.add("calc", first)
    scripted.add("other", other)
    repo, sha = calc_repo(tmp_path)
    task = calc_task(repo, sha)
    run_dir = unique_run_dir(tmp_path, "rehash")

    (done,) = run_tasks([task], load_config(overrides=OVERRIDES), run_dir, live=False, providers=providers(scripted))
    assert done.status == "solved" and first.answered > 0

    calls = first.answered
    (again,) = run_tasks([task], load_config(overrides=OVERRIDES), run_dir, live=False, providers=providers(scripted))
    assert first.answered == calls, "same config: the finished instance is reused, no call is made"
    assert again.patch == done.patch

    (redone,) = run_tasks([task], load_config(overrides=OVERRIDES), run_dir, redo=True, live=False, providers=providers(scripted))
    assert first.answered == 2 * calls, "--redo asks the model again instead of replaying stored calls"
    assert redone.status == "solved"

    calls = first.answered
    (more,) = run_tasks([task], load_config(overrides=[*OVERRIDES, "trajectories.num_edits=3"]), run_dir, live=False, providers=providers(scripted))
    assert first.answered > calls, "a changed result-affecting setting must redo the work"
    assert len(more.trajectories) == 3 and more.status == "solved"

    calls = first.answered
    (switched,) = run_tasks([task], load_config(overrides=[*OVERRIDES, "models.roles.primary=scripted/other"]),
                            run_dir, live=False, providers=providers(scripted))
    assert other.answered > 0 and switched.status == "solved"
    store = RunStore(run_dir)
    try:
        hashes = {i["config_hash"] for i in store.instances()}
        skipped = [e for e in (run_dir / "events.jsonl").read_text().splitlines() if "instance_skipped" in e]
    finally:
        store.close()
    assert len(hashes) == 3
    assert len(skipped) == 1


def test_sigterm_during_a_long_sandbox_command_stops_promptly(tmp_path, base_image, docker_client):
    """The containers go first, which ends the command a worker thread waits on; nothing is left behind."""
    repo, sha = calc_repo(tmp_path)
    run_dir = unique_run_dir(tmp_path, "term")
    hang = [*(o.replace("scripted/calc", "scripted/hang") for o in OVERRIDES), "trajectories.test_timeout_s=900"]
    command = cli("solve", "--repo", str(repo), "--commit", sha, "--issue", f"@{ISSUE_FILE}", "--run-dir", str(run_dir),
                  "--scripted", "hang=tests.patchswarm.scripts:HangingTestScript", overrides=hang)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def test_is_running() -> bool:
        for container in run_containers(docker_client, run_dir):
            try:
                if any("repro_test.py" in " ".join(p) for p in container.top(ps_args="-eo pid,args")["Processes"] or []):
                    return True
            except Exception:  # noqa: BLE001 - a container may go away while we look
                continue
        return False

    wait_for(test_is_running, "the reproduction test running in a sandbox", process)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)  # far less than the command's own 900 s timeout
    assert process.returncode != 0
    assert not run_containers(docker_client, run_dir)
