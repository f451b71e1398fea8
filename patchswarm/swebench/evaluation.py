"""Evaluate a set of predictions (or the gold / empty patches) and summarise like the harness's run report.

Logs and reports go to `<report_dir>/<run_id>/<model>/<instance_id>/` (eval.sh, patch.diff,
run_instance.log, test_output.txt, report.json), the harness's own layout; `<report_dir>/<run_id>/`
gets report.json (every instance's harness report, keyed by instance id), summary.json and
instances.jsonl (our per-instance records).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import docker
from pydantic import BaseModel, Field

from patchswarm.paths import safe_name
from patchswarm.swebench.dataset import Prediction, SweInstance
from patchswarm.swebench.environments import DEFAULT_REPO_URL, resolve_instance_image
from patchswarm.swebench.grading import (
    InstanceReport,
    blank_report,
    grade_instance,
    grading_limits,
    mark_validation,
)
from patchswarm.swebench.specs import SpecTable
from sandbox import Limits, SandboxManager
from sandbox.repos import DEFAULT_CACHE

Mode = Literal["predictions", "gold", "empty"]


class RepoTally(BaseModel):
    total: int = 0
    resolved: int = 0
    resolved_pct: float = 0.0


class RunSummary(BaseModel):
    """The harness's run report fields, plus patch failures, per-repository rates and broken environments."""

    run_id: str
    mode: Mode
    model_name_or_path: str
    total_instances: int
    submitted_instances: int
    completed_instances: int
    resolved_instances: int
    unresolved_instances: int
    empty_patch_instances: int
    patch_failed_instances: int
    error_instances: int
    resolved_pct: float = Field(description="Resolved over all selected instances, as the leaderboard counts.")
    per_repo: dict[str, RepoTally]
    resolved_ids: list[str]
    unresolved_ids: list[str]
    empty_patch_ids: list[str]
    patch_failed_ids: list[str]
    error_ids: list[str]
    incomplete_ids: list[str]
    env_broken_ids: list[str]


class EvalRun(BaseModel):
    summary: RunSummary
    instances: list[InstanceReport]
    run_dir: str


def new_eval_run_id() -> str:
    """Unique per call, readable in a listing."""
    return f"patchswarm-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def _pct(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


def summarize(reports: list[InstanceReport], instances: list[SweInstance], run_id: str, mode: Mode,
              model_name: str) -> RunSummary:
    by_status: dict[str, list[str]] = defaultdict(list)
    for r in reports:
        by_status[r.status].append(r.instance_id)
    per_repo: dict[str, RepoTally] = defaultdict(RepoTally)
    for instance in instances:
        per_repo[instance.repo].total += 1
    for r in reports:
        per_repo[r.repo].resolved += r.resolved
    for tally in per_repo.values():
        tally.resolved_pct = _pct(tally.resolved, tally.total)
    done = {r.instance_id for r in reports}
    errors = sorted(by_status["error"] + by_status["timeout"])
    return RunSummary(
        run_id=run_id, mode=mode, model_name_or_path=model_name, total_instances=len(instances),
        submitted_instances=len(reports), completed_instances=len(reports) - len(errors) - len(by_status["empty_patch"]),
        resolved_instances=len(by_status["resolved"]), unresolved_instances=len(by_status["unresolved"]),
        empty_patch_instances=len(by_status["empty_patch"]), patch_failed_instances=len(by_status["patch_failed"]),
        error_instances=len(errors), resolved_pct=_pct(len(by_status["resolved"]), len(instances)),
        per_repo=dict(sorted(per_repo.items())), resolved_ids=sorted(by_status["resolved"]),
        unresolved_ids=sorted(by_status["unresolved"]), empty_patch_ids=sorted(by_status["empty_patch"]),
        patch_failed_ids=sorted(by_status["patch_failed"]), error_ids=errors,
        incomplete_ids=sorted(i.instance_id for i in instances if i.instance_id not in done),
        env_broken_ids=sorted(r.instance_id for r in reports if r.env_broken),
    )


