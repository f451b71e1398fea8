"""The phase board: plain lines off a terminal, totals and an ETA from the pace so far."""

import io

from rich.console import Console

from patchswarm.phases import PhaseBoard
from patchswarm.swebench.cli import result_line
from patchswarm.swebench.evaluation import error_text
from patchswarm.swebench.grading import InstanceReport
from sandbox.errors import ImageBuildError


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_name_item_phase_totals_and_eta():
    out, clock = io.StringIO(), Clock()
    console = Console(file=out, width=40, force_terminal=False)
    with PhaseBoard(3, console=console, live=False, clock=clock) as board:
        board.phase("a-1", "build environment")
        clock.now += 120
        board.phase("a-1", "run tests")
        clock.now += 30
        board.finish("a-1", "resolved", "a-1: resolved (150s)")
        assert board.eta_s() == 300  # 150 s per item so far, two left
        board.phase("b-2", "fetch")
        clock.now += 10
        board.finish("b-2", "error")
    lines = out.getvalue().splitlines()
    assert lines[0] == "a-1: build environment (0/3 done · elapsed 0:00)"
    assert lines[1] == "a-1: run tests (0/3 done · elapsed 2:00)"  # one line each, never wrapped
    assert lines[2] == "a-1: resolved (150s) (1/3 done · resolved 1 · elapsed 2:30 · ETA 5:00)"
    assert lines[-1] == "b-2: error (2/3 done · error 1 resolved 1 · elapsed 2:40 · ETA 1:20)"


def test_live_table_shows_each_running_item_with_its_phase():
    board = PhaseBoard(2, live=True, clock=Clock(), console=Console(file=io.StringIO()))
    board.phase("x", "build instance")
    table = board._table()
    assert [c._cells for c in table.columns][:2] == [["x"], ["build instance"]]


def test_a_failed_build_is_named_with_its_last_output_on_the_line():
    exc = ImageBuildError("environment setup command 'pip install -e .[dev]' failed (exit 1)", "/logs/env-1.log",
                          "Collecting x\n\nERROR: editable mode needs pip >= 21.3\nmore\n")
    text = error_text(exc)
    assert text.startswith("environment setup command 'pip install -e .[dev]' failed (exit 1) (full log: /logs/env-1.log)")
    assert text.endswith("last output: Collecting x ⏎ ERROR: editable mode needs pip >= 21.3 ⏎ more")
    report = InstanceReport(instance_id="o__r-1", repo="o/r", model_name_or_path="gold", status="error",
                            resolved=False, report={}, duration_s=12.4, error=f"no image: {text}")
    assert result_line(report).startswith("o__r-1: error (12s): no image: environment setup command")


def test_a_verdict_graded_with_network_stand_ins_says_so_on_its_line():
    report = InstanceReport(instance_id="psf__requests-3362", repo="psf/requests", model_name_or_path="gold",
                            status="resolved", resolved=True, report={}, duration_s=23.0,
                            stand_ins=["httpbin.org: httpbin==0.10.2 on 127.0.0.1:8765 (HTTPBIN_URL)",
                                       "10.255.255.0/24: unanswered, a connect times out (routed into lo)"])
    assert result_line(report) == "psf__requests-3362: resolved (23s) [stand-ins: httpbin.org, 10.255.255.0/24]"
