"""Agent benchmark: trajectory overhead, memory and prompt-cache sharing, from one run.

Each trajectory: testing writes a test and approves it (2 turns); editing sends a wrong fix, a right
fix and <finish/> (3 turns). The model answers instantly (scripted) and sandboxes are a stub answering
at once, so only the agent's own work is measured. The context is ~120k characters of real Python
(stdlib modules), about 30k tokens.

Prints ratios against their targets:
  1. CPU per LLM turn of the trajectory code (machines, prompts, edits, state saves), instant model / 2 ms   (target <= 1)
  2. CPU per LLM turn end to end through ModelClient + the injected scripted provider / 2 ms        (reported)
  3. peak memory of 100 concurrent trajectories (RSS high-water delta, tracemalloc peak) / 1 GiB          (target < 1)
  4. share of each editing call's input that is a prefix common to all trajectories (min, mean)          (target >= 0.90)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.call_records import CallRecord, Completion  # noqa: E402
from agent.instance import Instance  # noqa: E402
from agent.model import ModelClient, ModelSettings, PriceOverride, RoleModels  # noqa: E402
from agent.prompts import EDITING_SYSTEM, TESTING_SYSTEM  # noqa: E402
from agent.scripted import Reply, ScriptedLLM  # noqa: E402
from agent.trajectory import TrajectoryConfig, run_trajectories  # noqa: E402
from agent.types import ContextBundle, ContextFile, InMemoryStateStore  # noqa: E402
from sandbox.execution import ExecResult  # noqa: E402

MS_TARGET = 0.002
GIB = 1024**3
CONTEXT_CHARS = 120_000
STDLIB = ["difflib", "fractions", "textwrap", "json.decoder", "json.encoder", "shlex", "statistics", "string"]
ISSUE = "calc.stats.mean([2, 4]) returns 2.0 instead of 3.0."
BUGGY = "def mean(values):\n    return sum(values) / (len(values) + 1)\n"
REPRO = "import sys\nfrom calc.stats import mean\nprint(mean([2, 4]))\nsys.exit(0 if mean([2, 4]) == 3 else 2)\n"


def edit(replacement: str) -> str:
    return (f"<edit>\ncalc/stats.py\n<<<<<<< SEARCH\n    return sum(values) / (len(values) + 1)\n=======\n"
            f"{replacement}\n>>>>>>> REPLACE\n</edit>\n")


def text_of(message: dict) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(part["text"] for part in content)


def respond(messages: list[dict]) -> str:
    replies = sum(m["role"] == "assistant" for m in messages)
    if text_of(messages[0]) == TESTING_SYSTEM:
        return f"<test>\n{REPRO}</test>" if replies == 0 else "<approve/>"
    return [edit("    return sum(values) / (len(values) - 1)"), edit("    return sum(values) / len(values)"),
            "<finish/>"][replies]


class StubSandbox:
    """The `Sandbox.run` interface the machines use; the right fix exits 0, anything else exits 2."""

    def run(self, command: str, *, patch: str | None = None, files=None, timeout: float = 60,
            output_cap: int = 0) -> ExecResult:
        fixed = patch is not None and "/ len(values)\n" in patch
        output = "3.0\n" if fixed else "2.0\n"
        return ExecResult(command=command, exit_code=0 if fixed else 2, output=output, duration_s=0.0,
                          output_bytes=len(output))


class StubPool:
    size = 1

    def __init__(self) -> None:
        self.sandbox = StubSandbox()

    def image_id(self) -> str:
        return "stub"

    @contextlib.asynccontextmanager
    async def lease(self):
        yield self.sandbox


class InstantClient(ModelClient):
    """ModelClient whose calls answer in-process: what is left is the trajectory code's own cost."""

    async def complete(self, role, messages, *, budget=None, sample=0, key_messages=None, temperature=None,
                       max_tokens=None):
        text = respond(messages)
        key = self.call_key(role, messages if key_messages is None else key_messages, sample=sample,
                            temperature=temperature, max_tokens=max_tokens)  # the key's cost stays measured
        record = CallRecord(call_id="bench", key=key, role=role, model="scripted/main", started_at=0.0,
                            cost_usd=0.0, attempts=1, response_text=text)
        if budget is not None:
            budget.charge(0.0)
        return Completion(text=text, record=record)


def make_repo(root: Path) -> tuple[Path, ContextBundle]:
    import importlib

    files = [ContextFile(path="calc/stats.py", text=BUGGY)]
    for name in STDLIB:
        if sum(len(f.text) for f in files) >= CONTEXT_CHARS:
            break
        file = importlib.import_module(name).__file__
        assert file is not None, f"{name} is a source module of the standard library"
        source = Path(file)
        files.append(ContextFile(path=f"vendor/{name.replace('.', '/')}.py", text=source.read_text()))
    for f in files:
        (root / f.path).parent.mkdir(parents=True, exist_ok=True)
        (root / f.path).write_text(f.text)
    return root, ContextBundle(files=files)


