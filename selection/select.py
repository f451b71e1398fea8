"""`select_patch`: test matrix → votes → regression check → (selector) → one patch, with its evidence."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from agent.budget import Budget, Spend
from agent.model import ModelClient
from agent.types import StateStore
from sandbox.port import PoolPort
from selection.cache import OutcomeCache
from selection.candidates import (
    DistinctPatch,
    DistinctTest,
    agreement_key,
    distinct_patches,
    distinct_tests,
    normalize_patch,
    system_of,
    touched_files,
)
from selection.hygiene import Hygiene, check_hygiene, runnable_candidates
from selection.matrix import CachedJobRunner, run_test_matrix
from selection.models import (
    BehaviourGroup,
    Candidate,
    GeneratedTest,
    Method,
    ProbeReport,
    SelectionConfig,
    SelectionResult,
)
from selection.probes import ProbeEvidence, extract_probes, prelude_imports, run_probes
from selection.regression import RegressionPlan, intended_changes, plan_regression, run_regression
from selection.report import candidate_reports, matrix_view, repro_test_reports
from selection.scoring import Confidence, EvidenceKinds, PatchEvidence, confidence, rank_key
from selection.selector import SelectorOutcome, run_selector
from selection.voting import Verdict, behaviour, count_votes, judge_tests, make_groups, pick_finalists

# The tree a patch produced, as a diff git apply takes (new files included); the next run resets it.
TREE_DIFF = "git add -A >/dev/null && git -c core.quotepath=off diff --cached --binary --no-color --no-ext-diff"
GenerateTests = Callable[[], Awaitable[Sequence[GeneratedTest]]]
OnStage = Callable[[str], None]
STABLE = ("voting", "passes_on_original", "timed_out", "error_on_original")  # original outcome is known and repeatable


async def select_patch(candidates: Sequence[Candidate], *, pool: PoolPort, repo_dir: Path, issue: str = "",
                       tests: Sequence[GeneratedTest] | None = None, generate_tests: GenerateTests | None = None,
                       model: ModelClient | None = None, budget: Budget | None = None,
                       config: SelectionConfig | None = None, store: StateStore | None = None,
                       on_stage: OnStage | None = None) -> SelectionResult:
    """Choose one of `candidates` for the instance whose environment image `pool` runs.

    `store` keeps the selector's conversation (key "selector"), so a rerun continues it.

    `tests` are reproduction tests (e.g. from the trajectories); when none are given and
    `generate_tests` is, it is awaited for some (only if there is a choice to make). `repo_dir` is a
    host checkout of the base commit (original text of touched files, test discovery). Never raises
    for bad candidates or tests: the result's `method` and `reason` say what happened. `on_stage(name)`
    is told as each step starts (test generation, matrix, hygiene, probes, regression, selector), so a
    caller can show where a selection of many minutes is.
    """
    config = config or SelectionConfig()
    if not candidates:
        return SelectionResult(chosen_id=None, method="nothing_to_select", reason="no candidates were given")
    cache = OutcomeCache(config.cache_dir)
    try:
        executor = CachedJobRunner(pool, cache, await asyncio.to_thread(pool.image_id))
        run = _Selection(list(candidates), executor, Path(repo_dir), issue, model, budget, config, store,
                         on_stage or (lambda _: None))
        return await run.select(tests, generate_tests)
    finally:
        cache.close()


class _Selection:
    """State of one selection; each step reads what the previous ones found."""

    def __init__(self, candidates: list[Candidate], executor: CachedJobRunner, repo_dir: Path, issue: str,
                 model: ModelClient | None, budget: Budget | None, config: SelectionConfig,
                 store: StateStore | None = None, on_stage: OnStage = lambda _: None) -> None:
        self.on_stage = on_stage
        self.candidates, self.executor, self.repo_dir, self.issue = candidates, executor, repo_dir, issue
        self.model, self.budget, self.config, self.store = model, budget, config, store
        self.kinds = EvidenceKinds(regression=config.regression_enabled, probes=config.probes_enabled,
                                   consensus=config.consensus_enabled, hygiene=config.hygiene_enabled)
        self.notes: list[str] = []
        self.top_level = {p.name for p in repo_dir.iterdir()} if repo_dir.is_dir() else None
        self.submitted = {c.id: c.patch for c in candidates}
        # Scratch files cut before anything runs (`hygiene.without_scratch`); hygiene reads the text as submitted.
        self.runnable = runnable_candidates(candidates, self.top_level, self.notes)
        self.patches = distinct_patches(self.runnable)
        self.tests: list[DistinctTest] = []
        self.test_sources: dict[str, str] = {}
        self.verdicts: dict[str, Verdict] = {}
        self.voting: list[str] = []  # keys of the tests that vote
        self.stable: dict[str, str] = {}  # key → id of the tests whose outcome on the original is repeatable
        self.votes: dict[str, int] = {}
        self.regressions: dict[str, list[str]] = {}
        self.regression_vectors: dict[str, dict[str, str]] = {}
        self.intended: set[str] = set()  # broken tests taken as the issue's intended change (`intended_changes`)
        self.plan: RegressionPlan | None = None
        self.selector: SelectorOutcome | None = None
        self.hygiene: dict[str, Hygiene] = {}
        self.probe = ProbeEvidence()
        self.evidence: dict[str, PatchEvidence] = {}
        self.confidence = Confidence(level="none", value=0.0, reason="nothing chosen")
        self.final_patch, self.rediffed = "", False

    async def select(self, tests: Sequence[GeneratedTest] | None, generate: GenerateTests | None) -> SelectionResult:
        nonempty = [p for p in self.patches if not p.empty]
        given = list(tests or [])
        if not given and generate is not None:
            given = await self._generate(generate, len(nonempty))
        self.tests = distinct_tests(given)
        self.test_sources = {t.id: t.source for t in given}
        self.on_stage(f"matrix: {len(self.tests)} test(s) x {len(self.patches)} patch(es) and the original")
        self.matrix = await run_test_matrix(self.executor, self.tests, self.patches, self.config.test_timeout_s)
        self.verdicts = judge_tests(self.tests, self.matrix)
        self.voting = [t.key for t in self.tests if self.verdicts[t.key].status == "voting"]
        self.stable = {t.key: t.id for t in self.tests if self.verdicts[t.key].status in STABLE}
        eligible = [p for p in nonempty if p.key not in self.matrix.apply_errors]
        if not eligible:
            return self._result(None, "nothing_to_select", self._nothing_reason(), [], [], [])
        self.votes = {p.key: count_votes(p, self.voting, self.matrix) for p in eligible}
        if len(eligible) > 1:
            await self._llm_free_evidence(eligible)
        ranked, groups, finalists = await self._rank_and_check(eligible)
        if self.intended and self.kinds.regression:
            self.notes.append(f"{len(self.intended)} test(s) broken by every candidate that fixes an issue probe, "
                              f"taken as the change the issue asks for: {', '.join(sorted(self.intended)[:5])}")
        method, reason, chosen = await self._decide(eligible, ranked, groups, finalists)
        order = [chosen] + [p for p in ranked if p.key != chosen.key]
        self.confidence = confidence([self.evidence[p.key] for p in order], self.kinds)
        self.final_patch, self.rediffed = await self._as_tested(chosen)
        return self._result(chosen, method, reason, ranked, groups, finalists)

    async def _as_tested(self, chosen: DistinctPatch) -> tuple[str, bool]:
        """The chosen text if `git apply` takes it as is; else the diff of the tree the sandbox made from it
        (it applied with fuzz), so the output is exactly what was tested and `git apply` accepts it."""
        text = chosen.candidate.patch
        if await asyncio.to_thread(_git_apply_checks, self.repo_dir, text):
            return text, False
        try:
            async with self.executor.pool.lease() as sandbox:
                run = await asyncio.to_thread(sandbox.run, TREE_DIFF, patch=text, output_cap=64 * 1024 * 1024)
            if run.exit_code != 0 or run.timed_out:
                raise RuntimeError(run.output.strip()[-200:] or f"exit {run.exit_code}")
            diff = run.output
        except Exception as exc:  # noqa: BLE001 - the text as given is still the best we have
            self.notes.append(f"could not re-diff the chosen patch ({type(exc).__name__}: {exc}); written as given")
            return text, False
        if not diff.strip() or normalize_patch(diff) == normalize_patch(text):
            return text, False
        self.notes.append("the chosen patch applies only with fuzz: written as the diff of the tree it produced")
        return diff, True

    async def _llm_free_evidence(self, eligible: list[DistinctPatch]) -> None:
        """Hygiene (compile check) and issue probes on every candidate that can win."""
        if self.config.hygiene_enabled:
            self.on_stage(f"hygiene: {len(eligible)} patch(es)")
            texts = {p.key: self.submitted[p.id] for p in eligible}
            self.hygiene = await check_hygiene(self.executor, eligible, issue=self.issue, texts=texts,
                                               top_level=self.top_level)
        if self.config.probes_enabled:
            probes = extract_probes(self.issue)
            self.on_stage(f"probes: {len(probes)} from the issue")
            self.probe = await run_probes(self.executor, probes, eligible, prelude=self._prelude(eligible),
                                          timeout=max(60.0, self.config.test_timeout_s), issue=self.issue)

    def _prelude(self, eligible: list[DistinctPatch]) -> list[str]:
        return prelude_imports(self.repo_dir, [path for p in eligible for path in touched_files(p.candidate.patch)])

    async def _generate(self, generate: GenerateTests, distinct: int) -> list[GeneratedTest]:
        if distinct < 2:
            self.notes.append("test generation skipped: fewer than two distinct non-empty candidates")
            return []
        self.on_stage("generating tests")
        try:
            return list(await generate())
        except Exception as exc:  # noqa: BLE001 - a failed generator leaves the LLM-free evidence
            self.notes.append(f"test generation failed ({type(exc).__name__}: {exc}); continuing without tests")
            return []

    def _nothing_reason(self) -> str:
        empty = sum(len(p.members) for p in self.patches if p.empty)
        failed = sum(len(p.failed) for p in self.patches)
        return (f"none of the {len(self.candidates)} candidates can win: {empty} empty, "
                f"{failed} do not apply to the base commit")

    def _groups(self, ranked: list[DistinctPatch]) -> tuple[list[BehaviourGroup], dict[str, str]]:
        vectors = {p.key: behaviour(p, self.stable, self.matrix, self.regression_vectors.get(p.key))
                   for p in ranked}
        groups = make_groups(ranked, vectors, self.votes)
        return groups, {cid: g.id for g in groups for cid in g.candidate_ids}

    def _collect_evidence(self, eligible: list[DistinctPatch]) -> None:
        """One PatchEvidence per candidate from everything executed so far."""
        original = {t: self.matrix.original[k][0].outcome for k, t in self.stable.items()}

        def observed(p: DistinctPatch) -> tuple:
            vector = {t: self.matrix.cells[(k, p.key)].outcome for k, t in self.stable.items()}
            return tuple(sorted({**vector, **self.probe.vectors.get(p.key, {})}.items()))

        changed = {p.key: any(self.matrix.cells[(k, p.key)].outcome != original[t] for k, t in self.stable.items())
                   or self.probe.fixes.get(p.key, 0) + self.probe.breaks.get(p.key, 0) > 0
                   or self._probe_changed(p) for p in eligible}
        # Support counts the distinct systems behind a behaviour or a change, not submissions (`system_of`).
        systems = {p.key: {system_of(m) for m in p.members if m not in p.failed} for p in eligible}
        behaviour_systems: dict[tuple, set[str]] = {}
        for p in eligible:
            if changed[p.key]:
                behaviour_systems.setdefault(observed(p), set()).update(systems[p.key])
        behaviour_count = Counter({k: len(v) for k, v in behaviour_systems.items()})
        agreement_systems: dict[str, set[str]] = {}
        for p in eligible:
            for variant in p.variants:
                if variant.id not in p.failed:
                    agreement_systems.setdefault(agreement_key(variant.patch), set()).add(system_of(variant.id))
        agreement = Counter({k: len(v) for k, v in agreement_systems.items()})
        fixers = {k for k, n in self.probe.fixes.items() if n > self.probe.breaks.get(k, 0)} if self.kinds.probes else set()
        self.intended = intended_changes(self.regressions, systems, fixers)

        for p in eligible:
            hygiene = self.hygiene.get(p.key, Hygiene())
            broken = set(self.regressions.get(p.key, []))  # None below: its tests were not checked
            self.evidence[p.key] = PatchEvidence(
                key=p.key, id=p.id, votes=self.votes[p.key],
                regressions=len(broken - self.intended) if p.key in self.regressions else None,
                intended_breaks=len(broken & self.intended),
                probe_fixes=self.probe.fixes.get(p.key, 0), probe_breaks=self.probe.breaks.get(p.key, 0),
                changed_behaviour=changed[p.key],
                behaviour_support=behaviour_count[observed(p)] if changed[p.key] else 0,
                patch_support=agreement[agreement_key(p.candidate.patch)], fatal=hygiene.fatal,
                penalties=len(hygiene.penalties), lines_changed=p.lines_changed,
                behaviour=repr((observed(p), sorted(self.regression_vectors.get(p.key, {}).items()))))

    def _probe_changed(self, p: DistinctPatch) -> bool:
        return bool(self.probe.original_vector) and any(
            self.probe.original_vector.get(step) != result for step, result in self.probe.vectors.get(p.key, {}).items())

    def _rank(self, eligible: list[DistinctPatch]) -> list[DistinctPatch]:
        self._collect_evidence(eligible)
        return sorted(eligible, key=lambda p: rank_key(self.evidence[p.key], self.kinds))

    async def _rank_and_check(self, eligible: list[DistinctPatch]) -> tuple[list[DistinctPatch], list[BehaviourGroup],
                                                                          list[DistinctPatch]]:
        """Rank, pick finalists, regression-check them; repeat while new candidates become finalists."""
        config = self.config
        most = max(config.top_k, config.regression_max_candidates)
        # Without voting tests the repo's own tests are the main evidence: check more candidates at once.
        first_batch = config.top_k if self.voting else most
        while True:
            ranked = self._rank(eligible)
            groups, group_of = self._groups(ranked)
            finalists = pick_finalists(ranked, group_of, config.top_k)
            if not config.regression_enabled or len(eligible) < 2:
                return ranked, groups, finalists
            wanted = finalists if self.plan else pick_finalists(ranked, group_of, first_batch)
            todo = [p for p in wanted if p.key not in self.regressions][: most - len(self.regressions)]
            if not todo:
                return ranked, groups, finalists
            if self.plan is None:
                self.plan = await plan_regression(self.executor, self.repo_dir, eligible, config)
            self.on_stage(f"regression: {len(todo)} finalist(s)")
            check = await run_regression(self.executor, self.plan, todo, config)
            self.regressions.update(check.regressions)
            self.regression_vectors.update(check.vectors)

    async def _decide(self, eligible: list[DistinctPatch], ranked: list[DistinctPatch], groups: list[BehaviourGroup],
                      finalists: list[DistinctPatch]) -> tuple[Method, str, DistinctPatch]:
        best = ranked[0]
        why = self._vote_reason(ranked)
        if len(eligible) == 1:
            return "vote", f"only one candidate can win. {why}", best
        if len(finalists) == 1:
            return "vote", f"top_k=1 leaves one finalist. {why}", best
        if not self.config.selector_enabled:
            return "vote", f"selector disabled. {why}", best
        if self.model is None:
            return "vote", f"no model client for the selector. {why}", best
        finalist_groups = {g.id for g in groups for f in finalists if f.id in g.candidate_ids}
        if len(finalist_groups) == 1 and self.votes[best.key] > 0:
            return "vote", (f"all {len(eligible)} candidates behave identically on every test (one behaviour "
                            f"group), so the selector is not needed. {why}"), best
        self.on_stage(f"selector: {len(finalists)} finalists")
        self.selector = await run_selector(
            self.model, self.budget, self.executor, issue=self.issue, finalists=finalists,
            repo_dir=self.repo_dir, evidence={p.key: self._evidence(p) for p in finalists},
            example_test=self._example_test(finalists), max_attempts=self.config.selector_max_attempts,
            timeout=self.config.test_timeout_s, store=self.store)
        if self.selector.chosen_key is not None:
            chosen = next(p for p in finalists if p.key == self.selector.chosen_key)
            return "selector", f"{self.selector.reason}: {chosen.id} among {', '.join(p.id for p in finalists)}", chosen
        return "fallback", f"selector failed ({self.selector.reason}); falling back to the vote. {why}", best

    def _evidence(self, patch: DistinctPatch) -> str:
        text = f"passes {self.votes[patch.key]} of {len(self.voting)} generated reproduction tests"
        if self.plan is None or not self.plan.commands or patch.key not in self.regressions:
            return text + "; existing repository tests not checked"
        broken = self.regressions[patch.key]
        if not broken:
            return text + f"; breaks none of the {self.plan.report.baseline_passing} existing tests checked"
        return text + f"; breaks existing tests that pass on the original: {', '.join(broken[:10])}"

    def _example_test(self, finalists: list[DistinctPatch]) -> str | None:
        """A voting test that tells finalists apart if there is one, else any voting test, else any test."""
        def splits(key: str) -> bool:
            return len({self.matrix.cells[(key, p.key)].outcome for p in finalists}) > 1

        by_key = {t.key: t for t in self.tests}
        order = [k for k in self.voting if splits(k)] + self.voting + list(by_key)
        return by_key[order[0]].code if order else None

    def _vote_reason(self, ranked: list[DistinctPatch]) -> str:
        best = ranked[0]
        e = self.evidence[best.key]
        parts = [f"{e.votes} of {len(self.voting)} voting tests pass"]
        if e.regressions is not None:
            parts.append(f"{e.regressions} regression(s)")
        if self.probe.probes:
            parts.append(f"fixes {e.probe_fixes} and breaks {e.probe_breaks} of {self.probe.steps_reproducing} "
                         f"reproducing issue-probe step(s)")
        if self.kinds.consensus:
            parts.append(f"{e.behaviour_support} system(s) behave the same, {e.patch_support} propose the same change")
        if e.fatal or e.penalties:
            parts.append(f"hygiene: {e.fatal or ''}{' ' if e.fatal else ''}{e.penalties} penalty(ies)")
        text = f"{best.id} ranks first: {', '.join(parts)}, {best.lines_changed} lines changed"
        if len(ranked) > 1:
            text += f"; {self._tie_break(best, ranked[1])}"
        if not self.voting:
            text += (f". LLM-free evidence only ({'no generated tests' if not self.tests else 'no generated test could vote'}): "
                     f"repository tests ({len(self.plan.report.test_files) if self.plan else 0} file(s)"
                     f"{f', command `{self.plan.report.command}`' if self.plan and self.plan.report.command else ''})"
                     f", issue probes, consensus, hygiene, then patch size")
        return text

    def _tie_break(self, best: DistinctPatch, other: DistinctPatch) -> str:
        names = ["hygiene", "votes", "regressions", "issue probes", "behaviour consensus", "patch agreement",
                 "hygiene penalties", "size"]
        mine, theirs = (rank_key(self.evidence[p.key], self.kinds) for p in (best, other))
        for name, a, b in zip(names, mine, theirs, strict=False):
            if a == b:
                continue
            if name == "votes":
                return f"next is {other.id} with {-b} vote(s)"
            if name == "regressions":
                return f"tied on votes with {other.id}, which breaks {b} existing test(s)"
            if name == "size":
                return f"tied with {other.id} on the evidence; smaller patch ({other.lines_changed} lines)"
            return f"ahead of {other.id} on {name}"
        return f"tied with {other.id} on every piece of evidence and size; first by id"

    def _result(self, chosen: DistinctPatch | None, method: Method, reason: str, ranked: list[DistinctPatch],
                groups: list[BehaviourGroup], finalists: list[DistinctPatch]) -> SelectionResult:
        by_id = {c.id: c for c in self.runnable}  # as they ran (scratch files cut), in input order
        selector_runs = self.selector.test_runs if self.selector else []
        regression = self.plan.report if self.plan else None
        ran = bool(self.plan and self.plan.commands)
        spent = self.selector.spend() if self.selector else Spend()
        return SelectionResult(
            chosen_id=chosen.id if chosen else None, patch=self.final_patch if chosen else "",
            patch_rediffed=self.rediffed if chosen else False, method=method, reason=reason,
            candidates=self._candidate_reports(by_id, ran, ranked, groups),
            tests=repro_test_reports(self.tests, self.verdicts, self.test_sources, selector_runs),
            matrix=matrix_view(self.tests, self.patches, self.matrix, selector_runs),
            groups=list(groups), finalists=[p.id for p in finalists],
            **({"regression": regression} if regression else {}),
            selector_transcript=self.selector.transcript if self.selector else [],
            executions_performed=self.executor.performed, executions_cached=self.executor.cached,
            sandbox_failures=list(self.executor.sandbox_failures),
            execution_seconds=sum(self.executor.durations),
            cost_usd=spent.cost_usd, unknown_cost_calls=spent.unknown_cost_calls, notes=self.notes,
            probes=ProbeReport(probes=len(self.probe.probes), steps=sum(len(p.steps) for p in self.probe.probes),
                               steps_stable=self.probe.steps_stable, steps_reproducing=self.probe.steps_reproducing,
                               notes=self.probe.notes),
            confidence=self.confidence.value if chosen else 0.0,
            confidence_level=self.confidence.level if chosen else "none",
            confidence_reason=self.confidence.reason if chosen else reason,
        )

    def _candidate_reports(self, by_id: dict[str, Candidate], ran: bool, ranked: list[DistinctPatch],
                           groups: list[BehaviourGroup]) -> list:
        reports = candidate_reports(self.patches, by_id, self.votes, self.regressions, ran, ranked, groups)
        key_of = {member: p.key for p in self.patches for member in p.members}
        for report in reports:
            evidence = self.evidence.get(key_of[report.id])
            if evidence is None or report.status != "ok":
                continue
            hygiene = self.hygiene.get(evidence.key, Hygiene())
            report.probe_fixes, report.probe_breaks = evidence.probe_fixes, evidence.probe_breaks
            report.behaviour_support = evidence.behaviour_support
            report.hygiene = ([f"fatal: {hygiene.fatal}"] if hygiene.fatal else []) + hygiene.penalties
        return reports


def _git_apply_checks(repo_dir: Path, patch: str) -> bool:
    """`git apply --check` against the host checkout of the base commit (no fuzz, exact context)."""
    try:
        run = subprocess.run(["git", "apply", "--check", "-"], cwd=repo_dir, input=patch.encode("utf-8"),
                             capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return run.returncode == 0
