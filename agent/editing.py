"""Editing state machine: from context, issue and one reproduction test, an edit that makes the test exit 0.

    phase | what happens                                              | next
    ------+-----------------------------------------------------------+---------------------------------------
    ask   | the model replies <edit>, <test> or <finish/>;             | run · end "finished" ("no_edit" when
          | an edit becomes a diff against the pristine host checkout  | nothing was edited) · ask (edit error
          |                                                           | or format feedback)
    run   | the test runs on the original repository (reused while     | ask, with the diff and both runs
          | the test is unchanged) and on the edited one               | (or the patch failure) as feedback

An ask with no attempts left ends "attempts_exhausted", keeping the last edit that applied.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from pydantic import Field

from agent.actions import Action, ConversationMachine, MachineState
from agent.budget import Budget, Spend
from agent.edit.blocks import EditError, apply_edit_text
from agent.instance import Instance, TrajectoryConfig
from agent.prompts import editing_prefix, editing_report, editing_seed, patch_failed, user
from agent.testing import ReproRun, TestingResult, in_sandbox, run_test
from agent.types import ContextBundle
from sandbox.errors import PatchApplyError
from sandbox.port import SandboxPort

EditingOutcome = Literal["finished", "attempts_exhausted", "budget_exhausted", "model_error", "no_edit", "crashed"]


class EditingState(MachineState):
    outcome: EditingOutcome | None = None
    test_code: str | None = None
    original: ReproRun | None = Field(None, description="test_code on the original repository; None: not run yet.")
    candidate: str | None = Field(None, description="Diff of the newest edit, waiting for its run.")
    patch: str | None = Field(None, description="The newest edit that applied in the sandbox.")
    edited: ReproRun | None = Field(None, description="test_code on the repository with `patch`.")


class EditingResult(Spend):
    index: int = 0
    patch: str | None
    test_code: str | None
    outcome: EditingOutcome
    edited_exit_code: int | None
    original_exit_code: int | None
    edited_output: str | None = None
    original_output: str | None = None
    # A timed-out run proves nothing; kept beside the exit code so no reader takes a kill for a result.
    edited_timed_out: bool = False
    original_timed_out: bool = False
    messages: list[dict[str, Any]]
    error: str | None = None
    attempts: int = 0


class EditingMachine(ConversationMachine[EditingState]):
    state_type = EditingState
    accepts = MappingProxyType({
        "edit": "one or more <edit>/<delete> blocks forming your complete edit",
        "test": "<test>…</test> holding a complete replacement test",
        "done": "<finish/>",
    })

    def __init__(self, instance: Instance, *, context: ContextBundle | str, seed: TestingResult | None, key: str,
                 index: int = 0, budget: Budget | None = None, config: TrajectoryConfig | None = None,
                 extra_attempts: int = 0) -> None:
        """`seed`: the testing result whose test it starts from; `budget`: this trajectory's (default the
        instance's); `extra_attempts` beyond the config's (adaptive sampling extends a trajectory)."""
        config = config or TrajectoryConfig()
        self.pool, self.issue, self.repo_dir, self.seed = instance.pool, instance.issue, Path(instance.repo_dir), seed
        self.test_timeout_s, self.output_cap = config.test_timeout_s, config.output_cap_bytes
        super().__init__(instance.model, prefix=editing_prefix(context, instance.issue), store=instance.store,
                         key=key, index=index, budget=instance.budget if budget is None else budget,
                         temperature=config.temperature, max_attempts=config.max_attempts_editing + extra_attempts,
                         max_tokens=config.max_tokens)

    def fresh_state(self) -> EditingState:
        if not self.issue.strip():
            return EditingState(outcome="no_edit", error="the issue text is empty: nothing to fix")
        test = self.seed.test_code if self.seed else None
        original = self.seed.original_run() if self.seed and test else None
        state = EditingState(test_code=test, original=original)
        # The seed is the first trajectory-specific message: it follows the shared prefix.
        state.turns.append(user(editing_seed(test, original.describe() if original else None)))
        return state

    def act(self, action: Action) -> None:
        state = self.state
        if action.kind == "edit":
            try:
                state.candidate = apply_edit_text(self.repo_dir, action.body).diff
            except EditError as exc:
                self.tell(exc.message)
                return
            state.phase = "run"
        elif action.kind == "test":
            if action.body != state.test_code:  # an unchanged test keeps its original run
                state.test_code, state.original = action.body, None
            state.candidate, state.phase = state.patch, "run"  # the current edit meets the new test
        else:
            state.outcome = "finished" if state.patch else "no_edit"

    async def run_step(self) -> None:
        state = self.state
        test, candidate = state.test_code, state.candidate
        runs: dict[str, ReproRun] = {"original": state.original} if state.original else {}

        def work(sandbox: SandboxPort) -> None:
            # Both runs share one lease; each `run` resets the sandbox to the base state first.
            if test is not None and "original" not in runs:
                runs["original"] = self._run(sandbox, test, None)
            if candidate is not None and test is not None:
                runs["edited"] = self._run(sandbox, test, candidate)
            elif candidate is not None:
                sandbox.run("true", patch=candidate, timeout=self.test_timeout_s)  # does it apply at all?

        try:
            await in_sandbox(self.pool, work)
        except PatchApplyError as exc:
            self.tell(patch_failed(str(exc)))
            state.original, state.candidate, state.phase = runs.get("original"), None, "ask"
            return
        state.original = runs.get("original")
        if candidate is not None:
            state.patch, state.edited = candidate, runs.get("edited")
        self.tell(editing_report(
            candidate, state.original.describe() if state.original else None,
            state.edited.describe() if candidate is not None and state.edited else None,
        ))
        state.candidate, state.phase = None, "ask"

    def _run(self, sandbox: SandboxPort, test: str, patch: str | None) -> ReproRun:
        return run_test(sandbox, test, patch=patch, timeout_s=self.test_timeout_s, output_cap=self.output_cap)

    def result(self) -> EditingResult:
        state = self.state
        assert state.outcome is not None, "result() of a machine that has not stopped"
        edited = state.edited if state.patch else None
        return EditingResult(
            index=self.index, patch=state.patch, test_code=state.test_code, outcome=state.outcome,
            edited_exit_code=edited.exit_code if edited else None,
            original_exit_code=state.original.exit_code if state.original else None,
            edited_output=edited.output if edited else None,
            original_output=state.original.output if state.original else None,
            edited_timed_out=bool(edited and edited.timed_out),
            original_timed_out=bool(state.original and state.original.timed_out),
            messages=self.messages, error=state.error, attempts=state.attempts, **dict(state.spend()),
        )
