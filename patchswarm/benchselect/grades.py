"""Ground truth for the selection benchmark: every distinct candidate graded with patchswarm's eval.

Grades are cached in a JSONL file keyed by instance and the sha256 of the exact patch text, appended as
they finish, so an interrupted run resumes where it stopped. Infrastructure failures (an environment
that does not build, a sandbox error) are recorded in a separate errors file and never as a grade.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from pydantic import BaseModel

from patchswarm.swebench.dataset import SweInstance

GRADED = ("resolved", "unresolved", "patch_failed", "timeout")  # outcomes of the code, not of the machine


def patch_sha(patch: str) -> str:
    return hashlib.sha256(patch.encode("utf-8")).hexdigest()


class Grade(BaseModel):
    instance_id: str
    patch_sha: str
    status: str
    resolved: bool
    duration_s: float = 0.0


class CandidateRow(BaseModel):
    """One line of a candidates file (the `resolved` hint is dropped on read: it is never truth)."""

    instance_id: str
    system: str
    model_patch: str


def load_candidates(path: Path) -> dict[str, list[CandidateRow]]:
    """instance_id → candidate rows in file order; a bad line is named by its number."""
    out: dict[str, list[CandidateRow]] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = CandidateRow.model_validate(json.loads(line))
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: not a candidate line ({str(exc).splitlines()[0]})") from None
        out.setdefault(row.instance_id, []).append(row)
    return out


class GradeBook:
    """The grades file: read once, appended to as grades finish."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.grades: dict[tuple[str, str], Grade] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    grade = Grade.model_validate_json(line)
                    self.grades[(grade.instance_id, grade.patch_sha)] = grade

    def get(self, instance_id: str, patch: str) -> Grade | None:
        return self.grades.get((instance_id, patch_sha(patch)))

    def add(self, grade: Grade) -> None:
        self.grades[(grade.instance_id, grade.patch_sha)] = grade
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(grade.model_dump_json() + "\n")

    def missing(self, instance_id: str, patches: Iterable[str]) -> list[str]:
        return [p for p in dict.fromkeys(patches) if p.strip() and self.get(instance_id, p) is None]


def grade_all(instances: list[SweInstance], candidates: dict[str, list[CandidateRow]], book: GradeBook, *,
              repo_url_template: str, errors_path: Path, log_dir: Path, timeout: float = 900,
              spec_table: Path | None = None,
              on_event: Callable[[str], None] = print) -> None:
    """Grade every distinct, not yet graded candidate patch of `instances`, one instance at a time."""
    from patchswarm.swebench.environments import resolve_instance_image
    from patchswarm.swebench.grading import grade_instance, grading_limits
    from patchswarm.swebench.specs import load_spec_table
    from sandbox import SandboxManager
    from sandbox.engine import docker_client

    client = docker_client()
    table = load_spec_table(spec_table)
    limits = grading_limits(client)  # asks the engine its cores: once, not per patch
    with SandboxManager(client, run_id=f"bench-grade-{int(time.time())}") as manager:
        for instance in instances:
            todo = book.missing(instance.instance_id, [c.model_patch for c in candidates.get(instance.instance_id, [])])
            if not todo:
                continue
            started = time.monotonic()
            try:
                image = resolve_instance_image(client, instance, table, repo_url_template, prefer_official=False,
                                               run_id=manager.run_id, log_dir=log_dir / "build")
            except Exception as exc:  # noqa: BLE001 - one environment's failure is that instance's error
                _error(errors_path, instance.instance_id, "environment", exc)
                on_event(f"{instance.instance_id}: environment failed: {str(exc).splitlines()[0] if str(exc) else exc}")
                continue
            on_event(f"{instance.instance_id}: image {image.tag} ready in {time.monotonic() - started:.0f}s; "
                     f"{len(todo)} patch(es) to grade")
            for patch in todo:
                sha = patch_sha(patch)
                try:
                    report = grade_instance(client, instance, patch, image, manager=manager, spec_table=table,
                                            model_name="bench-select", timeout=timeout,
                                            log_dir=log_dir / instance.instance_id / sha[:12],
                                            limits=limits)
                except Exception as exc:  # noqa: BLE001 - a lost sandbox is this patch's error, never a grade
                    _error(errors_path, instance.instance_id, f"grading {sha[:12]}", exc)
                    on_event(f"{instance.instance_id} {sha[:12]}: {type(exc).__name__}: {exc}; not recorded")
                    continue
                if report.status not in GRADED:
                    _error(errors_path, instance.instance_id, f"grading {sha[:12]}", report.error or report.status)
                    on_event(f"{instance.instance_id} {sha[:12]}: {report.status} ({report.error}); not recorded")
                    continue
                book.add(Grade(instance_id=instance.instance_id, patch_sha=sha, status=report.status,
                               resolved=report.resolved, duration_s=report.duration_s))
                on_event(f"{instance.instance_id} {sha[:12]}: {report.status} ({report.duration_s:.0f}s)")


def _error(path: Path, instance_id: str, stage: str, error: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"instance_id": instance_id, "stage": stage, "error": text, "at": time.time()}) + "\n")
