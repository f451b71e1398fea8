from __future__ import annotations

import time

import pytest

from sandbox.errors import SandboxBroken
from sandbox.execution import OutputCollector


def test_exec_reports_exit_code_and_merged_output(sandbox):
    result = sandbox.exec("echo out; echo err >&2; exit 3")
    assert result.exit_code == 3
    assert "out" in result.output and "err" in result.output
    assert not result.timed_out and result.truncated_bytes == 0


def test_exec_passes_only_named_environment(sandbox, monkeypatch):
    monkeypatch.setenv("PATCHSWARM_HOST_SECRET", "leak")
    result = sandbox.exec("echo ${PATCHSWARM_HOST_SECRET:-absent} $GIVEN", env={"GIVEN": "given"})
    assert result.output.strip() == "absent given"


def test_timeout_kills_whole_process_tree(sandbox):
    script = "sleep 1000 & setsid sleep 1000 & (sleep 1000 &); echo started; sleep 1000"
    started = time.monotonic()
    result = sandbox.exec(script, timeout=1.5)
    assert result.timed_out
    assert time.monotonic() - started < 15
    assert "started" in result.output  # partial output of a timed-out run is kept
    left = sandbox.exec("ps -eo pid,args --no-headers | grep -c '[s]leep 1000' || true")
    assert left.output.strip() == "0"


def test_output_is_capped_keeping_head_and_tail(sandbox):
    result = sandbox.exec("echo FIRST; head -c 500000 /dev/zero | tr '\\0' x; echo; echo LAST", output_cap=10_000)
    assert result.output.startswith("FIRST")
    assert result.output.rstrip().endswith("LAST")
    assert result.output_bytes > 500_000
    assert result.truncated_bytes == result.output_bytes - 10_000
    assert f"[... {result.truncated_bytes} bytes of output cut ...]" in result.output


def test_invalid_utf8_is_replaced_not_dropped(sandbox):
    result = sandbox.exec("printf 'a\\xffb\\xfe\\n'")
    assert result.output == "a\ufffdb\ufffd\n"


def test_collector_keeps_exact_tail_across_chunks():
    collector = OutputCollector(cap=10)
    for chunk in [b"0123", b"4567", b"89ab", b"cdef"]:
        collector.add(chunk)
    text, cut = collector.render()
    assert text == "01234\n[... 6 bytes of output cut ...]\nbcdef"
    assert cut == 6


def test_memory_hog_is_killed_and_reported(manager, calc_image):
    from sandbox.manager import Limits

    small = manager.create(calc_image, limits=Limits(memory_mb=128))
    result = small.exec("python3 -c \"x = bytearray(600 * 1024 * 1024)\"", timeout=60)
    assert result.exit_code == 137
    assert "out of memory" in result.describe()
    assert small.exec("echo alive").output.strip() == "alive"


def test_plain_docker_exec_path_kills_tree_and_caps_output(manager, calc_image):
    """Without the in-sandbox exec server (images without python3) the same guarantees hold."""
    plain = manager.create(calc_image, exec_server=False)
    result = plain.exec("sleep 1000 & setsid sleep 1000 & echo started; sleep 1000", timeout=1.5)
    assert result.timed_out and "started" in result.output
    assert plain.exec("ps -eo args --no-headers | grep -c '[s]leep 1000' || true").output.strip() == "0"
    flood = plain.exec("head -c 300000 /dev/zero | tr '\\0' y", output_cap=1000)
    assert flood.truncated_bytes == 299_000


def test_command_that_kills_the_exec_server_is_reported_and_sandbox_recovers(sandbox):
    # Its outcome is unknown: an infrastructure failure (callers retry on a fresh sandbox), never a result.
    with pytest.raises(SandboxBroken, match="exec server lost"):
        sandbox.exec("kill -9 -1")
    assert sandbox.exec("echo back").output.strip() == "back"


@pytest.mark.parametrize("exec_server", [True, False], ids=["exec-server", "plain-docker-exec"])
def test_finished_command_with_background_child_is_not_a_timeout(manager, calc_image, exec_server):
    sb = manager.create(calc_image, exec_server=exec_server)
    result = sb.exec("sleep 30 & echo bg; exit 4", timeout=3)
    assert not result.timed_out
    assert result.exit_code == 4 and result.output.strip() == "bg"
    # What the command left holding its output is killed (left alone, it stalls later docker execs).
    assert sb.exec("ps -eo args --no-headers | grep -c '[s]leep 30' || true").output.strip() == "0"
    detached = sb.exec("sleep 30 > /dev/null 2>&1 & echo detached", timeout=3)
    assert detached.exit_code == 0 and not detached.timed_out
    chatty = sb.exec("echo started; yes &", timeout=10, output_cap=1000)  # its child's output never pauses
    assert chatty.exit_code == 0 and not chatty.timed_out and chatty.output.startswith("started")
    assert sb.exec("ps -eo args --no-headers | grep -c '^[y]es' || true").output.strip() == "0"


@pytest.mark.parametrize("exec_server", [True, False], ids=["exec-server", "plain-docker-exec"])
def test_nul_byte_and_no_timeout_leave_the_sandbox_usable(manager, calc_image, exec_server):
    sb = manager.create(calc_image, exec_server=exec_server)
    parent = sb.exec("echo $PPID").output.strip()  # with the exec server: the server's pid
    nul = sb.exec("echo a\0b")
    assert nul.exit_code == 127 and "NUL byte" in nul.output and "\n" not in nul.output.strip()
    bad_env = sb.exec("echo never", env={"X": "a\0b"})
    assert bad_env.exit_code == 127 and "never" not in bad_env.output
    assert sb.exec("echo unlimited", timeout=None).output.strip() == "unlimited"
    assert sb.run("echo run unlimited", timeout=None).output.strip() == "run unlimited"
    if exec_server:
        assert sb.exec("echo $PPID").output.strip() == parent  # the same server, it never died
