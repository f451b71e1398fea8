"""The replay behind scripts/bench_adaptive.py: real candidate pools presented one candidate at a time.

Each candidate carries what selection measured of it alone on the whole pool (probe and test outcomes,
regressions, hygiene, size); over a prefix of an arrival order the pool-dependent parts (behaviour and patch
support, rank, confidence) are recounted with selection's own functions (`selection.scoring`), and the
stopping rule reads the prefix through `selection.stopping.summary_of_reports`, the function the real
adaptive sampler uses. Also: the fixed-N curve, and tuning a rule's thresholds on some pools and orders while
measuring it on others (so the reported saving is not the tuned set's).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from selection.candidates import system_of
from selection.models import CandidateReport
from selection.scoring import EvidenceKinds, PatchEvidence, confidence, rank_key
from selection.stopping import EvidenceSummary, StoppingRule, UninformativeWhen, decide, summary_of_reports


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
    behaviour: str = ""  # hash of selection's behaviour key (observed + per-test regression outcomes); "" = older file


@dataclass
class Pool:
    instance_id: str
    samples: list[Sample] = field(default_factory=list)
    chosen: str | None = None  # what the real selection chose on the whole pool (a check of the replay)
    probe_steps_reproducing: int | None = None  # issue-probe steps that show the issue on the original


@dataclass
class Look:
    """Selection over one prefix: the choice and the stopping rule's view of it."""

    chosen: Sample | None
    summary: EvidenceSummary


def load_evidence(path: Path) -> list[Pool]:
    pools = []
    for line in path.read_text().splitlines():
        if line.strip():
            data = json.loads(line)
            pools.append(Pool(data["instance_id"], [Sample(**s) for s in data["samples"]], data.get("chosen"),
                              data.get("probe_steps_reproducing")))
    return pools


def choose(subset: Sequence[Sample], kinds: EvidenceKinds, reproducing: int | None = None) -> Look:
    """Selection over `subset` (in arrival order), as `select` computes it from the same cells; `reproducing`:
    the pool's issue-probe steps that show the issue on the original (what the probes report, None: unknown)."""
    members: dict[str, list[Sample]] = {}
    for sample in subset:
        if sample.key and sample.applies:
            members.setdefault(sample.key, []).append(sample)
    if not members:
        return Look(None, EvidenceSummary(samples=len(subset)))
    single = len(members) == 1  # selection runs no probe, hygiene or regression for a lone candidate
    # Support counts distinct systems, not submissions, as `select` does (`system_of`).
    behaviour_systems: dict[str, set[str]] = {}
    agreement_systems: dict[str, set[str]] = {}
    for group in members.values():
        if group[0].changed and not single:
            behaviour_systems.setdefault(group[0].observed, set()).update(system_of(s.id) for s in group)
        for s in group:
            agreement_systems.setdefault(s.agreement, set()).add(system_of(s.id))
    behaviour = Counter({k: len(v) for k, v in behaviour_systems.items()})
    agreement = Counter({k: len(v) for k, v in agreement_systems.items()})
    evidence, first = [], {}
    for key, group in members.items():
        rep = first[key] = group[0]
        evidence.append(PatchEvidence(
            key=key, id=rep.id, votes=rep.votes, regressions=None if single else rep.regressions,
            probe_fixes=0 if single else rep.probe_fixes, probe_breaks=0 if single else rep.probe_breaks,
            changed_behaviour=rep.changed and not single,
            behaviour_support=behaviour[rep.observed] if rep.changed and not single else 0,
            patch_support=agreement[rep.agreement], fatal=None if single else rep.fatal,
            penalties=0 if single else rep.penalties, lines_changed=rep.lines,
            behaviour=rep.behaviour or f"{rep.observed}:{rep.regressions}"))
    ranked = sorted(evidence, key=lambda e: rank_key(e, kinds))
    sure = confidence(ranked, kinds)
    reports = [CandidateReport(
        id=e.id, status="ok", support=e.patch_support, votes=e.votes, regression_checked=e.regressions is not None,
        regressions=[f"t{i}" for i in range(e.regressions or 0)], probe_fixes=e.probe_fixes,
        probe_breaks=e.probe_breaks, behaviour_support=e.behaviour_support, group=e.behaviour, rank=rank)
        for rank, e in enumerate(ranked, 1)]
    chosen = first[ranked[0].key]
    summary = summary_of_reports(reports, {e.id: first[e.key].agreement for e in ranked}, chosen_id=chosen.id,
                                 voting_tests=0, samples=len(subset),
                                 confidence=sure.value if sure.level != "none" else 0.0)
    summary.probe_steps_reproducing = None if single else reproducing  # no probe runs for a lone candidate
    return Look(chosen, summary)


