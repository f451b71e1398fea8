"""Run one command in a running container with a real timeout and capped, lossless-enough output."""

from __future__ import annotations

import io
import tarfile
import threading
import time
from collections import deque

from docker import APIClient
from pydantic import BaseModel, model_validator

DEFAULT_OUTPUT_CAP = 64 * 1024
# Each command's bash is a session leader (docker exec); it notes its pid, so what it leaves behind
# holding the output open can be killed by session. Per uid: another user could not overwrite it.
SESSION_FILE = "/tmp/.ps_exec_sid.$UID"
KILLED_EXIT_CODE = 137  # 128 + SIGKILL: how a command killed at its timeout ends


class ExecResult(BaseModel):
    """What a command did. A non-zero exit is data, never an exception."""

    command: str
    exit_code: int | None
    output: str  # stdout and stderr merged in arrival order; head and tail kept when capped
    timed_out: bool = False
    duration_s: float
    output_bytes: int  # bytes the command printed in total
    truncated_bytes: int = 0  # bytes cut from the middle of `output`

    @model_validator(mode="after")
    def _timeout_is_never_success(self) -> ExecResult:
        # A timed-out command was killed with SIGKILL; whatever path reported it, 0 would read as "fixed".
        if self.timed_out and self.exit_code == 0:
            self.exit_code = KILLED_EXIT_CODE
        return self

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def killed_by_signal(self) -> int | None:
        if self.exit_code is not None and self.exit_code > 128:
            return self.exit_code - 128
        return None

    def describe(self) -> str:
        """One line for logs and prompts: how the command ended."""
        if self.timed_out:
            return f"timed out after {self.duration_s:.1f}s (process tree killed)"
        if self.exit_code == 137:
            return "killed by SIGKILL (exit 137): most likely out of memory"
        return f"exit code {self.exit_code}"


