"""What one instance of a run produced (`InstanceResult`), its statuses, and the exit codes they make."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from agent.budget import Spend
from agent.trajectory import TrajectoryResult
from patchswarm.adaptive import AdaptiveRecord
from selection import SelectionResult

# solved / no_patch are results (final). error: the model calls failed (unknown model, bad key, provider
# down); failed: the instance crashed (environment, sandbox). Neither is final: rerunning retries them.
Status = Literal["solved", "no_patch", "error", "failed"]
FINAL_STATUSES = ("solved", "no_patch")
ERROR_STATUSES = ("error", "failed")
# Exit codes of solve/batch: 0 every instance has a result; 1 none has (or bad input); 3 some ended in error.
EXIT_ALL_ERRORS, EXIT_SOME_ERRORS = 1, 3


def exit_code_of(statuses: list[str]) -> int:
    errors = sum(status in ERROR_STATUSES for status in statuses)
    return 0 if not errors else EXIT_ALL_ERRORS if errors == len(statuses) else EXIT_SOME_ERRORS


class InstanceResult(Spend):
    """What one instance produced, with the evidence and what it cost."""

    instance_id: str
    status: Status
    issue: str = ""
    patch: str = ""
    selection_method: str | None = None
    selection_reason: str | None = None
    chosen_candidate: str | None = None
    votes: int | None = None
    budget_stopped: bool = Field(False, description="A budget stopped work; the patch is the best found so far.")
    input_tokens: int = 0
    output_tokens: int = 0
    cost_by_role: dict[str, float] = Field(default_factory=dict)
    wall_time_s: float = 0.0
    errors: list[str] = Field(default_factory=list)
    environment: dict[str, Any] = Field(default_factory=dict)
    context_files: list[dict[str, Any]] = Field(default_factory=list)
    trajectories: list[TrajectoryResult] = Field(default_factory=list)
    selection: SelectionResult | None = None
    adaptive: AdaptiveRecord | None = Field(None, description="How adaptive sampling went (trajectories.adaptive).")
