"""Prompt templates of the testing and editing state machines.

Layout of every conversation (what is shared decides what the provider can cache):

    testing:  [system: TESTING_SYSTEM, user: <issue>]                          ← shared prefix
              then per trajectory: assistant <test>, user run report, assistant <approve/> ...
    editing:  [system: EDITING_SYSTEM, user: <code>context</code> + <issue>]   ← shared prefix
              then per trajectory: user seed (its test + original output), assistant <edit>,
              user report (diff, both runs), assistant <finish/> ...

The prefix is built only from the instance's inputs, never from a trajectory's index or seed, so it
is byte-identical across the trajectories of one instance.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from agent.edit.blocks import EDIT_FORMAT_INSTRUCTIONS
from agent.types import EXIT_ERROR, EXIT_FIXED, EXIT_ISSUE_PRESENT, REPRO_TEST_PATH, ContextBundle

EXIT_CONVENTION = f"""\
The test must be a standalone Python script that exits with:
- {EXIT_ISSUE_PRESENT} when the issue is present (the buggy behaviour is observed),
- {EXIT_FIXED} when the issue is fixed (the correct behaviour is observed),
- {EXIT_ERROR} when something else goes wrong (Python's exit code for an uncaught exception).
It is run as `python {REPRO_TEST_PATH}` from the repository root, with the repository importable, \
without network access. Print what you observe, so the output explains the exit code. Catch only the \
exceptions that are the issue's symptom; let unrelated errors exit {EXIT_ERROR}."""

TESTING_SYSTEM = f"""\
You are an expert software engineer. You write a reproduction test for a reported issue in a \
Python repository. You do not see the code, only the issue; your test runs in the repository.

{EXIT_CONVENTION}

Every reply contains exactly one action:
- <test>
  ...the complete Python script...
  </test>   to write the test, or to replace your previous test entirely;
- <approve/>   once your test has run and its output shows that it reproduces the issue correctly.
You may think before the action; write no other tags."""

EDITING_SYSTEM = f"""\
You are an expert software engineer. You fix a reported issue in a repository. You see the relevant \
files, the issue, and a reproduction test. After each of your edits, the test runs on the original \
and on the edited repository and you see both results.

{EXIT_CONVENTION}

{EDIT_FORMAT_INSTRUCTIONS}
Every reply contains exactly one action:
- one or more <edit>/<delete> blocks: your complete change (it replaces your previous edit);
- <test>
  ...the complete Python script...
  </test>   to replace the reproduction test when it is wrong;
- <finish/>   when your last edit fixes the issue.
Fix the issue in general, not only the case the test checks, and do not edit the test into passing. \
You may think before the action; write no other tags."""


def _block(tag: str, text: str) -> str:
    return f"<{tag}>\n{text}{'' if text.endswith(chr(10)) else chr(10)}</{tag}>"


def reproduction_prefix(issue: str) -> list[dict[str, Any]]:
    """The shared prefix of every testing trajectory of an instance."""
    return [
        {"role": "system", "content": TESTING_SYSTEM},
        {"role": "user", "content": f"{_block('issue', issue)}\n\nWrite a reproduction test for this issue."},
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
        head = f"The test timed out after {duration_s:.0f}s and was killed. Partial output:"
    elif exit_code is None:
        head = "The test ended without an exit code. Output:"
    else:
        meaning = MEANING.get(exit_code, "not one of 0, 1, 2: a crash or a kill")
        head = f"Exit code: {exit_code} ({meaning}). Output:"
    return f"{head}\n{_block('output', output or '(no output)')}"


def reproduction_report(run: str, exit_code: int | None) -> str:
    hint = (
        ""
        if exit_code == EXIT_ISSUE_PRESENT
        else f"\n\nNote: the repository is still unfixed, so a correct test exits {EXIT_ISSUE_PRESENT} here."
    )
    return (
        f"Your test ran on the original (unfixed) repository.\n{run}{hint}\n\n"
        "If the output shows that the test reproduces the issue correctly, and it would exit "
        f"{EXIT_FIXED} once the issue is fixed, reply <approve/>. Otherwise send a corrected test in "
        "<test> tags."
    )


def editing_seed(test_code: str | None, original_run: str | None) -> str:
    """First trajectory-specific message of an editing trajectory."""
    if test_code is None:
        return (
            "No reproduction test is available. Send an edit that fixes the issue; you may also write a "
            "reproduction test in <test> tags first."
        )
    ran = f"\n\nOn the original repository it gave:\n{original_run}" if original_run else ""
    return (
        f"A reproduction test for this issue:\n{_block('test', test_code)}{ran}\n\n"
        "Send an edit that fixes the issue."
    )


def editing_report(diff: str | None, original_run: str | None, edited_run: str | None) -> str:
    """What the model sees after an edit or a new test: the diff and both runs."""
    parts = []
    if diff:
        parts.append(f"Your edit applied. Its diff against the original repository:\n{_block('diff', diff)}")
    if original_run:
        parts.append(f"The test on the ORIGINAL repository:\n{original_run}")
    if edited_run:
        parts.append(f"The test on the EDITED repository:\n{edited_run}")
    if not diff:
        parts.append("No edit is in place yet: send an edit that fixes the issue.")
    elif edited_run is None:
        parts.append("There is no reproduction test to check the edit; you may write one in <test> tags.")
    parts.append(
        "If your edit fixes the issue, reply <finish/>. Otherwise send a new complete edit (it is applied "
        "to the original files and replaces your previous edit) or a corrected test in <test> tags."
    )
    return "\n\n".join(parts)


def patch_failed(message: str) -> str:
    return (
        f"Your edit could not be applied in the test environment: {message}\n\n"
        "Send the complete edit again, copying SEARCH lines exactly from the files shown."
    )


NO_TEST_TO_APPROVE = "There is no test yet to approve. Write a reproduction test in <test> tags."
