"""An in-process implementation of the sandbox port, for unit tests of the layers above without Docker.

Each `LocalSandbox` is a private git copy of a host directory; commands run there as host subprocesses
(bash, the host's python) with a real timeout that kills the command's whole process group. Resets,
patches (`git apply`, then fuzzy `patch`, as in the container) and output capping behave as in
`Sandbox.run`. What it does NOT give is isolation: a command can reach the host. So that concurrent
sandboxes never share /tmp, each has its own: `/tmp/` in commands and in written text files is
rewritten to the sandbox's private scratch directory (files at other absolute paths land under the
sandbox's root). `bin_dir` (e.g. a bare venv's bin/) comes first on PATH, standing in for the image's
/opt/venv, so the host's packages need not leak in. Never use it for untrusted code.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from sandbox.errors import PatchApplyError, SandboxBroken
from sandbox.execution import DEFAULT_OUTPUT_CAP, ExecResult, OutputCollector
from sandbox.sandbox import binary_patch_files, rejected_hunks

_GIT_ENV = {"GIT_AUTHOR_NAME": "sandbox", "GIT_AUTHOR_EMAIL": "sandbox@localhost", "GIT_COMMITTER_NAME": "sandbox",
            "GIT_COMMITTER_EMAIL": "sandbox@localhost", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, input=stdin, capture_output=True,
                          env={**os.environ, **_GIT_ENV}, timeout=120)


class LocalSandbox:
    """A copy of `source` at its current files as one base commit, under a private scratch directory."""

    def __init__(self, source: Path, scratch: Path, bin_dir: Path | None = None):
        self.root, self.bin_dir = scratch, bin_dir
        self.repo = scratch / "repo"
        shutil.copytree(source, self.repo, ignore=shutil.ignore_patterns(".git"), symlinks=True)
        for args in (("init", "-q", "-b", "main"), ("add", "-A", "-f"), ("commit", "-q", "--allow-empty", "-m", "base")):
            done = _git(self.repo, *args)
            if done.returncode:
                raise SandboxBroken(f"local sandbox set-up failed: git {args[0]}: {done.stderr.decode()[:300]}")
        self.dirty = False
        self.closed = False
        self._lock = threading.Lock()

    def _path(self, path: str) -> Path:
        return self.root / "fs" / path.lstrip("/") if path.startswith("/") else self.repo / path

    def _private_tmp(self, text: str) -> str:
        return text.replace("/tmp/", f"{self.root}/fs/tmp/")

    def _reset_tree(self) -> None:
        for args in (("reset", "-q", "--hard", "HEAD"), ("clean", "-qfdx")):
            if _git(self.repo, *args).returncode:
                raise SandboxBroken(f"reset failed in local sandbox {self.root}")

    def _apply(self, patch: str) -> None:
        binary = binary_patch_files(patch)
        if binary:
            raise PatchApplyError(f"binary patches are not supported: {', '.join(binary)}", binary)
        data = patch.encode()
        applied = _git(self.repo, "apply", "--whitespace=nowarn", "-", stdin=data)
        if applied.returncode == 0:
            return
        fuzzy = ["patch", "-p1", "--batch", "--forward", "--fuzz=2", "--no-backup-if-mismatch", "-r", os.devnull]
        dry = subprocess.run([*fuzzy, "--dry-run"], cwd=self.repo, input=data, capture_output=True, timeout=120)
        if dry.returncode == 0:
            subprocess.run(fuzzy, cwd=self.repo, input=data, capture_output=True, timeout=120, check=True)
            return
        detail = (applied.stderr + dry.stdout + dry.stderr).decode(errors="replace").strip()
        rejected = rejected_hunks(detail)
        raise PatchApplyError("patch does not apply: " + (", ".join(rejected) or detail.splitlines()[0] if detail
                                                          else "unknown"), rejected, detail)

    def run(
        self, command: str, *, patch: str | None = None, files: Mapping[str, str | bytes] | None = None,
        timeout: float | None = 60, env: dict[str, str] | None = None, reset: bool = True,
        output_cap: int = DEFAULT_OUTPUT_CAP,
    ) -> ExecResult:
        """As `Sandbox.run`: reset, apply `patch`, write `files`, run `command` from the repository root."""
        with self._lock:
            if self.closed or not self.repo.is_dir():
                raise SandboxBroken(f"local sandbox {self.root} is gone")
            self.dirty = True
            if reset:
                self._reset_tree()
            if patch and patch.strip():
                self._apply(patch)
            script = self._private_tmp(command)
            (self.root / "fs" / "tmp").mkdir(parents=True, exist_ok=True)
            for path, data in (files or {}).items():
                target = self._path(path)  # /tmp/x -> <root>/fs/tmp/x, as _private_tmp maps it
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(self._private_tmp(data).encode() if isinstance(data, str) else data)
                if path.startswith("/") and not path.startswith("/tmp/"):
                    script = script.replace(path, str(target))
            result = self._exec(script, timeout, env or {}, output_cap)
            result.command = command
            return result

    def _exec(self, script: str, timeout: float | None, env: dict[str, str], output_cap: int) -> ExecResult:
        started = time.monotonic()
        home = self.root / "home"
        home.mkdir(exist_ok=True)
        path = os.environ.get("PATH", "/usr/bin:/bin")
        base_env = {"PATH": f"{self.bin_dir}:{path}" if self.bin_dir else path, "HOME": str(home),
                    "TMPDIR": str(self.root / "fs" / "tmp"), "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        process = subprocess.Popen(["bash", "-c", script], cwd=self.repo, env={**base_env, **env},
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        collector = OutputCollector(output_cap)
        assert process.stdout is not None

        def pump() -> None:
            for chunk in iter(lambda: process.stdout.read1(65536), b""):  # type: ignore[union-attr]
                collector.add(chunk)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        timed_out = False
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        # Like the container's kill of the command's session: nothing it started outlives it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        reader.join(5)
        process.stdout.close()
        output, cut = collector.render()
        code = process.returncode
        return ExecResult(command=script, exit_code=128 - code if code < 0 else code, output=output,
                          timed_out=timed_out, duration_s=time.monotonic() - started,
                          output_bytes=collector.total, truncated_bytes=cut)

    def reset(self) -> None:
        """Base tree, and nothing left in the sandbox's scratch places (as `Sandbox.reset`)."""
        with self._lock:
            self._reset_tree()
            for scratch in ("fs", "home"):
                shutil.rmtree(self.root / scratch, ignore_errors=True)
            self.dirty = False

    def close(self) -> None:
        self.closed = True
        shutil.rmtree(self.root, ignore_errors=True)


