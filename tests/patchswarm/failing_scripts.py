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


class Flaky:
    """A provider failing `PATCHSWARM_TEST_FAULT_RATE` (default 0.3) of calls with a 429, a 500 or a timeout
    (seeded by `PATCHSWARM_TEST_FAULT_SEED`); `CalcScript` answers the rest (and logs them to the call log)."""

    def __init__(self) -> None:
        import random
        import threading

        self.rate = float(os.environ.get("PATCHSWARM_TEST_FAULT_RATE", "0.3"))
        self.rng = random.Random(int(os.environ.get("PATCHSWARM_TEST_FAULT_SEED", "7")))
        self.lock = threading.Lock()
        self.calc = CalcScript()

    def __call__(self, messages: list[dict[str, Any]]):
        from agent.scripted import Fault

        with self.lock:
            draw = self.rng.random()
        if draw < self.rate:
            return [Fault.rate_limit(0.01), Fault.server_error(), Fault.timeout()][int(draw * 1000) % 3]
        return self.calc(messages)