def settings(concurrency: int) -> ModelSettings:
    price = PriceOverride(input_per_mtok=1.0, output_per_mtok=5.0)
    roles = RoleModels(relevance="scripted/main", primary="scripted/main", selector="scripted/main")
    return ModelSettings(roles=roles, max_concurrency=concurrency, price_overrides={"scripted/main": price})


def run_instance(client: ModelClient, count: int, repo: Path, context: ContextBundle) -> tuple[int, float]:
    """(LLM turns, process CPU seconds) of `count` trajectories of one instance."""
    config = TrajectoryConfig(num_tests=count, num_edits=count)
    started = time.process_time()
    instance = Instance(client, StubPool(), repo, ISSUE, InMemoryStateStore())
    results = asyncio.run(run_trajectories(instance, context=context, key="bench", config=config))
    cpu = time.process_time() - started
    edits = [r.editing for r in results]
    if not all(e is not None and e.outcome == "finished" and e.edited_exit_code == 0 for e in edits):
        raise SystemExit(f"unexpected outcomes: {[e.outcome if e else None for e in edits]}")
    return sum((r.testing.attempts if r.testing else 0) + (r.editing.attempts if r.editing else 0)
               for r in results), cpu


def client_cpu_per_call(client: ModelClient, context: ContextBundle, calls: int = 200) -> float:
    messages = [{"role": "system", "content": EDITING_SYSTEM}, {"role": "user", "content": context.render()}]

    async def go() -> None:
        for _ in range(calls):
            await client.complete("primary", messages)

    started = time.process_time()
    asyncio.run(go())
    return (time.process_time() - started) / calls


def rss_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def prefix_shares(calls: list[list[dict]]) -> list[float]:
    """For each editing call: the part of its input that every editing call of the instance starts with."""
    texts = [json.dumps([[m["role"], text_of(m)] for m in c], ensure_ascii=False) for c in calls]
    first = texts[0]
    common = min(len(os.path.commonprefix([first, t])) for t in texts)
    return [common / len(t) for t in texts]


def main() -> None:
    handler = ScriptedLLM({"main": respond})
    scripts = {"scripted": handler}
    with tempfile.TemporaryDirectory() as tmp:
        repo, context = make_repo(Path(tmp))
        context_chars = len(context.render())
        instant, real = InstantClient(settings(8)), ModelClient(settings(8), providers=scripts)
        run_instance(instant, 2, repo, context)  # warm-up: imports, lazy initialisation
        run_instance(real, 2, repo, context)

        turns, cpu = run_instance(instant, 50, repo, context)
        ours = cpu / turns
        seen = len(handler.calls("main"))
        turns_e2e, cpu_e2e = run_instance(real, 50, repo, context)
        end_to_end = cpu_e2e / turns_e2e
        instance_calls = handler.calls("main")[seen:]
        shares = prefix_shares([c for c in instance_calls if text_of(c[0]) == EDITING_SYSTEM])
        per_client_call = client_cpu_per_call(real, context)

        # 100 trajectories at once: every call in flight together, each taking 50 ms.
        handler.add("main", lambda messages: Reply(respond(messages), delay_s=0.05))
        wide = ModelClient(settings(100), providers=scripts)
        baseline = rss_bytes("VmRSS")
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")  # resets the RSS high-water mark
        run_instance(wide, 100, repo, context)
        rss_peak = rss_bytes("VmHWM") - baseline
        handler.add("main", lambda messages: Reply(respond(messages), delay_s=0.05))
        tracemalloc.start()
        run_instance(wide, 100, repo, context)
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()

    print(f"context: {context_chars} characters (~{context_chars // 4} tokens), {len(context.files)} files")
    print(f"1. CPU per LLM turn, trajectory code only: {ours * 1000:.3f} ms over {turns} turns"
          f" -> ratio {ours / MS_TARGET:.3f} (target <= 1)")
    print(f"2. CPU per LLM turn end to end (ModelClient + scripted provider): {end_to_end * 1000:.3f} ms"
          f" -> ratio {end_to_end / MS_TARGET:.3f}; of which ModelClient alone:"
          f" {per_client_call * 1000:.3f} ms per call")
    print(f"3. peak memory, 100 concurrent trajectories: RSS +{rss_peak / 2**20:.1f} MiB"
          f" -> ratio {rss_peak / GIB:.4f}; tracemalloc peak {traced_peak / 2**20:.1f} MiB"
          f" -> ratio {traced_peak / GIB:.4f} (target < 1)")
    print(f"4. shared-prefix share of editing calls ({len(shares)} calls): min {min(shares):.3f},"
          f" mean {sum(shares) / len(shares):.3f} (target >= 0.90)")


if __name__ == "__main__":
    main()
