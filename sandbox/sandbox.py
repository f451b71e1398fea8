"""One sandbox = one container holding one repository at /repo, with a single scrubbed base commit."""

from __future__ import annotations

import base64
import contextlib
import io
import re
import shlex
import tarfile
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Literal

from docker.errors import APIError, DockerException, NotFound
from docker.models.containers import Container
from requests.exceptions import RequestException

from sandbox.engine import remove_container
from sandbox.errors import DiskLimitExceeded, PatchApplyError, SandboxBroken, SandboxError
from sandbox.exec_channel import ChannelBroken, ExecChannel
from sandbox.execution import DEFAULT_OUTPUT_CAP, ExecResult, one_file_tar, run_exec
from sandbox.quota import LayerWatch

REPO_DIR = "/repo"
SANDBOX_USER = "1000:1000"
# Exit code and marker of the in-container prelude (reset / patch / files) in `Sandbox.run`.
PRELUDE_FAILED = 125
PRELUDE_MARKER = "@@patchswarm-prelude-failed@@"
# Linux refuses a single argument over 128 KiB (MAX_ARG_STRLEN), so a longer `bash -c` command is
# copied into the container and run from a file (the exec server does the same on its side).
ARG_LIMIT = 64 * 1024

RESET_SCRIPT = "git reset -q --hard HEAD && git clean -qfdx"
# A temporary index keeps `diff()` from touching the sandbox's own index.
DIFF_SCRIPT = (
    "export GIT_INDEX_FILE=/tmp/.patchswarm-diff-index; rm -f $GIT_INDEX_FILE; "
    "git read-tree HEAD && git add -A && git diff --cached --no-color --no-ext-diff HEAD; "
    "rc=$?; rm -f $GIT_INDEX_FILE; exit $rc"
)


def _clean_script(workdir: str) -> str:
    """Remove what the sandbox user left in scratch places outside the repository; files of others stay
    (e.g. the root-owned exec server). Never for root: there, those places hold the image's own files."""
    w = shlex.quote(workdir)
    return (
        'u=$(id -u); [ "$u" = 0 ] || for d in /tmp /var/tmp /dev/shm "$HOME"; do '
        f'case "$d" in ""|/|{w}|{w}/*) continue;; esac; '
        'if [ -d "$d" ]; then find "$d" -mindepth 1 -maxdepth 1 -user "$u" -exec rm -rf {} + || exit 1; fi; done'
    )


def owner_ids(user: str) -> tuple[int, int]:
    """uid and gid of a docker `user` string like '1000:1000' (names count as root)."""
    ids = user.split(":")
    uid = int(ids[0]) if ids[0].isdigit() else 0
    gid = int(ids[1]) if len(ids) > 1 and ids[1].isdigit() else uid
    return uid, gid


def _b64(data: str | bytes) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def _write_file_script(path: str, data: str | bytes) -> str:
    quoted = shlex.quote(path)
    return f"mkdir -p \"$(dirname {quoted})\" && printf %s {_b64(data)} | base64 -d > {quoted}"


def binary_patch_files(diff: str) -> list[str]:
    """Files that a diff changes in binary form; such patches are refused (edits are text only)."""
    files, current = [], None
    for line in diff.splitlines():
        if line.startswith("diff --git "):
            current = line.split(" b/", 1)[-1]
        elif line.startswith("GIT binary patch") or (line.startswith("Binary files ") and line.endswith(" differ")):
            files.append(current or line)
    return files


def _apply_script(patch_path: str) -> str:
    """git apply first; `patch` with fuzz as the fallback for slightly stale context."""
    p = shlex.quote(patch_path)
    return (
        f"if git apply --whitespace=nowarn {p} 2>/tmp/.ps_git_apply.err; then :; "
        f"elif patch -p1 --batch --forward --fuzz=2 --no-backup-if-mismatch -r /dev/null --dry-run < {p} "
        f"> /tmp/.ps_patch.out 2>&1; then patch -p1 --batch --forward --fuzz=2 --no-backup-if-mismatch "
        f"-r /dev/null < {p} > /dev/null; "
        f"else echo {PRELUDE_MARKER}; cat /tmp/.ps_git_apply.err /tmp/.ps_patch.out; exit {PRELUDE_FAILED}; fi"
    )


