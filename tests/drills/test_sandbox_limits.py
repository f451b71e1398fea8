"""Drills of issue 14 on the sandbox's own limits: timeouts (item 2), fork bombs (item 7), disk (item 1)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import pytest

from patchswarm.report.build import _trajectory
from sandbox.errors import DiskLimitExceeded
from sandbox.manager import Limits
from tests.agent.test_editing import BUGGY_LINE, edit, make_editor
from tests.agent.test_testing import client_with_store, minicalc, pool  # noqa: F401


def test_timed_out_command_never_reads_as_success(sandbox):
    """item 2: through the exec server a killed command reported exit code 0."""
    result = sandbox.exec("sleep 100", timeout=2)
    assert result.timed_out and result.exit_code == 137 and not result.ok
    ran = sandbox.run("sleep 100", timeout=2)
    assert ran.timed_out and ran.exit_code == 137


def test_hung_edited_test_is_recorded_as_timeout_not_fixed(scripted, pool, minicalc):  # noqa: F811
    """item 2: a hung reproduction test was stored as `edited_exit_code: 0` and shown green in the report."""
    hang = edit(BUGGY_LINE, "    import time\n    time.sleep(100)")
    scripted.add("main", [hang, "<finish/>"])
    editor = make_editor(client_with_store(scripted), pool, minicalc[0], test_timeout_s=2)
    result = asyncio.run(editor.run())
    assert result.edited_exit_code != 0 and result.edited_timed_out
    feedback = scripted.calls("main")[1][-1]["content"]
    assert "timed out" in (feedback if isinstance(feedback, str) else str(feedback))
    view = _trajectory({"index": 0, "editing": result.model_dump()})
    assert [run.tone for run in view.machines[0].runs] == ["issue", "timeout"]


def test_fork_bomb_keeps_init_and_timeout_holds(manager, calc_image):
    """item 7: a fork bomb killed the sandbox's init and the timeout kill took 8-17 s longer."""
    sandbox = manager.create(calc_image, limits=Limits(pids=256))
    init_before = manager.client.api.top(sandbox.id)["Processes"][0][1]
    sandbox.exec("true", timeout=30)  # starts the exec server: its start-up is not part of any timeout
    for bomb in ("bomb(){ bomb | bomb & }; bomb; sleep 100", "while :; do sleep 1000 & done"):
        started = time.monotonic()
        result = sandbox.exec(bomb, timeout=4)
        took = time.monotonic() - started
        assert result.timed_out and result.exit_code == 137
        assert took < 4 + 1.5, f"timeout of 4 s took {took:.1f} s"
    sandbox.container.reload()
    assert sandbox.container.status == "running"
    assert manager.client.api.top(sandbox.id)["Processes"][0][1] == init_before  # same PID 1
    assert sandbox.exec("echo alive", timeout=5).output == "alive\n"


def _volumes_of(manager) -> list[str]:
    return [v.name for v in manager.client.volumes.list(filters={"label": f"patchswarm.run={manager.run_id}"})]


def test_disk_quota_holds_in_every_writable_place(manager, calc_image):
    """item 1: a reproduction test wrote 3 GiB into /repo per sandbox; the host's free space fell by 6 GB."""
    sandbox = manager.create(calc_image, limits=Limits(disk_mb=64))
    assert sandbox.read_file("calc.py").startswith("def add")  # the image's repository is there
    for place in ("/repo", "/tmp", "$HOME"):
        result = sandbox.exec(f"dd if=/dev/zero of={place}/fill bs=1M count=200 2>&1; echo rc=$?; "
                              f"du -m {place}/fill | cut -f1", timeout=60)
        assert "No space left on device" in result.output and "rc=1" in result.output, (place, result.output)
        assert int(result.output.split()[-1]) <= 64 + 2, (place, result.output)
        sandbox.exec(f"rm -f {place}/fill")
    # Nothing else is writable, so the container's own layer on the host's disk stays empty.
    assert "Read-only file system" in sandbox.exec("touch /etc/x /usr/x /x").output
    [listed] = manager.client.api.containers(all=True, size=True, filters={"id": sandbox.id})
    assert listed.get("SizeRw", 0) < 1024 * 1024  # the engine omits a zero size
    # The archive API sees the volumes (it did not see --tmpfs mounts).
    sandbox.write_file("new.txt", "hi\n")
    assert sandbox.read_file("new.txt") == "hi\n" and "new.txt" in sandbox.diff()
    sandbox.reset()
    assert sandbox.exec("git status --porcelain").output == ""
    assert len(_volumes_of(manager)) == 4  # /repo, /tmp, /var/tmp, the home directory
    manager.discard(sandbox)
    assert _volumes_of(manager) == []


def test_quota_volumes_go_with_the_run(docker_client, calc_image):
    """item 1: the volumes carry the run's labels; closing the run (or a sweep after a crash) removes them."""
    from sandbox.manager import SandboxManager, remove_containers

    with SandboxManager(docker_client, handle_signals=False, sweep=False) as manager:
        manager.create(calc_image, limits=Limits(disk_mb=16))
        assert len(_volumes_of(manager)) == 4
    assert _volumes_of(manager) == []
    crashed = SandboxManager(docker_client, handle_signals=False, sweep=False)
    crashed.create(calc_image, limits=Limits(disk_mb=16))
    crashed.closed = True  # as if the process died: nothing of it cleans up
    assert remove_containers(docker_client, crashed.run_id) == 1 and _volumes_of(crashed) == []


def test_root_sandbox_writing_outside_its_volumes_is_killed_at_the_disk_limit(manager, calc_image):
    """item 1: root (grading with an eval script) may write anywhere; its container layer had no bound."""
    sandbox = manager.create(calc_image, user="0:0", limits=Limits(disk_mb=64))
    assert sandbox.exec("touch /opt/venv/ok && echo writable", timeout=30).output == "writable\n"  # reinstalls work
    with pytest.raises(DiskLimitExceeded, match=r"wrote \d+ MiB outside its volumes \(limit 64 MiB\)"):
        # The write itself is faster than a poll; the sandbox is killed within a poll of it.
        sandbox.exec("dd if=/dev/zero of=/opt/fill bs=1M count=256 2>/dev/null; sleep 60", timeout=120)
    manager.discard(sandbox)


def test_image_build_past_its_disk_limit_fails_naming_it_and_tags_nothing(docker_client, base_image, calc_repo,
                                                                          tmp_path):
    """item 1: an image build (root setup) could fill the engine's disk."""
    from sandbox.base_image import image_exists
    from sandbox.environments import EnvSpec, build_env_image
    from sandbox.errors import ImageBuildError
    from sandbox.repos import RepoSource

    repo, shas = calc_repo
    sha = shas[0]
    spec = EnvSpec(setup=[f"head -c 256M /dev/zero > /tmp/fill-{uuid.uuid4().hex[:8]}; sleep 60"], disk_limit_mb=64)
    started = time.monotonic()
    with pytest.raises(ImageBuildError, match=r"image build wrote \d+ MiB outside its volumes \(limit 64 MiB\)") as error:
        build_env_image(docker_client, RepoSource(location=str(repo), commit=sha), spec, log_dir=tmp_path,
                        cache_dir=tmp_path / "cache")
    assert time.monotonic() - started < 55  # killed, not waited out
    tag = error.value.log_path and Path(error.value.log_path).stem.removeprefix("env-")
    assert tag and not image_exists(docker_client, f"patchswarm-env:{tag}")
    builders = docker_client.containers.list(all=True, filters={"label": "patchswarm.kind=env-build"})
    assert not [c for c in builders if c.labels.get("patchswarm.pid") == str(os.getpid())]