class OutputCollector:
    """Keeps the first and last `cap/2` bytes and counts the rest, so floods cost bounded memory."""

    def __init__(self, cap: int = DEFAULT_OUTPUT_CAP):
        self.half = max(cap // 2, 1)
        self.head = bytearray()
        self.tail: deque[bytes] = deque()
        self.tail_len = 0
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if not chunk:
            return
        self.tail.append(chunk)
        self.tail_len += len(chunk)
        while self.tail_len - len(self.tail[0]) >= self.half:
            self.tail_len -= len(self.tail.popleft())

    def render(self) -> tuple[str, int]:
        tail = b"".join(self.tail)
        if len(tail) > self.half:
            tail = tail[-self.half :]
        return join_head_tail(bytes(self.head), tail, self.total)


def join_head_tail(head: bytes, tail: bytes, total: int) -> tuple[str, int]:
    """Output text from the kept head and tail of `total` bytes, with a marker for the bytes cut between."""
    cut = total - len(head) - len(tail)
    # Invalid UTF-8 is replaced, never dropped, so byte counts in the marker stay honest.
    head_text, tail_text = head.decode("utf-8", errors="replace"), tail.decode("utf-8", errors="replace")
    if cut > 0:
        return f"{head_text}\n[... {cut} bytes of output cut ...]\n{tail_text}", cut
    return head_text + tail_text, 0


def run_exec(
    api: APIClient,
    container_id: str,
    command: str,
    *,
    timeout: float | None,
    user: str,
    workdir: str | None = None,
    env: dict[str, str] | None = None,
    output_cap: int = DEFAULT_OUTPUT_CAP,
) -> ExecResult:
    """Run `command` under bash; on timeout kill every process of the sandbox but its init.

    `timeout` None means no limit. When the command's main process has exited but a background child
    still holds the output open, output is drained briefly, the command's session is killed (such a
    child also stalls the engine's later execs) and the real exit code returned.
    """
    started = time.monotonic()
    if "\0" in command or any("\0" in k + v for k, v in (env or {}).items()):
        return ExecResult(command=command, exit_code=127, output="cannot start the command: it contains a NUL byte",
                          duration_s=0.0, output_bytes=0)
    exec_id = api.exec_create(
        container_id, ["bash", "-c", f"echo $$ > {SESSION_FILE} 2>/dev/null; {command}"], stdout=True, stderr=True,
        user=user, workdir=workdir, environment=env or {},
    )["Id"]
    stream = api.exec_start(exec_id, stream=True)
    collector = OutputCollector(output_cap)
    done = threading.Event()

    def pump() -> None:
        try:
            for chunk in stream:
                collector.add(chunk)
        except Exception:  # noqa: BLE001 - the stream breaks when we kill the process tree
            pass
        finally:
            done.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = not _wait_main_exit(api, exec_id, done, None if timeout is None else started + timeout)
    if timed_out:
        kill_all_processes(api, container_id, user)
        # The stream ends once the killed processes release their pipes.
        if not done.wait(15):
            stream.close()
    elif not done.is_set():
        _drain(collector, done)
        if not done.is_set():
            _kill_leftovers(api, container_id, user, done)
            stream.close()
    duration = time.monotonic() - started
    exit_code = _wait_exit_code(api, exec_id)
    output, cut = collector.render()
    return ExecResult(
        command=command, exit_code=exit_code, output=output, timed_out=timed_out,
        duration_s=duration, output_bytes=collector.total, truncated_bytes=cut,
    )


def _wait_main_exit(api: APIClient, exec_id: str, done: threading.Event, deadline: float | None) -> bool:
    """Wait until the output ends or the main process exits; False on reaching `deadline`.

    The engine is asked only while the output stays open, less often as time passes.
    """
    poll = 0.05
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return False
        if done.wait(poll if left is None else min(poll, left)):
            return True
        info = api.exec_inspect(exec_id)
        if not info.get("Running") and info.get("ExitCode") is not None:  # None: not even started yet
            return True
        poll = min(poll * 2, 1.0)


def _drain(collector: OutputCollector, done: threading.Event, quiet_s: float = 0.2, max_s: float = 1.0) -> None:
    """Keep reading until the output ends or stays quiet for `quiet_s`, at most `max_s` (below the ~2 s
    after which the engine closes the output of an exited exec itself, leaving its holders running)."""
    stop = time.monotonic() + max_s
    while time.monotonic() < stop:
        seen = collector.total
        if done.wait(quiet_s) or collector.total == seen:
            return


def _kill_leftovers(api: APIClient, container_id: str, user: str, done: threading.Event) -> None:
    """Kill the finished command's session; if something (e.g. a setsid child) still holds the output, all."""
    script = (f's=$(cat {SESSION_FILE} 2>/dev/null) && [ -n "$s" ] && '
              '{ pkill -9 -s "$s" 2>/dev/null || kill -9 -- "-$s" 2>/dev/null; }; true')
    exec_id = api.exec_create(container_id, ["bash", "-c", script], user=user)["Id"]
    api.exec_start(exec_id)
    if not done.wait(1):
        kill_all_processes(api, container_id, user)
        done.wait(5)


def _wait_exit_code(api: APIClient, exec_id: str) -> int | None:
    # The stream can close a moment before the engine records the exit code.
    for _ in range(50):
        info = api.exec_inspect(exec_id)
        if not info.get("Running"):
            return info.get("ExitCode")
        time.sleep(0.02)
    return None


def kill_all_processes(api: APIClient, container_id: str, user: str) -> None:
    """`kill -9 -1` signals every process the user may signal except init and itself, in this PID namespace.

    That reaches children that left the process group (setsid, daemons), which a process-group kill misses.
    """
    exec_id = api.exec_create(container_id, ["bash", "-c", "kill -9 -1 2>/dev/null; true"], user=user)["Id"]
    api.exec_start(exec_id)


def one_file_tar(path: str, data: bytes, *, mode: int = 0o644, uid: int = 0, gid: int = 0) -> bytes:
    """A tar holding one file, for `put_archive` (which copies files into a container without a shell)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(path.lstrip("/"))
        info.size, info.mode, info.uid, info.gid = len(data), mode, uid, gid
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
