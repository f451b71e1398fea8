"""Adaptive compute on real candidate pools: sequential sampling with a stopping rule vs a fixed N.

Real candidates stand in for samples (issue 18). Each instance's candidates arrive one at a time in a
random order (many seeds); after each one the selection is recomputed over the candidates so far and the
stopping rule (`selection.stopping`) decides whether to draw another. Fixed N draws the first N of the
same orders. Printed: accuracy against mean candidates consumed for N = 1…all and for each stopping rule,
the stop reasons' counts, and the saving at equal accuracy. Written: a table (`results.md`), the curve
(`accuracy_vs_compute.png`) and the raw numbers (`results.json`) in benchmarks/adaptive/.

Evidence, two sources:
- `--evidence FILE` (default benchmarks/adaptive/evidence.jsonl), made by `--extract`: the real LLM-free
  selection of `patchswarm bench-select` (same settings, its execution cache, so nothing runs twice) on each
  fully graded instance, and from it every candidate's own evidence (probe and test outcomes, regressions,
  hygiene, size). Over a subset the pool-dependent parts (behaviour and patch support) are recounted and the
  rank and confidence are selection's own functions (`selection.scoring`). Truth: the committed grades.
- `--hints`: every instance of the candidates file with the consensus-and-size evidence only (no Docker),
  truth from the file's `resolved` hints (unverified labels; a second, larger but weaker measurement).

    python scripts/bench_adaptive.py --extract -d DATASET --repo-url 'file:///work/mirrors/{owner}__{name}.git' \
        --cache-dir RUN/exec-cache     # once, Docker (re-uses bench-select's executions)
    python scripts/bench_adaptive.py [--hints] [--seeds 200]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from selection.candidates import agreement_key, lines_changed, patch_key  # noqa: E402
from selection.stopping import EvidenceSummary, Option, StoppingRule, decide  # noqa: E402

OUT = ROOT / "benchmarks" / "adaptive"
CANDIDATES = Path("/work/shared/data/candidates/dev.jsonl")
GRADES = ROOT / "benchmarks" / "selection_real" / "grades.jsonl"


# -- evidence per candidate ------------------------------------------------------------------------

@dataclass
class Sample:
    """One candidate of a pool: what selection knows of it alone, and whether it resolves."""

    id: str
    key: str  # patch_key: candidates with one key are one distinct patch
    agreement: str
    applies: bool
    resolved: bool
    observed: str = ""  # hash of its outcomes on every stable test and probe step
    changed: bool = False
    votes: int = 0
    regressions: int | None = None
    probe_fixes: int = 0
    probe_breaks: int = 0
    fatal: str | None = None
    penalties: int = 0
    lines: int = 0


@dataclass
class Pool:
    instance_id: str
    samples: list[Sample] = field(default_factory=list)
    chosen: str | None = None  # what the real selection chose on the whole pool (a check of the replay)


def choose(pool: Pool, subset: list[Sample], kinds) -> tuple[Sample | None, float, EvidenceSummary]:
    """Selection over `subset` (in arrival order): the chosen sample, its confidence, the stopping summary."""
    from selection.scoring import PatchEvidence, confidence, rank_key

    members: dict[str, list[Sample]] = {}
    for sample in subset:
        if sample.key and sample.applies:
            members.setdefault(sample.key, []).append(sample)
    if not members:
        return None, 0.0, EvidenceSummary(samples=len(subset))
    single = len(members) == 1  # selection runs no probe, hygiene or regression for a lone candidate
    behaviour = Counter()
    for group in members.values():
        if group[0].changed and not single:
            behaviour[group[0].observed] += len(group)
    agreement = Counter(s.agreement for group in members.values() for s in group)
    evidence, first = [], {}
    for key, group in members.items():
        rep = group[0]
        first[key] = rep
        evidence.append(PatchEvidence(
            key=key, id=rep.id, votes=rep.votes, regressions=None if single else rep.regressions,
            probe_fixes=0 if single else rep.probe_fixes, probe_breaks=0 if single else rep.probe_breaks,
            changed_behaviour=rep.changed and not single,
            behaviour_support=behaviour[rep.observed] if rep.changed and not single else 0,
            patch_support=agreement[rep.agreement], fatal=None if single else rep.fatal,
            penalties=0 if single else rep.penalties, lines_changed=rep.lines))
    ranked = sorted(evidence, key=lambda e: rank_key(e, kinds))
    sure = confidence(ranked, kinds)
    options: dict[str, Option] = {}
    for e in ranked:
        rep = first[e.key]
        if rep.agreement not in options:
            options[rep.agreement] = Option(id=rep.id, support=e.patch_support, votes=e.votes,
                                            regressions=e.regressions, group=rep.observed or rep.key)
    summary = EvidenceSummary(samples=len(subset), voting_tests=0, options=list(options.values()),
                              confidence=sure.value if sure.level != "none" else 0.0)
    return first[ranked[0].key], sure.value, summary


# -- the simulation --------------------------------------------------------------------------------

def simulate(pools: list[Pool], rules: dict[str, StoppingRule], seeds: int, kinds) -> dict:
    """Accuracy and candidates consumed, fixed N and per rule, averaged over instances and seeds."""
    max_n = max(len(p.samples) for p in pools)
    fixed = {n: [0.0, 0.0] for n in range(1, max_n + 1)}  # n → [correct, consumed] sums
    adaptive = {name: {"correct": 0.0, "consumed": 0.0, "reasons": Counter(), "per_instance": {}} for name in rules}
    memo: dict[tuple[str, frozenset], tuple] = {}
    for pool in pools:
        for name in rules:
            adaptive[name]["per_instance"][pool.instance_id] = [0.0, 0.0]
        for seed in range(seeds):
            order = list(pool.samples)
            random.Random(f"{seed}:{pool.instance_id}").shuffle(order)
            results = []
            for k in range(1, len(order) + 1):
                prefix = order[:k]
                # Arrival order only picks which copy of a distinct patch represents it: memoise on the set.
                memo_key = (pool.instance_id, frozenset(s.id for s in prefix))
                if memo_key not in memo:
                    memo[memo_key] = choose(pool, prefix, kinds)
                results.append(memo[memo_key])
            for n in fixed:
                chosen = results[min(n, len(order)) - 1][0]
                fixed[n][0] += bool(chosen and chosen.resolved)
                fixed[n][1] += min(n, len(order))
            for name, rule in rules.items():
                rule = rule.model_copy(update={"max_samples": min(rule.max_samples, len(order))})
                k, decision = len(results), None
                for drawn, (_, _, summary) in enumerate(results, 1):
                    decision = decide(summary, rule)
                    if decision.stop:
                        k = drawn
                        break
                chosen = results[k - 1][0]
                stats = adaptive[name]
                stats["correct"] += bool(chosen and chosen.resolved)
                stats["consumed"] += k
                stats["reasons"][decision.reason if decision else "max_samples"] += 1
                stats["per_instance"][pool.instance_id][0] += k / seeds
                stats["per_instance"][pool.instance_id][1] += bool(chosen and chosen.resolved) / seeds
    runs = len(pools) * seeds
    # The replay on the whole pool must choose what the real selection chose (when it was recorded).
    checked = [p for p in pools if p.chosen is not None]
    agree = sum(1 for p in checked if (choose(p, p.samples, kinds)[0] or Sample("", "", "", False, False)).id == p.chosen)
    out = {"instances": len(pools), "seeds": seeds, "replay_agrees": [agree, len(checked)],
           "fixed": [{"n": n, "consumed": c / runs, "accuracy": a / runs} for n, (a, c) in fixed.items()],
           "adaptive": {}}
    for name, stats in adaptive.items():
        out["adaptive"][name] = {"rule": rules[name].model_dump(), "consumed": stats["consumed"] / runs,
                                 "accuracy": stats["correct"] / runs, "reasons": dict(stats["reasons"]),
                                 "per_instance": stats["per_instance"]}
    out["oracle"] = sum(any(s.resolved for s in p.samples) for p in pools) / len(pools)
    return out


def fixed_cost_at(fixed: list[dict], accuracy: float) -> float | None:
    """Mean candidates fixed N needs to reach `accuracy` (linear between Ns); None if it never does."""
    previous = None
    for point in fixed:
        if point["accuracy"] >= accuracy - 1e-9:
            if previous is None or point["accuracy"] == previous["accuracy"]:
                return point["consumed"]
            share = (accuracy - previous["accuracy"]) / (point["accuracy"] - previous["accuracy"])
            return previous["consumed"] + share * (point["consumed"] - previous["consumed"])
        previous = point
    return None


def savings(result: dict) -> dict[str, dict]:
    best = max(result["fixed"], key=lambda p: (round(p["accuracy"], 9), -p["consumed"]))
    out = {}
    for name, stats in result["adaptive"].items():
        needed = fixed_cost_at(result["fixed"], stats["accuracy"])
        out[name] = {"fixed_cost_at_equal_accuracy": needed,
                     "saving": needed / stats["consumed"] if needed else None,
                     "reaches_best_fixed": stats["accuracy"] >= best["accuracy"] - 1e-9,
                     "share_of_best_fixed_cost": stats["consumed"] / best["consumed"]}
    result["best_fixed"] = best
    return out


# -- sources of pools --------------------------------------------------------------------------------

def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def hint_pools(path: Path) -> list[Pool]:
    """Every instance with two or more labelled candidates; truth = the file's (unverified) labels."""
    by_instance: dict[str, Pool] = {}
    taken: Counter = Counter()
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("resolved") is None or not row["model_patch"].strip():
            continue
        taken[(row["instance_id"], row["system"])] += 1
        pool = by_instance.setdefault(row["instance_id"], Pool(row["instance_id"]))
        patch = row["model_patch"]
        pool.samples.append(Sample(id=f"{row['system']}#{taken[(row['instance_id'], row['system'])]}",
                                   key=patch_key(patch), agreement=agreement_key(patch), applies=True,
                                   resolved=bool(row["resolved"]), lines=lines_changed(patch)))
    return [p for p in by_instance.values() if len(p.samples) >= 2]


