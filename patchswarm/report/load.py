"""Reading a run directory for the report: meta, one result per instance, model usage, eval verdicts.

Results are read as plain JSON, not through `InstanceResult`: the report must render runs written by
older or newer versions, and importing the pipeline would pull in litellm (seconds) for a static page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from patchswarm.paths import safe_name
from patchswarm.store import RunStore


class ReportError(Exception):
    """The run directory or the eval report cannot be read; the message is for the user."""


@dataclass
class RoleUsage:
    """Billed model calls of one role and model (replayed calls cost nothing and are counted apart)."""

    role: str
    model: str
    calls: int = 0
    replayed: int = 0
    cost_usd: float = 0.0
    unknown_cost_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass
class InstanceRecord:
    instance_id: str
    status: str
    result: dict[str, Any]
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None


@dataclass
class RunData:
    run_dir: Path
    meta: dict[str, Any]
    instances: list[InstanceRecord]
    usage: list[RoleUsage] = field(default_factory=list)


def load_run(run_dir: Path) -> RunData:
    run_dir = Path(run_dir)
    if not (run_dir / "run.sqlite").is_file():
        raise ReportError(f"{run_dir} is not a run directory (no run.sqlite)")
    store = RunStore(run_dir)
    try:
        meta = {key: store.get_meta(key) for key in ("config", "config_hash", "versions", "models", "status")}
        rows = store.instances()
        usage = [RoleUsage(*row) for row in store.usage_by_role_and_model()]
    finally:
        store.close()
    return RunData(run_dir=run_dir, meta=meta, instances=_pick_instances(run_dir, rows, meta.get("config_hash")),
                   usage=usage)


def _pick_instances(run_dir: Path, rows: list[dict[str, Any]], config_hash: str | None) -> list[InstanceRecord]:
    """One row per instance: the current config's, else the newest (a changed config leaves old rows behind)."""
    chosen: dict[str, dict[str, Any]] = {}
    for row in rows:  # ordered by started_at, so later rows replace earlier ones
        current = chosen.get(row["instance_id"])
        if current is None or current["config_hash"] != config_hash:
            chosen[row["instance_id"]] = row
    records = []
    for instance_id, row in chosen.items():
        result = row["result"] or _result_file(run_dir, instance_id) or {}
        records.append(InstanceRecord(instance_id=instance_id, status=row["status"], result=result,
                                      error=row["error"], started_at=row["started_at"],
                                      finished_at=row["finished_at"]))
    return records


def _result_file(run_dir: Path, instance_id: str) -> dict[str, Any] | None:
    path = run_dir / "instances" / safe_name(instance_id) / "result.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# -- evaluation ----------------------------------------------------------------------------------


def find_eval_report(run_dir: Path) -> Path | None:
    """RUN_DIR/eval/report.json, else the newest RUN_DIR/eval/<eval run>/report.json."""
    direct = Path(run_dir) / "eval" / "report.json"
    if direct.is_file():
        return direct
    nested = sorted(Path(run_dir).glob("eval/*/report.json"), key=lambda p: p.stat().st_mtime)
    return nested[-1] if nested else None


def load_eval(path: Path) -> dict[str, bool]:
    """instance id → resolved, from the harness's report.json ({id: {resolved: bool}}), a plain
    {id: bool} map, or a run summary ({resolved_ids: [...], unresolved_ids: [...]})."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read the eval report {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ReportError(f"the eval report {path} is not a JSON object")
    if "resolved_ids" in data:
        verdicts = {str(i): False for key in ("unresolved_ids", "empty_patch_ids", "patch_failed_ids", "error_ids")
                    for i in data.get(key) or []}
        verdicts.update({str(i): True for i in data["resolved_ids"] or []})
        return verdicts
    verdicts = {}
    for instance_id, entry in data.items():
        if isinstance(entry, bool):
            verdicts[str(instance_id)] = entry
        elif isinstance(entry, dict) and isinstance(entry.get("resolved"), bool):
            verdicts[str(instance_id)] = entry["resolved"]
    return verdicts
