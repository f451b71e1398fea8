"""Adaptive compute for one instance: sample trajectories until the selection evidence is decisive.

    start `initial` trajectories → select (LLM-free, cached cells) → stopping rule ─ decisive / maximum /
    budget → stop ─ else the policy grows the pool: extend a trajectory that nearly passed (more editing
    attempts) or start a fresh one → select again (only new cells run) → …

Every round is recorded (`AdaptiveRecord`: what the evidence said, what the policy chose and why, why it
stopped). Spending beyond the instance's allowance is drawn from the batch's share pool (agent.allocation)
before each round; the instance releases what it did not spend when it ends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.allocation import Shares
from agent.budget import Budget
from agent.trajectory import TrajectoryResult
from selection import Candidate, SelectionResult
from selection.stopping import Hardness, StoppingRule, StopReason, decide, summarize

Growth = Literal["fresh", "extend"]


class AdaptiveConfig(BaseModel):
    """`trajectories.adaptive`: sequential sampling per instance (off: a fixed number of trajectories)."""

    model_config = ConfigDict(extra="forbid")  # a typo in the config must not pass silently

    enabled: bool = Field(False, description="Sample trajectories until the selection evidence is decisive.")
    initial: int = Field(2, ge=1, description="Trajectories started at once before the first look at the evidence.")
    step: int = Field(1, ge=1, description="Fresh trajectories added per round.")
    stopping: StoppingRule = Field(default_factory=StoppingRule, description="When the evidence is decisive; max_samples bounds the trajectories.")
    policy: Literal["auto", "fresh", "extend"] = Field(
        "auto", description="How to grow: 'auto' extends a trajectory that nearly passed and starts fresh ones "
                            "otherwise; 'fresh' always starts new trajectories; 'extend' extends when it can.")
    extend_attempts: int = Field(4, ge=1, description="Editing attempts added to a trajectory that is extended.")
    max_extensions: int = Field(2, ge=0, description="Times one trajectory may be extended.")
    share_budget: bool = Field(True, description="In a batch with --max-cost, instances start with an equal share; "
                                                 "unspent shares of decided instances go to the undecided ones.")


class AdaptiveStep(BaseModel):
    """One look at the evidence and what followed."""

    samples: int
    candidates: int
    hardness: Hardness
    evidence: str
    action: Literal["stop", "fresh", "extend"]
    trajectory: int | None = Field(None, description="The trajectory extended.")
    why: str
    spent_usd: float = 0.0


class AdaptiveRecord(BaseModel):
    """How adaptive sampling went for one instance (in result.json, the run store and the report)."""

    stop_reason: StopReason | None = None
    stop_detail: str = ""
    samples: int = 0
    fresh: int = 0
    extensions: int = 0
    steps: list[AdaptiveStep] = Field(default_factory=list)
    allowance_usd: float | None = None
    granted_usd: float = 0.0
    released_usd: float = 0.0


RunRound = Callable[[int, Mapping[int, int]], Awaitable[list[TrajectoryResult]]]
Evaluate = Callable[[list[TrajectoryResult]], Awaitable[SelectionResult]]


def candidates_of(trajectories: Sequence[TrajectoryResult]) -> list[Candidate]:
    return [Candidate(id=f"t{t.index}", patch=t.editing.patch, source=f"trajectory {t.index}")
            for t in trajectories if t.editing and t.editing.patch]


def choose_growth(trajectories: Sequence[TrajectoryResult], selection: SelectionResult, config: AdaptiveConfig,
                  extended: Mapping[int, int]) -> tuple[Growth, int | None, str]:
    """Serial or parallel: extend the trajectory that came closest without finishing, or start a fresh one.

    Nearly passed: the editing machine ran out of attempts (it did not give up or finish) with an edit that
    passes some voting test or at least changed how its own test ends. All attempts failing the same way
    (one behaviour, no vote) is a sign that more of the same conversation will not help: start fresh.
    """
    if config.policy == "fresh":
        return "fresh", None, "policy 'fresh'"
    reports = {r.id: r for r in selection.candidates}
    close: list[tuple[int, int, int, str]] = []  # (votes, moved, index, why)
    for t in trajectories:
        edit = t.editing
        if edit is None or edit.outcome != "attempts_exhausted" or not edit.patch:
            continue
        if extended.get(t.index, 0) >= config.max_extensions:
            continue
        report = reports.get(f"t{t.index}")
        votes = report.votes if report and report.status == "ok" else 0
        moved = edit.edited_exit_code is not None and edit.edited_exit_code != edit.original_exit_code
        if votes > 0 or moved or config.policy == "extend":
            why = (f"passes {votes} voting test(s)" if votes else
                   f"its test went from exit {edit.original_exit_code} to {edit.edited_exit_code}" if moved else
                   "policy 'extend'")
            close.append((votes, int(moved), -t.index, f"trajectory {t.index} ran out of attempts but {why}"))
    if close:
        _, _, index, why = max(close)
        return "extend", -index, why
    patched = [r for r in selection.candidates if r.status == "ok"]
    groups = {r.group for r in patched}
    if patched and len(groups) == 1 and all(r.votes == 0 for r in patched):
        return "fresh", None, f"all {len(patched)} attempts fail the same way (one behaviour, no vote)"
    if not patched:
        return "fresh", None, "no trajectory produced an edit that applies"
    return "fresh", None, "no trajectory nearly passed"


def _headroom(budget: Budget | None) -> float | None:
    """Money left before the tightest budget of the chain; None when none is limited."""
    left: float | None = None
    node = budget
    while node is not None:
        if node.limit_usd is not None:
            room = max(0.0, node.limit_usd - node.spent_usd)
            left = room if left is None else min(left, room)
        node = node.parent
    return left


class AdaptiveSampler:
    """Runs the rounds of one instance; `run_round(count, extra_attempts)` and `evaluate(trajectories)` are
    the pipeline's (trajectories resume from the state store, so a round repeats no finished work)."""

    def __init__(self, config: AdaptiveConfig, *, instance_id: str, budget: Budget | None,
                 shares: Shares | None = None) -> None:
        self.config, self.instance_id, self.budget, self.shares = config, instance_id, budget, shares
        self.record = AdaptiveRecord()

    def _allow(self) -> None:
        """Limit the instance to its share of the batch (never above the limit it already has)."""
        if self.shares is None or self.budget is None:
            return
        allowance = self.shares.allowance(self.instance_id)
        if allowance is not None:
            current = self.budget.limit_usd
            self.budget.limit_usd = allowance if current is None else min(current, allowance)
            self.record.allowance_usd = self.budget.limit_usd

    def _affordable(self, trajectories: Sequence[TrajectoryResult], samples: int) -> bool:
        """Can the budget pay one more sample (as much as the average so far)? Asks the pool when short."""
        estimate = max(sum(t.cost_usd for t in trajectories) / max(1, samples), 1e-9)
        left = _headroom(self.budget)
        if left is None or left >= estimate * (1 - 1e-9):
            return True
        if self.shares is not None and self.budget is not None and self.budget.limit_usd is not None:
            # One sample and the margin of another: samples vary, and what is not spent goes back at the end.
            granted = self.shares.grant(self.instance_id, 2 * estimate - left)
            if granted > 0:
                self.budget.limit_usd += granted
                self.record.granted_usd += granted
                self.record.allowance_usd = self.budget.limit_usd
        left = _headroom(self.budget)
        return left is None or left >= estimate * (1 - 1e-9)

    async def run(self, run_round: RunRound, evaluate: Evaluate) -> list[TrajectoryResult]:
        config, rule = self.config, self.config.stopping
        self._allow()
        count = min(config.initial, rule.max_samples)
        extra: dict[int, int] = {}
        extended: dict[int, int] = {}
        self.record.fresh = count
        try:
            while True:
                trajectories = await run_round(count, dict(extra))
                selection = await evaluate(trajectories)
                candidates = candidates_of(trajectories)
                summary = summarize(selection, candidates, samples=count)
                decision = decide(summary, rule)
                if not decision.stop and not self._affordable(trajectories, count):  # ask the pool only if needed
                    decision = decide(summary, rule, affordable=False)
                spent = self.budget.spent_usd if self.budget is not None else 0.0
                step = partial(AdaptiveStep, samples=count, candidates=len(candidates), hardness=decision.hardness,
                               evidence=decision.detail, spent_usd=round(spent, 6))  # as it was before growing
                if decision.stop:
                    self.record.steps.append(step(action="stop", why=decision.reason or ""))
                    self.record.stop_reason, self.record.stop_detail = decision.reason, decision.detail
                    break
                growth, index, why = choose_growth(trajectories, selection, config, extended)
                if growth == "extend" and index is not None:
                    extra[index] = extra.get(index, 0) + config.extend_attempts
                    extended[index] = extended.get(index, 0) + 1
                    self.record.extensions += 1
                else:
                    added = min(config.step, rule.max_samples - count)
                    count += added
                    self.record.fresh += added
                self.record.steps.append(step(action=growth, trajectory=index, why=why))
            self.record.samples = count
            return trajectories
        finally:
            if self.shares is not None:
                spent = self.budget.spent_usd if self.budget is not None else 0.0
                self.record.released_usd = self.shares.release(self.instance_id, spent)
