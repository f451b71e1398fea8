"""Drill: a SIGTERM'd `bench-select` (and `select`) took minutes to exit: asyncio.run waited for the worker
thread still building an environment image, and the build container outlived the process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.conftest import FIXTURES
from tests.patchswarm.test_bench_select import ISSUE, RIGHT, WRONG_TYPE
from tests.patchswarm.test_swebench_docker import calc_row, make_calc_mirror

ROOT = Path(__file__).resolve().parents[2]
HANG = "sleep 297"  # the environment setup command the test interrupts


def _slow_spec_table(path: Path) -> Path:
    spec = json.loads((FIXTURES / "swebench_calc" / "specs.json").read_text())
    # Its own image tag (an unused token), so no other run's build lock or cached image is in the way.
    spec["repos"]["fixture/calc"]["versions"]["0.1"]["pre_install"] += [f"echo {uuid.uuid4().hex}", HANG]
    path.write_text(json.dumps(spec))
    return path


def _running(client, pid: int, command: str) -> bool:
    for container in client.containers.list(filters={"label": f"patchswarm.pid={pid}"}):
        try:
            processes = client.api.top(container.id)["Processes"] or []
        except Exception:  # noqa: BLE001 - it may go between the listing and the look
            continue
        if any(command in " ".join(p) for p in processes):
            return True
    return False


def test_bench_select_exits_promptly_on_sigterm_mid_build(tmp_path, docker_client, base_image):
    from patchswarm.benchselect.grades import Grade, patch_sha

    row = calc_row()
    row["problem_statement"] = ISSUE
    dataset = tmp_path / "calc.jsonl"
    dataset.write_text(json.dumps(row) + "\n")
    template, _ = make_calc_mirror(tmp_path)
    patches = {"sys-a": RIGHT, "sys-c": WRONG_TYPE}
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"instance_id": row["instance_id"], "system": s,
                                                          "model_patch": p}) + "\n" for s, p in patches.items()))
    (tmp_path / "g.jsonl").write_text("".join(Grade(
        instance_id=row["instance_id"], patch_sha=patch_sha(p), resolved=s == "sys-a",
        status="resolved" if s == "sys-a" else "unresolved").model_dump_json() + "\n" for s, p in patches.items()))
    command = [sys.executable, "-m", "patchswarm.cli", "bench-select", str(tmp_path / "c.jsonl"),
               "--dataset", str(dataset), "--grades", str(tmp_path / "g.jsonl"), "--repo-url", template,
               "--spec-table", str(_slow_spec_table(tmp_path / "specs.json")), "--run-dir", str(tmp_path / "run")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not _running(docker_client, process.pid, HANG):
            assert process.poll() is None, process.communicate()[0][-2000:]
            assert time.monotonic() < deadline, "the build never reached its setup command"
            time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError("bench-select still running 30 s after SIGTERM (waiting for its build)") from None
        took = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
        output = process.communicate()[0]
    assert process.returncode == 128 + signal.SIGTERM, output[-2000:]
    assert took < 30
    left = docker_client.containers.list(all=True, filters={"label": f"patchswarm.pid={process.pid}"})
    assert left == [], [c.name for c in left]
