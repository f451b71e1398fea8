"""Run tests on the original tree and on candidate patches: in parallel, deduplicated, cached on disk."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agent.text import clip_middle
from agent.types import REPRO_TEST_PATH, repro_command
from sandbox.errors import PatchApplyError, SandboxError
from sandbox.execution import DEFAULT_OUTPUT_CAP, ExecResult
from sandbox.port import PoolPort, SandboxPort
from selection.cache import CellKey, OutcomeCache
from selection.candidates import DistinctPatch, DistinctTest, canonical_test, sha256
from selection.models import Outcome

# Whether a patch applies is a property of its exact text (CRs and trailing whitespace included), not
# of the near-exact `patch_key` the results are keyed by: it is remembered per sha256 of the text.
APPLY_FAILED = "apply-failed"
APPLY_OK = "apply-ok"
APPLY_CHECK = "apply-check"  # test hash of "apply the patch, run nothing"
STORED_HEAD, STORED_TAIL = 4_000, 12_000
# A sandbox that breaks mid-run is discarded by the pool; one retry on a fresh one is cheap insurance.
BROKEN_RETRIES = 1

Parser = Callable[[ExecResult], dict[str, str]]
ResultKey = tuple[str, str, int]  # (patch key, test key, run index)


@dataclass
class Job:
    """Runs of one command with one patch, in ONE sandbox lease (reruns share the container's /tmp)."""

    patch_key: str
    patch: str | None
    test_key: str
    command: str
    files: dict[str, str] = field(default_factory=dict)
    runs: list[int] = field(default_factory=lambda: [0])
    timeout: float = 60
    output_cap: int = DEFAULT_OUTPUT_CAP
    parse: Parser | None = None

    @property
    def text_key(self) -> str:
        return sha256(self.patch) if self.patch else ""

    @property
    def cache_test_key(self) -> str:
        """The cache's test part: what ran AND how, so e.g. a timeout at a 5 s limit is not reused at 60 s."""
        return sha256(f"{self.test_key}\0{self.command}\0{float(self.timeout)!r}")


def _stored_output(text: str) -> str:
    return clip_middle(text, STORED_HEAD, STORED_TAIL)


class CachedJobRunner:
    """Runs matrix jobs (a patch, a test command) in the pool's sandboxes through the outcome cache, under the
    pool's concurrency; counts what ran and what came from the cache."""

    def __init__(self, pool: PoolPort, cache: OutcomeCache, image_id: str) -> None:
        self.pool, self.cache, self.image_id = pool, cache, image_id
        self.performed = 0
        self.cached = 0
        self.sandbox_failures: list[str] = []  # executions no sandbox could run (after retries): no evidence
        self.durations: list[float] = []  # of performed executions, for efficiency reports
        self._apply: dict[str, Outcome | None] = {}  # text key → failure, or None when it applies

    def key(self, patch_key: str, test_key: str, run: int) -> CellKey:
        return (self.image_id, patch_key, test_key, run)

    async def run(self, jobs: Sequence[Job]) -> dict[ResultKey, Outcome]:
        """Outcomes by (patch key, test key, run index) for every run of every job."""
        results: dict[ResultKey, Outcome] = {}
        pending: list[tuple[Job, list[int]]] = []
        unverified: dict[str, Job] = {}
        for job in jobs:
            if self._apply_failure(job.text_key) is not None:
                self.cached += len(job.runs)
                continue
            missing = []
            for run in job.runs:
                hit = self.cache.get(self.key(job.patch_key, job.cache_test_key, run))
                if hit is None:
                    missing.append(run)
                else:
                    self.cached += 1
                    results[(job.patch_key, job.test_key, run)] = hit
            if missing:
                pending.append((job, missing))
            elif job.text_key and not self._applies(job.text_key):
                unverified.setdefault(job.text_key, job)  # results of an equivalent text: does THIS one apply?
        running = {job.text_key for job, _ in pending}
        pending += [(Job(patch_key=j.patch_key, patch=j.patch, test_key=APPLY_CHECK, command="true"), [0])
                    for key, j in unverified.items() if key not in running]
        done: dict[int, list[Outcome]] = {}
        queue = deque((index, job, runs) for index, (job, runs) in enumerate(pending))
        await asyncio.gather(*(self._work(queue, done) for _ in range(min(self.pool.size, len(queue)))))
        for index, (job, runs) in enumerate(pending):
            for run, outcome in zip(runs, done[index], strict=True):
                results[(job.patch_key, job.test_key, run)] = outcome
        for job in jobs:  # a text found not to apply invalidates every result taken for it
            failure = self._apply_failure(job.text_key)
            if failure is None:
                continue
            for run in job.runs:
                results[(job.patch_key, job.test_key, run)] = failure
        return results

    def _apply_failure(self, text_key: str) -> Outcome | None:
        if not text_key:
            return None
        if text_key not in self._apply and self.cache.get(self.key(text_key, APPLY_OK, 0)) is not None:
            self._apply[text_key] = None
        if text_key not in self._apply:
            hit = self.cache.get(self.key(text_key, APPLY_FAILED, 0))
            if hit is None:
                return None
            self._apply[text_key] = hit
        return self._apply[text_key]

    def _applies(self, text_key: str) -> bool:
        self._apply_failure(text_key)
        return text_key in self._apply and self._apply[text_key] is None

    def _remember_apply(self, text_key: str, outcome: Outcome) -> None:
        if not text_key or text_key in self._apply:
            return
        failed = outcome if outcome.apply_failed else None
        self._apply[text_key] = failed
        self.cache.put(self.key(text_key, APPLY_FAILED if failed else APPLY_OK, 0), failed or Outcome())

    async def _work(self, queue: deque[tuple[int, Job, list[int]]], done: dict[int, list[Outcome]]) -> None:
        """One worker: holds one sandbox for many jobs (each `run` resets it anyway, so the pool's own
        reset between leases is saved) and takes jobs in queue order until none are left."""
        tries: dict[int, int] = {}
        while queue:
            item = None
            try:
                async with self.pool.lease() as sandbox:
                    while queue:
                        item = queue.popleft()
                        index, job, runs = item
                        outcomes = done.setdefault(index, [])
                        while len(outcomes) < len(runs):
                            outcomes.append(await self._run_once(sandbox, job, runs[len(outcomes)]))
                        item = None
            except SandboxError as exc:  # broken container, engine trouble, missing image
                failed = [item] if item is not None else list(queue)  # no sandbox at all: give up on the rest
                if item is None:
                    queue.clear()
                for index, _, runs in failed:
                    tries[index] = tries.get(index, 0) + 1
                    if item is not None and tries[index] <= BROKEN_RETRIES:
                        queue.appendleft(item)  # a fresh sandbox gets one more try
                        continue
                    outcomes = done.setdefault(index, [])
                    lost = len(runs) - len(outcomes)
                    outcomes += [Outcome(error=f"sandbox failure: {exc}")] * lost
                    self.sandbox_failures += [str(exc)] * lost

    async def _run_once(self, sandbox: SandboxPort, job: Job, run: int) -> Outcome:
        # Another job may have found meanwhile that this text does not apply: no point running it.
        failed = self._apply_failure(job.text_key)
        if failed is not None:
            self.cached += 1
            return failed
        outcome = await asyncio.to_thread(self._run_in_thread, sandbox, job)
        self.performed += 1
        self.durations.append(outcome.duration_s)
        if outcome.apply_failed or outcome.error is None:
            self._remember_apply(job.text_key, outcome)
        if outcome.error is None:
            self.cache.put(self.key(job.patch_key, job.cache_test_key, run), outcome)
        return outcome

    @staticmethod
    def _run_in_thread(sandbox: SandboxPort, job: Job) -> Outcome:
        started = time.monotonic()
        try:
            result = sandbox.run(job.command, patch=job.patch, files=job.files, timeout=job.timeout,
                                 output_cap=job.output_cap)
        except PatchApplyError as exc:
            if not job.patch:  # nothing to apply: the prelude itself failed
                raise SandboxError(str(exc)) from None
            return Outcome(apply_failed=True, error=str(exc), duration_s=time.monotonic() - started,
                           output=_stored_output(exc.output))
        parsed = job.parse(result) if job.parse else {}
        return Outcome(exit_code=result.exit_code, timed_out=result.timed_out, duration_s=result.duration_s,
                       output=_stored_output(result.output), parsed=parsed)


@dataclass
class ReproMatrix:
    """Outcomes of distinct tests on the original (two runs) and on distinct patches (one run)."""

    original: dict[str, list[Outcome]]  # test key → [run 0, run 1]
    cells: dict[tuple[str, str], Outcome]  # (test key, patch key) → outcome
    apply_errors: dict[str, str]  # patch key → why it does not apply


def repro_job(test_key: str, code: str, patch: DistinctPatch | None, timeout: float, runs: list[int]) -> Job:
    return Job(patch_key=patch.key if patch else "", patch=patch.candidate.patch if patch else None,
               test_key=test_key, command=repro_command(), files={REPRO_TEST_PATH: code}, runs=runs,
               timeout=timeout)


async def run_test_matrix(executor: CachedJobRunner, tests: Sequence[DistinctTest], patches: Sequence[DistinctPatch],
                          timeout: float) -> ReproMatrix:
    """Every test twice on the original, once on every non-empty distinct patch.

    Originals go first; candidate cells are patch-major, so once a patch is found not to apply its
    remaining cells are skipped instead of executed. Without tests, each patch is only applied.
    A group whose running variant does not apply is retried with its next variant (other text).
    """
    original_jobs = [repro_job(t.key, t.code, None, timeout, [0, 1]) for t in tests]
    original: dict[str, list[Outcome]] = {}
    cells: dict[tuple[str, str], Outcome] = {}
    apply_errors: dict[str, str] = {}
    pending = [p for p in patches if not p.empty]
    while original_jobs or pending:
        jobs = [repro_job(t.key, t.code, p, timeout, [0]) for p in pending for t in tests]
        if not tests:
            jobs = [Job(patch_key=p.key, patch=p.candidate.patch, test_key=APPLY_CHECK, command="true")
                    for p in pending]
        # The originals share the first round with the candidates so no sandbox idles between phases.
        results = await executor.run(original_jobs + jobs)
        if original_jobs:
            original = {t.key: [results[("", t.key, 0)], results[("", t.key, 1)]] for t in tests}
            original_jobs = []
        retry = []
        for patch in pending:
            failure = next((o for (key, _, _), o in results.items() if key == patch.key and o.apply_failed), None)
            if failure is None:
                cells.update({(t.key, patch.key): results[(patch.key, t.key, 0)] for t in tests})
            elif patch.promote_next(failure.error or "patch does not apply"):
                retry.append(patch)
            else:
                apply_errors[patch.key] = failure.error or "patch does not apply"
                cells.update({(t.key, patch.key): failure for t in tests})
        pending = retry
    return ReproMatrix(original=original, cells=cells, apply_errors=apply_errors)


async def run_single_tests(executor: CachedJobRunner, code: str, patches: Sequence[DistinctPatch],
                           timeout: float) -> tuple[Outcome, dict[str, Outcome]]:
    """One ad-hoc test (the selector's) once on the original and on each patch: (original, by patch key)."""
    code = canonical_test(code)
    key = sha256(code)
    jobs = [repro_job(key, code, None, timeout, [0])] + [repro_job(key, code, p, timeout, [0]) for p in patches]
    results = await executor.run(jobs)
    return results[("", key, 0)], {p.key: results[(p.key, key, 0)] for p in patches}
