"""`batch --dataset`: SWE-bench rows solved by the real pipeline, and no gold field ever reaches a prompt."""

from __future__ import annotations

import json
import re
from pathlib import Path

from agent.scripted import text_of
from patchswarm.config import load_config
from patchswarm.pipeline import run_tasks
from patchswarm.swebench.tasks import tasks_from_dataset
from tests.conftest import FIXTURES, providers
from tests.patchswarm.test_swebench_docker import calc_row, make_calc_mirror

CANARY = "GOLD-CANARY-5c1e"
FIX_EDIT = """<edit>
calc/ops.py
<<<<<<< SEARCH
def divide(a, b):
    return a / b
=======
def divide(a, b):
    if b == 0:
        raise ValueError("cannot divide by zero")
    return a / b
>>>>>>> REPLACE
</edit>"""
REPRO = """<test>
import sys
from calc.ops import divide
try:
    divide(1, 0)
except ValueError:
    sys.exit(0)
except ZeroDivisionError:
    print("bare ZeroDivisionError")
    sys.exit(2)
sys.exit(1)
</test>"""


def _text(message) -> str:
    return text_of(message.get("content"))


def calc_script(messages):
    system, user = _text(messages[0]), _text(messages[1])
    mine = [m for m in messages if m.get("role") == "assistant"]
    if "<relevant>" in system:
        return "<relevant>yes</relevant><summary>arithmetic</summary>"
    if "<ranking>" in system:
        return "<ranking>\n" + "\n".join(re.findall(r"(\S+\.py)", user)) + "\n</ranking>"
    if "<approve/>" in system:
        return "<approve/>" if mine else REPRO
    if "<finish/>" in system:
        return "<finish/>" if mine else FIX_EDIT
    return "<choice>A</choice>"


def test_dataset_batch_solves_and_never_leaks_gold_fields(tmp_path, scripted, docker_client, base_image, capsys):
    row = calc_row()
    # Canaries in every hidden field: if any reaches a prompt, the test sees it.
    row["patch"] += f"# {CANARY} patch\n"
    row["test_patch"] += f"# {CANARY} test_patch\n"
    row["FAIL_TO_PASS"] = json.dumps([f"tests/test_ops.py::{CANARY}_fail_to_pass"])
    row["PASS_TO_PASS"] = json.dumps([f"tests/test_ops.py::{CANARY}_pass_to_pass"])
    dataset = tmp_path / "calc.jsonl"
    dataset.write_text(json.dumps(row) + "\n")
    template, _ = make_calc_mirror(tmp_path)
    tasks = tasks_from_dataset(str(dataset), repo_url_template=template,
                               spec_table=FIXTURES / "swebench_calc" / "specs.json", prefer_official_images=False)
    assert [t.instance_id for t in tasks] == ["fixture__calc-1"]
    assert CANARY not in tasks[0].model_dump_json()

    scripted.add("calc", calc_script)
    config = load_config(overrides=[
        *(f"models.roles.{role}=scripted/calc" for role in ("relevance", "primary", "selector")),
        "trajectories.num_tests=1", "trajectories.num_edits=2", "sandbox.pool_size=2", "context.ranking_samples=1",
    ])
    (result,) = run_tasks(tasks, config, tmp_path / "run", live=False, providers=providers(scripted))
    assert result.status == "solved", result.errors
    assert "raise ValueError" in result.patch
    assert result.environment["kind"] == "local"
    # Not a TTY: each phase of the build is a plain progress line with the instance's elapsed time.
    lines = capsys.readouterr().err.splitlines()
    phases = ("environment", "build environment", "build instance", "context")
    first = [next((i for i, line in enumerate(lines) if f"fixture__calc-1: {phase} ·" in line), None) for phase in phases]
    assert None not in first and first == sorted(first), lines

    received = scripted.calls("calc")
    assert received, "the scripted model saw no call"
    for messages in received:
        for message in messages:
            assert CANARY not in _text(message)
    run_files = [p for p in Path(tmp_path / "run").rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl", ".diff")]
    assert all(CANARY not in p.read_text(errors="replace") for p in run_files)
