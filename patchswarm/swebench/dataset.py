"""SWE-bench instances and predictions: load local files (or HF datasets when online), split gold from task.

The hidden answers (`patch`, `test_patch`, `FAIL_TO_PASS`, `PASS_TO_PASS`) stay on `SweInstance` for
grading only. Solving stages receive `SweInstance.to_task()`, a `SweTask` that has no field for them
(and forbids extra fields), so no prompt can leak them by accident.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.text import json_lines, utf8_text

REQUIRED_COLUMNS = (
    "instance_id", "repo", "base_commit", "problem_statement", "version", "environment_setup_commit",
    "patch", "test_patch", "FAIL_TO_PASS", "PASS_TO_PASS",
)
GOLD_FIELDS = ("patch", "test_patch", "FAIL_TO_PASS", "PASS_TO_PASS")
HF_HOST = "huggingface.co"


class DatasetError(ValueError):
    """A dataset or predictions file that cannot be used; the message is one clear line."""


class _PublicFields(BaseModel):
    """The columns solving may see: the issue and where the code is."""

    instance_id: str
    repo: str
    base_commit: str
    problem_statement: str
    hints_text: str | None = None
    version: str
    environment_setup_commit: str
    image: str | None = None


class SweTask(_PublicFields):
    """What a solving stage may see of an instance: the issue and where the code is. Nothing of the answer."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SweInstance(_PublicFields):
    """One benchmark row, hidden answers included. Grading code only: solvers get `to_task()`."""

    model_config = ConfigDict(extra="allow")

    created_at: str | None = None
    # Gold: never part of the task.
    patch: str = Field(repr=False)
    test_patch: str = Field(repr=False)
    FAIL_TO_PASS: list[str] = Field(repr=False)
    PASS_TO_PASS: list[str] = Field(repr=False)
    # How the official harness evaluates it (newer datasets carry these columns).
    eval_script: str | None = Field(None, repr=False)
    log_parser: str | None = None
    eval_type: str | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_str(cls, value: Any) -> str:
        return str(value)  # some exports store versions as floats (e.g. 3.0)

    @field_validator("FAIL_TO_PASS", "PASS_TO_PASS", mode="before")
    @classmethod
    def _json_list(cls, value: Any) -> list[str]:
        # Published datasets JSON-encode these lists as strings.
        return json.loads(value) if isinstance(value, str) else list(value or [])

    def to_task(self) -> SweTask:
        return SweTask(**{name: getattr(self, name) for name in SweTask.model_fields})

    def harness_row(self) -> dict[str, Any]:
        """The row as the official harness wants it (lists JSON-encoded as published)."""
        row = self.model_dump()
        row["FAIL_TO_PASS"] = json.dumps(self.FAIL_TO_PASS)
        row["PASS_TO_PASS"] = json.dumps(self.PASS_TO_PASS)
        return row


class Prediction(BaseModel):
    """One line of a predictions file, in the harness's format."""

    model_config = ConfigDict(extra="allow")

    instance_id: str
    model_patch: str | None = None
    model_name_or_path: str = "patchswarm"


def _read_rows(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return [row for _, row in json_lines(utf8_text(path.read_bytes(), path, DatasetError), path, DatasetError)]
    if suffix == ".json":
        try:
            data = json.loads(utf8_text(path.read_bytes(), path, DatasetError))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if isinstance(data, dict):  # {instance_id: row} is common for predictions
            data = list(data.values())
        if not isinstance(data, list):
            raise DatasetError(f"{path}: expected a list of rows or a mapping of rows")
        return data
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DatasetError(f"cannot read {path}: reading parquet needs pyarrow (pip install pyarrow)") from None
        return pq.read_table(path).to_pylist()
    raise DatasetError(f"cannot read {path}: expected a .json, .jsonl or .parquet file")


def _online(host: str = HF_HOST, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _hf_rows(name: str, split: str) -> list[dict[str, Any]]:
    offline = f"cannot load dataset {name} offline: pass a local .jsonl file"
    try:
        import datasets
    except ImportError:
        raise DatasetError(f"{offline} (the `datasets` package is not installed)") from None
    if not _online():
        raise DatasetError(offline)
    try:
        return [dict(row) for row in datasets.load_dataset(name, split=split)]
    except Exception as exc:  # noqa: BLE001 - any hub failure means the same to the user
        raise DatasetError(f"cannot load dataset {name} (split {split}): {str(exc).splitlines()[0][:200]}") from None


def _instance(row: dict[str, Any], number: int, source: str) -> SweInstance:
    ident = row.get("instance_id", "?")
    for column in REQUIRED_COLUMNS:
        if column not in row or row[column] is None:
            raise DatasetError(f"{source}: row {number} (instance_id={ident}) is missing column {column!r}")
    try:
        return SweInstance(**row)
    except ValueError as exc:
        first = str(exc).splitlines()
        raise DatasetError(f"{source}: row {number} (instance_id={ident}) is invalid: {' '.join(first[:3])}") from None


def load_instances(name_or_file: str | Path, split: str = "test", instance_ids: list[str] | None = None,
                   ) -> list[SweInstance]:
    """Rows of a local .json/.jsonl/.parquet file, or of a Hugging Face dataset (needs `datasets` and network)."""
    path = Path(name_or_file)
    if path.is_dir() and (path / f"{split}.parquet").is_file():  # a downloaded dataset folder
        path = path / f"{split}.parquet"
    if path.suffix.lower() in (".json", ".jsonl", ".parquet") or path.exists():
        if not path.is_file():
            raise DatasetError(f"dataset file not found: {path}")
        rows, source = _read_rows(path), str(path)
    else:
        rows, source = _hf_rows(str(name_or_file), split), str(name_or_file)
    instances = [_instance(row, number, source) for number, row in enumerate(rows, 1)]
    if instance_ids:
        known = {inst.instance_id for inst in instances}
        missing = [i for i in instance_ids if i not in known]
        if missing:
            raise DatasetError(f"{source}: unknown instance id(s): {', '.join(missing)}")
        wanted = set(instance_ids)
        instances = [inst for inst in instances if inst.instance_id in wanted]
    return instances


def load_predictions(path: str | Path) -> list[Prediction]:
    """Predictions in the harness's format: .jsonl, a .json list, or a .json mapping by instance id."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"predictions file not found: {path}")
    if path.suffix.lower() not in (".json", ".jsonl"):
        raise DatasetError(f"cannot read {path}: predictions must be a .json or .jsonl file")
    predictions = []
    for number, row in enumerate(_read_rows(path), 1):
        if not isinstance(row, dict) or "instance_id" not in row:
            raise DatasetError(f"{path}: prediction {number} has no instance_id")
        predictions.append(Prediction(**row))
    return predictions
