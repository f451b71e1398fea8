"""`patchswarm github resolve`: one issue in, a draft PR or one explanatory comment out.

Exit codes: 0 = the bot did its job (PR opened or updated, no confident patch explained, or nothing
to do because the trigger is not allowed); 1 = the bot failed after it started (clone, pipeline crash,
push, PR); 2 = bad input before anything was posted (no token, repository or issue not accessible).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.llm import Providers
from patchswarm.config import ConfigError, PatchswarmConfig, load_config
from patchswarm.github import summary
from patchswarm.github.api import ApiError, GitHubRepo, IssueThread, StatusComment, connect
from patchswarm.github.gitops import Git, GitError
from patchswarm.github.options import ResolveOptions, SettingsError, issue_task, load_repo_settings
from patchswarm.github.publish import Publisher, answer_issue
from patchswarm.github.redact import Redactor, redacted_logging
from patchswarm.pipeline import run_tasks
from patchswarm.results import InstanceResult
from patchswarm.tasks import Task

log = logging.getLogger(__name__)

OK, BOT_FAILED, BAD_INPUT = 0, 1, 2
EXTRA_SECRET_SUFFIXES = ("_API_KEY", "_TOKEN")


@dataclass
class Outcome:
    """What a run did, for the caller and for `RUN_DIR/github-outcome.json`."""

    exit_code: int
    action: str  # pr | no_pr | ignored | failed | bad_input
    message: str
    pr_url: str | None = None
    comment_url: str | None = None
    status: str | None = None
    cost_usd: float | None = None
    branch_url: str | None = None


def resolve_issue(options: ResolveOptions, env: Mapping[str, str] | None = None, *,
                  providers: Providers | None = None) -> Outcome:
    """Run the bot once; every log record and every text written is scrubbed of the token."""
    env = os.environ if env is None else env
    token = env.get(options.token_env) or None
    # Model keys too: provider errors quoted in a comment must not carry them either.
    extra = [value for name, value in env.items() if name.endswith(EXTRA_SECRET_SUFFIXES) and len(value) >= 16]
    redactor = Redactor([token, *extra])
    with redacted_logging(redactor):
        outcome = _Resolver(options, token, redactor, env, providers).run()
        level = logging.ERROR if outcome.exit_code else logging.INFO
        log.log(level, "patchswarm github: %s: %s", outcome.action, outcome.message)
        return outcome


class _Resolver:
    def __init__(self, options: ResolveOptions, token: str | None, redactor: Redactor,
                 env: Mapping[str, str], providers: Providers | None = None) -> None:
        self.options, self.token, self.redactor, self.env = options, token, redactor, env
        self.providers = providers
        self.run_dir = options.default_run_dir()
        self.status: StatusComment | None = None

    def run(self) -> Outcome:
        opts = self.options
        if not self.token:
            return Outcome(BAD_INPUT, "bad_input", f"no token: set ${opts.token_env} (or pass --token-env NAME)")
        try:
            repo = GitHubRepo(connect(opts.api_url, self.token, throttle=opts.throttle), opts.repo, self.redactor)
            issue, thread = repo.issue(opts.issue)
        except ApiError as exc:
            return Outcome(BAD_INPUT, "bad_input", self.redactor.scrub(str(exc)))
        if issue.pull_request is not None:
            return Outcome(OK, "ignored", f"#{opts.issue} is a pull request, not an issue; nothing to do")
        actor = opts.actor or thread.author
        association = repo.association_of(actor, thread)
        if association not in opts.allowed_associations:
            return Outcome(OK, "ignored", f"{actor} is {association}; only {', '.join(opts.allowed_associations)} "
                                              f"may trigger patchswarm (--allow-association); nothing posted")
        log.info("%s (%s) triggered patchswarm on %s#%d", actor, association, opts.repo, opts.issue)
        self.status = StatusComment(issue, thread, repo.authenticated_login(), self.redactor)
        try:
            outcome = self._solve(repo, thread, actor)
        except KeyboardInterrupt:
            self._say(summary.status_failed("running", "interrupted (the job was cancelled or timed out)"))
            raise
        except Exception as exc:  # noqa: BLE001 - the bot's own bug still ends with a comment and exit 1
            log.exception("patchswarm github crashed")
            outcome = self._fail("resolving the issue", f"{type(exc).__name__}: {exc}")
        finally:
            if opts.remove_label:
                repo.remove_label(issue, opts.remove_label)
        outcome.comment_url = self.status.url
        self._save(outcome)
        return outcome

    def _say(self, text: str) -> None:
        if self.status is not None:
            self.status.update(self.redactor.scrub(text))

    def _fail(self, stage: str, error: str, result: InstanceResult | None = None) -> Outcome:
        error = self.redactor.scrub(error)
        cost = summary.cost_line(result) if result else None
        self._say(summary.status_failed(stage, error, cost))
        return Outcome(BOT_FAILED, "failed", f"{stage}: {error}", status=result.status if result else None,
                       cost_usd=result.cost_usd if result else None)

    def _solve(self, repo: GitHubRepo, thread: IssueThread, actor: str) -> Outcome:
        opts = self.options
        git = Git(self.token, self.redactor, self.env)
        clone = self.run_dir / "clone"
        self._say(summary.status_started(opts.ref or repo.default_branch, actor))
        try:
            commit = git.clone(repo.clone_url, clone, opts.ref)
            base = opts.ref if opts.ref and git.is_branch(clone, opts.ref) else repo.default_branch
        except GitError as exc:
            return self._fail("cloning the repository", str(exc))
        try:
            task, config = self._task(thread, clone, commit)
        except (SettingsError, ConfigError) as exc:
            return self._fail("reading the configuration", str(exc))
        info = summary.RunInfo(issue=opts.issue, commit=commit, run_dir=self.run_dir, report_url=opts.report_url)
        trajectories = config.trajectories
        self._say(summary.status_running(info, trajectories.num_tests, trajectories.num_edits,
                                         config.budget.max_cost_usd))
        log.info("solving %s at %s into %s", task.instance_id, commit[:12], self.run_dir)
        try:
            (result,) = run_tasks([task], config, self.run_dir, live=opts.live, providers=self.providers)
        except Exception as exc:  # noqa: BLE001 - any crash must still end with a comment
            log.exception("the pipeline crashed")
            return self._fail("running the pipeline", f"{type(exc).__name__}: {exc}")
        # Errors quote model replies and test output: scrubbed before the texts below cut them short.
        result.errors = [self.redactor.scrub(error) for error in result.errors]
        publisher = Publisher(repo, git, clone, opts.owner, fork_owner=opts.fork_owner, include_test=opts.include_test)
        return self._answer(publisher, thread, result, info, base, commit)

    def _answer(self, publisher: Publisher, thread: IssueThread, result: InstanceResult, info: summary.RunInfo,
                base: str, commit: str) -> Outcome:
        opts = self.options
        answer = answer_issue(publisher, self.status, opts.issue, thread.title, result, info, base, commit,
                              min_votes=opts.min_votes, min_confidence=opts.min_confidence)
        code = BOT_FAILED if answer.kind == "failed" else OK
        return Outcome(code, answer.kind, answer.message, pr_url=answer.pr_url, status=result.status,
                       cost_usd=result.cost_usd, branch_url=answer.attempt_url)

    def _task(self, thread: IssueThread, clone: Path, commit: str) -> tuple[Task, PatchswarmConfig]:
        opts = self.options
        settings = load_repo_settings(clone)
        budget = [f"budget.max_cost_usd={opts.max_cost}"] if opts.max_cost is not None else []
        # Precedence: preset → --config → the repository's settings → --set → --max-cost.
        config = load_config(opts.preset or settings.preset or "default", opts.config_file,
                             [*settings.config_overrides(), *opts.overrides, *budget])
        setup = opts.setup if opts.setup is not None else settings.setup
        task = issue_task(opts.name, opts.issue, self.redactor.scrub(thread.as_task_text()), clone, commit, setup,
                          opts.test_cmd or settings.test_cmd)
        return task, config

    def _save(self, outcome: Outcome) -> None:
        path = self.run_dir / "github-outcome.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.redactor.scrub_data(asdict(outcome)), indent=2))

