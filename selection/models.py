"""Inputs, configuration and the result of patch selection (plain pydantic models)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.budget import Spend

Method = Literal["selector", "vote", "fallback", "nothing_to_select", "error"]
ConfidenceLevel = Literal["high", "medium", "low", "none"]
CandidateStatus = Literal["ok", "empty", "apply_failed"]
TestStatus = Literal["voting", "flaky", "passes_on_original", "timed_out", "killed", "error_on_original", "unknown",
                     "duplicate", "selector"]
# How one run ended, coarse enough that reruns of a deterministic test always agree.
OutcomeClass = Literal["pass", "issue", "error", "timeout", "unknown", "apply_failed"]

ORIGINAL = "original"
ORIGINAL_RERUN = "original#2"


class Candidate(BaseModel):
    """A patch to choose from, e.g. one trajectory's final diff or a line of a prediction file."""

    id: str = Field(description="Unique id within one selection.")
    patch: str = Field(description="Unified diff against the base commit; empty means 'no change'.")
    source: str = Field("", description="Where it came from (trajectory id, model name, file); provenance only.")


class GeneratedTest(BaseModel):
    """A reproduction test: exits 2 while the issue is present, 0 once fixed, 1 on other errors."""

    id: str = Field(description="Unique id within one selection.")
    code: str = Field(description="Python source, run as a script from the repository root.")
    source: str = Field("", description="Where it came from (trajectory id, file); provenance only.")


class SelectionConfig(BaseModel):
    """How patches are selected for one instance."""

    model_config = ConfigDict(extra="forbid")  # a typo in the config must not pass silently

    top_k: int = Field(3, ge=1, description="Finalists (best by votes, one per behaviour group first) that go to the regression check and the selector.")
    selector_enabled: bool = Field(True, description="Let the `selector` model tell finalists apart by writing tests; off = pure voting.")
    selector_max_attempts: int = Field(3, ge=1, description="Model turns of the selector (tests written + the choice); after that it falls back to the vote.")
    test_timeout_s: float = Field(60, gt=0, description="Time limit of one run of a reproduction test.")
    regression_enabled: bool = Field(True, description="Run the repository's existing tests that exercise the touched files on the original and the finalists.")
    regression_cmd: str | None = Field(None, description="The repository's configured test command; when set it replaces the discovery of test files.")
    regression_file_cmd: str | None = Field(None, description="The repository's own test command that takes test files as arguments (e.g. a SWE-bench spec's); discovered files then run with it instead of pytest/unittest.")
    regression_timeout_s: float = Field(300, gt=0, description="Time limit of one regression run (one test file, or the whole regression_cmd).")
    regression_max_files: int = Field(12, ge=1, description="At most this many discovered test files are run (nearest to the touched modules first).")
    regression_max_candidates: int = Field(10, ge=1, description="Candidates regression-checked when no generated test votes (the LLM-free mode); otherwise top_k.")
    probes_enabled: bool = Field(True, description="Run code from the issue text (fenced blocks, doctest lines, traceback calls) on the original and every candidate.")
    consensus_enabled: bool = Field(True, description="Prefer candidates that behave like those of many other systems on the probes and tests, then that propose the same change as many other systems (a system = the candidate id's leading word: its runs agreeing are not independent).")
    hygiene_enabled: bool = Field(True, description="Demote candidates whose touched files do not compile, that edit only tests, add debug output or unrelated files.")
    cache_dir: Path | None = Field(None, description="Directory of the on-disk execution cache, shared across runs; None keeps results in memory only.")


class MatrixCell(BaseModel):
    """One execution of one test on the original or on one candidate."""

    exit_code: int | None = None
    timed_out: bool = False
    apply_failed: bool = False
    outcome: OutcomeClass = "unknown"


class Outcome(BaseModel):
    """What one execution did; this is what the cache stores."""

    exit_code: int | None = None
    timed_out: bool = False
    apply_failed: bool = False
    error: str | None = Field(None, description="Sandbox failure or patch-apply message; the run said nothing about the code.")
    duration_s: float = 0.0
    output: str = Field("", description="Output, capped (head and tail kept).")
    parsed: dict[str, str] = Field(default_factory=dict, description="Per-test statuses of a regression run.")

    @property
    def outcome(self) -> OutcomeClass:
        if self.apply_failed:
            return "apply_failed"
        if self.timed_out:
            return "timeout"
        if self.exit_code is None:
            return "unknown"
        if self.exit_code == 0:
            return "pass"
        return "issue" if self.exit_code == 2 else "error"

    def cell(self) -> MatrixCell:
        return MatrixCell(exit_code=self.exit_code, timed_out=self.timed_out, apply_failed=self.apply_failed,
                          outcome=self.outcome)


