"""End to end in real Docker: a fixture repository dressed as a SWE-bench instance, built from a file:// mirror
and graded with its official-style eval script; plus the root setup step the local build relies on."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import time
import uuid
from pathlib import Path
from types import MappingProxyType

import pytest
from typer.testing import CliRunner

from patchswarm.swebench.cli import eval_app, result_line
from patchswarm.swebench.dataset import SweInstance
from patchswarm.swebench.environments import build_instance_image, official_image, resolve_instance_image
from patchswarm.swebench.grading import grade_instance, grading_limits, harness_test_spec
from patchswarm.swebench.specs import load_spec_table
from sandbox import EnvSpec, RepoSource, build_env_image
from sandbox.environments import env_image_tag
from sandbox.manager import owner_labels
from tests.conftest import FIXTURES, make_git_repo

CALC = FIXTURES / "swebench_calc"
GIT_ENV = MappingProxyType({"GIT_AUTHOR_NAME": "calc", "GIT_AUTHOR_EMAIL": "calc@example.com", "GIT_COMMITTER_NAME": "calc",
           "GIT_COMMITTER_EMAIL": "calc@example.com", "GIT_AUTHOR_DATE": "2024-01-01T00:00:00+0000",
           "GIT_COMMITTER_DATE": "2024-01-01T00:00:00+0000"})
BAD_PATCH = "diff --git a/nowhere.py b/nowhere.py\n--- a/nowhere.py\n+++ b/nowhere.py\n@@ -1 +1 @@\n-a\n+b\n"


def calc_row() -> dict:
    row = json.loads((CALC / "meta.json").read_text())
    row.update(patch=(CALC / "patch.diff").read_text(), test_patch=(CALC / "test_patch.diff").read_text(),
               eval_script=(CALC / "eval.sh").read_text())
    return row


def make_calc_repo(dest: Path) -> list[str]:
    """commit0/ then commit1/ of the fixture, with fixed dates so the SHAs match meta.json."""
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "init", "-q", "-b", "main", str(dest)], check=True)
    shas = []
    for number in (0, 1):
        root = CALC / f"commit{number}"
        for source in sorted(p for p in root.rglob("*") if p.is_file()):
            target = dest / source.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(source.read_text())
        subprocess.run(["git", "add", "-A"], cwd=dest, check=True, env=env)
        subprocess.run(["git", "-c", "commit.gpgsign=false", "commit", "-q", "-m", f"commit {number}"],
                       cwd=dest, check=True, env=env)
        shas.append(subprocess.run(["git", "rev-parse", "HEAD"], cwd=dest, capture_output=True, text=True,
                                   check=True).stdout.strip())
    return shas


def make_calc_mirror(root: Path) -> tuple[str, list[str]]:
    """The fixture repo at root/calc with a bare mirror beside it: (the --repo-url template, the SHAs)."""
    shas = make_calc_repo(root / "calc")
    (root / "mirrors").mkdir()
    subprocess.run(["git", "clone", "-q", "--bare", str(root / "calc"), str(root / "mirrors" / "fixture__calc.git")],
                   check=True)
    return f"file://{root}/mirrors/{{owner}}__{{name}}.git", shas


@pytest.fixture(scope="module")
def calc(tmp_path_factory, docker_client, base_image):
    """(instance, spec table, repo URL template, git cache dir) with a bare file:// mirror of the fixture repo."""
    root = tmp_path_factory.mktemp("swebench")
    instance = SweInstance(**calc_row())
    template, shas = make_calc_mirror(root)
    assert shas == [instance.environment_setup_commit, instance.base_commit], "fixture SHAs drifted from meta.json"
    return instance, load_spec_table(CALC / "specs.json"), template, root / "cache"


@pytest.fixture(scope="module")
def calc_image(calc, docker_client):
    instance, table, template, cache = calc
    return build_instance_image(docker_client, instance, table, template, cache_dir=cache)


