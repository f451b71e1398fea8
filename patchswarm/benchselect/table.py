"""The benchmark's printed table: one row per instance, then the totals over instances with mixed candidates."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from patchswarm.benchselect.run import InstanceScore, Totals


def print_scores(console: Console, mode: str, scores: list[InstanceScore], total: Totals | None) -> None:
    table = Table(title=f"selection on real candidates — {mode}")
    for column in ("instance", "cands", "resolving", "chosen", "correct", "method", "confidence", "execs", "wall s"):
        table.add_column(column, justify="left" if column in ("instance", "chosen", "method") else "right")
    for s in scores:
        table.add_row(s.instance_id, str(s.candidates), str(s.resolving), str(s.chosen), "yes" if s.correct else "no",
                      s.method if not s.error else f"error: {s.error[:40]}",
                      f"{s.confidence_level} {s.confidence:.2f}", str(s.executions), f"{s.wall_s:.0f}")
    console.print(table)
    if total is None:
        console.print("no instance with both resolving and failing candidates: no totals", highlight=False)
        return
    gap = f"{100 * total.gap_closed:.0f}%"
    console.print(
        f"[{mode}] {total.instances} mixed instances: accuracy {total.accuracy:.3f} | random {total.random:.3f} | "
        f"smallest {total.smallest:.3f} | majority {total.majority:.3f} | oracle 1.000 | gap closed {gap} | "
        f"{total.executions_per_instance:.0f} executions and {total.wall_s_per_instance:.0f}s per instance, "
        f"{total.tokens} tokens in {total.calls} model calls (${total.cost_usd:.4f})", highlight=False, markup=False)
    levels = ", ".join(f"{level}: {right}/{chosen}" for level, (right, chosen) in sorted(total.by_confidence.items()))
    console.print(f"[{mode}] right/chosen by confidence: {levels}", highlight=False, markup=False)


def markdown(scores: dict[str, list[InstanceScore]], totals: dict[str, Totals | None]) -> str:
    """The results as markdown: the full mode's per-instance rows, then one totals line per mode."""
    lines = ["| instance | candidates | resolving | chosen | correct | method | confidence | execs | wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in scores.get("all", []):
        lines.append(f"| {s.instance_id} | {s.candidates} | {s.resolving} | {s.chosen} | "
                     f"{'yes' if s.correct else 'no'}{'' if s.mixed else ' (not mixed)'} | "
                     f"{s.method if not s.error else 'error'} | {s.confidence_level} {s.confidence:.2f} | "
                     f"{s.executions} | {s.wall_s:.0f} |")
    lines += ["", "| mode | mixed | accuracy | random | smallest | majority | oracle | gap closed | "
                  "right/chosen by confidence | execs/inst | wall s/inst | tokens |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for mode, t in totals.items():
        if t is None:
            lines.append(f"| {mode} | 0 | | | | | | | | | | |")
            continue
        levels = ", ".join(f"{lv} {r}/{c}" for lv, (r, c) in sorted(t.by_confidence.items()))
        lines.append(f"| {mode} | {t.instances} | {t.accuracy:.3f} | {t.random:.3f} | {t.smallest:.3f} | "
                     f"{t.majority:.3f} | 1.000 | {100 * t.gap_closed:.0f}% | {levels} | "
                     f"{t.executions_per_instance:.0f} | {t.wall_s_per_instance:.0f} | {t.tokens} |")
    return "\n".join(lines) + "\n"