class Replay:
    """Every prefix of every (pool, seed) order, selected once (memoised on the prefix's set)."""

    def __init__(self, pools: Sequence[Pool], seeds: int, kinds: EvidenceKinds) -> None:
        self.pools, self.seeds, self.kinds = list(pools), seeds, kinds
        self.looks: dict[tuple[str, int], list[Look]] = {}
        memo: dict[frozenset, Look] = {}
        for pool in self.pools:
            memo.clear()
            for seed in range(seeds):
                order = list(pool.samples)
                random.Random(f"{seed}:{pool.instance_id}").shuffle(order)
                looks = []
                for k in range(1, len(order) + 1):
                    # Arrival order only picks which copy of a distinct patch represents it: memoise on the set.
                    prefix = frozenset(s.id for s in order[:k])
                    if prefix not in memo:
                        memo[prefix] = choose(order[:k], kinds, pool.probe_steps_reproducing)
                    looks.append(memo[prefix])
                self.looks[(pool.instance_id, seed)] = looks

    def runs(self, instances: Iterable[str] | None = None, seeds: Iterable[int] | None = None):
        wanted = set(instances) if instances is not None else {p.instance_id for p in self.pools}
        for pool in self.pools:
            if pool.instance_id in wanted:
                for seed in (range(self.seeds) if seeds is None else seeds):
                    yield pool.instance_id, self.looks[(pool.instance_id, seed)]

    def replay_agrees(self) -> tuple[int, int]:
        """On the whole pool the replay must choose what the real selection chose (when recorded)."""
        checked = [p for p in self.pools if p.chosen is not None]
        nothing = Sample("", "", "", False, False)
        agree = sum(1 for p in checked
                    if (choose(p.samples, self.kinds, p.probe_steps_reproducing).chosen or nothing).id == p.chosen)
        return agree, len(checked)


def right(look: Look) -> bool:
    return bool(look.chosen and look.chosen.resolved)


def fixed_curve(replay: Replay, instances=None, seeds=None) -> list[dict]:
    """Accuracy and mean candidates consumed when every instance draws the first N of its order."""
    runs = list(replay.runs(instances, seeds))
    longest = max(len(looks) for _, looks in runs)
    curve = []
    for n in range(1, longest + 1):
        correct = sum(right(looks[min(n, len(looks)) - 1]) for _, looks in runs)
        consumed = sum(min(n, len(looks)) for _, looks in runs)
        curve.append({"n": n, "consumed": consumed / len(runs), "accuracy": correct / len(runs)})
    return curve


def first_stop(looks: Sequence[Look], rule: StoppingRule, memo: dict | None = None) -> tuple[int, str]:
    """Where sequential sampling under `rule` stops in one order, and why, ignoring its maximum (the
    order's end counts as 'max_samples': a pool smaller than any maximum ends there)."""
    unbounded = rule.model_copy(update={"max_samples": 10**6})
    for drawn, look in enumerate(looks, 1):
        key = id(look)
        if memo is None or key not in memo:
            decision = decide(look.summary, unbounded)
            verdict = decision.reason if decision.stop else None
            if memo is None:
                if verdict:
                    return drawn, verdict
                continue
            memo[key] = verdict
        if memo[key]:
            return drawn, memo[key]
    return len(looks), "max_samples"


