"""Prompts of the testing and editing state machines, rendered from the templates in agent/templates/.

Layout of every conversation (what is shared decides what the provider can cache):

    testing:  [system: TESTING_SYSTEM, user: <issue>]                          ← shared prefix
              then per trajectory: assistant <test>, user run report, assistant <approve/> ...
    editing:  [system: EDITING_SYSTEM, user: <code>context</code> + <issue>]   ← shared prefix
              then per trajectory: user seed (its test + original output), assistant <edit>,
              user report (diff, both runs), assistant <finish/> ...

The prefix is built only from the instance's inputs, never from a trajectory's index or seed, so it
is byte-identical across the trajectories of one instance.

The wording lives in agent/templates/ (`agent.templates.render`); this module only decides which template
and fills it. Changing a
template changes the requests, so resumed runs re-send (not replay) the calls it touches.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from agent.edit.blocks import EDIT_FORMAT_INSTRUCTIONS
from agent.templates import render
from agent.types import EXIT_ERROR, EXIT_FIXED, EXIT_ISSUE_PRESENT, REPRO_TEST_PATH, ContextBundle

EXIT_CONVENTION = render("exit_convention", exit_issue_present=EXIT_ISSUE_PRESENT, exit_fixed=EXIT_FIXED,
                         exit_error=EXIT_ERROR, repro_test_path=REPRO_TEST_PATH)
TESTING_SYSTEM = render("testing_system", exit_convention=EXIT_CONVENTION)
EDITING_SYSTEM = render("editing_system", exit_convention=EXIT_CONVENTION, edit_format=EDIT_FORMAT_INSTRUCTIONS)


def _block(tag: str, text: str) -> str:
    return f"<{tag}>\n{text}{'' if text.endswith(chr(10)) else chr(10)}</{tag}>"


def reproduction_prefix(issue: str) -> list[dict[str, Any]]:
    """The shared prefix of every testing trajectory of an instance."""
    return [
        {"role": "system", "content": TESTING_SYSTEM},
        {"role": "user", "content": render("testing_first", issue=_block("issue", issue))},
    ]


def editing_prefix(context: ContextBundle | str, issue: str) -> list[dict[str, Any]]:
    """The shared prefix of every editing trajectory of an instance."""
    code = context if isinstance(context, str) else context.render()
    return [
        {"role": "system", "content": EDITING_SYSTEM},
        {"role": "user", "content": f"{_block('code', code)}\n\n{_block('issue', issue)}"},
    ]


def user(content: str) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: str) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


# -- run reports -----------------------------------------------------------------------------------

MEANING = MappingProxyType({
    EXIT_ISSUE_PRESENT: "the issue is present",
    EXIT_FIXED: "the issue is fixed",
    EXIT_ERROR: "something else went wrong",
})


def describe_run(exit_code: int | None, output: str, timed_out: bool, duration_s: float) -> str:
    """Exit code (with its meaning) and output of one test run, as the model reads it."""
    if timed_out:
        head = render("run_timed_out", seconds=f"{duration_s:.0f}")
    elif exit_code is None:
        head = render("run_without_exit_code")
    else:
        meaning = MEANING.get(exit_code, "not one of 0, 1, 2: a crash or a kill")
        head = render("run_exit_code", exit_code=exit_code, meaning=meaning)
    return f"{head}\n{_block('output', output or '(no output)')}"


def reproduction_report(run: str, exit_code: int | None) -> str:
    hint = "" if exit_code == EXIT_ISSUE_PRESENT else "\n\n" + render(
        "reproduction_unfixed_hint", exit_issue_present=EXIT_ISSUE_PRESENT)
    return render("reproduction_report", run=run, hint=hint, exit_fixed=EXIT_FIXED)


def editing_seed(test_code: str | None, original_run: str | None) -> str:
    """First trajectory-specific message of an editing trajectory."""
    if test_code is None:
        return render("editing_seed_without_test")
    ran = "\n\n" + render("editing_seed_original_run", run=original_run) if original_run else ""
    return render("editing_seed", test=_block("test", test_code), original_run=ran)


def editing_report(diff: str | None, original_run: str | None, edited_run: str | None) -> str:
    """What the model sees after an edit or a new test: the diff and both runs."""
    parts = []
    if diff:
        parts.append(render("report_diff", diff=_block("diff", diff)))
    if original_run:
        parts.append(render("report_original_run", run=original_run))
    if edited_run:
        parts.append(render("report_edited_run", run=edited_run))
    if not diff:
        parts.append(render("report_no_edit"))
    elif edited_run is None:
        parts.append(render("report_no_test"))
    parts.append(render("report_next"))
    return "\n\n".join(parts)


def patch_failed(message: str) -> str:
    return render("patch_failed", message=message)


NO_TEST_TO_APPROVE = render("no_test_to_approve")
