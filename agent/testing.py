"""Testing state machine: from the issue alone, a reproduction test that exits 2 on the unfixed repository.

    phase | what happens                                    | next
    ------+-------------------------------------------------+----------------------------------------------
    ask   | the model replies <test> or <approve/>          | run · end "approved" · ask (format feedback)
    run   | the test runs on the original repository        | ask, with the exit code and output as feedback

An ask with no attempts left ends "attempts_exhausted"; an empty issue ends "empty_issue" without a call.
The machine never sees code: its shared prefix is [system, issue].
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

from agent.actions import Action, ConversationMachine, MachineState
from agent.budget import Budget, Spend
from agent.instance import DEFAULT_OUTPUT_CAP, Instance, TrajectoryConfig
from agent.prompts import NO_TEST_TO_APPROVE, describe_run, reproduction_prefix, reproduction_report
from agent.types import REPRO_TEST_PATH, repro_command
from sandbox.errors import SandboxBroken
from sandbox.execution import ExecResult
from sandbox.port import PoolPort, SandboxPort

TestingOutcome = Literal["approved", "attempts_exhausted", "budget_exhausted", "model_error", "empty_issue", "crashed"]

T = TypeVar("T")


class ReproRun(BaseModel):
    """One run of a reproduction test."""

    exit_code: int | None
    output: str
    timed_out: bool = False
    duration_s: float = 0.0

    @classmethod
    def of(cls, result: ExecResult) -> ReproRun:
        return cls(exit_code=result.exit_code, output=result.output, timed_out=result.timed_out,
                   duration_s=result.duration_s)

    def describe(self) -> str:
        return describe_run(self.exit_code, self.output, self.timed_out, self.duration_s)


async def in_sandbox(pool: PoolPort, work: Callable[[SandboxPort], T]) -> T:
    """Run blocking sandbox work in a thread, holding a leased sandbox only for that long (not during model calls).

    A sandbox whose container died is discarded by the pool; the work is tried once more on a fresh one.
    """
    try:
        async with pool.lease() as sandbox:
            return await asyncio.to_thread(work, sandbox)
    except SandboxBroken:
        pass
    async with pool.lease() as sandbox:
        return await asyncio.to_thread(work, sandbox)


def run_test(sandbox: SandboxPort, test_code: str, *, patch: str | None = None, timeout_s: float,
             output_cap: int = DEFAULT_OUTPUT_CAP) -> ReproRun:
    """Reset, apply `patch`, write the test outside the repository (so it never enters a diff) and run it."""
    result = sandbox.run(repro_command(), patch=patch, files={REPRO_TEST_PATH: test_code}, timeout=timeout_s,
                         output_cap=output_cap)
    return ReproRun.of(result)


class TestingState(MachineState):
    __test__ = False  # not a pytest class
    outcome: TestingOutcome | None = None
    test_code: str | None = None
    run: ReproRun | None = Field(None, description="The last run of test_code on the original repository.")


class TestingResult(Spend):
    __test__ = False
    index: int = 0
    test_code: str | None
    approved: bool
    original_exit_code: int | None
    original_output: str | None
    original_timed_out: bool = False
    outcome: TestingOutcome
    messages: list[dict[str, Any]]
    error: str | None = None
    attempts: int = 0

    def original_run(self) -> ReproRun | None:
        if self.original_output is None:
            return None
        return ReproRun(exit_code=self.original_exit_code, output=self.original_output,
                        timed_out=self.original_timed_out)


class TestingMachine(ConversationMachine[TestingState]):
    __test__ = False
    state_type = TestingState
    accepts = MappingProxyType({"test": "<test>…</test> holding the complete script", "done": "<approve/>"})

    def __init__(self, instance: Instance, *, key: str, index: int = 0, budget: Budget | None = None,
                 config: TrajectoryConfig | None = None) -> None:
        """`budget`: this trajectory's (default the instance's); `config` its limits (attempts, time, output)."""
        config = config or TrajectoryConfig()
        self.pool, self.issue = instance.pool, instance.issue
        self.test_timeout_s, self.output_cap = config.test_timeout_s, config.output_cap_bytes
        super().__init__(instance.model, prefix=reproduction_prefix(instance.issue), store=instance.store, key=key,
                         index=index, budget=instance.budget if budget is None else budget,
                         temperature=config.temperature, max_attempts=config.max_attempts_testing,
                         max_tokens=config.max_tokens)

    def fresh_state(self) -> TestingState:
        if not self.issue.strip():
            return TestingState(outcome="empty_issue", error="the issue text is empty: nothing to reproduce")
        return TestingState()

    def act(self, action: Action) -> None:
        state = self.state
        if action.kind == "test":
            state.test_code, state.run, state.phase = action.body, None, "run"
        elif state.test_code is None or state.run is None:
            self.tell(NO_TEST_TO_APPROVE)
        else:
            state.outcome = "approved"

    async def run_step(self) -> None:
        state = self.state
        code = state.test_code or ""
        state.run = await in_sandbox(
            self.pool, lambda sandbox: run_test(sandbox, code, timeout_s=self.test_timeout_s,
                                                output_cap=self.output_cap)
        )
        self.tell(reproduction_report(state.run.describe(), state.run.exit_code))
        state.phase = "ask"

    def result(self) -> TestingResult:
        state, run = self.state, self.state.run
        assert state.outcome is not None, "result() of a machine that has not stopped"
        return TestingResult(
            index=self.index, test_code=state.test_code, approved=state.outcome == "approved",
            original_exit_code=run.exit_code if run else None, original_output=run.output if run else None,
            original_timed_out=run.timed_out if run else False, outcome=state.outcome,
            messages=self.messages, error=state.error, attempts=state.attempts, **dict(state.spend()),
        )