class RuleRunner:
    """Runs rules over a replay; stop points are computed once per rule without its maximum (the maximum
    only cuts them), so a grid of thresholds costs little more than its distinct rules."""

    def __init__(self, replay: Replay) -> None:
        self.replay = replay
        self._stops: dict[str, dict[tuple[str, int], tuple[int, str]]] = {}

    def stops(self, rule: StoppingRule) -> dict[tuple[str, int], tuple[int, str]]:
        base = rule.model_copy(update={"max_samples": 10**6}).model_dump_json()
        if base not in self._stops:
            memo: dict = {}  # keyed by look: a look's decision does not depend on the order it is in
            self._stops[base] = {key: first_stop(looks, rule, memo) for key, looks in self.replay.looks.items()}
        return self._stops[base]

    def run(self, rule: StoppingRule, instances=None, seeds=None) -> dict:
        stops = self.stops(rule)
        correct = consumed = runs = 0
        reasons: Counter = Counter()
        per_instance: dict[str, list[float]] = {}
        wanted = set(instances) if instances is not None else None
        for (instance_id, seed), looks in self.replay.looks.items():
            if (wanted is not None and instance_id not in wanted) or (seeds is not None and seed not in seeds):
                continue
            k, reason = stops[(instance_id, seed)]
            if k > rule.max_samples:
                k, reason = rule.max_samples, "max_samples"
            ok = right(looks[k - 1])
            correct, consumed, runs = correct + ok, consumed + k, runs + 1
            reasons[reason] += 1
            row = per_instance.setdefault(instance_id, [0, 0.0, 0.0])
            row[0], row[1], row[2] = row[0] + 1, row[1] + k, row[2] + ok
        return {"consumed": consumed / runs, "accuracy": correct / runs, "reasons": dict(reasons), "runs": runs,
                "per_instance": {i: {"consumed": c / n, "accuracy": a / n} for i, (n, c, a) in per_instance.items()}}


def fixed_cost_at(fixed: list[dict], accuracy: float) -> float | None:
    """Mean candidates fixed N needs to reach `accuracy` (linear between Ns); None if it never does."""
    previous = None
    for point in fixed:
        if point["accuracy"] >= accuracy - 1e-9:
            if previous is None or point["accuracy"] == previous["accuracy"]:
                return point["consumed"] if previous is None else min(point["consumed"], previous["consumed"])
            share = (accuracy - previous["accuracy"]) / (point["accuracy"] - previous["accuracy"])
            return previous["consumed"] + share * (point["consumed"] - previous["consumed"])
        previous = point
    return None


def best_fixed(fixed: list[dict]) -> dict:
    return max(fixed, key=lambda p: (round(p["accuracy"], 9), -p["consumed"]))


# -- tuning on some pools and orders, measuring on the others -------------------------------------------

def rule_grid() -> list[StoppingRule]:
    """The rules the tuning may choose among: each rule kind with its default thresholds, a cap from 3 to 20
    and the uninformative stop after 2 to 6 samples or never, reading 'uninformative' either way
    (`uninformative_when`: one behaviour like the original's, or probes that reproduce nothing and no fix).
    Small on purpose (180 rules): with 15-odd pools, a finer grid (there were 945 rules until 12-03) mostly fits
    the pools it was tuned on."""
    grid = []
    for max_samples in (3, 4, 6, 8, 10, 12, 15, 20):
        for after in (None, 2, 3, 4, 6):
            if after is not None and after >= max_samples:
                continue
            for kind in ("evidence", "confidence", "margin"):
                readings: tuple[UninformativeWhen, ...] = \
                    ("same_behaviour",) if after is None else ("same_behaviour", "unreproduced")
                for when in readings:
                    grid.append(StoppingRule(rule=kind, max_samples=max_samples, uninformative_after=after,
                                             uninformative_when=when))
    return grid


def tune(runner: RuleRunner, grid: Sequence[StoppingRule], instances, seeds) -> StoppingRule:
    """Objective 'half': the rule with the best accuracy at no more than half the candidates of the best fixed
    N on these instances and orders; fewer candidates break ties."""
    budget = best_fixed(fixed_curve(runner.replay, instances, seeds))["consumed"] / 2
    scored = []
    for rule in grid:
        stats = runner.run(rule, instances, seeds)
        if stats["consumed"] <= budget + 1e-9:
            scored.append((round(stats["accuracy"], 9), -stats["consumed"], rule))
    return max(scored, key=lambda t: t[:2])[2] if scored else min(grid, key=lambda r: r.max_samples)


def tune_to_match(runner: RuleRunner, grid: Sequence[StoppingRule], instances, seeds) -> StoppingRule:
    """Objective 'match': the fewest candidates among rules that reach the best fixed N's accuracy on these
    instances and orders (the goal read literally: that accuracy, as cheaply as possible); higher accuracy
    breaks ties. No rule reaches it: objective 'half'."""
    target = best_fixed(fixed_curve(runner.replay, instances, seeds))["accuracy"]
    scored = []
    for rule in grid:
        stats = runner.run(rule, instances, seeds)
        if stats["accuracy"] >= target - 1e-9:
            scored.append((-round(stats["consumed"], 9), stats["accuracy"], rule))
    return max(scored, key=lambda t: t[:2])[2] if scored else tune(runner, grid, instances, seeds)