def test_local_image_has_the_official_layout(calc_image, docker_client):
    assert calc_image.kind == "local" and calc_image.user == "1000:1000"
    assert (calc_image.python_wanted, calc_image.python_used, calc_image.nearest) == ("3.11", "3.11", False)
    assert calc_image.env_tag and calc_image.env_tag != calc_image.tag
    script = ("readlink /testbed; cat /repo/.build-stamp; git -C /testbed rev-list --count HEAD; "
              "source /opt/miniconda3/bin/activate && conda activate testbed && echo $CONDA_DEFAULT_ENV "
              "&& python -c 'import calc, pytest; print(calc.__file__)'")
    # Owned by this live process: the image's labels are its builder's (gone), and another run's orphan
    # sweep would remove a container that kept them.
    out = docker_client.containers.run(calc_image.tag, ["bash", "-c", script], user="1000:1000",
                                       network_mode="none", remove=True, labels=owner_labels("test-layout")).decode()
    assert out.split() == ["/repo", "fixture-build", "1", "testbed", "/repo/calc/__init__.py"]


def test_a_tox_current_env_symlink_to_the_venv_python_sees_the_venv(calc_image, docker_client):
    """tox-current-env runs `python` through .tox/<env>/bin/python -> the venv's python: a venv python
    reached that way is the bare system Python, unless the .pth the env layer installs steps in."""
    from patchswarm.swebench.scripts import current_env_command

    # Owned by this live process (see above): an orphan sweep must not remove it while it runs.
    probe = ("mkdir -p /tmp/e/.tox/py39/bin && ln -s /opt/venv/bin/python /tmp/e/.tox/py39/bin/python && "
             "try() { /tmp/e/.tox/py39/bin/python -c 'import sys, pytest; print(sys.prefix)' 2>/dev/null || echo none; }; "
             f"try; {current_env_command()} && try; /opt/venv/bin/python -c 'import sys; print(sys.prefix)'; echo end")
    container = docker_client.containers.run(calc_image.tag, ["bash", "-c", probe], user="root", network_mode="none",
                                             labels=owner_labels("test-tox-current-env"), detach=True)
    try:
        status = container.wait(timeout=120)
        out = container.logs().decode()
    finally:
        container.remove(force=True)
    assert (status["StatusCode"], out.split()) == (0, ["none", "/opt/venv", "/opt/venv", "end"]), out


def test_layers_are_labelled_logged_and_locked(calc, calc_image, docker_client, manager):
    instance = calc[0]
    image, env = docker_client.images.get(calc_image.tag), docker_client.images.get(calc_image.env_tag)
    assert image.labels["patchswarm.layer"] == "swebench-instance"
    assert image.labels["patchswarm.instance"] == instance.instance_id
    assert env.labels["patchswarm.layer"] == "swebench-env" and env.labels["patchswarm.repo"] == "fixture/calc"
    # No git history in our images: setuptools-scm is told the version.
    assert "SETUPTOOLS_SCM_PRETEND_VERSION=0.1.0" in image.attrs["Config"]["Env"]
    # One log per image, named by its tag's digest, beside the cache (written when the image is built).
    assert Path(calc_image.build_log).name == f"env-{calc_image.tag.split(':')[1]}.log"
    assert Path(calc_image.env_build_log).parent.name == "build-logs"
    # Solving runs as the sandbox user, who cannot change the environment.
    sandbox = manager.create(calc_image.tag)  # labelled: the shared engine's sweeps leave it alone
    out = sandbox.exec("touch /opt/venv/x 2>&1; stat -c %u /opt/venv", timeout=60).output
    manager.discard(sandbox)
    assert ("Permission denied" in out or "Read-only file system" in out) and out.split()[-1] == "0"


