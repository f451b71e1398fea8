"""Adaptive sampling end to end on scripted instances of known difficulty: real Docker, git and SQLite.

The easy instance must stop early (decisive), the nearly-solved one must be extended rather than
resampled, the hard one must get more trajectories than the easy ones, paid from their unspent shares,
and no budget (run, per instance, share) may be broken.
"""

from __future__ import annotations

import json

import pytest

from patchswarm.config import load_config
from patchswarm.pipeline import run_tasks
from patchswarm.report.build import build_report
from patchswarm.report.load import ReportError
from patchswarm.store import RunStore
from patchswarm.tasks import Task
from tests.conftest import providers
from tests.patchswarm.adaptive_scripts import DifficultyScript, difficulty_issue
from tests.patchswarm.test_pipeline import ISSUE, calc_repo, run_containers, unique_run_dir

# Output tokens dominate the cost: ~$1 for each trajectory's padded first test and first edit, cents else.
PRICE = "models.price_overrides={'scripted/calc': {input_per_mtok: 0.0, output_per_mtok: 1000.0}}"
ADAPTIVE = [
    "models.roles.relevance=scripted/calc", "models.roles.primary=scripted/calc",
    "models.roles.selector=scripted/calc", PRICE, "models.retry_base_delay_s=0.01",
    "trajectories.max_attempts_editing=2", "trajectories.test_timeout_s=30", "selection.test_timeout_s=30",
    "selection.selector_enabled=false", "selection.regression_enabled=false", "sandbox.pool_size=2",
    "context.ranking_samples=1", "trajectories.adaptive.enabled=true", "trajectories.adaptive.initial=2",
    "trajectories.adaptive.stopping.max_samples=4", "trajectories.adaptive.extend_attempts=3",
]


def tasks(repo, sha, *difficulties: str) -> list[Task]:
    return [Task(instance_id=d, repo=str(repo), commit=sha, issue=difficulty_issue(ISSUE, d)) for d in difficulties]


def paid_calls(run_dir) -> dict[str, list[float]]:
    store = RunStore(run_dir)
    try:
        rows = store._exec("SELECT instance_id, cost_usd FROM call_log WHERE reused = 0")
        out: dict[str, list[float]] = {}
        for instance_id, cost in rows:
            out.setdefault(instance_id, []).append(cost or 0.0)
        return out
    finally:
        store.close()


def test_adaptive_spends_less_on_easy_more_on_hard_and_keeps_every_budget(tmp_path, base_image, scripted,
                                                                          docker_client):
    scripted.add("calc", DifficultyScript(pad=4000))
    repo, sha = calc_repo(tmp_path)
    total, cap = 21.0, 10.0  # shares of $7; two trajectories cost ~$4.4, four ~$8.8
    config = load_config(overrides=[*ADAPTIVE, f"budget.max_cost_usd={total}",
                                    f"budget.max_cost_per_instance_usd={cap}"])
    run_dir = unique_run_dir(tmp_path, "adaptive")

    easy, close, hard = run_tasks(tasks(repo, sha, "easy", "close", "hard"), config, run_dir, live=False, providers=providers(scripted))

    share = total / 3
    assert easy.adaptive.stop_reason == "decisive" and easy.adaptive.samples == 2
    assert easy.adaptive.extensions == 0 and "return 0.0" in easy.patch
    # Nearly passed (exit 2 → 1, out of attempts): extended, not resampled, then decided.
    assert close.adaptive.stop_reason == "decisive" and close.adaptive.samples == 2
    assert close.adaptive.extensions >= 1 and "return 0.0" in close.patch
    extend = next(s for s in close.adaptive.steps if s.action == "extend")
    assert "ran out of attempts" in extend.why and "exit 2 to 1" in extend.why
    # Never passing: sampled to the maximum, all fresh (the same failure every time).
    assert hard.adaptive.stop_reason == "max_samples" and hard.adaptive.samples == 4
    assert {s.action for s in hard.adaptive.steps} == {"fresh", "stop"}
    assert all(s.hardness == "no_passing" for s in hard.adaptive.steps)
    # Spending follows difficulty, and the hard instance went past its share on what the easy ones left.
    assert easy.cost_usd < share and close.cost_usd < share
    assert hard.cost_usd > share > easy.cost_usd
    assert hard.adaptive.granted_usd > 0
    assert hard.adaptive.granted_usd <= easy.adaptive.released_usd + close.adaptive.released_usd + 1e-9
    calls = paid_calls(run_dir)
    in_flight = config.models.max_concurrency * max(c for costs in calls.values() for c in costs)
    for result in (easy, close, hard):
        assert result.cost_usd == pytest.approx(sum(calls[result.instance_id]))
        assert result.cost_usd <= min(cap, result.adaptive.allowance_usd) + in_flight
        assert not result.budget_stopped
    assert sum(r.cost_usd for r in (easy, close, hard)) <= total
    # Recorded per instance: result.json, the run store's events.
    stored = json.loads((run_dir / "instances" / "hard" / "result.json").read_text())
    assert stored["adaptive"]["stop_reason"] == "max_samples"
    store = RunStore(run_dir)
    try:
        events = [e["data"] for e in store.events(kind="adaptive")]
    finally:
        store.close()
    assert sorted(e["stop_reason"] for e in events) == ["decisive", "decisive", "max_samples"]
    assert not run_containers(docker_client, run_dir)

    # The report: stop reasons' counts and per-instance rounds, and a benchmark figure embedded.
    figure = tmp_path / "bench" / "accuracy_vs_compute.png"
    figure.parent.mkdir()
    figure.write_bytes(b"\x89PNG\r\n\x1a\nnot really an image")
    (figure.parent / "results.md").write_text("| policy | accuracy |\n| adaptive | 0.9 |\n")
    index = build_report(run_dir, figure_paths=[figure]).read_text()
    assert "<strong>decisive</strong> 2, <strong>max_samples</strong> 1" in index
    assert "data:image/png;base64," in index and "| adaptive | 0.9 |" in index
    page = (run_dir / "report" / "instances" / "close.html").read_text()
    assert "Adaptive sampling" in page and "extend trajectory 0" in page
    with pytest.raises(ReportError, match="not a .png"):
        build_report(run_dir, figure_paths=[figure.parent / "results.md"])


