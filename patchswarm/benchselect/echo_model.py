"""A scripted stand-in for a model that proves bench-select's LLM mode end to end on real repositories
without a key: `--scripted echo=patchswarm.benchselect.echo_model:IssueEchoScript --model scripted/echo`.

It knows nothing but what it is sent. As a testing machine it turns the issue's first runnable snippet
(the same extraction the probes use) into a reproduction script: exit 2 when the snippet raises or prints
what the issue shows (the issue is present), 0 otherwise. As the selector it writes that script, then
chooses the first candidate on which it exits 0 (else A). Its tokens are counted like a real model's.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agent.scripted import text_of
from selection.probes import extract_probes

_ISSUE = re.compile(r"<issue>\s*(.*?)\s*</issue>", re.S)
_PASSING = re.compile(r"^### Candidate (\w+): exit 0\b", re.M)

TEMPLATE = '''import sys
import traceback

STEPS = {steps}
namespace = {{"__name__": "__main__"}}
for code, shown in STEPS:
    try:
        try:
            value = eval(compile(code, "<issue>", "eval"), namespace)
            text = "" if value is None else repr(value)
        except SyntaxError:
            exec(compile(code, "<issue>", "exec"), namespace)
            text = ""
    except Exception:
        traceback.print_exc()
        print("the issue's snippet raises: issue present")
        sys.exit(2)
    print(code, "->", text)
    if shown is not None and " ".join(text.split()) == " ".join(shown.split()):
        print("prints what the issue reports: issue present")
        sys.exit(2)
print("the issue's snippet runs without the reported behaviour")
sys.exit(0)
'''


def reproduction_script(issue: str) -> str | None:
    """The issue's first Python probe as a script with the repro exit codes; None when the issue has no code."""
    probes = [p for p in extract_probes(issue) if p.kind != "shell"]  # its steps run as Python
    if not probes:
        return None
    steps = [(step.code, step.shown) for step in probes[0].steps]
    return TEMPLATE.format(steps=json.dumps(steps, indent=1))


class IssueEchoScript:
    """messages → reply, for the testing machine and the selector (other roles get a neutral answer)."""

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        system = text_of(messages[0].get("content"))
        first = not any(m.get("role") == "assistant" for m in messages)
        issue_match = _ISSUE.search("\n".join(text_of(m.get("content")) for m in messages[1:2]))
        script = reproduction_script(issue_match.group(1)) if issue_match else None
        if "<choice>" in system:
            if first and script:
                return f"A test from the issue's own snippet.\n<test>\n{script}</test>"
            passing = _PASSING.findall(text_of(messages[-1].get("content")))
            return f"<choice>{passing[0] if passing else 'A'}</choice>"
        if "<approve/>" in system:
            if first and script:
                return f"The issue's snippet as a script.\n<test>\n{script}</test>"
            return "<approve/>"
        if "<relevant>" in system:
            return "<relevant>yes</relevant><summary>-</summary>"
        return "I cannot help with this."