class CandidateReport(BaseModel):
    id: str
    source: str = ""
    status: CandidateStatus
    apply_error: str | None = None
    duplicate_of: str | None = Field(None, description="Id of the first candidate with the same patch up to CRs and trailing whitespace; duplicates share its results.")
    support: int = Field(1, description="How many input candidates propose the same change up to whitespace and context lines (agreement; reporting only, it decides nothing).")
    votes: int = 0
    regression_checked: bool = False
    regressions: list[str] = Field(default_factory=list, description="Existing tests that passed on the original and fail with this patch.")
    lines_changed: int = 0
    probe_fixes: int = Field(0, description="Issue-probe steps that raise or show the reported output on the original and not with this patch.")
    probe_breaks: int = Field(0, description="Issue-probe steps that run on the original and raise with this patch.")
    behaviour_support: int = Field(0, description="Systems (candidate ids' leading words) whose candidates behave exactly like this one on the probes and tests, when that differs from the original.")
    hygiene: list[str] = Field(default_factory=list, description="Hygiene findings (a 'fatal:' one means it cannot be the fix).")
    group: str | None = Field(None, description="Behaviour group id (candidates with identical observed outcomes).")
    rank: int | None = Field(None, description="1 = best; only distinct candidates that can win are ranked.")


class ReproTestReport(BaseModel):
    id: str
    source: str = ""
    status: TestStatus
    reason: str
    duplicate_of: str | None = None


class BehaviourGroup(BaseModel):
    id: str
    candidate_ids: list[str] = Field(description="Distinct candidates (duplicates are listed in their reports).")
    votes: int
    outcomes: dict[str, str] = Field(default_factory=dict, description="test id → outcome class; the group's key.")


class RegressionReport(BaseModel):
    enabled: bool = False
    runner: str | None = Field(None, description="'pytest', 'unittest' or 'command'.")
    test_files: list[str] = Field(default_factory=list)
    command: str | None = None
    baseline_passing: int = Field(0, description="Tests that passed in both runs on the original.")
    unknown: list[str] = Field(default_factory=list, description="Files or commands that could not run; they say nothing.")
    notes: list[str] = Field(default_factory=list)


class ProbeReport(BaseModel):
    probes: int = Field(0, description="Probes taken from the issue text.")
    steps: int = Field(0, description="Statements in them.")
    steps_stable: int = Field(0, description="Statements with the same result in two runs on the original.")
    steps_reproducing: int = Field(0, description="Stable statements that raise or show the issue's output on the original.")
    notes: list[str] = Field(default_factory=list)


class TranscriptMessage(BaseModel):
    role: str
    content: str


class SelectionResult(Spend):
    """The chosen patch and every piece of evidence behind the choice."""

    chosen_id: str | None
    patch: str = Field("", description="The chosen candidate's patch as given (not normalised); '' when nothing was chosen.")
    method: Method
    reason: str
    candidates: list[CandidateReport] = Field(default_factory=list)
    tests: list[ReproTestReport] = Field(default_factory=list)
    matrix: dict[str, dict[str, MatrixCell]] = Field(default_factory=dict, description="test id → 'original' / 'original#2' / candidate id → cell.")
    groups: list[BehaviourGroup] = Field(default_factory=list)
    finalists: list[str] = Field(default_factory=list)
    regression: RegressionReport = Field(default_factory=RegressionReport)
    probes: ProbeReport = Field(default_factory=ProbeReport)
    confidence: float = Field(0.0, description="Estimated probability (0..1) that the chosen patch is right, calibrated per level on the selection benchmark.")
    confidence_level: ConfidenceLevel = Field("none", description="'high' (open a PR), 'medium', 'low', or 'none' (abstain: nothing separates the candidates).")
    confidence_reason: str = ""
    patch_rediffed: bool = Field(False, description="The chosen text applies only with fuzz; `patch` is the diff of the tree it produced (what was tested).")
    selector_transcript: list[TranscriptMessage] = Field(default_factory=list)
    executions_performed: int = 0
    executions_cached: int = 0
    sandbox_failures: list[str] = Field(default_factory=list, description="Executions the sandbox or engine could not run, even on a fresh sandbox: the choice lacks their evidence, so a caller must not take it as final.")
    execution_seconds: float = Field(0.0, description="Sum of the durations of the executions performed (not of cached ones).")
    notes: list[str] = Field(default_factory=list)

    def lost_evidence(self) -> str | None:
        """Why this choice must not be taken as final (executions the infrastructure lost), or None."""
        if not self.sandbox_failures:
            return None
        return (f"infrastructure failure in {len(self.sandbox_failures)} execution(s) of the selection stage "
                f"({self.sandbox_failures[0][:160]}); rerun the same command to retry")

    def candidate(self, candidate_id: str) -> CandidateReport:
        return next(c for c in self.candidates if c.id == candidate_id)

    def test(self, test_id: str) -> ReproTestReport:
        return next(t for t in self.tests if t.id == test_id)