class LocalPool:
    """`LocalSandbox`es of one directory, at most `size` at once, reused and reset between leases."""

    def __init__(self, source: Path, size: int = 2, *, bin_dir: Path | None = None):
        self.source, self.size, self.bin_dir = Path(source), size, bin_dir
        self._scratch = Path(tempfile.mkdtemp(prefix="patchswarm-local-"))
        self._idle: list[LocalSandbox] = []
        self._lock = threading.Lock()
        self._slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
        self.created = 0

    def image_id(self) -> str:
        digest = hashlib.sha256()
        for path in sorted(p for p in self.source.rglob("*") if p.is_file() and ".git" not in p.parts):
            digest.update(f"{path.relative_to(self.source)}\0".encode() + path.read_bytes() + b"\0")
        return f"local:{digest.hexdigest()[:16]}"

    def _take(self) -> LocalSandbox:
        with self._lock:
            sandbox = self._idle.pop() if self._idle else None
            if sandbox is None:
                self.created += 1
                number = self.created
        if sandbox is None:
            return LocalSandbox(self.source, self._scratch / f"sandbox-{number}", self.bin_dir)
        if sandbox.dirty:
            sandbox.reset()
        return sandbox

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[LocalSandbox]:
        slots = self._slots.setdefault(asyncio.get_running_loop(), asyncio.Semaphore(self.size))
        async with slots:
            sandbox = await asyncio.to_thread(self._take)
            broken = False
            try:
                yield sandbox
            except SandboxBroken:
                broken = True
                raise
            finally:
                if broken or sandbox.closed:
                    sandbox.close()
                else:
                    with self._lock:
                        self._idle.append(sandbox)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for sandbox in idle:
            sandbox.close()
        shutil.rmtree(self._scratch, ignore_errors=True)