def test_gold_resolves_empty_does_not_bad_patch_fails(calc, calc_image, docker_client, manager, tmp_path):
    instance, table, _, _ = calc
    gold = grade_instance(docker_client, instance, instance.patch, calc_image, manager=manager, spec_table=table,
                          model_name="gold", timeout=120, log_dir=tmp_path / "gold")
    assert (gold.status, gold.resolved) == ("resolved", True), gold.error
    entry = gold.report[instance.instance_id]
    assert entry["tests_status"]["FAIL_TO_PASS"]["success"] == ["tests/test_ops.py::test_divide_by_zero"]
    log = (tmp_path / "gold" / "test_output.txt").read_text()
    assert "+ : '>>>>> Start Test Output'" in log and "PASSED tests/test_ops.py::test_divide_by_zero" in log
    # The eval script's reinstall works: grading runs as root, as in the official images (no network still).
    assert "Successfully installed" in log and "Permission denied" not in log
    assert json.loads((tmp_path / "gold" / "report.json").read_text()) == gold.report

    empty = grade_instance(docker_client, instance, "", calc_image, manager=manager, model_name="empty",
                           timeout=120, log_dir=tmp_path / "empty", skip_patch=True)
    assert (empty.status, empty.resolved) == ("unresolved", False)
    assert empty.report[instance.instance_id]["tests_status"]["FAIL_TO_PASS"]["failure"] == instance.FAIL_TO_PASS

    bad = grade_instance(docker_client, instance, BAD_PATCH, calc_image, manager=manager, timeout=120,
                         log_dir=tmp_path / "bad")
    assert (bad.status, bad.resolved) == ("patch_failed", False)
    assert bad.report[instance.instance_id]["patch_successfully_applied"] is False
    assert ">>>>> Patch Apply Failed" in (tmp_path / "bad" / "run_instance.log").read_text()

    none = grade_instance(docker_client, instance, None, calc_image, manager=manager, log_dir=tmp_path / "none")
    assert none.status == "empty_patch" and none.report[instance.instance_id]["patch_is_None"] is True


def test_unavailable_official_image_falls_back_fast(calc, calc_image, docker_client):
    instance, table, template, cache = calc
    started = time.monotonic()
    assert official_image(docker_client, instance) is None  # no registry here: the pull fails at once
    resolved = resolve_instance_image(docker_client, instance, table, template, cache_dir=cache)
    assert time.monotonic() - started < 30
    assert resolved.kind == "local" and resolved.tag == calc_image.tag and not resolved.built  # cached


def test_official_style_image_is_used_as_is(calc, calc_image, docker_client, manager, tmp_path):
    """An image laid out like the official ones (root, /testbed a clone with history) runs the script unchanged."""
    instance, table, _, cache = calc
    mirror = io.BytesIO()
    with tarfile.open(fileobj=mirror, mode="w") as tar:
        tar.add(next(cache.parent.glob("mirrors/*.git")), arcname="mirror.git")
    container = docker_client.containers.create(calc_image.tag, ["sleep", "infinity"], user="0", working_dir="/",
                                                labels=owner_labels("test-official-style"))  # not an orphan
    try:
        container.start()
        container.put_archive("/tmp", mirror.getvalue())
        code, out = container.exec_run(["bash", "-c", (
            f"set -e; rm /testbed; git clone -q /tmp/mirror.git /testbed; cd /testbed; git checkout -q {instance.base_commit}; "
            "python -m pip install -q --no-build-isolation -e .")], user="0")
        assert code == 0, out.decode()
        container.commit(repository=instance.image.split(":")[0], tag="latest")
    finally:
        container.remove(force=True)
    try:
        image = official_image(docker_client, instance)
        assert image is not None and (image.kind, image.user, image.workdir) == ("official", "root", "/testbed")
        report = grade_instance(docker_client, instance, instance.patch, image, manager=manager, timeout=120,
                                log_dir=tmp_path / "official")
        assert report.resolved, report.error
        ran = (tmp_path / "official" / "eval.sh").read_text()
        assert ran == harness_test_spec(instance).eval_script and f"git checkout {instance.base_commit} " in ran
    finally:
        docker_client.images.remove(instance.image, force=True)


