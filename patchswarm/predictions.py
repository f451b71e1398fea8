"""predictions.jsonl in the SWE-bench prediction format: one line per attempted instance, the newest result.

Each instance's line is appended as soon as it finishes (one `write` on an O_APPEND descriptor, so a crash
loses at most that line and never interleaves two), and the file is compacted to one line per instance
when a command ends. Slices and reruns into the same run directory therefore add up instead of replacing
each other; an instance with no patch (or one that ended in error) is written with an empty patch, so a
harness counts it as attempted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

FILE_NAME = "predictions.jsonl"


class PredictionsError(ValueError):
    """A predictions file that cannot be read, said in one line."""


def prediction(instance_id: str, patch: str, model_name: str) -> dict[str, str]:
    return {"instance_id": instance_id, "model_name_or_path": model_name, "model_patch": patch or ""}


def append(path: Path, rows: Iterable[dict[str, str]]) -> None:
    """Append rows, each line with a single write (atomic with respect to other appends and crashes)."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.write(fd, b"\n")  # end a line torn by a crash, or the next one would be glued to it
        for row in rows:
            os.write(fd, (json.dumps(row) + "\n").encode())
    finally:
        os.close(fd)


def read(path: Path, *, strict: bool = False) -> dict[str, dict[str, str]]:
    """Rows by instance id, the last line of an instance winning; a torn last line (crash) is skipped.

    `strict` (files a user hands us) names the first bad line instead of skipping it.
    """
    rows: dict[str, dict[str, str]] = {}
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        if strict:
            raise PredictionsError(f"no predictions file {path}") from None
        return rows
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            ok = isinstance(row, dict) and isinstance(row.get("instance_id"), str)
        except json.JSONDecodeError:
            ok = False
        if not ok:
            if strict:
                raise PredictionsError(f"{path} line {number}: not a prediction (a JSON object with instance_id)")
            continue
        rows.pop(row["instance_id"], None)  # re-inserted: the order is that of the newest lines
        rows[row["instance_id"]] = prediction(row["instance_id"], row.get("model_patch") or "",
                                              str(row.get("model_name_or_path") or ""))
    return rows


def write(path: Path, rows: dict[str, dict[str, str]]) -> Path:
    """Replace `path` atomically with one line per instance."""
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows.values()))
    tmp.replace(path)
    return path


def compact(path: Path, newest: Iterable[dict[str, str]] = ()) -> Path:
    """The file with one line per instance: what it holds, then `newest` on top."""
    rows = read(path)
    for row in newest:
        rows.pop(row["instance_id"], None)
        rows[row["instance_id"]] = row
    return write(path, rows)


def merge(paths: list[Path], out: Path) -> tuple[int, int]:
    """Files from several machines into one: later files win for an instance in more than one.

    Returns (instances written, instances that were in more than one file).
    """
    rows: dict[str, dict[str, str]] = {}
    repeated = 0
    for path in paths:
        for instance_id, row in read(path, strict=True).items():
            repeated += instance_id in rows
            rows[instance_id] = row
    out.parent.mkdir(parents=True, exist_ok=True)
    write(out, rows)
    return len(rows), repeated
