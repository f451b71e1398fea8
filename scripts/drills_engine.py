"""Drills of issue 14 that run whole `patchswarm batch` processes, some against a second Docker engine.

The destructive ones (daemon restart, disk full) never touch the shared engine: `SecondEngine` starts
a dockerd with its own data root (on a small loop-mounted ext4, so its disk can run full), exec root,
pid file, socket and bridge, loads the base image into it from the shared one, and stops it afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOCKET = "unix:///run/drills-docker.sock"
OVERRIDES = [
    "models.roles.relevance=scripted/calc", "models.roles.primary=scripted/calc",
    "models.roles.selector=scripted/calc",
    "models.price_overrides={'scripted/calc': {input_per_mtok: 1.0, output_per_mtok: 5.0}}",
    "models.retry_base_delay_s=0.01", "models.retry_max_delay_s=0.05", "models.max_retries=8",
    "trajectories.num_tests=1", "trajectories.num_edits=2", "trajectories.max_attempts_editing=3",
    "trajectories.test_timeout_s=60", "selection.test_timeout_s=60", "selection.selector_enabled=false",
    "sandbox.pool_size=2", "context.ranking_samples=1",
]


def sh(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, **kw)


class SecondEngine:
    """A dockerd of the drills' own under `base`; `restart()` kills it hard and starts it again."""

    def __init__(self, base: Path, disk_mb: int = 3072):
        self.base, self.disk_mb = base, disk_mb
        self.data = base / "data"
        self.process: subprocess.Popen | None = None
        self.env = {**os.environ, "DOCKER_HOST": SOCKET}

    def __enter__(self) -> SecondEngine:
        self.base.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(exist_ok=True)
        if not os.path.ismount(self.data):
            image = self.base / "data.img"
            sh("truncate", "-s", f"{self.disk_mb}M", str(image), check=True)
            sh("mkfs.ext4", "-q", "-F", str(image), check=True)
            sh("mount", "-o", "loop", str(image), str(self.data), check=True)
        if sh("ip", "link", "show", "drills0").returncode != 0:
            sh("ip", "link", "add", "drills0", "type", "bridge", check=True)
            sh("ip", "addr", "add", "172.31.250.1/24", "dev", "drills0", check=True)
            sh("ip", "link", "set", "drills0", "up", check=True)
        if not self.answers():
            self.start()
        if sh("docker", "image", "inspect", "patchswarm-base:bookworm", env=self.env).returncode != 0:
            saved = subprocess.Popen(["docker", "save", "patchswarm-base:bookworm"], stdout=subprocess.PIPE,
                                     env={k: v for k, v in os.environ.items() if k != "DOCKER_HOST"})
            subprocess.run(["docker", "load", "-q"], stdin=saved.stdout, env=self.env, check=True, capture_output=True)
            saved.wait()
        return self

    def answers(self) -> bool:
        return sh("docker", "version", "--format", "{{.Server.Version}}", env=self.env, timeout=20).returncode == 0

    def start(self) -> None:
        log = open(self.base / "dockerd.log", "ab")
        self.process = subprocess.Popen(
            ["dockerd", "--data-root", str(self.data / "docker"), "--exec-root", "/run/drills-exec",
             "--pidfile", "/run/drills-docker.pid", "-H", SOCKET, "--bridge=drills0", "--iptables=false",
             "--ip-masq=false", "--storage-driver", "overlay2"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while not self.answers():
            if time.monotonic() > deadline:
                raise RuntimeError("the drills' dockerd did not answer; see its log")
            time.sleep(0.5)

    def pid(self) -> int:
        return int(Path("/run/drills-docker.pid").read_text())

    def kill(self) -> None:
        """As a crash would: SIGKILL, no shutdown of containers."""
        pid = self.pid()
        os.kill(pid, signal.SIGKILL)
        while Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid):
            time.sleep(0.1)
        with contextlib.suppress(ChildProcessError, TypeError):
            if self.process is not None and self.process.pid == pid:
                self.process.wait(timeout=10)
        Path("/run/drills-docker.pid").unlink(missing_ok=True)

    def containers(self, label: str = "patchswarm.run") -> int:
        out = sh("docker", "ps", "-aq", "--filter", f"label={label}", env=self.env).stdout
        return len(out.split())

    def volumes(self) -> int:
        out = sh("docker", "volume", "ls", "-q", "--filter", "label=patchswarm.run", env=self.env).stdout
        return len(out.split())

    def stop(self) -> None:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            os.kill(self.pid(), signal.SIGTERM)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=60)

    def __exit__(self, *exc) -> None:
        self.stop()
        sh("umount", str(self.data))
        sh("ip", "link", "del", "drills0")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0]
    except (OSError, IndexError):
        return "zombie"


