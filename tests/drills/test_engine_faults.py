"""Drills: the Docker engine restarted mid-batch, and its disk full while an image is committed.

The faults are injected by a loopback stand-in for the engine's socket (tests/drills/engine_proxy.py) in
front of the real engine: every request reaches the real dockerd except where the fault is. The second-dockerd
versions of these drills (a real kill -9 of dockerd, a really full disk) are in scripts/drills_engine.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import uuid

import docker
import pytest

from sandbox.base_image import image_exists
from sandbox.environments import EnvSpec, build_env_image
from sandbox.errors import ImageBuildError
from sandbox.repos import RepoSource
from tests.drills.engine_proxy import EngineProxy
from tests.patchswarm.test_pipeline import (
    ISSUE,
    ROOT,
    SUBPROCESS_TIMEOUT,
    assert_no_repeated_call,
    calc_repo,
    cli,
    read_call_log,
    unique_run_dir,
)

FULL = "write /var/lib/docker/overlay2/l/ABC/diff/opt/venv/x: no space left on device"


def _statuses(run_dir, rows) -> dict[str, str]:
    paths = {row["instance_id"]: run_dir / "instances" / row["instance_id"] / "result.json" for row in rows}
    return {i: json.loads(p.read_text())["status"] if p.exists() else "-" for i, p in paths.items()}


@pytest.fixture
def proxy(tmp_path_factory):
    # A short path: unix socket paths are limited to 108 bytes.
    with EngineProxy(tmp_path_factory.mktemp("eng") / "d.sock") as stand_in:
        yield stand_in


def test_disk_full_at_the_commit_of_a_build_is_named_and_leaves_no_image(proxy, docker_client, base_image, tmp_path):
    repo, sha = calc_repo(tmp_path)
    client = docker.DockerClient(base_url=proxy.url, timeout=120)
    spec = EnvSpec(setup=[f"echo {uuid.uuid4().hex} > /tmp/own-tag"])  # an image of its own
    proxy.fail_commits(FULL)
    with pytest.raises(ImageBuildError) as error:
        build_env_image(client, RepoSource(location=str(repo), commit=sha), spec, log_dir=tmp_path,
                        cache_dir=tmp_path / "cache")
    first_line = str(error.value).splitlines()[0]
    assert "the Docker engine's disk is full" in first_line and "committing image patchswarm-env:" in first_line
    tag = "patchswarm-env:" + first_line.split("committing image patchswarm-env:")[1].split()[0]
    assert any("/commit?" in line for line in proxy.requests)  # the fault was met where it was put
    assert not image_exists(docker_client, tag)  # no half image for a later run to take
    builders = docker_client.containers.list(all=True, filters={"label": "patchswarm.kind=env-build"})
    assert not [c for c in builders if c.labels.get("patchswarm.pid") == str(os.getpid())]
    # Space again: the same build succeeds and is used.
    proxy.fail_commits(None)
    built = build_env_image(client, RepoSource(location=str(repo), commit=sha), spec, log_dir=tmp_path,
                            cache_dir=tmp_path / "cache")
    try:
        assert built.built and built.tag == tag and image_exists(docker_client, tag)
    finally:
        docker_client.images.remove(tag, force=True)
        client.close()


def test_engine_restart_mid_batch_is_never_a_result_and_a_rerun_finishes(proxy, docker_client, base_image,
                                                                         tmp_path):
    repo, sha = calc_repo(tmp_path)
    rows = [{"instance_id": f"calc-{n}", "repo": str(repo), "commit": sha, "issue": f"{ISSUE}\nSeen by user {n}.\n"}
            for n in range(2)]
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_dir, call_log = unique_run_dir(tmp_path, "restart"), tmp_path / "calls.jsonl"
    command = cli("batch", "--tasks", str(tasks), "--run-dir", str(run_dir), "--workers", "2")
    env = {**os.environ, "DOCKER_HOST": proxy.url, "PATCHSWARM_TEST_CALL_LOG": str(call_log)}
    batch = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    restarted = threading.Event()

    def restart() -> None:
        # As a restart without live-restore: the engine is gone for a while and its containers are dead.
        def kill() -> None:
            for container in docker_client.containers.list(filters={"label": f"patchswarm.pid={batch.pid}"}):
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    container.kill()  # the batch may have removed it meanwhile

        try:
            proxy.outage(kill)
        finally:
            restarted.set()
            threading.Timer(2.0, proxy.back).start()

    # The outage comes at the third command started in a sandbox: mid-trajectory, sandboxes in use.
    starts = iter(range(1, 1000))
    proxy.on_request(lambda line: "/exec/" in line and "/start" in line and next(starts) >= 3, restart)
    try:
        out, err = batch.communicate(timeout=SUBPROCESS_TIMEOUT)
    finally:
        if batch.poll() is None:
            batch.kill()
    # The batch can end on the outage before the kills that follow it return: wait for them, not for time.
    assert restarted.wait(timeout=SUBPROCESS_TIMEOUT), err[-2000:]
    # Whatever the batch did after the outage (went on, or stopped), an instance it touched is not a result.
    for row in rows:
        path = run_dir / "instances" / row["instance_id"] / "result.json"
        if path.exists():
            result = json.loads(path.read_text())
            infra = [t for t in result.get("trajectories", []) if t.get("infrastructure")]
            assert not (infra and result["status"] in ("solved", "no_patch")), (result["status"], infra)
            # The script always writes the right fix among others: "no patch" could only come from a dead
            # sandbox read as a failing test, and a solved instance must have chosen the right one.
            assert result["status"] != "no_patch", err[-3000:]
            assert result["status"] != "solved" or "return 0.0" in result["patch"], (result["patch"], err[-3000:])
    answered_first = len(read_call_log(call_log))
    print(f"first batch: exit {batch.returncode}; {_statuses(run_dir, rows)}; answered {answered_first}")
    # The same command again, the engine back: every instance solved, no paid call repeated, nothing left.
    proxy.back()  # the first batch may have ended within the outage's two seconds
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert again.returncode == 0, again.stderr[-3000:]
    for row in rows:
        assert json.loads((run_dir / "instances" / row["instance_id"] / "result.json").read_text())["status"] == "solved"
    assert len(read_call_log(call_log)) >= answered_first
    assert_no_repeated_call(call_log, num_edits=2)
    left = docker_client.containers.list(all=True, filters={"label": f"patchswarm.pid={batch.pid}"})
    assert left == [], [c.name for c in left]
