"""Pipeline benchmark: how close one instance's wall time comes to its critical path, and orchestrator CPU.

One instance of the tiny `pipeline_calc` fixture, the real pipeline (`run_tasks`: run store, Docker
sandboxes, state machines, selection), 10 trajectories × 8 model turns each: testing writes a test that
is wrong, a right one, approves (3 turns, 2 executions); editing sends three wrong edits, the right one,
<finish/> (5 turns, 4 executions). Every trajectory/selector reply takes a fixed simulated latency
(`Reply(delay_s=...)`, an asyncio sleep, like a network wait). Model concurrency (32) and the sandbox
pool (10) are large enough that neither is a bottleneck.

The context stage is made free (relevance replies instant, `context.ranking_samples=0`): it is a
separate stage before the trajectories, at most one or two latencies, and not what this measures.

Prints, from one run:
  1. trajectory stage wall ÷ critical-path bound, the brief's bound: the longest trajectory's model
     latency + its executions (max over i of testing_i + editing_i)                         (target <= 1.2)
  2. the same wall ÷ the dependency-aware bound: editing waits for every test (seeds are chosen among all
     approved tests), and where the model has a provider cache each phase starts with one call alone
     (it writes the cache for the others): [L +] max testing chain, then [L +] max editing chain (reported)
  3. whole instance wall (run_tasks: setup, context, trajectories, selection, clean-up), with the breakdown
  4. orchestrator CPU per model call: process CPU time (all threads) during run_tasks ÷ model calls

    python scripts/bench_pipeline.py [--latency 1.0] [--trajectories 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.model import ModelClient  # noqa: E402
from agent.scripted import Reply, ScriptedLLM  # noqa: E402
from agent.types import REPRO_TEST_PATH  # noqa: E402
from patchswarm.config import load_config  # noqa: E402
from patchswarm.pipeline import run_tasks  # noqa: E402
from patchswarm.tasks import Task  # noqa: E402
from sandbox.sandbox import Sandbox  # noqa: E402

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "pipeline_calc"
ISSUE = ("average() of an empty list raises ZeroDivisionError; its docstring promises 0.0. "
         "average([1, 2]) must stay 1.5.")
MARK = re.compile(r"# trajectory (\d+)")
TEST = '''# trajectory {n}
import sys
from calc import average
try:
    empty = average([])
except ZeroDivisionError:
    print("raised")
    sys.exit(2)
sys.exit(0 if empty == 0.0 and average([1, 2]) == 1.5 else 2)
'''
WRONG_TEST = "# trajectory {n}\nimport sys\nprint('checks nothing')\nsys.exit(0)\n"
ORIGINAL = "    total = sum(values)\n    return total / len(values)"
EDITS = ["    if not values:\n        return None\n", "    if not values:\n        return float('nan')\n",
         "    if not values:\n        return -1.0\n", "    if not values:\n        return 0.0\n"]
TESTING_TURNS, EDITING_TURNS = 3, 5


def edit(n: int) -> str:
    return (f"<edit>\ncalc/ops.py\n<<<<<<< SEARCH\n{ORIGINAL}\n=======\n{EDITS[n]}{ORIGINAL}\n"
            f">>>>>>> REPLACE\n</edit>")


def text_of(message: dict) -> str:
    content = message.get("content")
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content or [])


class BenchScript:
    """Answers with a fixed latency and records when each call arrived (for the bound and the wall)."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.lock = threading.Lock()
        self.tests_written = 0
        self.calls: list[tuple[float, str, int | None]] = []  # (arrival, kind, trajectory marker)

    def __call__(self, messages: list[dict]) -> Reply:
        system = text_of(messages[0])
        mine = [text_of(m) for m in messages if m["role"] == "assistant"]
        everything = "".join(text_of(m) for m in messages)
        marks = MARK.findall(everything)
        now = time.monotonic()
        if "<relevant>" in system:  # the context stage is free: see the module docstring
            return Reply("<relevant>yes</relevant><summary>Defines average().</summary>")
        if "<approve/>" in system:
            kind = "testing"
            if not mine:
                with self.lock:
                    n, self.tests_written = self.tests_written, self.tests_written + 1
                text = f"<test>\n{WRONG_TEST.format(n=n)}</test>"
            else:
                n = int(marks[0])
                text = f"<test>\n{TEST.format(n=n)}</test>" if len(mine) == 1 else "<approve/>"
        elif "<finish/>" in system:
            kind, n = "editing", int(marks[0])
            text = edit(len(mine)) if len(mine) < len(EDITS) else "<finish/>"
        else:
            kind, n = "other", None
            text = "<choice>A</choice>"
        with self.lock:
            self.calls.append((now, kind, n))
        return Reply(text, delay_s=self.latency)


class ExecClock:
    """Wraps `Sandbox.run` to time every execution, tagged with its test's trajectory marker."""

    def __init__(self) -> None:
        self.runs: list[tuple[float, float, int | None, bool]] = []  # (start, end, marker, patched)
        self.lock = threading.Lock()
        self._original = Sandbox.run

    def install(self) -> None:
        clock, original = self, self._original

        def run(sandbox, command, **kwargs):
            start = time.monotonic()
            try:
                return original(sandbox, command, **kwargs)
            finally:
                code = (kwargs.get("files") or {}).get(REPRO_TEST_PATH, "")
                mark = MARK.search(code if isinstance(code, str) else "")
                with clock.lock:
                    clock.runs.append((start, time.monotonic(), int(mark.group(1)) if mark else None,
                                       bool(kwargs.get("patch"))))

        setattr(Sandbox, "run", run)  # noqa: B010 - patched at run time; mypy forbids assigning a method

    def uninstall(self) -> None:
        setattr(Sandbox, "run", self._original)  # noqa: B010 - as in install()