def load_evidence(path: Path) -> list[Pool]:
    pools = []
    for line in path.read_text().splitlines():
        if line.strip():
            data = json.loads(line)
            pools.append(Pool(data["instance_id"], [Sample(**s) for s in data["samples"]], data.get("chosen")))
    return pools


def extract(args: argparse.Namespace) -> None:
    """The real selection on each fully graded instance's whole pool; every candidate's own evidence."""
    import selection.select as select_module
    from patchswarm.benchselect.cli import BENCH_SETTINGS
    from patchswarm.benchselect.grades import GradeBook, load_candidates
    from patchswarm.benchselect.run import candidates_of, graded
    from patchswarm.config import load_config
    from patchswarm.ensemble import select_candidates
    from patchswarm.swebench.tasks import tasks_from_dataset

    captured: list = []
    original_select = select_module._Selection.select

    async def capturing(self, *a, **k):
        result = await original_select(self, *a, **k)
        captured.append(self)
        return result

    select_module._Selection.select = capturing
    rows = load_candidates(Path(args.candidates))
    book = GradeBook(Path(args.grades))
    tasks = {t.instance_id: t for t in tasks_from_dataset(args.dataset, "test", args.repo_url,
                                                          prefer_official_images=False)}
    done = {p.instance_id for p in load_evidence(Path(args.evidence))} if Path(args.evidence).exists() else set()
    wanted = [i for i in rows if i in tasks and graded(i, rows[i], book) and i not in done
              and (not args.instance_ids or i in args.instance_ids.split(","))]
    config = load_config(overrides=[*BENCH_SETTINGS, "selection.selector_enabled=false",
                                    f"selection.cache_dir={args.cache_dir}"])
    print(f"extracting evidence of {len(wanted)} graded instance(s)", flush=True)
    for instance_id in wanted:
        captured.clear()
        candidates = candidates_of(rows[instance_id])
        run_dir = Path(args.run_dir) / "extract"
        results = select_candidates([tasks[instance_id]], {instance_id: candidates}, config, run_dir,
                                    run_dir / "predictions" / f"{instance_id}.jsonl", generate_tests=False, live=False)
        if results[instance_id].method == "error" or not captured:
            print(f"{instance_id}: selection failed ({results[instance_id].reason}); skipped", flush=True)
            continue
        sel = captured[-1]
        samples = []
        for patch in sel.patches:
            ev = sel.evidence.get(patch.key)
            vector = {t: sel.matrix.cells[(k, patch.key)].outcome for k, t in sel.stable.items()} if ev else {}
            observed = _sha(sorted({**vector, **sel.probe.vectors.get(patch.key, {})}.items())) if ev else ""
            for variant in patch.variants:
                grade = book.get(instance_id, variant.patch)
                samples.append(Sample(
                    id=variant.id, key=patch.key, agreement=agreement_key(variant.patch),
                    applies=ev is not None and variant.id not in patch.failed, resolved=bool(grade and grade.resolved),
                    observed=observed, changed=bool(ev and ev.changed_behaviour), votes=ev.votes if ev else 0,
                    regressions=ev.regressions if ev else None, probe_fixes=ev.probe_fixes if ev else 0,
                    probe_breaks=ev.probe_breaks if ev else 0, fatal=ev.fatal if ev else None,
                    penalties=ev.penalties if ev else 0, lines=patch.lines_changed))
        Path(args.evidence).parent.mkdir(parents=True, exist_ok=True)
        with open(args.evidence, "a") as handle:
            handle.write(json.dumps({"instance_id": instance_id, "chosen": results[instance_id].chosen_id,
                                     "samples": [s.__dict__ for s in samples]}) + "\n")
        print(f"{instance_id}: {len(samples)} candidates, chosen {results[instance_id].chosen_id} "
              f"({results[instance_id].confidence_level})", flush=True)