def calc_repo(dest: Path) -> tuple[Path, str]:
    """The `pipeline_calc` fixture as a one-commit repository (fixed dates: the same SHA every time)."""
    from tests.fixture_repos import (
        fixture_repo,  # the tests' builder (ROOT is on sys.path: scripts/drills.py)
    )

    return fixture_repo("pipeline_calc", dest)


def tasks_file(dest: Path, count: int) -> Path:
    """`count` instances of the fixture, each with its own wording of the issue (own calls, own plan)."""
    repo, sha = calc_repo(dest)
    issue = (ROOT / "tests" / "fixtures" / "pipeline_cases" / "average_empty.md").read_text()
    rows = [{"instance_id": f"calc-{n:02d}", "repo": str(repo), "commit": sha,
             "issue": f"{issue}\nReported by user {n}.\n"} for n in range(count)]
    path = dest / "tasks.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def batch_command(tasks: Path, run_dir: Path, script: str = "Flaky", workers: int = 2) -> list[str]:
    sets = [item for o in OVERRIDES for item in ("--set", o)]
    return [sys.executable, "-m", "patchswarm.cli", "batch", "--tasks", str(tasks), "--run-dir", str(run_dir),
            "--workers", str(workers), "--scripted", f"calc=tests.patchswarm.failing_scripts:{script}", *sets, "--quiet"]


def call_log_entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def repeated_calls(call_log: Path, num_edits: int = 2) -> int:
    """Requests answered more often than one uninterrupted run would (parallel edits share their first)."""
    counts = Counter((e["sha"], e["kind"]) for e in call_log_entries(call_log))
    return sum(n - (num_edits if kind == "editing-first" else 1) for (_, kind), n in counts.items()
               if n > (num_edits if kind == "editing-first" else 1))


def store_counts(run_dir: Path) -> dict[str, int]:
    """Stored (replayable) and billed calls, and the instances per status, read from the run store."""
    if not (run_dir / "run.sqlite").exists():
        return {"stored": 0, "billed": 0}
    db = sqlite3.connect(run_dir / "run.sqlite")
    try:
        stored = db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        billed = db.execute("SELECT COUNT(*) FROM call_log").fetchone()[0]
        statuses = dict(db.execute("SELECT status, COUNT(*) FROM instances GROUP BY status").fetchall())
    finally:
        db.close()
    return {"stored": stored, "billed": billed, **statuses}


def new_dir(scratch: Path, name: str) -> Path:
    path = scratch / f"{name}-{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True)
    return path


def _batch_env(engine: SecondEngine, call_log: Path, **extra: str) -> dict[str, str]:
    return {**engine.env, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "PATCHSWARM_TEST_CALL_LOG": str(call_log), **extra}


