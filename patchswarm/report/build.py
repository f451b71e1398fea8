"""Render a run directory as a static site: RUN_DIR/report/index.html plus one page per instance.

The pages are self-contained (CSS and JS inlined, no fonts, images or CDN) so they open offline from
file://. Templates autoescape everything; a Content-Security-Policy that only allows our own script
(by hash) is a second line of defence should model or repository text ever slip through unescaped.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from patchswarm.paths import safe_name
from patchswarm.report.adaptive import adaptive_summary, figures
from patchswarm.report.evidence import (
    STAGE_OF_ROLE,
    bar_chart,
    candidate_views,
    heatmap,
    issue_text,
    stage_costs,
)
from patchswarm.report.load import InstanceRecord, RunData, find_eval_report, load_eval, load_run
from patchswarm.report.text import Block, Line, diff_lines, exit_tone, message_text, split_blocks


@dataclass
class IndexRow:
    id: str
    href: str
    status: str
    resolved: bool | None
    method: str
    votes: int | None
    voting_tests: int
    cost: float
    wall_time_s: float
    note: str


@dataclass
class MessageView:
    role: str
    blocks: list[Block]
    folded: bool


@dataclass
class TestRun:
    label: str
    exit_code: int | None
    timed_out: bool
    output: str

    @property
    def tone(self) -> str:
        return exit_tone(self.exit_code, self.timed_out)

    @property
    def line_count(self) -> int:
        return len(self.output.splitlines())


@dataclass
class MachineView:
    name: str
    outcome: str
    attempts: int
    cost: float
    error: str | None
    messages: list[MessageView]
    runs: list[TestRun] = field(default_factory=list)


@dataclass
class TrajectoryView:
    index: int
    seed_test_index: int | None
    cost: float
    error: str | None
    machines: list[MachineView]
    patch: str

    @property
    def patch_lines(self) -> list[Line]:
        return diff_lines(self.patch)

    @property
    def summary(self) -> str:
        return " · ".join(f"{m.name} {m.outcome}" for m in self.machines) or "no machine ran"


def build_report(run_dir: Path, *, out_dir: Path | None = None, eval_report: Path | None = None,
                 figure_paths: list[Path] | None = None) -> Path:
    """Write the report and return the path of its index.html; `figure_paths` (PNGs, e.g. a benchmark's
    curve) are shown on the run page."""
    run = load_run(run_dir)
    shown_figures = figures(figure_paths or [])
    eval_path = eval_report or find_eval_report(run.run_dir)
    verdicts = load_eval(eval_path) if eval_path else {}
    out = Path(out_dir) if out_dir else run.run_dir / "report"
    (out / "instances").mkdir(parents=True, exist_ok=True)
    for stale in (out / "instances").glob("*.html"):
        stale.unlink()  # pages of instances no longer in the run
    env, assets = _environment(), _assets()
    names = _page_names([r.instance_id for r in run.instances])
    rows = []
    for record in run.instances:
        resolved = verdicts.get(record.instance_id)
        page = env.get_template("instance.html.j2").render(
            **assets, root="../", title=record.instance_id, evaluated=eval_path is not None,
            **_instance_context(record, resolved))
        (out / "instances" / names[record.instance_id]).write_text(page, encoding="utf-8")
        rows.append(_index_row(record, resolved, f"instances/{names[record.instance_id]}"))
    index = env.get_template("index.html.j2").render(
        **assets, root="", title=run.run_dir.name, rows=rows, evaluated=eval_path is not None,
        eval_path=str(eval_path) if eval_path else None, **_run_context(run, rows),
        adaptive=adaptive_summary([(r.instance_id, r.result) for r in run.instances]), figures=shown_figures)
    (out / "index.html").write_text(index, encoding="utf-8")
    return out / "index.html"


# -- rendering -------------------------------------------------------------------------------------


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("patchswarm.report", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(usd=_usd, count=_count, duration=_duration)
    return env


def _assets() -> dict[str, Any]:
    static = resources.files("patchswarm.report") / "static"
    css, js = (static / "report.css").read_text(), (static / "report.js").read_text()
    digest = base64.b64encode(hashlib.sha256(js.encode()).digest()).decode()
    csp = (f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; "
           "img-src data:; base-uri 'none'; form-action 'none'")
    # Our own package files, not data: the only strings rendered unescaped.
    return {"css": Markup(css), "js": Markup(js), "csp": csp}


def _page_names(instance_ids: list[str]) -> dict[str, str]:
    """A file name per instance: the id where it is safe, else a cleaned id plus a hash (no collisions)."""
    return {instance_id: safe_name(instance_id) + ".html" for instance_id in instance_ids}


def _usd(value: float | None) -> str:
    return "?" if value is None else f"${value:.4f}"


def _count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


# -- the run page ----------------------------------------------------------------------------------


def _index_row(record: InstanceRecord, resolved: bool | None, href: str) -> IndexRow:
    result = record.result
    tests = (result.get("selection") or {}).get("tests") or []
    errors = result.get("errors") or ([record.error] if record.error else [])
    return IndexRow(id=record.instance_id, href=href, status=record.status, resolved=resolved,
                    method=result.get("selection_method") or "", votes=result.get("votes"),
                    voting_tests=sum(t.get("status") == "voting" for t in tests),
                    cost=result.get("cost_usd") or 0.0, wall_time_s=result.get("wall_time_s") or 0.0,
                    note=("budget stopped; " if result.get("budget_stopped") else "") + (errors[0] if errors else ""))


def _run_context(run: RunData, rows: list[IndexRow]) -> dict[str, Any]:
    starts = [r.started_at for r in run.instances if r.started_at]
    ends = [r.finished_at for r in run.instances if r.finished_at]
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row.status] = statuses.get(row.status, 0) + 1
    evaluated = [row.resolved for row in rows if row.resolved is not None]
    usage = sorted(run.usage, key=lambda u: (list(STAGE_OF_ROLE).index(u.role) if u.role in STAGE_OF_ROLE else 9,
                                             u.role, u.model))
    totals = {
        "instances": len(rows),
        "statuses": statuses,
        "chosen": sum(bool(r.result.get("chosen_candidate")) for r in run.instances),
        "resolved": sum(evaluated) if evaluated else None,
        "evaluated": len(evaluated),
        "cost": sum(u.cost_usd for u in run.usage),
        "unknown_cost_calls": sum(u.unknown_cost_calls for u in run.usage),
        "input_tokens": sum(u.input_tokens for u in run.usage),
        "output_tokens": sum(u.output_tokens for u in run.usage),
        "span_s": (max(ends) - min(starts)) if starts and ends else None,
        "instance_time_s": sum(row.wall_time_s for row in rows),
    }
    config = run.meta.get("config") or {}
    return {"meta": run.meta, "totals": totals, "usage": usage, "stage_of_role": STAGE_OF_ROLE,
            "config_items": _flatten(config), "temperatures": (config.get("models") or {}).get("temperatures") or {},
            "statuses": sorted(statuses)}


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """A nested config as dotted key = value lines, like `--set` takes them."""
    if isinstance(value, dict) and value:
        return [item for key, sub in value.items() for item in _flatten(sub, f"{prefix}{key}.")]
    return [(prefix.rstrip("."), str(value))]


# -- an instance page ------------------------------------------------------------------------------


def _instance_context(record: InstanceRecord, resolved: bool | None) -> dict[str, Any]:
    result = record.result
    selection = result.get("selection") or {}
    issue, issue_source = issue_text(result)
    tests = {t["id"]: t for t in selection.get("tests") or []}
    return {
        "record": record, "result": result, "resolved": resolved, "selection": selection,
        "issue": issue, "issue_source": issue_source,
        "context_files": result.get("context_files") or [],
        "trajectories": [_trajectory(t) for t in result.get("trajectories") or []],
        "candidates": candidate_views(result),
        "heatmap": heatmap(selection) if selection else None,
        "selector_tests": [t for t in tests.values() if t.get("status") == "selector"],
        "transcript": [_message(m) for m in selection.get("selector_transcript") or []],
        "selector_labels": selector_labels(selection),
        "chosen_lines": diff_lines(result.get("patch") or ""),
        "chart": bar_chart(stage_costs(result)),
        "errors": result.get("errors") or ([record.error] if record.error else []),
    }


def selector_labels(selection: dict[str, Any]) -> list[tuple[str, str]]:
    """The letters the selector saw (A, B, ...) and the candidate ids they stand for, in finalist order."""
    if not selection.get("selector_transcript"):
        return []
    from selection.selector import LABELS

    return list(zip(LABELS, selection.get("finalists") or [], strict=False))


def _message(message: dict[str, Any]) -> MessageView:
    role = str(message.get("role", "?"))
    return MessageView(role, split_blocks(message_text(message.get("content"))), folded=role == "system")


def _trajectory(data: dict[str, Any]) -> TrajectoryView:
    machines = []
    testing, editing = data.get("testing"), data.get("editing")
    if testing:
        view = _machine("testing", testing)
        if testing.get("test_code"):
            view.runs.append(TestRun("test on the original repository", testing.get("original_exit_code"),
                                     bool(testing.get("original_timed_out")), testing.get("original_output") or ""))
        machines.append(view)
    if editing:
        view = _machine("editing", editing)
        if editing.get("original_output") is not None or editing.get("original_exit_code") is not None:
            view.runs.append(TestRun("test on the original repository", editing.get("original_exit_code"),
                                     bool(editing.get("original_timed_out")),
                                     editing.get("original_output") or ""))
        if editing.get("edited_output") is not None or editing.get("edited_exit_code") is not None:
            view.runs.append(TestRun("test on the edited repository", editing.get("edited_exit_code"),
                                     bool(editing.get("edited_timed_out")),
                                     editing.get("edited_output") or ""))
        machines.append(view)
    return TrajectoryView(index=data.get("index", 0), seed_test_index=data.get("seed_test_index"),
                          cost=data.get("cost_usd") or 0.0, error=data.get("error"), machines=machines,
                          patch=(editing or {}).get("patch") or "")


def _machine(name: str, data: dict[str, Any]) -> MachineView:
    return MachineView(name=name, outcome=str(data.get("outcome")), attempts=data.get("attempts") or 0,
                       cost=data.get("cost_usd") or 0.0, error=data.get("error"),
                       messages=[_message(m) for m in data.get("messages") or []])
