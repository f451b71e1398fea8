"""What every stage of one instance works with, as one object, and how far its trajectories may go."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from agent.budget import Budget
from agent.model import ModelClient
from agent.types import StateStore
from sandbox.port import PoolPort

DEFAULT_OUTPUT_CAP = 8 * 1024  # bytes of test output shown to the model (head and tail kept)


@dataclass(frozen=True)
class Instance:
    """One issue being solved: the values that travel through the context, trajectory and selection stages.

    `repo_dir` is the pristine host checkout of the base commit (edits are computed against it); `pool`
    leases sandboxes of the instance's environment; `store` keeps every machine's state (keys are
    the stages' own); `budget` is the instance's, of which each trajectory gets a child.
    """

    model: ModelClient
    pool: PoolPort
    repo_dir: Path
    issue: str
    store: StateStore
    budget: Budget | None = None

    def with_budget(self, budget: Budget | None) -> Instance:
        return replace(self, budget=budget)


class TrajectoryConfig(BaseModel):
    """How many trajectories to run and how far each may go."""

    model_config = ConfigDict(extra="forbid")  # a typo in the config must not pass silently

    num_tests: int = Field(4, ge=0, description="Testing trajectories: reproduction tests written from the issue alone.")
    num_edits: int = Field(4, ge=0, description="Editing trajectories, each seeded by one reproduction test.")
    max_attempts_testing: int = Field(4, ge=1, description="Model replies a testing trajectory may use (format errors count).")
    max_attempts_editing: int = Field(8, ge=1, description="Model replies an editing trajectory may use (format and edit errors count).")
    test_timeout_s: float = Field(60.0, gt=0, description="Time limit of one reproduction-test run in a sandbox.")
    temperature: float | None = Field(None, ge=0, description="Sampling temperature; None: the primary role's default.")
    trajectory_budget_usd: float | None = Field(None, ge=0, description="USD limit of one trajectory (its testing and editing calls); None: only the parent budget applies.")
    output_cap_bytes: int = Field(DEFAULT_OUTPUT_CAP, ge=256, description="Bytes of test output shown to the model (head and tail kept).")
    max_tokens: int | None = Field(None, ge=1, description="Completion token limit per call; None: the provider's default.")
