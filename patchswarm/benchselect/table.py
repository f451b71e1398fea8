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
