"""Task sources: one issue on one repository at one commit, from the CLI or a JSONL file."""

from __future__ import annotations

import difflib
import hashlib
import random
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.text import json_lines, storable, storable_data, utf8_text


class TaskError(ValueError):
    """A task source is unreadable; the message names the file and line."""


class SweBenchEnvironment(BaseModel):
    """For SWE-bench tasks: how to get the instance's environment. Holds only the public task fields."""

    model_config = ConfigDict(extra="forbid")

    task: dict = Field(description="The instance's SweTask fields (no gold patch, test patch or test lists).")
    repo_url_template: str = Field(description="Repository URL template, e.g. file:///mirrors/{owner}__{name}.git.")
    spec_table: str | None = Field(None, description="A user spec table (JSON) laid over the bundled one.")
    prefer_official: bool = Field(True, description="Use the official instance image when present or pullable.")


class Task(BaseModel):
    """What solving may see of an issue. Hidden benchmark answers never live here."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key in a task file must not pass silently

    instance_id: str = Field(description="Unique id of the issue within a batch.")
    repo: str = Field(description="Local path or git URL of the repository.")
    commit: str = Field(description="Commit to solve the issue at.")
    issue: str = Field(description="The issue text shown to the models.")
    setup: list[str] = Field(default_factory=list, description="Environment setup commands (run once, with network).")
    test_cmd: str | None = Field(None, description="The repository's own test command, for regression checks.")
    python: str | None = Field(None, description="Wanted Python version.")
    base_image: str | None = Field(None, description="Image to build the environment from (default: patchswarm base).")
    swebench: SweBenchEnvironment | None = Field(None, description="Set for SWE-bench instances: environment from the spec table or official image.")

    @field_validator("instance_id", "issue", mode="after")
    @classmethod
    def _storable(cls, value: str) -> str:
        return storable(value)  # JSON may carry "\udce9": it could be neither sent nor stored

    @field_validator("setup", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        if value is None:
            return []
        return [value] if isinstance(value, str) else value


# Other spellings a task file may use (SWE-bench's column names, and `id`).
TASK_FILE_ALIASES = frozenset({"id", "problem_statement", "base_commit"})
# A SWE-bench row passes as a task: its other columns are dropped unread (the hidden answers among them).
SWEBENCH_COLUMNS = frozenset({"hints_text", "created_at", "version", "environment_setup_commit", "patch", "test_patch",
                              "FAIL_TO_PASS", "PASS_TO_PASS", "image", "eval_script", "log_parser", "eval_type"})


def _unknown_key(row: dict) -> str | None:
    """'unknown key ...' for the first key a task file may not hold, with the closest valid one."""
    valid = [*Task.model_fields, *sorted(TASK_FILE_ALIASES)]
    for key in row:
        if key not in Task.model_fields and key not in TASK_FILE_ALIASES and key not in SWEBENCH_COLUMNS:
            close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
            return f"unknown key {key!r}" + (f"; did you mean {close[0]!r}?" if close else "")
    return None


def task_id_for(repo: str, commit: str, issue: str) -> str:
    name = Path(repo.rstrip("/")).name.removesuffix(".git") or "repo"
    digest = hashlib.sha256(f"{repo}\0{commit}\0{issue}".encode()).hexdigest()[:8]
    return f"{name}-{digest}"


def load_tasks_jsonl(path: Path) -> list[Task]:
    """Tasks from JSONL (`repo`, `commit`, `issue` or `problem_statement`, optional `instance_id`, `setup`,
    `test_cmd`, `python`). Relative repo paths are relative to the file. Any other key is an error, except
    a SWE-bench row's columns, which are dropped."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TaskError(f"cannot read task file {path}: {exc.strerror}") from None
    text = utf8_text(data, path, TaskError, "; save the file as UTF-8")
    tasks, seen = [], set()
    for number, row in json_lines(text, path, TaskError):
        if not isinstance(row, dict):
            raise TaskError(f"{path} line {number}: expected a JSON object")
        row = storable_data(row)  # JSON may carry "\udce9": it could be neither sent to a model nor stored
        if "issue" not in row and "problem_statement" in row:
            row["issue"] = row.pop("problem_statement")
        if "commit" not in row and "base_commit" in row:
            row["commit"] = row.pop("base_commit")
        if unknown := _unknown_key(row):
            raise TaskError(f"{path} line {number}: {unknown}")
        missing = [k for k in ("repo", "commit", "issue") if not row.get(k)]
        if missing:
            raise TaskError(f"{path} line {number}: missing {', '.join(missing)}")
        if isinstance(row["issue"], str) and not row["issue"].strip():
            raise TaskError(f"{path} line {number}: the issue is empty (only whitespace): nothing to solve")
        repo = str(row["repo"])
        if "://" not in repo and not repo.startswith("git@") and not Path(repo).is_absolute():
            row["repo"] = str((path.parent / repo).resolve())
        row.setdefault("instance_id", row.get("id") or task_id_for(row["repo"], row["commit"], row["issue"]))
        known = set(Task.model_fields)
        try:
            task = Task(**{k: v for k, v in row.items() if k in known})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise TaskError(f"{path} line {number}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        if task.instance_id in seen:
            raise TaskError(f"{path} line {number}: duplicate instance_id {task.instance_id}")
        seen.add(task.instance_id)
        tasks.append(task)
    if not tasks:
        raise TaskError(f"{path}: no tasks in the file (it is empty); one JSON object per line expected")
    return tasks


def select_tasks(tasks: list[Task], *, pattern: str | None = None, slice_spec: str | None = None,
                 shuffle_seed: int | None = None) -> list[Task]:
    """--filter (regex on ids), --shuffle (seeded, reproducible), then --slice (python-style `a:b`)."""
    if pattern:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise TaskError(f"--filter {pattern!r} is not a valid regex: {exc}") from None
        tasks = [t for t in tasks if regex.search(t.instance_id)]
    if shuffle_seed is not None:
        tasks = list(tasks)
        random.Random(shuffle_seed).shuffle(tasks)
    if slice_spec:
        try:
            parts = [int(p) if p.strip() else None for p in slice_spec.split(":")]
            tasks = tasks[slice(*parts)]
        except (ValueError, TypeError):
            raise TaskError(f"--slice {slice_spec!r} must look like 'start:stop' (e.g. 0:10)") from None
    return tasks
