"""The report's view of adaptive sampling: stop reasons across the run, samples per instance, and
benchmark figures (e.g. scripts/bench_adaptive.py's accuracy-vs-compute curve) embedded as data URIs."""

from __future__ import annotations

import base64
from collections import Counter
from pathlib import Path
from typing import Any

from patchswarm.report.load import ReportError


def adaptive_summary(results: list[tuple[str, dict[str, Any]]]) -> dict[str, Any] | None:
    """Stop reasons' counts and one row per instance that sampled adaptively; None when none did."""
    rows = []
    for instance_id, result in results:
        record = result.get("adaptive")
        if not record:
            continue
        rows.append({"id": instance_id, "samples": record.get("samples", 0), "fresh": record.get("fresh", 0),
                     "extensions": record.get("extensions", 0), "stop_reason": record.get("stop_reason") or "—",
                     "detail": record.get("stop_detail", ""), "cost": result.get("cost_usd") or 0.0,
                     "granted": record.get("granted_usd", 0.0), "released": record.get("released_usd", 0.0)})
    if not rows:
        return None
    reasons = Counter(row["stop_reason"] for row in rows)
    return {"rows": rows, "reasons": sorted(reasons.items()),
            "mean_samples": sum(r["samples"] for r in rows) / len(rows)}


def figures(paths: list[Path]) -> list[dict[str, str]]:
    """PNG files as data URIs (the report opens offline and its CSP allows only data: images), each with
    the `results.md` beside it when there is one."""
    out = []
    for path in paths:
        path = Path(path)
        if path.suffix.lower() != ".png":
            raise ReportError(f"figure {path} is not a .png file")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ReportError(f"cannot read figure {path}: {exc.strerror}") from None
        notes = path.with_name("results.md")
        out.append({"name": path.name, "uri": "data:image/png;base64," + base64.b64encode(data).decode(),
                    "table": notes.read_text() if notes.is_file() else ""})
    return out
