"""The live view: rows per running instance (stage, calls, cost, elapsed) and totals, redrawn while work runs
(rich on a terminal, captured through a forced-terminal console), plain lines otherwise."""

from __future__ import annotations

import io
import re
import time

from rich.console import Console

from patchswarm.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wait_for_output(buffer: io.StringIO, pattern: str, after: int = 0, timeout: float = 20) -> str:
    """Poll what the terminal received (rich redraws from its own thread) until `pattern` shows up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = buffer.getvalue()[after:]
        if re.search(pattern, text):
            return text
        time.sleep(0.02)
    raise AssertionError(f"{pattern!r} never drawn; got {buffer.getvalue()[after:][-2000:]!r}")


def test_terminal_frames_change_while_an_instance_runs(tmp_path):
    buffer, clock = io.StringIO(), Clock()
    console = Console(file=buffer, force_terminal=True, width=200, color_system=None)
    with Progress(3, tmp_path / "events.jsonl", console=console, clock=clock, refresh_per_second=20,
                  max_cost_usd=5) as progress:
        assert progress.live_mode
        progress.event("instance_skipped", "done-before", status="solved")
        progress.event("instance_started", "calc-1")
        progress.stage("calc-1", "testing 0/2")
        progress.call("calc-1", 0.0125)
        wait_for_output(buffer, r"calc-1\s+testing 0/2\s+1 call\(s\)\s+\$0\.0125\s+0:00:00")
        mark = len(buffer.getvalue())
        clock.now += 65  # nothing but time passes: the next frames must show it
        wait_for_output(buffer, r"calc-1\s+testing 0/2\s+1 call\(s\)\s+\$0\.0125\s+0:01:05", mark)
        mark = len(buffer.getvalue())
        progress.stage("calc-1", "editing 1/2")
        progress.call("calc-1", None)
        frame = wait_for_output(buffer, r"calc-1\s+editing 1/2\s+2 call\(s\)\s+\$0\.0125 \+1\?", mark)
        assert re.search(r"1/3 done \(1 already done\) · 1 resolved · 0 error\(s\) · 1 running · \$0\.0125 \+1\? "
                         r"of \$5\.00 · ETA \?", frame)
        clock.now += 10
        progress.event("instance_done", "calc-1", status="solved")
        mark = len(buffer.getvalue())
        # Two left at the rate of the one that really ran (75 s); the skipped one does not count.
        wait_for_output(buffer, r"2/3 done \(1 already done\) · 2 resolved .* ETA 0:01:15", mark)
    assert "calc-1" not in buffer.getvalue()[mark:].split("2/3 done")[-1]  # its row is gone once it ended
    assert (tmp_path / "events.jsonl").read_text().count("instance_") == 3


def test_plain_lines_when_not_a_terminal():
    buffer, clock = io.StringIO(), Clock()
    console = Console(file=buffer, force_terminal=False, width=200)
    with Progress(2, None, console=console, clock=clock) as progress:
        assert not progress.live_mode
        progress.event("instance_started", "a")
        progress.stage("a", "context")
        progress.call("a", 0.5)
        clock.now += 3
        progress.stage("a", "editing 1/4")
        progress.stage("a", "editing 1/4")  # unchanged: no new line
        progress.event("instance_failed", "a", status="error", error="all 4 primary call(s) failed")
    assert buffer.getvalue().splitlines() == [
        "[0/2] started a",
        "  a: context · 0 call(s) · $0.0000 · 0:00:00",
        "  a: editing 1/4 · 1 call(s) · $0.5000 · 0:00:03",
        "[1/2] failed a status=error error=all 4 primary call(s) failed",
        "1/2 done · 0 resolved · 1 error(s) · 0 running · $0.5000 · ETA 0:00:03",
    ]
    assert "\x1b" not in buffer.getvalue()
