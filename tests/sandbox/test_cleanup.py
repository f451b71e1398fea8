from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

from docker.errors import NotFound

from sandbox.engine import remove_container
from sandbox.labels import KIND_IMAGE_PROBE, KIND_QUOTA_HOLDER, KIND_SANDBOX, LABEL_KIND
from sandbox.manager import LABEL_RUN, SandboxManager, SandboxPool, of_run, remove_containers
from tests.conftest import settled_sandboxes


def _labelled(client, run_id):
    # ignore_removed: a run's image probes are labelled containers that come and go while we list
    return client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"}, ignore_removed=True)


def test_every_container_is_labelled_and_removed_on_close(docker_client, calc_image):
    with SandboxManager(docker_client, handle_signals=False) as mgr:
        mgr.create(calc_image)
        mgr.create(calc_image)
        assert len(_labelled(docker_client, mgr.run_id)) == 2
    assert _labelled(docker_client, mgr.run_id) == []


def test_each_container_of_a_run_says_what_it_is(docker_client, calc_image):
    """A run's image probe and quota-volume holder carry the run label too (so a crash sweep removes them),
    and `patchswarm.kind` tells them from sandboxes. Docker's create events show the short-lived ones."""
    since = int(time.time()) - 1
    with SandboxManager(docker_client, handle_signals=False) as mgr:
        sandbox = mgr.create(calc_image)
        assert sandbox.container.labels[LABEL_KIND] == KIND_SANDBOX
        run_filter = {"type": "container", "event": "create", "label": f"{LABEL_RUN}={mgr.run_id}"}
        events = docker_client.events(since=since, until=int(time.time()) + 1, filters=run_filter, decode=True)
        kinds = sorted(event["Actor"]["Attributes"].get(LABEL_KIND, "none") for event in events)
    assert kinds == sorted([KIND_IMAGE_PROBE, KIND_QUOTA_HOLDER, KIND_SANDBOX])


def test_concurrent_removers_each_return_only_once_the_container_is_gone(manager, calc_image):
    """A second remover got 409 "removal already in progress" at once and returned while the container still
    existed (the SIGINT test below then saw it listed: its close raced the atexit sweep)."""
    sandbox = manager.create(calc_image)
    start = threading.Barrier(4)
    still_there: list[bool] = []

    def remover() -> None:
        start.wait()
        remove_container(manager.client.api, sandbox.id)
        try:
            manager.client.api.inspect_container(sandbox.id)
            still_there.append(True)
        except NotFound:
            still_there.append(False)

    threads = [threading.Thread(target=remover) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert still_there == [False] * 4


def test_sigint_to_a_process_using_sandboxes_leaves_nothing(docker_client, calc_image, tmp_path):
    ready = tmp_path / "ready"
    run_id = f"sigint-test-{uuid.uuid4().hex[:8]}"  # its own: a concurrent run of this test has its own
    child = textwrap.dedent(f"""
        import pathlib, time
        from sandbox.engine import docker_client
        from sandbox.manager import SandboxManager
        mgr = SandboxManager(docker_client(), run_id={run_id!r})
        for _ in range(3):
            mgr.create({calc_image!r})
        pathlib.Path({str(ready)!r}).write_text("ok")
        mgr.create({calc_image!r}).exec("sleep 1000", timeout=600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child])
    try:
        for _ in range(600):
            if ready.exists() and settled_sandboxes(_labelled(docker_client, run_id)) == 4:
                break
            proc.wait(timeout=0.1) if proc.poll() is not None else subprocess.run(["sleep", "0.1"])
        assert settled_sandboxes(_labelled(docker_client, run_id)) == 4
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert _labelled(docker_client, run_id) == []


def test_sweep_removes_containers_of_dead_runs_only(docker_client, calc_image):
    child = f"""
import os
from sandbox.engine import docker_client
from sandbox.manager import SandboxManager
mgr = SandboxManager(docker_client(), run_id="killed-run")
mgr.create({calc_image!r})
os._exit(0)  # like kill -9: no cleanup runs
"""
    subprocess.run([sys.executable, "-c", child], check=True)
    assert len(_labelled(docker_client, "killed-run")) == 1
    with SandboxManager(docker_client, handle_signals=False) as live:
        live.create(calc_image)
        SandboxManager(docker_client, run_id="sweeper", handle_signals=False).close_all()
        assert _labelled(docker_client, "killed-run") == []
        assert len(_labelled(docker_client, live.run_id)) == 1


def test_clean_removes_leftovers_of_one_run(docker_client, calc_image):
    mgr = SandboxManager(docker_client, run_id="leftover", sweep=False, handle_signals=False)
    mgr.create(calc_image)
    assert remove_containers(docker_client, "leftover") == 1
    assert _labelled(docker_client, "leftover") == []
    mgr.close_all()


def test_clean_of_a_run_removes_its_ray_nodes_sandboxes_too(docker_client, calc_image):
    # A Ray node labels its sandboxes "<driver run id>-<suffix>" (patchswarm.ray_node); a run whose id
    # merely starts with the same characters is another run.
    managers = {run_id: SandboxManager(docker_client, run_id=run_id, sweep=False, handle_signals=False)
                for run_id in ("drv0clean", "drv0clean-node1", "drv0clean-node2", "drv0cleanx")}
    try:
        for manager in managers.values():
            manager.create(calc_image)
        assert remove_containers(docker_client, "drv0clean") == 3
        assert [run_id for run_id in managers if _labelled(docker_client, run_id)] == ["drv0cleanx"]
    finally:
        for manager in managers.values():
            manager.close_all()
    assert _labelled(docker_client, "drv0cleanx") == []


def test_a_run_label_belongs_to_its_run_and_its_nodes_only():
    assert of_run("abc", "abc") and of_run("abc-1f2e", "abc")
    assert not of_run("abcd", "abc") and not of_run("xabc-1", "abc") and not of_run(None, "abc")


def test_pool_reuses_warm_sandboxes_and_resets_them(manager, calc_image):
    pool = SandboxPool(manager, calc_image, size=2)
    with pool.acquire() as first:
        first.exec("echo dirty > calc.py")
    with pool.acquire() as second:
        assert second is first
        assert "a - b" in second.read_file("calc.py")
    assert pool.created == 1
    pool.close()