def test_cli_grades_predictions_gold_and_empty(calc, calc_image, tmp_path):
    instance, _, template, cache = calc
    dataset = tmp_path / "calc.jsonl"
    dataset.write_text(json.dumps(instance.harness_row()) + "\n")
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text(json.dumps({"instance_id": instance.instance_id, "model_patch": instance.patch,
                                       "model_name_or_path": "org/model"}) + "\n")
    common = ["--dataset", str(dataset), "--repo-url", template, "--report-dir", str(tmp_path / "out"),
              "--spec-table", str(CALC / "specs.json"), "--timeout", "120"]
    runner = CliRunner()
    result = runner.invoke(eval_app, [str(predictions), *common, "--run-id", "preds"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "preds" / "summary.json").read_text())
    assert summary["resolved_ids"] == [instance.instance_id] and summary["resolved_pct"] == 100.0
    assert (tmp_path / "out" / "preds" / "org__model" / instance.instance_id / "test_output.txt").is_file()
    report = json.loads((tmp_path / "out" / "preds" / "report.json").read_text())
    assert report[instance.instance_id]["resolved"] is True

    result = runner.invoke(eval_app, [*common, "--gold", "--empty", "--run-id", "check"])
    assert result.exit_code == 0, result.output  # gold resolves and empty does not: environment valid
    gold = json.loads((tmp_path / "out" / "check-gold" / "summary.json").read_text())
    empty = json.loads((tmp_path / "out" / "check-empty" / "summary.json").read_text())
    assert gold["resolved_instances"] == 1 and empty["resolved_instances"] == 0
    assert gold["env_broken_ids"] == empty["env_broken_ids"] == []
    assert "fixture/calc" in result.output


def test_root_setup_runs_as_root_before_the_repo(docker_client, base_image, manager, tmp_path):
    sha = make_git_repo(tmp_path / "r", [{"a.txt": "a\n"}])[0]
    marker = uuid.uuid4().hex
    env = EnvSpec(root_setup=[f"echo {marker} > /etc/ps-marker && ls -A /repo | wc -l > /etc/ps-repo-count"],
                  setup=["cat /etc/ps-marker > seen.txt"])
    image = build_env_image(docker_client, RepoSource(location=str(tmp_path / "r"), commit=sha), env,
                            cache_dir=tmp_path / "cache")
    assert image.built
    sandbox = manager.create(image.tag)
    try:
        out = sandbox.exec("stat -c %U /etc/ps-marker; cat /etc/ps-repo-count seen.txt a.txt").output.split()
    finally:
        manager.discard(sandbox)
        docker_client.images.remove(image.tag, force=True)  # unique per run: do not let them pile up
    assert out == ["root", "0", marker, "a"]
    plain = EnvSpec(setup=["true"])
    assert env_image_tag("base", sha, plain) != env_image_tag("base", sha, EnvSpec(setup=["true"], root_setup=["x"]))
    assert env_image_tag("base", sha, plain) == env_image_tag("base", sha, EnvSpec(setup=["true"], root_setup=[]))


def test_a_grading_sandbox_sees_every_core_of_the_engine(calc_image, docker_client, manager):
    # pylint-6528/-7277: multiprocessing tests skip below 2 cores; the official harness sets no CPU limit.
    cores = docker_client.info()["NCPU"]
    limits = grading_limits(docker_client)
    assert limits.cpus == cores and limits.memory_mb == 4096
    sandbox = manager.create(calc_image.tag, user=calc_image.user, workdir=calc_image.workdir, limits=limits)
    try:
        quota = sandbox.exec("cat /sys/fs/cgroup/cpu.max 2>/dev/null || "
                             "echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)",
                             timeout=30).output.split()
    finally:
        sandbox.close()
    assert int(quota[0]) // int(quota[1]) == cores


def test_grading_with_network_is_opt_in_and_recorded(calc, calc_image, docker_client, manager, tmp_path, monkeypatch):
    instance, table, _, _ = calc
    networks, create = [], manager.create

    def recording_create(*args, **kwargs):
        networks.append(kwargs.get("network", False))
        return create(*args, **kwargs)

    monkeypatch.setattr(manager, "create", recording_create)
    online = grade_instance(docker_client, instance, instance.patch, calc_image, manager=manager, spec_table=table,
                            timeout=120, log_dir=tmp_path / "online", network=True)
    assert online.resolved and online.network and networks == [True]
    assert "[graded with network]" in result_line(online)
    offline = grade_instance(docker_client, instance, instance.patch, calc_image, manager=manager, spec_table=table,
                             timeout=120, log_dir=tmp_path / "offline")
    assert offline.resolved and not offline.network and networks == [True, False]