# -- output ----------------------------------------------------------------------------------------

RULES = {
    "confidence>=0.9": StoppingRule(rule="confidence", confidence_threshold=0.9, min_samples=2, max_samples=10**6),
    "confidence>=0.6": StoppingRule(rule="confidence", confidence_threshold=0.6, min_samples=2, max_samples=10**6),
    "agreement>=2": StoppingRule(rule="margin", min_agreement=2, agreement_margin=1, min_samples=2, max_samples=10**6),
    "agreement>=3": StoppingRule(rule="margin", min_agreement=3, agreement_margin=1, min_samples=3, max_samples=10**6),
    # The default cap of trajectories.adaptive (stopping.max_samples = 8).
    "confidence>=0.9, max 8": StoppingRule(rule="confidence", confidence_threshold=0.9, min_samples=2, max_samples=8),
    "agreement>=3, max 8": StoppingRule(rule="margin", min_agreement=3, agreement_margin=1, min_samples=3, max_samples=8),
}


def table(name: str, result: dict, saved: dict) -> str:
    agree, checked = result["replay_agrees"]
    lines = [f"### {name}: {result['instances']} instances × {result['seeds']} random orders "
             f"(oracle {result['oracle']:.3f})", "",
             *([f"The replay chooses what the real selection chose on the whole pool in {agree} of {checked} "
                f"instances.", ""] if checked else []),
             "| policy | mean candidates consumed | accuracy | fixed-N candidates at equal accuracy | saving | stop reasons |",
             "|---|---:|---:|---:|---:|---|"]
    for point in result["fixed"]:
        lines.append(f"| fixed N={point['n']} | {point['consumed']:.2f} | {point['accuracy']:.3f} | | | |")
    for rule, stats in result["adaptive"].items():
        s = saved[rule]
        needed = "never" if s["fixed_cost_at_equal_accuracy"] is None else f"{s['fixed_cost_at_equal_accuracy']:.2f}"
        saving = "-" if s["saving"] is None else f"{s['saving']:.2f}×"
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(stats["reasons"].items()))
        lines.append(f"| adaptive {rule} | {stats['consumed']:.2f} | {stats['accuracy']:.3f} | {needed} | {saving} | {reasons} |")
    best = result["best_fixed"]
    lines += ["", f"Best fixed N: N={best['n']}, accuracy {best['accuracy']:.3f} at {best['consumed']:.2f} candidates."]
    for rule, s in saved.items():
        stats = result["adaptive"][rule]
        lines.append(f"- {rule}: {'reaches' if s['reaches_best_fixed'] else 'does not reach'} it "
                     f"({stats['accuracy']:.3f}) at {100 * s['share_of_best_fixed_cost']:.0f}% of its candidates.")
    return "\n".join(lines)


def plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for ax, (name, result) in zip(axes[0], results.items(), strict=True):
        fixed = result["fixed"]
        ax.plot([p["consumed"] for p in fixed], [p["accuracy"] for p in fixed], "o-", color="#555",
                label="fixed N = 1…all", markersize=3)
        for rule, stats in result["adaptive"].items():
            ax.plot([stats["consumed"]], [stats["accuracy"]], "*", markersize=12, label=f"adaptive {rule}")
        ax.axhline(result["oracle"], color="#aaa", linestyle=":", label="oracle")
        ax.set_xlabel("mean candidates consumed per instance")
        ax.set_ylabel("accuracy (chosen patch resolves)")
        ax.set_title(f"{name} ({result['instances']} instances, {result['seeds']} orders)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extract", action="store_true", help="Run the real selection (Docker) to write --evidence.")
    parser.add_argument("--evidence", default=str(OUT / "evidence.jsonl"))
    parser.add_argument("--hints", action="store_true", help="Also simulate on all instances with the file's hints as labels.")
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--candidates", default=str(CANDIDATES))
    parser.add_argument("--grades", default=str(GRADES))
    parser.add_argument("-d", "--dataset")
    parser.add_argument("--repo-url", default="file:///work/mirrors/{owner}__{name}.git")
    parser.add_argument("--cache-dir", default="runs/bench-select/exec-cache")
    parser.add_argument("--run-dir", default="runs/bench-adaptive")
    parser.add_argument("-i", "--instance-ids", default="")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    if args.extract:
        if not args.dataset:
            parser.error("--extract needs --dataset")
        extract(args)
    from selection.scoring import EvidenceKinds

    results: dict[str, dict] = {}
    if Path(args.evidence).exists():
        pools = load_evidence(Path(args.evidence))
        if pools:
            results["graded, full LLM-free evidence"] = simulate(pools, RULES, args.seeds, EvidenceKinds())
    if args.hints:
        consensus_only = EvidenceKinds(regression=False, probes=False, consensus=True, hygiene=False)
        pools = hint_pools(Path(args.candidates))
        mixed = [p for p in pools if 0 < sum(s.resolved for s in p.samples) < len(p.samples)]
        results["hint labels, consensus + size only"] = simulate(pools, RULES, args.seeds, consensus_only)
        results["hint labels, mixed pools only"] = simulate(mixed, RULES, args.seeds, consensus_only)
    if not results:
        sys.exit(f"no evidence in {args.evidence} (run --extract) and --hints not given")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    for name, result in results.items():
        saved = savings(result)
        result["savings"] = saved
        sections.append(table(name, result, saved))
    text = "\n\n".join(sections)
    print(text)
    (out / "results.md").write_text("# Adaptive compute on real candidate pools\n\n"
                                    "Written by `scripts/bench_adaptive.py`; see its docstring.\n\n" + text + "\n")
    for result in results.values():
        for stats in result["adaptive"].values():
            stats.pop("per_instance")
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    try:
        plot(results, out / "accuracy_vs_compute.png")
        print(f"plot: {out / 'accuracy_vs_compute.png'}")
    except ImportError:
        print("matplotlib is not installed (pip install matplotlib): no plot written")


if __name__ == "__main__":
    main()