TUNERS: dict[str, Callable[..., StoppingRule]] = {"half": tune, "match": tune_to_match}


def held_out(runner: RuleRunner, grid: Sequence[StoppingRule], objective: str = "half",
             folds: Sequence[tuple[str, list[str], list[str]]] | None = None) -> dict:
    """Tune on even orders of some instances, measure on odd orders of others, pooled over the folds
    (name, tuned on, measured on). Default: leave one instance out (each instance's odd orders run with the
    rule tuned, by `objective` (see TUNERS), on the other instances' even orders)."""
    tuner = TUNERS[objective]
    replay = runner.replay
    ids = [p.instance_id for p in replay.pools]
    if folds is None:
        folds = [(i, [j for j in ids if j != i], [i]) for i in ids]
    train, test = set(range(0, replay.seeds, 2)), set(range(1, replay.seeds, 2))
    correct = consumed = runs = 0
    reasons: Counter = Counter()
    chosen: dict[str, dict] = {}
    measured: list[str] = []
    per_instance: dict[str, dict] = {}
    for name, tuned_on, measured_on in folds:
        if set(tuned_on) & set(measured_on):
            raise ValueError(f"fold {name} measures instances it was tuned on")
        rule = tuner(runner, grid, tuned_on, train)
        stats = runner.run(rule, measured_on, test)
        correct += stats["accuracy"] * stats["runs"]
        consumed += stats["consumed"] * stats["runs"]
        runs += stats["runs"]
        reasons.update(stats["reasons"])
        per_instance.update(stats["per_instance"])
        chosen[name] = rule.model_dump(exclude_defaults=True)
        measured += measured_on
    return {"consumed": consumed / runs, "accuracy": correct / runs, "reasons": dict(reasons), "runs": runs,
            "rules": chosen, "fixed": fixed_curve(replay, measured, test), "objective": objective,
            "per_instance": per_instance, "seeds_measured": sorted(test)}


def repository_folds(instance_ids: Sequence[str]) -> list[tuple[str, list[str], list[str]]]:
    """Leave one repository out: every repository's instances measured with a rule tuned on the others'."""
    repo_of = {i: i.rsplit("-", 1)[0] for i in instance_ids}
    repos = sorted(set(repo_of.values()))
    return [(r, [i for i in instance_ids if repo_of[i] != r], [i for i in instance_ids if repo_of[i] == r])
            for r in repos if len(repos) > 1]


def bootstrap_saving(replay: Replay, per_instance: dict[str, dict], seeds=None, draws: int = 2000,
                     seed: int = 0) -> dict:
    """How much the saving at equal accuracy moves with the choice of instances: resample the instances
    (with replacement) `draws` times; each draw's saving is fixed N's candidates (on the same instances and
    orders) at the rule's accuracy over the rule's, or at least the best N's over the rule's when the rule is
    above every N. The orders are not resampled: with few pools, which pools were graded dominates."""
    ids = sorted(per_instance)
    curves = {i: fixed_curve(replay, [i], seeds) for i in ids}
    longest = max(len(c) for c in curves.values())
    rng = random.Random(seed)
    savings = []
    for _ in range(draws):
        pick = [rng.choice(ids) for _ in ids]
        fixed = [{"n": n + 1, "consumed": sum(curves[i][min(n, len(curves[i]) - 1)]["consumed"] for i in pick) / len(pick),
                  "accuracy": sum(curves[i][min(n, len(curves[i]) - 1)]["accuracy"] for i in pick) / len(pick)}
                 for n in range(longest)]
        accuracy = sum(per_instance[i]["accuracy"] for i in pick) / len(pick)
        consumed = sum(per_instance[i]["consumed"] for i in pick) / len(pick)
        needed = fixed_cost_at(fixed, accuracy)
        savings.append((needed if needed is not None else best_fixed(fixed)["consumed"]) / consumed)
    savings.sort()
    at = lambda q: savings[min(len(savings) - 1, int(q * len(savings)))]  # noqa: E731
    return {"p05": at(0.05), "median": at(0.5), "p95": at(0.95), "draws": draws}