def rejected_hunks(output: str) -> list[str]:
    """Names of rejected files/hunks from git apply's and patch's error text."""
    rejected: list[str] = []
    for m in re.finditer(r"error: patch failed: (\S+):(\d+)", output):
        rejected.append(f"{m.group(1)} (hunk at line {m.group(2)})")
    for m in re.finditer(r"error: (\S+): No such file or directory", output):
        rejected.append(f"{m.group(1)} (file does not exist)")
    for m in re.finditer(r"error: (\S+): already exists in working directory", output):
        rejected.append(f"{m.group(1)} (file already exists)")
    current = None
    for line in output.splitlines():
        for prefix in ("patching file ", "checking file "):
            if line.startswith(prefix):
                current = line[len(prefix) :].strip()
        failed = re.match(r"Hunk #(\d+) FAILED at (\d+)", line)
        if failed:
            rejected.append(f"{current} hunk #{failed.group(1)} (at line {failed.group(2)})")
    return list(dict.fromkeys(rejected))


class Sandbox:
    """A running, isolated container with a repository. Not thread-safe for concurrent commands."""

    def __init__(self, container: Container, image: str, user: str = SANDBOX_USER, workdir: str = REPO_DIR,
                 use_server: bool = True, on_close: Callable[[], None] | None = None,
                 layer_watch: LayerWatch | None = None):
        self.container = container
        self._layer_watch = layer_watch  # a root sandbox's disk limit outside its volumes (sandbox.quota)
        self._on_close = on_close  # e.g. removes the sandbox's quota volumes once the container is gone
        self.image = image
        self.user = user
        self.workdir = workdir
        self.dirty = False  # True once anything may have changed since the last reset
        self.closed = False
        self._lock = threading.Lock()
        # The in-sandbox exec server (see exec_channel); None until first use, False once unusable.
        self._channel: ExecChannel | None | Literal[False] = None if use_server else False

    @property
    def id(self) -> str:
        return self.container.id

    def _api(self):
        return self.container.client.api

    # -- commands --------------------------------------------------------------------------------

    def exec(
        self, command: str, timeout: float | None = 60, env: dict[str, str] | None = None,
        workdir: str | None = None, output_cap: int = DEFAULT_OUTPUT_CAP, user: str | None = None,
        kill_strays: bool = False,
    ) -> ExecResult:
        """Run a bash command of any length. Only the variables in `env` are added to the image's environment.

        `kill_strays` first kills every process left over from earlier commands. `timeout` None: no limit.
        """
        if self.closed:
            raise SandboxError(f"sandbox {self.id[:12]} is closed")
        self.dirty = True
        with self._lock:
            try:
                channel = self._ready_channel() if user in (None, self.user) else None
                if channel is not None:
                    try:
                        return self._unless_dead(channel.run(
                            command, timeout=timeout, env=env, workdir=workdir or self.workdir,
                            output_cap=output_cap, kill_strays=kill_strays))
                    except ChannelBroken as exc:
                        # The command may have run (and killed the server): its outcome is unknown, so
                        # it is an infrastructure failure, never a result; the caller may retry elsewhere.
                        channel.close()
                        self._channel = None
                        self._raise_if_dead(settle_s=3.0)
                        raise SandboxBroken(f"sandbox {self.id[:12]}: exec server lost mid-command: {exc}") from None
                user = user or self.user
                script = self._staged_command(command, user)
                if kill_strays:
                    script = f"kill -9 -1 2>/dev/null; {script}"
                result = run_exec(self._api(), self.id, script, timeout=timeout, user=user,
                                  workdir=workdir or self.workdir, env=env, output_cap=output_cap)
                result.command = command
                return self._unless_dead(result)
            except NotFound:
                raise SandboxBroken(f"sandbox container {self.id[:12]} is gone") from None
            except APIError as exc:
                raise SandboxBroken(f"sandbox container {self.id[:12]} failed: {exc.explanation}") from None
            except (DockerException, RequestException, OSError) as exc:  # the engine itself went away
                raise SandboxBroken(f"sandbox {self.id[:12]}: engine unreachable ({type(exc).__name__})") from None

    def _unless_dead(self, result: ExecResult) -> ExecResult:
        """`result`, unless the container died under it (killed, engine restart, OOM of its init): then the
        exit code (None, or 137 from the kill) says nothing about the command."""
        if result.exit_code is None or result.killed_by_signal == 9:
            # Not our own timeout kill: the container may have died under it, and the engine may not have
            # seen that yet when the command's stream ends (the wider the window, the busier the host).
            self._raise_if_dead(settle_s=0 if result.timed_out else 3.0)
        return result

    def _raise_if_dead(self, settle_s: float = 0) -> None:
        over_disk = self._layer_watch.reason() if self._layer_watch is not None else None
        if over_disk:  # killed by its watch (the engine may not show it stopped yet)
            raise DiskLimitExceeded(f"sandbox container {self.id[:12]} killed: {over_disk}")
        try:
            state = self._api().inspect_container(self.id)["State"]
            if state.get("Running") and settle_s:
                with contextlib.suppress(DockerException, RequestException):  # still running after settle_s
                    self._api().wait(self.id, timeout=settle_s, condition="not-running")
                state = self._api().inspect_container(self.id)["State"]
        except NotFound:
            raise SandboxBroken(f"sandbox container {self.id[:12]} is gone") from None
        if not state.get("Running"):
            why = "killed for memory (OOM)" if state.get("OOMKilled") else f"exited ({state.get('ExitCode')})"
            raise SandboxBroken(f"sandbox container {self.id[:12]} died: {why}")

    def _staged_command(self, command: str, user: str) -> str:
        """`command` itself when it fits in one argument, else a command running it from a copied file."""
        raw = command.encode("utf-8", errors="replace")
        if len(raw) <= ARG_LIMIT or "\0" in command:  # run_exec refuses NUL bytes itself
            return command
        name = f".ps_cmd_{uuid.uuid4().hex}.sh"
        uid, gid = owner_ids(user)
        self._api().put_archive(self.id, "/tmp", one_file_tar(name, raw, uid=uid, gid=gid))
        # A child bash runs it, so an `exit` in the command still lets the file be removed.
        return f"bash /tmp/{name}; rc=$?; rm -f /tmp/{name}; exit $rc"

    def _ready_channel(self) -> ExecChannel | None:
        if self._channel is False:
            return None
        if self._channel is None:
            try:
                self._channel = ExecChannel(self._api(), self.id, self.user)
            except (ChannelBroken, APIError, OSError):
                self._channel = False  # e.g. no python3 in the image: plain docker exec from now on
                return None
        return self._channel

    def run(
        self, command: str, *, patch: str | None = None, files: Mapping[str, str | bytes] | None = None,
        timeout: float | None = 60, env: dict[str, str] | None = None, reset: bool = True,
        output_cap: int = DEFAULT_OUTPUT_CAP,
    ) -> ExecResult:
        """Reset to base, apply `patch`, write `files`, run `command`: one round trip to the engine.

        This is the hot path of trajectories and the test matrix. A patch that does not apply
        raises `PatchApplyError` and the command does not run. Unlike `reset()`, this keeps the
        sandbox user's /tmp and $HOME, so reruns in one lease can see each other (flakiness checks).
        """
        steps = [RESET_SCRIPT] if reset else []
        if patch and patch.strip():
            self._refuse_binary(patch)
            steps.append(_write_file_script("/tmp/.ps_run.patch", patch))
            steps.append(_apply_script("/tmp/.ps_run.patch"))
        for path, data in (files or {}).items():
            steps.append(_write_file_script(path, data))
        prelude = " && ".join(steps) or "true"
        script = (
            f"{{ {prelude}; }} || {{ echo {PRELUDE_MARKER}; echo 'preparing the sandbox failed'; exit {PRELUDE_FAILED}; }}\n"
            f"{command}"
        )
        result = self.exec(script, timeout=timeout, env=env, output_cap=output_cap, kill_strays=reset)
        result.command = command
        if result.exit_code == PRELUDE_FAILED and result.output.startswith(PRELUDE_MARKER):
            detail = result.output[len(PRELUDE_MARKER) :].strip()
            rejected = rejected_hunks(detail)
            raise PatchApplyError(
                "patch does not apply: " + (", ".join(rejected) or detail.splitlines()[0] if detail else "unknown"),
                rejected, detail,
            )
        return result

    # -- files -----------------------------------------------------------------------------------

    def write_file(self, path: str, content: str | bytes) -> None:
        """Write a file (relative paths are inside /repo), creating parent directories, as the sandbox user."""
        result = self.exec(_write_file_script(path, content), timeout=60)
        if result.exit_code != 0:
            raise SandboxError(f"cannot write {path} in sandbox: {result.output.strip()[:300]}")

    def read_file(self, path: str) -> str:
        """Read a text file (relative paths are inside /repo); invalid UTF-8 is replaced."""
        return self.read_bytes(path).decode("utf-8", errors="replace")

    def read_bytes(self, path: str) -> bytes:
        full = path if path.startswith("/") else f"{self.workdir}/{path}"
        try:
            stream, _ = self.container.get_archive(full)
        except NotFound:
            raise FileNotFoundError(f"no file {path} in sandbox") from None
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            data = tar.extractfile(member) if member is not None and member.isfile() else None
            if data is None:
                raise IsADirectoryError(f"{path} is not a regular file in sandbox")
            return data.read()

    # -- repository state ------------------------------------------------------------------------

    def _refuse_binary(self, patch: str) -> None:
        binary = binary_patch_files(patch)
        if binary:
            raise PatchApplyError(f"binary patches are not supported: {', '.join(binary)}", binary)

    def apply_patch(self, diff: str) -> None:
        """Apply a unified diff to the working tree (git apply, then fuzzy `patch`)."""
        if not diff.strip():
            return
        self._refuse_binary(diff)
        script = f"{_write_file_script('/tmp/.ps_apply.patch', diff)} && {_apply_script('/tmp/.ps_apply.patch')}"
        result = self.exec(script, timeout=120)
        if result.exit_code == PRELUDE_FAILED and result.output.startswith(PRELUDE_MARKER):
            detail = result.output[len(PRELUDE_MARKER) :].strip()
            rejected = rejected_hunks(detail)
            raise PatchApplyError("patch does not apply: " + (", ".join(rejected) or detail[:300]), rejected, detail)
        if result.exit_code != 0:
            raise PatchApplyError(f"patch does not apply: {result.output.strip()[:300]}", [], result.output)

    def diff(self) -> str:
        """The working tree against the base commit, untracked (non-ignored) files included."""
        result = self.exec(DIFF_SCRIPT, timeout=120, output_cap=64 * 1024 * 1024)
        if result.exit_code != 0:
            raise SandboxError(f"git diff failed in sandbox: {result.output.strip()[:300]}")
        return result.output

    def reset(self) -> None:
        """Back to the base state: tracked and untracked files, no stray processes, and nothing of the
        sandbox user's left in /tmp, /var/tmp, /dev/shm or $HOME (the image's own files there stay)."""
        result = self.exec(f"{RESET_SCRIPT} && {_clean_script(self.workdir)}", timeout=120, kill_strays=True)
        if result.exit_code != 0:
            raise SandboxBroken(f"reset failed in sandbox {self.id[:12]}: {result.output.strip()[:300]}")
        self.dirty = False

    def close(self) -> None:
        """Remove the container. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        if self._layer_watch is not None:
            self._layer_watch.stop()
        if isinstance(self._channel, ExecChannel):
            self._channel.close()
        try:
            remove_container(self._api(), self.id)
        except (DockerException, RequestException, OSError):
            pass  # the engine went away: the run's close_all or a later sweep removes the container
        finally:
            if self._on_close is not None:
                self._on_close()