def _wait(predicate, timeout: float, process: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if process is not None and process.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def _run(command: list[str], env: dict[str, str], timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:110] if lines else ""


def fault_batch_drill(engine: SecondEngine, scratch: Path, row, instances: int = 20) -> None:
    """30% of provider calls fail; a whole Docker batch over `instances`, then the same command again."""
    d = new_dir(scratch, "faults")
    tasks, call_log = tasks_file(d, instances), d / "calls.jsonl"
    env = _batch_env(engine, call_log, PATCHSWARM_TEST_FAULT_RATE="0.3")
    first = _run(batch_command(tasks, d / "run"), env)
    answered_first, counts_first = len(call_log_entries(call_log)), store_counts(d / "run")
    again = _run(batch_command(tasks, d / "run"), env)
    counts = store_counts(d / "run")
    answered, repeated = len(call_log_entries(call_log)), repeated_calls(call_log)
    left = engine.containers()
    solved = counts.get("solved", 0)
    row(f"30% faults, Docker batch of {instances} instances", "every instance solved, every answer stored",
        f"exit {first.returncode}; solved {counts_first.get('solved', 0)}/{instances}; answered {answered_first}, "
        f"stored {counts_first['stored']}, billed {counts_first['billed']}",
        first.returncode == 0 and counts_first.get("solved", 0) == instances
        and answered_first == counts_first["stored"] == counts_first["billed"])
    row("  the same batch rerun", "nothing answered or billed again; no container or volume left",
        f"exit {again.returncode}; answered {answered}, stored {counts['stored']}, billed {counts['billed']}, "
        f"repeated {repeated}; containers left {left}, volumes left {engine.volumes()}",
        again.returncode == 0 and repeated == 0 and answered == answered_first and solved == instances
        and counts["billed"] == counts_first["billed"] and left == 0 and engine.volumes() == 0)


def daemon_restart_drill(engine: SecondEngine, scratch: Path, row, instances: int = 4) -> None:
    """dockerd killed (-9) and restarted while sandboxes run; then the same command again."""
    d = new_dir(scratch, "restart")
    tasks, call_log = tasks_file(d, instances), d / "calls.jsonl"
    env = _batch_env(engine, call_log, PATCHSWARM_TEST_FAULT_RATE="0")
    process = subprocess.Popen(batch_command(tasks, d / "run"), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    # Mid-batch: sandboxes of the run exist and calls have been answered.
    reached = _wait(lambda: len(call_log_entries(call_log)) >= 6 and engine.containers() >= 2, 600, process)
    engine.kill()
    time.sleep(3)  # an engine that is down for a few seconds, as a restart is
    engine.start()
    try:
        out, err = process.communicate(timeout=1200)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    print(err[-3000:], file=sys.stderr)
    counts_first = store_counts(d / "run")
    infra_as_result = _infra_recorded_as_result(d / "run")
    answered_first = len(call_log_entries(call_log))
    again = _run(batch_command(tasks, d / "run"), env)
    counts = store_counts(d / "run")
    repeated, left = repeated_calls(call_log), engine.containers()
    row("dockerd killed -9 mid-batch, back after 3 s",
        "batch resumes or stops cleanly; no infrastructure failure recorded as a result",
        f"mid-batch reached: {reached}; exit {process.returncode}; statuses "
        f"{ {k: v for k, v in counts_first.items() if k not in ('stored', 'billed')} }; answered {answered_first}, "
        f"stored {counts_first['stored']}; infra recorded as result: {infra_as_result}; {_last_line(err)}",
        reached and not infra_as_result and answered_first == counts_first["stored"])
    row("  the same batch rerun", f"all {instances} solved; nothing answered twice; nothing left",
        f"exit {again.returncode}; solved {counts.get('solved', 0)}; answered {len(call_log_entries(call_log))}, "
        f"billed {counts['billed']}, repeated {repeated}; containers left {left}, volumes left {engine.volumes()}",
        again.returncode == 0 and counts.get("solved", 0) == instances and repeated == 0 and left == 0
        and engine.volumes() == 0)


def _infra_recorded_as_result(run_dir: Path) -> list[str]:
    """Instances whose stored outcome is a result (solved/unsolved) while their trajectories met a dead engine."""
    found = []
    for result in (run_dir / "instances").glob("*/result.json"):
        data = json.loads(result.read_text())
        text = json.dumps(data)
        if data.get("status") in ("solved", "no_patch") and any(
                marker in text for marker in ("ConnectionError", "engine unreachable", "is gone", "died:", "SandboxBroken")):
            found.append(data.get("instance_id", result.parent.name))
    return found


def two_batches_drill(engine: SecondEngine, scratch: Path, row) -> None:
    """A second `batch` on a run directory a live batch holds is refused; the first goes on."""
    d = new_dir(scratch, "twice")
    tasks, call_log = tasks_file(d, 2), d / "calls.jsonl"
    gate = d / "gate"
    env = _batch_env(engine, call_log, PATCHSWARM_TEST_FAULT_RATE="0")
    # The first is held by the scripted model after 3 answers (never a timing guess), so it is surely live.
    held = {**env, "PATCHSWARM_TEST_GATE_AFTER": "3", "PATCHSWARM_TEST_GATE_FILE": str(gate)}
    first = subprocess.Popen(batch_command(tasks, d / "run"), cwd=ROOT, env=held, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    _wait(gate.exists, 600, first)
    second = _run(batch_command(tasks, d / "run"), env, timeout=120)
    first.send_signal(signal.SIGINT)  # Ctrl-C, then the same command finishes the work
    first.communicate(timeout=120)
    finish = _run(batch_command(tasks, d / "run"), env)
    counts = store_counts(d / "run")
    row("two `batch` processes on one run directory", "the second refused, naming the directory; nothing lost",
        f"second: exit {second.returncode}, {_last_line(second.stderr)}; first (Ctrl-C, rerun): exit "
        f"{finish.returncode}, solved {counts.get('solved', 0)}/2, repeated {repeated_calls(call_log)}",
        second.returncode != 0 and "in use" in second.stderr and finish.returncode == 0 and counts.get("solved") == 2
        and repeated_calls(call_log) == 0)


def disk_full_build_drill(engine: SecondEngine, scratch: Path, row) -> None:
    """The engine's disk runs full while an environment image is built (in setup, then at the commit)."""
    sys.path.insert(0, str(ROOT))
    import docker

    from sandbox.environments import EnvSpec, build_env_image
    from sandbox.errors import ImageBuildError
    from sandbox.repos import RepoSource

    d = new_dir(scratch, "diskfull")
    repo, sha = calc_repo(d)
    client = docker.DockerClient(base_url=SOCKET, timeout=300)
    free_mb = lambda: os.statvfs(engine.data).f_bavail * os.statvfs(engine.data).f_frsize // 2**20  # noqa: E731
    filler = engine.data / "filler"
    # In setup: the write itself fails. At the commit: the write fits (outside /repo, so the base commit
    # does not copy it), but committing the layer needs the same room again.
    for name, target, write_mb, leave_mb in (("in setup", "/repo/blob.bin", 400, 200),
                                             ("at the commit", "$HOME/blob.bin", 150, 158)):
        subprocess.run(["fallocate", "-l", f"{max(free_mb() - leave_mb, 0)}M", str(filler)], check=True)
        spec = EnvSpec(setup=[f"head -c {write_mb}M /dev/urandom > {target}"], labels={"drill": f"disk full {name}"})
        try:
            image = build_env_image(client, RepoSource(location=str(repo), commit=sha), spec, log_dir=d,
                                    cache_dir=d / "cache")
            # Built: then it must be whole (the blob all there), never a half image.
            size = client.containers.run(image.tag, ["sh", "-c", f"wc -c < {target}"], remove=True, user="1000")
            whole = int(size.decode().strip()) == write_mb * 2**20
            observed, error = f"built with {free_mb()} MiB free, whole: {whole}", None
        except ImageBuildError as exc:
            observed, error = f"ImageBuildError: …{str(exc).splitlines()[0][-90:]}", exc
        tag_after = _tag_exists(client, spec, repo, sha, d)
        if error is None and whole:  # a complete image is a fine outcome too; remove it to drill the rebuild
            client.images.remove(image.tag, force=True)
        leftovers = len(client.containers.list(all=True, filters={"label": "patchswarm.kind=env-build"}))
        filler.unlink()
        try:
            rebuilt = build_env_image(client, RepoSource(location=str(repo), commit=sha), spec, log_dir=d,
                                      cache_dir=d / "cache")
            again = f"rebuilt after freeing: built={rebuilt.built}"
            ok_again = rebuilt.built
            client.images.remove(rebuilt.tag, force=True)
        except ImageBuildError as exc:
            again, ok_again = f"rebuild failed: {str(exc)[:60]}", False
        clear = error is not None and "disk is full" in str(error).splitlines()[0]
        row(f"engine disk full {name} of an image build", "clear error, no image tagged, nothing left; rebuild works",
            f"{observed}; tag exists after: {tag_after}; build containers left {leftovers}; {again}",
            ((clear and not tag_after) or (error is None and whole)) and leftovers == 0 and ok_again)
    client.close()


def _tag_exists(client, spec, repo: Path, sha: str, d: Path) -> bool:
    from sandbox.base_image import image_exists
    from sandbox.environments import _resolve_base, env_image_tag

    base, _ = _resolve_base(client, spec)
    return image_exists(client, env_image_tag(client.images.get(base).id, sha, spec))
