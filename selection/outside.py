"""Outside candidates: SWE-bench prediction files and patch directories in, predictions out."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from agent.text import json_lines, utf8_text
from selection.models import Candidate, SelectionResult

PATCH_SUFFIXES = (".patch", ".diff")


def _records(path: Path) -> list[dict]:
    """Prediction records of a .jsonl file, or of a .json list / {instance_id: record} mapping."""
    text = utf8_text(path.read_bytes(), path, ValueError)
    if path.suffix == ".jsonl":
        return [record for _, record in json_lines(text, path, ValueError)]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        return [{"instance_id": key, **value} if isinstance(value, dict) else value for key, value in data.items()]
    raise ValueError(f"{path}: expected a list or a mapping of predictions, got {type(data).__name__}")


def _unique(candidate_id: str, taken: set[str]) -> str:
    unique, number = candidate_id, 2
    while unique in taken:
        unique, number = f"{candidate_id}#{number}", number + 1
    taken.add(unique)
    return unique


def load_prediction_files(paths: Iterable[str | Path]) -> dict[str, list[Candidate]]:
    """instance_id → candidates, one per prediction line, from SWE-bench prediction files.

    Candidate ids are the `model_name_or_path` (made unique with '#2', '#3' ... when several files
    share a model name); `source` is 'model name (file name)'. A null `model_patch` is an empty candidate.
    """
    out: dict[str, list[Candidate]] = {}
    taken: dict[str, set[str]] = {}
    for path in map(Path, paths):
        for number, record in enumerate(_records(path), 1):
            if not isinstance(record, dict) or "instance_id" not in record:
                raise ValueError(f"{path}: prediction {number} has no instance_id")
            instance = str(record["instance_id"])
            model = str(record.get("model_name_or_path") or path.stem)
            candidate_id = _unique(model, taken.setdefault(instance, set()))
            out.setdefault(instance, []).append(Candidate(
                id=candidate_id, patch=record.get("model_patch") or "", source=f"{model} ({path.name})"))
    return out


def load_patch_dir(path: str | Path) -> dict[str, list[Candidate]]:
    """instance_id → candidates from patch files (*.patch, *.diff) on disk.

    `<path>/<instance_id>/<name>.patch` gives one candidate `<name>` per file; patch files directly
    in `<path>` belong to the instance named like the directory itself.
    """
    root = Path(path)
    out: dict[str, list[Candidate]] = {}
    groups = [(root.name, root)] + [(d.name, d) for d in sorted(root.iterdir()) if d.is_dir()]
    for instance, folder in groups:
        files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix in PATCH_SUFFIXES)
        for file in files:
            patch = utf8_text(file.read_bytes(), file, ValueError)  # bytes decoded as they are: CRLF patches stay byte-exact
            out.setdefault(instance, []).append(Candidate(id=file.stem, patch=patch, source=str(file)))
    return out


def write_predictions(path: str | Path, results: Mapping[str, SelectionResult], model_name: str) -> Path:
    """One SWE-bench prediction line per instance, plus provenance of the choice (extra keys are ignored
    by the SWE-bench harness). Instances where nothing was chosen get an empty patch."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for instance, result in results.items():
            chosen = next((c for c in result.candidates if c.id == result.chosen_id), None)
            line = {
                "instance_id": instance,
                "model_name_or_path": model_name,
                "model_patch": result.patch,
                "selection": {"method": result.method, "reason": result.reason, "chosen_id": result.chosen_id,
                              "confidence": result.confidence, "confidence_level": result.confidence_level,
                              "chosen_source": chosen.source if chosen else None},
            }
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path
