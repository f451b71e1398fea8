"""A scripted provider that is down for some instances: `--scripted calc=tests.patchswarm.failing_scripts:DownFor`.

Every call whose messages hold the text in `PATCHSWARM_TEST_DOWN_FOR` fails as a provider that refuses the
request would (not retryable); every other call is answered by `CalcScript`. Unset, nothing fails, so the
same command can be rerun against a provider that is back.
"""

from __future__ import annotations

import os
from typing import Any

from agent.scripted import ScriptError, text_of
from tests.patchswarm.scripts import CalcScript


class DownFor:
    def __init__(self) -> None:
        self.marker = os.environ.get("PATCHSWARM_TEST_DOWN_FOR") or None
        self.calc = CalcScript()

    def __call__(self, messages: list[dict[str, Any]]):
        if self.marker and any(self.marker in text_of(m.get("content")) for m in messages):
            raise ScriptError("the provider refused the request (scripted outage)", "calc")
        return self.calc(messages)
