"""Action tags in model replies, and the ask → parse → act loop both trajectory state machines share.

A reply carries exactly one action:

    <test>...python...</test>            write (or replace) the reproduction test
    <edit>...</edit>, <delete>…</delete>  one complete edit (agent.edit.blocks syntax); several blocks are one action
    <approve/>, <finish/>, <done/>        "done" (synonyms: a slip of the tag name is not worth an attempt)
    <choice>X</choice>                    the selector's pick (only where a machine takes it; else plain text)

No action, two different kinds, two tests or choices, or a kind the machine does not take is a format
error, which goes back to the model as feedback and costs an attempt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError

from agent.budget import Budget, BudgetExceeded, Spend
from agent.model import Completion, ModelCallError, ModelClient, Role
from agent.prompts import assistant, user
from agent.types import StateStore
from sandbox.errors import SandboxError

log = logging.getLogger(__name__)

ActionKind = Literal["test", "edit", "done", "choice"]
Phase = Literal["ask", "run"]

# Block tags are matched whole, so tags quoted inside a test or an edit are not mistaken for actions.
_ACTION = re.compile(
    r"<test>(?P<test>.*?)</test>"
    r"|(?P<edit>^[ \t]*<edit>.*?^[ \t]*</edit>[ \t]*$)"
    r"|(?P<delete>^[ \t]*<delete>[^\n]*?</delete>[ \t]*$)"
    r"|(?P<done><(?:done|approve|finish)\s*/?>)"
    r"|(?i:(?P<choice><choice>\s*(?:candidate\s+)?(?P<label>[^<\s]*)\s*</choice>))",
    re.S | re.M,
)
_UNCLOSED_TEST = re.compile(r"<test>")
_UNCLOSED_EDIT = re.compile(r"^[ \t]*<edit>", re.M)


class Action(BaseModel):
    kind: ActionKind
    body: str = ""  # the test's code; a choice's label; for an edit the whole reply (agent.edit.blocks reads it)


class ActionFormatError(Exception):
    """The reply holds no usable action; `.message` is written for the model."""

    def __init__(self, problem: str, accepts: Mapping[str, str]) -> None:
        self.problem = problem
        self.message = (
            f"{problem}\n\nEvery reply must contain exactly one action, one of: "
            + "; ".join(accepts.values())
            + "."
        )
        super().__init__(self.message)


def _strip_fence(code: str) -> str:
    """Models often wrap code in Markdown fences inside the tag; the script must not contain them."""
    lines = code.strip("\n").split("\n")
    if lines and lines[0].strip().startswith("```"):
        lines = lines[1:]
    if lines and lines[-1].strip() == "```":
        lines = lines[:-1]
    return "\n".join(lines).rstrip() + "\n"


def parse_action(text: str, accepts: Mapping[str, str]) -> Action:
    """The one action in `text`; `accepts` maps the kinds this machine takes to how the prompt names them."""
    found: list[tuple[ActionKind, str]] = []
    for match in _ACTION.finditer(text):
        if match["test"] is not None:
            found.append(("test", match["test"]))
        elif match["edit"] is not None or match["delete"] is not None:
            found.append(("edit", ""))
        elif match["choice"] is not None:
            if "choice" in accepts:  # elsewhere the tag is prose, as it always was
                found.append(("choice", match["label"].strip().upper()))
        else:
            found.append(("done", ""))
    rest = _ACTION.sub("", text)
    if _UNCLOSED_EDIT.search(rest):
        found.append(("edit", ""))  # agent.edit.blocks explains what is wrong with the block
    if _UNCLOSED_TEST.search(rest):
        raise ActionFormatError("Your <test> tag is not closed with </test>.", accepts)
    kinds = list(dict.fromkeys(kind for kind, _ in found))
    if not kinds:
        raise ActionFormatError("Your reply contains no action.", accepts)
    if len(kinds) > 1:
        raise ActionFormatError(f"Your reply contains several kinds of action ({', '.join(kinds)}).", accepts)
    kind = kinds[0]
    if kind not in accepts:
        raise ActionFormatError(f"A {kind} action is not possible at this stage.", accepts)
    if kind in ("test", "choice") and len(found) > 1:
        raise ActionFormatError(f"Your reply contains several {kind}s; send exactly one.", accepts)
    if kind == "choice":
        return Action(kind="choice", body=found[0][1])
    if kind == "test":
        code = _strip_fence(found[0][1])
        if not code.strip():
            raise ActionFormatError("Your <test> block is empty.", accepts)
        return Action(kind="test", body=code)
    return Action(kind=kind, body=text if kind == "edit" else "")


# -- the shared loop -------------------------------------------------------------------------------

# Stopped rather than ended: a machine loaded with one of these outcomes tries again.
# Prefix of a crash's error when the sandbox or engine failed: the step's outcome is unknown, never a result.
INFRASTRUCTURE = "infrastructure"
RESUMABLE_OUTCOMES = frozenset({"budget_exhausted", "model_error", "crashed"})


class MachineState(Spend):
    """What every machine persists (its calls' `Spend` too); subclasses add their own fields. `turns`
    follow the shared prefix."""

    phase: Phase = "ask"
    prefix_sha: str = ""
    turns: list[dict[str, Any]] = Field(default_factory=list)
    attempts: int = Field(0, description="Model replies received (format errors included).")
    outcome: str | None = None
    error: str | None = None


def prefix_digest(prefix: list[dict[str, Any]]) -> str:
    raw = json.dumps(prefix, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


StateT = TypeVar("StateT", bound=MachineState)


class ConversationMachine(Generic[StateT]):
    """A conversation driven as a state machine: `ask` the model, act on its action, maybe `run` tests.

    Subclasses set `state_type` and `accepts` and implement `fresh_state`, `act`, `run_step`
    (the "run" phase) and `result`. The state is saved after every step; a machine created with the
    same store and key continues from the last saved step, and its model calls carry replay keys so
    a call that completed before an interruption is read back from the call store, not sent again.
    """

    state_type: type[StateT]
    accepts: Mapping[str, str]
    role: Role = "primary"

    def __init__(
        self, client: ModelClient, *, prefix: list[dict[str, Any]], store: StateStore, key: str,
        index: int = 0, budget: Budget | None = None, temperature: float | None = None,
        max_attempts: int = 4, max_tokens: int | None = None,
    ) -> None:
        self.client, self.prefix, self.store, self.key = client, prefix, store, key
        self.index, self.budget, self.max_attempts, self.max_tokens = index, budget, max_attempts, max_tokens
        settings = client.settings
        self.model = settings.model_for(self.role)
        self.temperature = settings.temperature_for(self.role) if temperature is None else temperature
        self.state: StateT = self._load()

    def fresh_state(self) -> StateT:
        return self.state_type()

    def act(self, action: Action) -> None:
        raise NotImplementedError

    async def run_step(self) -> None:
        raise NotImplementedError

    def result(self) -> Any:
        raise NotImplementedError

    def _load(self) -> StateT:
        digest = prefix_digest(self.prefix)
        raw = self.store.load(self.key)
        if raw is not None:
            try:
                state = self.state_type.model_validate(raw)
            except ValidationError:
                state = None  # written by an incompatible version: start over
            # A different prefix (issue or context changed) makes the old conversation meaningless.
            if state is not None and state.prefix_sha == digest:
                if state.outcome in RESUMABLE_OUTCOMES:
                    state.outcome = state.error = None
                # More attempts than it ran out of (an extended trajectory): the conversation goes on.
                if state.outcome == "attempts_exhausted" and state.attempts < self.max_attempts:
                    state.outcome = None
                return state
        state = self.fresh_state()
        state.prefix_sha = digest
        return state

    def _save(self) -> None:
        self.store.save(self.key, self.state.model_dump(mode="json"))

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [*self.prefix, *self.state.turns]

    def tell(self, text: str) -> None:
        self.state.turns.append(user(text))

    async def warm(self) -> None:
        """Make the first model call only: it writes the provider's cache of the shared prefix."""
        await self.run(max_calls=1)

    async def run(self, max_calls: int | None = None) -> Any:
        """Step until an outcome and return the result; with `max_calls`, return None once that many
        model turns are done."""
        calls = 0
        while self.state.outcome is None:
            asking = self.state.phase == "ask"
            before = self.state.model_copy(deep=True)  # a failed step leaves no half-done changes
            try:
                await (self._ask() if asking else self.run_step())
            except BudgetExceeded as exc:
                self._stop(before, "budget_exhausted", str(exc))
            except ModelCallError as exc:
                self._stop(before, "model_error", str(exc), exc.record.cost_usd)
            except (SandboxError, OSError) as exc:  # the sandbox or engine failed, not the model or the repo
                log.warning("trajectory state machine %s: infrastructure failure: %s", self.key, exc)
                self._stop(before, "crashed", f"{INFRASTRUCTURE}: {type(exc).__name__}: {exc}")
            except Exception as exc:  # noqa: BLE001 - one broken trajectory must not stop the others
                log.exception("trajectory state machine %s crashed", self.key)
                self._stop(before, "crashed", f"{type(exc).__name__}: {exc}")
            self._save()
            calls += 1 if asking else 0
            if max_calls is not None and calls >= max_calls and self.state.outcome is None:
                return None
        return self.result()

    def _stop(self, before: StateT, outcome: str, error: str, cost: float | None = 0.0) -> None:
        self.state = before
        self.state.outcome, self.state.error = outcome, error
        self.state.add_cost(cost)  # a failed call may still have been billed (None: at an unknown price)

    async def _ask(self) -> None:
        if self.state.attempts >= self.max_attempts:
            self.state.outcome = "attempts_exhausted"
            return
        completion = await self._complete()
        self.state.attempts += 1
        self.state.add_cost(completion.record.cost_usd)
        self.state.turns.append(assistant(completion.text))
        try:
            action = parse_action(completion.text, self.accepts)
        except ActionFormatError as exc:
            self.tell(exc.message)
            return
        self.act(action)

    async def _complete(self) -> Completion:
        messages = self.messages
        # The key hashes the prefix's digest instead of the (long) prefix itself: same identity, less CPU.
        keyed = [{"role": "prefix", "content": self.state.prefix_sha}, *self.state.turns]
        marked = self.client.mark_cache_prefix(self.role, messages, len(self.prefix) - 1)
        if self.state.turns:
            # Second breakpoint: the next turn of this trajectory reads its own history from the cache.
            marked = self.client.mark_cache_prefix(self.role, marked, len(marked) - 1)
        return await self.client.complete(
            self.role, marked, budget=self.budget, sample=self.index, key_messages=keyed,
            temperature=self.temperature, max_tokens=self.max_tokens,
        )
