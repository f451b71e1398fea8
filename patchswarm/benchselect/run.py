"""Run `select` on every graded instance of a candidates file and score its choices against the grades.

Per instance: the candidates (one per line of the file, the `resolved` hint dropped) go through the same
`select` path users run (`patchswarm.candidate_selection.select_candidates`), one instance at a time so each gets
its own wall time; the execution cache is shared, so ablations (one evidence kind off at a time) re-use
every execution of the full run and cost almost nothing.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import TypedDict

from pydantic import BaseModel, Field

from agent.llm import Providers
from patchswarm.benchselect.grades import CandidateRow, GradeBook
from patchswarm.config import PatchswarmConfig
from patchswarm.tasks import Task
from selection import Candidate, SelectionResult
from selection.candidates import agreement_key, lines_changed

ABLATIONS = {
    "all": {},
    "-regression": {"regression_enabled": False},
    "-probes": {"probes_enabled": False},
    "-consensus": {"consensus_enabled": False},
    "-hygiene": {"hygiene_enabled": False},
}


class InstanceScore(BaseModel):
    instance_id: str
    candidates: int = Field(description="Distinct non-empty candidate patches.")
    submissions: int = Field(description="Lines of the candidates file for this instance.")
    resolving: int = Field(description="Distinct candidates that resolve (graded).")
    chosen: str | None = None
    correct: bool = False
    method: str = ""
    confidence: float = 0.0
    confidence_level: str = "none"
    random: float = Field(0.0, description="Expected accuracy of a uniformly random distinct candidate.")
    smallest: float = Field(0.0, description="Expected accuracy of the smallest patch (ties averaged).")
    majority: float = Field(0.0, description="Expected accuracy of the largest group of identical normalized patches.")
    executions: int = 0
    executions_cached: int = 0
    wall_s: float = 0.0
    tokens: int = Field(0, description="Input + output tokens of billed model calls (0 LLM-free).")
    calls: int = Field(0, description="Billed model calls.")
    cost_usd: float = 0.0
    error: str | None = None
    reason: str = ""

    @property
    def mixed(self) -> bool:
        return 0 < self.resolving < self.candidates


def candidates_of(rows: list[CandidateRow]) -> list[Candidate]:
    """One candidate per line, id = system (made unique); nothing of the hint."""
    taken: Counter = Counter()
    out = []
    for row in rows:
        taken[row.system] += 1
        suffix = f"#{taken[row.system]}" if taken[row.system] > 1 else ""
        out.append(Candidate(id=f"{row.system}{suffix}", patch=row.model_patch, source=row.system))
    return out


class Baselines(TypedDict):
    candidates: int
    resolving: int
    random: float
    smallest: float
    majority: float


def baselines(instance_id: str, rows: list[CandidateRow], book: GradeBook) -> Baselines:
    """Random, smallest and majority picks' expected accuracy, over the distinct non-empty patches."""
    distinct: dict[str, bool] = {}
    for row in rows:
        if row.model_patch.strip() and row.model_patch not in distinct:
            grade = book.get(instance_id, row.model_patch)
            distinct[row.model_patch] = bool(grade and grade.resolved)
    if not distinct:
        return Baselines(candidates=0, resolving=0, random=0.0, smallest=0.0, majority=0.0)
    sizes = {p: lines_changed(p) for p in distinct}
    small = [p for p in distinct if sizes[p] == min(sizes.values())]
    groups: dict[str, list[str]] = {}
    counts: Counter = Counter()
    for row in rows:
        if row.model_patch.strip():
            key = agreement_key(row.model_patch)
            counts[key] += 1
            groups.setdefault(key, [])
            if row.model_patch not in groups[key]:
                groups[key].append(row.model_patch)
    top = [k for k, n in counts.items() if n == max(counts.values())]
    majority = sum(sum(distinct[p] for p in groups[k]) / len(groups[k]) for k in top) / len(top)
    return Baselines(candidates=len(distinct), resolving=sum(distinct.values()),
                     random=sum(distinct.values()) / len(distinct),
                     smallest=sum(distinct[p] for p in small) / len(small), majority=majority)