def evaluate(
    client: docker.DockerClient, instances: list[SweInstance], predictions: list[Prediction] | None = None, *,
    mode: Mode = "predictions", spec_table: SpecTable, repo_url_template: str = DEFAULT_REPO_URL,
    report_dir: Path = Path("logs/patchswarm-eval"), run_id: str | None = None, workers: int = 1,
    timeout: float = 1800, system: bool = True, prefer_official: bool = True, cache_dir: Path = DEFAULT_CACHE,
    limits: Limits | None = None, handle_signals: bool = True, stand_ins: bool = True, network: bool = False,
    on_result: Callable[[InstanceReport], None] | None = None,
    on_phase: Callable[[str, str], None] | None = None,
) -> EvalRun:
    """Grade every instance that has a prediction (or, in gold/empty mode, every instance).

    `on_phase(instance_id, phase)`: each instance's phases as they start (fetch, build environment,
    build instance, apply patch, run tests, grade), for live progress."""
    run_id = run_id or new_eval_run_id()
    run_dir = report_dir / safe_name(run_id)
    by_id = {p.instance_id: p for p in predictions or []}
    if mode == "predictions":
        work = [(i, by_id[i.instance_id].model_patch, by_id[i.instance_id].model_name_or_path)
                for i in instances if i.instance_id in by_id]
    else:
        work = [(i, i.patch if mode == "gold" else "", mode) for i in instances]
    model_name = work[0][2] if work else mode
    repo_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)  # one clone/build per repo at a time
    guard = threading.Lock()

    def one(item: tuple[SweInstance, str | None, str]) -> InstanceReport:
        instance, patch, name = item
        log_dir = run_dir / safe_name(name.replace("/", "__")) / safe_name(instance.instance_id)
        stage = "no image"

        def phase(name: str) -> None:
            if on_phase:
                on_phase(instance.instance_id, name)

        image, started = None, time.monotonic()
        try:
            phase("fetch")
            with guard:
                lock = repo_locks[instance.repo]
            with lock:
                image = resolve_instance_image(
                    client, instance, spec_table, repo_url_template, prefer_official=prefer_official,
                    system=system, run_id=run_id, cache_dir=cache_dir, on_phase=phase)  # logs: one per image
            image_s = round(time.monotonic() - started, 2)
            stage = "grading failed"
            report = grade_instance(client, instance, patch, image, manager=manager, spec_table=spec_table,
                                    model_name=name, timeout=timeout, log_dir=log_dir,
                                    skip_patch=mode == "empty", limits=limits, on_phase=phase,
                                    use_stand_ins=stand_ins, network=network)
        except Exception as exc:  # noqa: BLE001 - one broken instance must not end a run of hundreds
            report = InstanceReport(instance_id=instance.instance_id, repo=instance.repo, model_name_or_path=name,
                                    status="error", resolved=False, report=blank_report(instance.instance_id, patch),
                                    error=f"{stage}: {error_text(exc)}")
        report.duration_s = round(time.monotonic() - started, 2)  # build included
        if image is not None:
            report.image_s = image_s
            report.system_build_s, report.env_build_s = image.system_build_s, image.env_build_s
            report.instance_build_s = image.instance_build_s
            report.build_log = image.build_log
        if mode != "predictions":
            mark_validation(report, mode)
        if on_result:
            on_result(report)
        return report

    limits = limits or grading_limits(client)
    with SandboxManager(client, run_id=run_id, handle_signals=handle_signals) as manager:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            reports = list(pool.map(one, work))
    summary = summarize(reports, instances, run_id, mode, model_name)
    _write(run_dir, summary, reports)
    return EvalRun(summary=summary, instances=reports, run_dir=str(run_dir))


def error_text(exc: BaseException, tail_lines: int = 3) -> str:
    """One line naming what failed; for a failed build also the last lines of its output (⏎ between)."""
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    tail = [line.strip() for line in (getattr(exc, "tail", "") or "").splitlines() if line.strip()]
    if tail:
        message += " — last output: " + " ⏎ ".join(line[:200] for line in tail[-tail_lines:])
    return message


def _write(run_dir: Path, summary: RunSummary, reports: list[InstanceReport]) -> None:
    import json

    run_dir.mkdir(parents=True, exist_ok=True)
    merged = {}
    for r in reports:
        merged.update(r.report)
    (run_dir / "report.json").write_text(json.dumps(merged, indent=4))
    (run_dir / "summary.json").write_text(summary.model_dump_json(indent=2))
    (run_dir / "instances.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in reports))


# -- the official harness ----------------------------------------------------------------------------


def official_command(dataset: str, predictions: str, *, run_id: str, split: str = "test",
                     instance_ids: list[str] | None = None, max_workers: int = 4, timeout: int = 1800,
                     report_dir: str = ".") -> list[str]:
    """`python -m swebench.harness.run_evaluation ...`; `predictions` is a file or "gold"."""
    command = [sys.executable, "-m", "swebench.harness.run_evaluation", "--dataset_name", dataset,
               "--split", split, "--predictions_path", predictions, "--run_id", run_id,
               "--max_workers", str(max_workers), "--timeout", str(timeout), "--report_dir", report_dir]
    if instance_ids:
        command += ["--instance_ids", *instance_ids]
    return command


def run_official(command: list[str]) -> int:
    """Run the official harness in the foreground (its output goes to ours); returns its exit code."""
    return subprocess.run(command).returncode
