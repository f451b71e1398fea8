"""Sandbox benchmark: warm sandboxes against a raw `docker exec` and against a fresh container per run.

Prints ratios measured side by side in one run:
  1. warm sandbox (reset + apply a small patch + run a small script) / raw docker exec of the script  (target <= 1.5)
  2. fresh container per run (create, provision, apply, run, remove) / warm sandbox                   (target >= 10)
"""

from __future__ import annotations

import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox.base_image import ensure_base_image  # noqa: E402
from sandbox.engine import docker_client  # noqa: E402
from sandbox.environments import EnvSpec, build_env_image  # noqa: E402
from sandbox.manager import SandboxManager  # noqa: E402
from sandbox.repos import RepoSource, archive_commit  # noqa: E402

SCRIPT = "import calc\nprint(calc.add(2, 3))\n"
PATCH = "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"
ROUNDS = 15


def make_repo(root: Path) -> tuple[Path, str]:
    repo = root / "calc"
    repo.mkdir()
    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (repo / "run.py").write_text(SCRIPT)
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@b"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "base"], cwd=repo, check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    return repo, sha


def timed(fn, rounds: int = ROUNDS) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    client = docker_client()
    base = ensure_base_image(client)
    with tempfile.TemporaryDirectory() as tmp, SandboxManager(client, run_id="bench-sandbox") as manager:
        repo, sha = make_repo(Path(tmp))
        image = build_env_image(client, RepoSource(location=str(repo), commit=sha), EnvSpec()).tag
        warm = manager.create(image)
        raw = manager.create(image)
        api = client.api

        def raw_exec() -> None:
            exec_id = api.exec_create(raw.id, ["python3", "run.py"], user="1000:1000", workdir="/repo")["Id"]
            api.exec_start(exec_id)
            assert api.exec_inspect(exec_id)["ExitCode"] == 0

        def warm_run() -> None:
            result = warm.run("python3 run.py", patch=PATCH)
            assert result.output.strip() == "5", result.output

        tar = archive_commit(repo, sha)

        def fresh_container() -> None:
            container = client.containers.run(
                base, ["sleep", "infinity"], detach=True, labels=manager.labels, user="1000:1000",
                network_mode="none", working_dir="/repo")
            try:
                container.put_archive("/repo", io.BytesIO(tar).getvalue())
                for cmd in ("git init -q && git add -A && git commit -qm base",
                            f"printf %s '{PATCH}' > /tmp/p && git apply /tmp/p", "python3 run.py"):
                    code, out = container.exec_run(["bash", "-c", cmd])
                    assert code == 0, out
            finally:
                container.remove(force=True)

        raw_s = timed(raw_exec)
        warm_s = timed(warm_run)
        fresh_s = timed(fresh_container, rounds=5)
    assert tarfile  # tar payload built with the stdlib only
    print(f"raw docker exec of the script:      {raw_s * 1000:7.1f} ms (median)")
    print(f"warm sandbox reset+apply+run:       {warm_s * 1000:7.1f} ms")
    print(f"fresh container per run:            {fresh_s * 1000:7.1f} ms")
    print(f"ratio 1 warm / raw exec:            {warm_s / raw_s:5.2f}  (target <= 1.5)")
    print(f"ratio 2 fresh / warm:               {fresh_s / warm_s:5.1f}  (target >= 10)")


if __name__ == "__main__":
    main()