def make_repo(dest: Path) -> tuple[Path, str]:
    repo = dest / "pipeline_calc"
    for path in sorted(p for p in FIXTURE.rglob("*") if p.is_file()):
        target = repo / path.relative_to(FIXTURE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b", "GIT_AUTHOR_DATE": "2025-01-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2025-01-01T00:00:00Z"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "calc"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=env, capture_output=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True)
    return repo, sha.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=1.0, help="Seconds per trajectory model call.")
    parser.add_argument("--trajectories", type=int, default=10)
    args = parser.parse_args()
    latency, count = args.latency, args.trajectories

    handler = ScriptedLLM()
    script = BenchScript(latency)
    handler.add("bench", script)
    config = load_config(overrides=[
        "models.roles.relevance=scripted/bench", "models.roles.primary=scripted/bench",
        "models.roles.selector=scripted/bench", "models.max_concurrency=32",
        f"trajectories.num_tests={count}", f"trajectories.num_edits={count}",
        f"trajectories.max_attempts_testing={TESTING_TURNS}", f"trajectories.max_attempts_editing={EDITING_TURNS}",
        f"sandbox.pool_size={count}", "context.ranking_samples=0", "selection.selector_enabled=false",
    ])
    clock = ExecClock()
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        repo, sha = make_repo(Path(tmp))
        task = Task(instance_id="calc-bench", repo=str(repo), commit=sha, issue=ISSUE)
        # Build the environment image first (cached by content), so the run measures solving, not building.
        warm_config = config.model_copy(update={"trajectories": config.trajectories.model_copy(
            update={"num_tests": 0, "num_edits": 0})})
        run_tasks([task], warm_config, Path(tmp) / "warm", live=False, providers={"scripted": handler})
        script.calls.clear()
        clock.install()
        cpu0, wall0 = time.process_time(), time.monotonic()
        try:
            (result,) = run_tasks([task], config, Path(tmp) / "run", live=False, providers={"scripted": handler})
        finally:
            wall1, cpu1 = time.monotonic(), time.process_time()
            clock.uninstall()
    warm = ModelClient(config.models).should_warm_cache("primary")
    report(script, clock, result, latency, count, wall1 - wall0, cpu1 - cpu0, wall0, wall1, warm)


def report(script: BenchScript, clock: ExecClock, result, latency: float, count: int, wall: float, cpu: float,
           start: float, end: float, warms: bool) -> None:
    calls = [c for c in script.calls if c[1] in ("testing", "editing")]
    turns = {(kind, n): sum(1 for c in calls if c[1] == kind and c[2] == n) for _, kind, n in calls}
    expected = {(kind, n): TESTING_TURNS if kind == "testing" else EDITING_TURNS
                for kind in ("testing", "editing") for n in range(count)}
    if turns != expected or result.status != "solved":
        sys.exit(f"unexpected run: status {result.status}, turns {turns}")
    stage_start = min(c[0] for c in calls)
    stage_end = max(c[0] for c in calls) + latency
    first_edit = min(c[0] for c in calls if c[1] == "editing")
    runs = [r for r in clock.runs if stage_start <= r[0] <= stage_end]

    def chain(kind: str, n: int) -> float:
        """Model latency + execution time of one trajectory's phase."""
        mine = [r for r in runs if r[2] == n and r[3] == (kind == "editing")
                and ((r[0] >= first_edit) == (kind == "editing"))]
        return turns[(kind, n)] * latency + sum(r[1] - r[0] for r in mine)

    testing = {n: chain("testing", n) for n in range(count)}
    editing = {n: chain("editing", n) for n in range(count)}
    simple = max(testing[n] + editing[n] for n in range(count))
    warm = latency if warms else 0.0  # a lone warm-up call per phase only where a provider cache exists
    aware = warm + max(testing.values()) + warm + max(editing.values())
    stage = stage_end - stage_start
    execs = [r[1] - r[0] for r in runs]
    model_calls = len(script.calls)
    print(f"pipeline bench: {count} trajectories x {TESTING_TURNS + EDITING_TURNS} turns, latency {latency:.2f}s, "
          f"{len(execs)} trajectory executions (mean {sum(execs) / len(execs):.3f}s, max {max(execs):.3f}s)")
    print(f"1. trajectory stage wall / brief bound           {stage:7.2f}s / {simple:6.2f}s = {stage / simple:.3f}"
          f"   (target <= 1.2)")
    print(f"2. trajectory stage wall / dependency-aware bound {stage:7.2f}s / {aware:6.2f}s = {stage / aware:.3f}"
          f"   (editing after all tests{', +1 warm-up call per phase' if warm else ''})")
    print(f"3. instance wall {wall:.2f}s: before the trajectories {stage_start - start:.2f}s (setup, context), "
          f"trajectories {stage:.2f}s, after {end - stage_end:.2f}s (selection: "
          f"{result.selection.executions_performed} executions, save, clean-up)")
    print(f"4. orchestrator CPU per model call: {cpu * 1000 / model_calls:.1f} ms "
          f"({cpu:.2f}s CPU, {model_calls} calls; includes Docker SDK, SQLite, litellm)")
    print(json.dumps({"stage_over_bound": round(stage / simple, 3), "stage_over_aware_bound": round(stage / aware, 3),
                      "instance_wall_s": round(wall, 2), "cpu_ms_per_call": round(cpu * 1000 / model_calls, 2)}))


if __name__ == "__main__":
    main()