def test_a_hard_instance_stops_at_its_budget_with_nothing_to_draw(tmp_path, base_image, scripted, docker_client):
    scripted.add("calc", DifficultyScript(pad=4000))
    repo, sha = calc_repo(tmp_path)
    limit = 5.0  # two trajectories (~$4.4) fit, a third does not
    config = load_config(overrides=[*ADAPTIVE, f"budget.max_cost_usd={limit}"])
    run_dir = unique_run_dir(tmp_path, "adaptive-budget")

    (hard,) = run_tasks(tasks(repo, sha, "hard"), config, run_dir, live=False, providers=providers(scripted))

    assert hard.adaptive.stop_reason == "budget" and hard.adaptive.samples == 2
    assert "cannot pay another sample" in hard.adaptive.stop_detail
    assert hard.adaptive.granted_usd == 0
    assert hard.cost_usd <= limit
    assert hard.status == "solved"  # the best candidate found is still returned


def test_a_resumed_batch_pools_the_unspent_share_of_an_instance_finished_before(tmp_path, base_image, scripted,
                                                                                docker_client):
    # The easy instance finishes in a first run; the rerun skips it, and what it left of its share must
    # still reach the hard one (without that, the hard one stops at its share before its fourth sample).
    scripted.add("calc", DifficultyScript(pad=4000))
    repo, sha = calc_repo(tmp_path)
    total, cap = 14.0, 10.0  # shares of $7; two trajectories ~$4.4, four ~$8.8
    config = load_config(overrides=[*ADAPTIVE, f"budget.max_cost_usd={total}",
                                    f"budget.max_cost_per_instance_usd={cap}"])
    run_dir = unique_run_dir(tmp_path, "adaptive-resume")
    (easy,) = run_tasks(tasks(repo, sha, "easy"), config, run_dir, live=False, providers=providers(scripted))
    assert easy.adaptive.stop_reason == "decisive" and easy.cost_usd < total / 2

    skipped, hard = run_tasks(tasks(repo, sha, "easy", "hard"), config, run_dir, live=False,
                              providers=providers(scripted))

    assert skipped.cost_usd == pytest.approx(easy.cost_usd)  # the stored result, not run again
    assert hard.adaptive.stop_reason == "max_samples" and hard.adaptive.samples == 4
    assert 0 < hard.adaptive.granted_usd <= total / 2 - easy.cost_usd + 1e-9
    assert hard.cost_usd > total / 2 and easy.cost_usd + hard.cost_usd <= total
    assert not run_containers(docker_client, run_dir)
