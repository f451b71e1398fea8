"""Set-up of the offline demo: the bundled repository as a git repo, the config, the final display."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from rich.console import Console
from rich.table import Table

from patchswarm.config import PatchswarmConfig, load_config
from patchswarm.tasks import Task

DEMO_DIR = Path(__file__).parent


def demo_config() -> PatchswarmConfig:
    return load_config("default", overrides=[
        "models.roles.relevance=scripted/demo", "models.roles.primary=scripted/demo",
        "models.roles.selector=scripted/demo",
        "models.price_overrides={'scripted/demo': {input_per_mtok: 3.0, output_per_mtok: 15.0}}",
        "trajectories.num_tests=2", "trajectories.num_edits=5", "trajectories.max_attempts_editing=3",
        "trajectories.test_timeout_s=30", "selection.top_k=3", "sandbox.pool_size=2",
        "context.ranking_samples=1",
    ])


def demo_task(run_dir: Path) -> Task:
    """The bundled repository committed into a git repo under the run directory."""
    repo = Path(run_dir) / "demo-repo"
    if not (repo / ".git").exists():
        shutil.copytree(DEMO_DIR / "repo", repo, dirs_exist_ok=True)
        env = {**os.environ, "GIT_AUTHOR_NAME": "demo", "GIT_AUTHOR_EMAIL": "demo@localhost",
               "GIT_COMMITTER_NAME": "demo", "GIT_COMMITTER_EMAIL": "demo@localhost",
               "GIT_AUTHOR_DATE": "2025-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2025-01-01T00:00:00Z"}
        for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "textkit 0.1"]):
            subprocess.run(["git", *args], cwd=repo, check=True, env=env, capture_output=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
    return Task(instance_id="textkit-slugify", repo=str(repo.resolve()), commit=sha,
                issue=(DEMO_DIR / "issue.md").read_text(), test_cmd="python -m unittest discover -s tests -v")


def print_selection(result) -> None:
    """The vote matrix (tests × candidates) and how the final patch was chosen."""
    out = Console()
    selection = result.selection
    for t in result.trajectories:
        e = t.editing
        if e is not None:
            out.print(f"trajectory {t.index}: {e.outcome}, edited test exit {e.edited_exit_code}, "
                      f"{'patch' if e.patch else 'no patch'}", highlight=False)
    if selection is None or not selection.candidates:
        return
    table = Table(title="vote matrix (exit codes; tests that vote are marked *)")
    table.add_column("test")
    table.add_column("original")
    for c in selection.candidates:
        table.add_column(c.id)
    for test in selection.tests:
        row = selection.matrix.get(test.id, {})
        cells = [row.get("original")] + [row.get(c.id) for c in selection.candidates]
        table.add_row(test.id + (" *" if test.status == "voting" else ""),
                      *[("-" if cell is None else str(cell.exit_code if not cell.timed_out else "timeout"))
                        for cell in cells])
    table.add_row("votes", "", *[str(c.votes) for c in selection.candidates])
    out.print(table)