def graded(instance_id: str, rows: list[CandidateRow], book: GradeBook) -> bool:
    return not book.missing(instance_id, [r.model_patch for r in rows])


def score_one(task: Task, rows: list[CandidateRow], book: GradeBook, config: PatchswarmConfig, run_dir: Path, *,
              generate_tests: bool, providers: Providers | None = None) -> InstanceScore:
    from patchswarm.candidate_selection import select_candidates
    from patchswarm.store import RunStore

    candidates = candidates_of(rows)
    before = _usage(RunStore, run_dir, task.instance_id)
    started = time.monotonic()
    results = select_candidates([task], {task.instance_id: candidates}, config, run_dir,
                                run_dir / "predictions" / f"{task.instance_id}.jsonl",
                                generate_tests=generate_tests, live=False, providers=providers)
    wall = time.monotonic() - started
    after = _usage(RunStore, run_dir, task.instance_id)
    result: SelectionResult = results[task.instance_id]
    base = baselines(task.instance_id, rows, book)
    chosen = next((c for c in candidates if c.id == result.chosen_id), None)
    grade = book.get(task.instance_id, chosen.patch) if chosen else None
    return InstanceScore(
        instance_id=task.instance_id, submissions=len(rows), chosen=result.chosen_id,
        correct=bool(grade and grade.resolved), method=result.method, confidence=result.confidence,
        confidence_level=result.confidence_level, executions=result.executions_performed,
        executions_cached=result.executions_cached, wall_s=round(wall, 1), reason=result.reason[:300],
        tokens=after["tokens"] - before["tokens"], calls=after["calls"] - before["calls"],
        cost_usd=round(after["cost_usd"] - before["cost_usd"], 6),
        error=result.reason if result.method == "error" else None, **base)


class _Usage(TypedDict):
    calls: int
    tokens: int
    cost_usd: float


def _usage(store_type, run_dir: Path, instance_id: str) -> _Usage:
    """Billed (not replayed) model calls of one instance in a run directory's store."""
    store = store_type(run_dir)
    try:
        used = store.totals(instance_id)
    finally:
        store.close()
    return _Usage(calls=used.calls, tokens=used.input_tokens + used.output_tokens, cost_usd=used.cost_usd)


class Totals(BaseModel):
    instances: int
    accuracy: float
    random: float
    smallest: float
    majority: float
    oracle: float = 1.0
    gap_closed: float = Field(description="(accuracy - random) / (oracle - random).")
    by_confidence: dict[str, tuple[int, int]] = Field(description="level → (right, chosen).")
    executions_per_instance: float
    wall_s_per_instance: float
    tokens: int = 0
    calls: int = 0
    cost_usd: float = 0.0


def totals(scores: list[InstanceScore]) -> Totals | None:
    """Over the instances with at least one resolving and one failing distinct candidate."""
    mixed = [s for s in scores if s.mixed and s.error is None]
    if not mixed:
        return None
    n = len(mixed)

    def mean(values) -> float:
        return round(sum(values) / n, 4)

    accuracy, random = mean(s.correct for s in mixed), mean(s.random for s in mixed)
    levels: dict[str, tuple[int, int]] = {}
    for s in mixed:
        right, chosen = levels.get(s.confidence_level, (0, 0))
        levels[s.confidence_level] = (right + s.correct, chosen + 1)
    return Totals(instances=n, accuracy=accuracy, random=random, smallest=mean(s.smallest for s in mixed),
                  majority=mean(s.majority for s in mixed),
                  gap_closed=round((accuracy - random) / (1 - random), 4) if random < 1 else 0.0,
                  by_confidence=levels, executions_per_instance=mean(s.executions for s in mixed),
                  wall_s_per_instance=mean(s.wall_s for s in mixed), tokens=sum(s.tokens for s in mixed),
                  calls=sum(s.calls for s in mixed), cost_usd=round(sum(s.cost_usd for s in mixed), 6))
