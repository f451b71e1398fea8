"""`patchswarm github batch`: a repository's issues, solved as one resumable batch.

The issues are listed through the REST API (`listing`), become tasks at one commit (the default
branch's head, or `--commit`) and run through the same `run_tasks` as `patchswarm batch` (workers,
budgets, run store, progress, the Ray executor). Then, per issue, the answer `github resolve` gives
(`publish.answer_issue`): posted with `--open-prs`, only described with `--dry-run`, and always
written to `RUN_DIR/github/issue-N.md`, with the summary in `RUN_DIR/github/summary.{md,json}`.
Rerunning the same command resumes: the listing is repeated with ETags, unchanged issues keep their
task ids, finished ones are not solved again.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from agent.llm import Providers
from patchswarm.config import ConfigError, load_config
from patchswarm.github import summary
from patchswarm.github.api import ApiError, GitHubRepo, IssueThread, StatusComment, connect
from patchswarm.github.gitops import Git, GitError
from patchswarm.github.listing import Skipped, check_since, list_issues
from patchswarm.github.options import RunOptions, SettingsError, issue_task, load_repo_settings
from patchswarm.github.publish import Publisher, answer_issue
from patchswarm.github.redact import Redactor, redacted_logging
from patchswarm.github.resolve import EXTRA_SECRET_SUFFIXES
from patchswarm.github.rest import RestClient
from patchswarm.pipeline import BatchExecutor, run_tasks
from patchswarm.results import InstanceResult

log = logging.getLogger(__name__)

VERDICTS = {"pr": "resolved with confidence", "no_pr": "not confident", "failed": "failed"}


class BatchOptions(RunOptions):
    """Command-line options of `patchswarm github batch`."""

    label: str | None = None
    query: str | None = None
    since: str | None = None
    limit: int | None = Field(None, gt=0)
    dry_run: bool = False
    open_prs: bool = False
    commit: str | None = Field(None, description="Commit or branch to solve at (default: the default branch's head).")
    max_cost_per_instance: float | None = None
    workers: int | None = Field(None, gt=0)
    redo: bool = False
    fork_owner: str | None = None
    include_test: bool = False
    max_rate_wait_s: float = Field(3600, ge=0, description="Longest wait for a rate limit before failing.")

    @field_validator("since")
    @classmethod
    def _since(cls, value: str | None) -> str | None:
        return check_since(value)

    def default_run_dir(self) -> Path:
        return self.run_dir or Path("runs") / "github" / f"{self.owner}__{self.name}" / "batch"


@dataclass
class IssueReport:
    number: int
    title: str
    instance_id: str
    verdict: str  # pr | no_pr | failed
    reason: str
    cost_usd: float
    pr_url: str | None = None
    attempt_url: str | None = None


@dataclass
class BatchOutcome:
    exit_code: int
    message: str
    commit: str | None = None
    reports: list[IssueReport] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)
    cost_usd: float = 0.0

    def count(self, verdict: str) -> int:
        return sum(r.verdict == verdict for r in self.reports)


def run_batch(options: BatchOptions, env: Mapping[str, str] | None = None, *, executor: BatchExecutor | None = None,
              rest_sleep=None, providers: Providers | None = None) -> BatchOutcome:
    """List, solve, answer; every text written (logs, files, GitHub) is scrubbed of the secrets."""
    env = os.environ if env is None else env
    token = env.get(options.token_env) or None
    extra = [value for name, value in env.items() if name.endswith(EXTRA_SECRET_SUFFIXES) and len(value) >= 16]
    redactor = Redactor([token, *extra])
    with redacted_logging(redactor):
        if not token:
            return BatchOutcome(2, f"no token: set ${options.token_env} (or pass --token-env NAME)")
        return _Batch(options, token, redactor, env, executor, rest_sleep, providers).run()


class _Batch:
    def __init__(self, options: BatchOptions, token: str, redactor: Redactor, env: Mapping[str, str],
                 executor: BatchExecutor | None, rest_sleep, providers: Providers | None = None) -> None:
        self.options, self.token, self.redactor, self.env, self.executor = options, token, redactor, env, executor
        self.providers = providers
        self.run_dir = options.default_run_dir()
        extra = {"sleep": rest_sleep} if rest_sleep else {}
        self.rest = RestClient(options.api_url, token, redactor=redactor, etag_file=self.run_dir / "github-etags.json",
                               max_wait_s=options.max_rate_wait_s, **extra)

    def run(self) -> BatchOutcome:
        opts = self.options
        try:
            meta = self.rest.get(f"/repos/{opts.repo}")
        except ApiError as exc:
            return BatchOutcome(2, f"repository {opts.repo} is not accessible ({exc})")
        git = Git(self.token, self.redactor, self.env)
        clone = self.run_dir / "clone"
        try:
            commit = git.clone(meta["clone_url"], clone, opts.commit)
            base = opts.commit if opts.commit and git.is_branch(clone, opts.commit) else meta["default_branch"]
            settings = load_repo_settings(clone)
            config = load_config(opts.preset or settings.preset or "default", opts.config_file,
                                 [*settings.config_overrides(), *opts.overrides, *self._budget()])
            threads, skipped = list_issues(self.rest, opts.repo, label=opts.label or settings.label,
                                           query=opts.query, since=opts.since, limit=opts.limit,
                                           redactor=self.redactor)
        except (GitError, SettingsError, ConfigError, ApiError) as exc:
            return BatchOutcome(2, self.redactor.scrub(str(exc)))
        outcome = BatchOutcome(0, "", commit=commit, skipped=skipped)
        log.info("%s at %s: %d issue(s) to solve, %d skipped", opts.repo, commit[:12], len(threads), len(skipped))
        if threads:
            setup = opts.setup if opts.setup is not None else settings.setup
            tasks = [issue_task(opts.name, t.number, self.redactor.scrub(t.as_task_text()), clone, commit, setup,
                                opts.test_cmd or settings.test_cmd) for t in threads]
            results = run_tasks(tasks, config, self.run_dir, redo=opts.redo, live=opts.live, executor=self.executor,
                                providers=self.providers)
            publisher = self._publisher(git, clone)
            for thread, task, result in zip(threads, tasks, results, strict=True):
                outcome.reports.append(self._answer(publisher, thread, task.instance_id, result, base, commit))
            outcome.planned = publisher.plan.lines if opts.dry_run else []
            outcome.cost_usd = round(sum(r.cost_usd for r in results), 6)
        if outcome.reports and outcome.count("failed") == len(outcome.reports):
            outcome.exit_code = 1
        outcome.message = self._write_summary(outcome)
        return outcome

    def _budget(self) -> list[str]:
        opts, extra = self.options, []
        if opts.max_cost is not None:
            extra.append(f"budget.max_cost_usd={opts.max_cost}")
        if opts.max_cost_per_instance is not None:
            extra.append(f"budget.max_cost_per_instance_usd={opts.max_cost_per_instance}")
        if opts.workers is not None:
            extra.append(f"workers={opts.workers}")
        return extra

    def _publisher(self, git: Git, clone: Path) -> Publisher:
        opts = self.options
        posting = opts.open_prs and not opts.dry_run
        github = GitHubRepo(connect(opts.api_url, self.token, throttle=opts.throttle), opts.repo, self.redactor)
        self._bot_login = github.authenticated_login() if posting else None
        return Publisher(github, git, clone, opts.repo.split("/")[0], fork_owner=opts.fork_owner,
                         include_test=opts.include_test, dry_run=not posting)

    def _answer(self, publisher: Publisher, thread: IssueThread, instance_id: str, result: InstanceResult,
                base: str, commit: str) -> IssueReport:
        opts = self.options
        result.errors = [self.redactor.scrub(error) for error in result.errors]
        info = summary.RunInfo(issue=thread.number, commit=commit, run_dir=self.run_dir, report_url=opts.report_url)
        status = None
        if not publisher.dry_run:
            try:
                issue = publisher.repo.repo.get_issue(thread.number)
                status = StatusComment(issue, thread, self._bot_login, self.redactor)
            except Exception as exc:  # noqa: BLE001 - one issue's API trouble does not end the batch
                log.warning("issue #%d: cannot write its status comment: %s", thread.number, exc)
        answer = answer_issue(publisher, status, thread.number, thread.title, result, info, base, commit,
                              min_votes=opts.min_votes, min_confidence=opts.min_confidence)
        report = IssueReport(thread.number, thread.title, instance_id, answer.kind, answer.message,
                             result.cost_usd, answer.pr_url if not publisher.dry_run else None, answer.attempt_url)
        texts = publisher.said.get(thread.number, [])
        where = "posted" if not publisher.dry_run else "would post (nothing was posted)"
        page = [f"# #{thread.number}: {thread.title}", "", f"- verdict: **{VERDICTS[answer.kind]}** — {answer.message}",
                f"- instance: `{instance_id}`", f"- cost: {summary.cost_line(result)}", "", f"## Texts ({where})", "",
                *[f"{text}\n\n---\n" for text in texts]]
        self._write(f"issue-{thread.number}.md", "\n".join(page))
        return report

    def _write(self, name: str, text: str) -> None:
        path = self.run_dir / "github" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.redactor.scrub(text))

    def _write_summary(self, outcome: BatchOutcome) -> str:
        opts = self.options
        lines = [f"patchswarm github batch {opts.repo} at {(outcome.commit or '?')[:12]}: "
                 f"{len(outcome.reports)} issue(s) solved, {len(outcome.skipped)} skipped"]
        for verdict, title in VERDICTS.items():
            numbers = [f"#{r.number}" + (f" {r.pr_url}" if r.pr_url else "") for r in outcome.reports
                       if r.verdict == verdict]
            lines.append(f"{title}: {len(numbers)}" + (f" ({', '.join(numbers)})" if numbers else ""))
        lines += [f"skipped #{s.number}: {s.reason}" for s in outcome.skipped]
        lines.append(f"cost: ${outcome.cost_usd:.4f}")
        lines += outcome.planned
        text = "\n".join(lines)
        self._write("summary.md", text + "\n")
        data: dict[str, Any] = {"repo": opts.repo, "commit": outcome.commit, "cost_usd": outcome.cost_usd,
                                "counts": {v: outcome.count(v) for v in VERDICTS},
                                "issues": [asdict(r) for r in outcome.reports],
                                "skipped": [asdict(s) for s in outcome.skipped], "planned": outcome.planned,
                                "rate_limit_waits_s": self.rest.stats.waits,
                                "not_modified": self.rest.stats.not_modified}
        self._write("summary.json", json.dumps(self.redactor.scrub_data(data), indent=2))
        return text
