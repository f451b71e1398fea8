"""`patchswarm github …` commands."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

import typer

from patchswarm.github.options import DEFAULT_ASSOCIATIONS


def _bot_logging() -> None:
    """Timestamped INFO lines for the job log, unless the caller set up logging already."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("LiteLLM").setLevel(logging.WARNING)  # one line per model call drowns the bot's own


def _model_overrides(model: str | None) -> list[str]:
    from patchswarm.config import model_overrides  # lazily: `--help` must not import the model library

    return model_overrides(model)


github_app = typer.Typer(no_args_is_help=True, help="Resolve GitHub issues: draft pull requests from issues.")


@github_app.command("resolve")
def resolve(
    ctx: typer.Context,
    repo: str = typer.Option(..., "--repo", help="OWNER/NAME of the repository."),
    issue: int = typer.Option(..., "--issue", help="Issue number."),
    ref: str | None = typer.Option(None, "--ref", help="Branch, tag or commit to solve at (default: default branch)."),
    setup: list[str] = typer.Option(None, "--setup", help="Setup command (repeatable); default: .patchswarm.yml's."),
    test_cmd: str | None = typer.Option(None, "--test-cmd", help="The repository's test command; default: .patchswarm.yml's."),
    preset: str | None = typer.Option(None, "--preset", help="Config preset (default: .patchswarm.yml's, else default)."),
    config_file: Path | None = typer.Option(None, "--config", "-c", help="YAML config file."),
    model: str | None = typer.Option(None, "--model", "-m", help="litellm model for every role; --set models.roles.ROLE=... still overrides one."),
    overrides: list[str] = typer.Option(None, "--set", "-s", help="Config override key=value (repeatable)."),
    scripted: list[str] = typer.Option(None, "--scripted", help="Register a scripted model NAME=SPEC (tests, demos)."),
    max_cost: float | None = typer.Option(None, "--max-cost", help="USD limit of the run."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Run directory (default runs/github/OWNER__NAME/issue-N)."),
    token_env: str = typer.Option("GITHUB_TOKEN", "--token-env", help="Environment variable holding the token."),
    api_url: str = typer.Option("https://api.github.com", "--api-url", help="REST API root (GHE: https://HOST/api/v3)."),
    actor: str | None = typer.Option(None, "--actor", help="Login that triggered the run (default: the issue author)."),
    allow: list[str] = typer.Option(None, "--allow-association",
                                    help=f"Allowed author association (repeatable; default {', '.join(DEFAULT_ASSOCIATIONS)})."),
    fork_owner: str | None = typer.Option(None, "--fork-owner", help="Push to OWNER's fork and open the PR from it."),
    include_test: bool = typer.Option(False, "--include-test", help="Commit the reproduction test to the PR branch."),
    min_votes: int = typer.Option(1, "--min-votes", help="Reproduction tests the chosen patch must pass to get a PR (when the selection reports no confidence)."),
    min_confidence: str = typer.Option("high", "--min-confidence", help="Selection confidence a PR needs when the selection reports one: low, medium, high, or a probability 0..1."),
    report_url: str | None = typer.Option(None, "--report-url", help="Link to where the HTML report is (workflow run)."),
    remove_label: str | None = typer.Option(None, "--remove-label", help="Label to take off the issue at the end."),
    quiet: bool = typer.Option(False, "--quiet", help="Line-oriented progress (automatic when not a TTY)."),
) -> None:
    """Solve one issue: a draft PR when a patch is backed by tests, else one comment saying why not."""
    from pydantic import ValidationError

    from patchswarm.cli.common import scripted_or_fail
    from patchswarm.github.options import ResolveOptions
    from patchswarm.github.resolve import resolve_issue

    _bot_logging()
    providers = scripted_or_fail(ctx, scripted, bad_spec_code=2)
    try:
        options = ResolveOptions(
            repo=repo, issue=issue, ref=ref, setup=setup or None, test_cmd=test_cmd, preset=preset,
            config_file=config_file, overrides=[*_model_overrides(model), *(overrides or [])], max_cost=max_cost, run_dir=run_dir,
            token_env=token_env, api_url=api_url, actor=actor,
            allowed_associations=allow or list(DEFAULT_ASSOCIATIONS), fork_owner=fork_owner,
            include_test=include_test, min_votes=min_votes, min_confidence=min_confidence, report_url=report_url, remove_label=remove_label,
            live=False if quiet else None)
    except ValidationError as exc:
        first = exc.errors()[0]
        typer.echo(f"error: {'.'.join(map(str, first['loc']))}: {first['msg'].removeprefix('Value error, ')}", err=True)
        raise typer.Exit(2) from None
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    outcome = resolve_issue(options, providers=providers)
    if outcome.pr_url:
        typer.echo(outcome.pr_url)
    raise typer.Exit(outcome.exit_code)


def _options_error(exc: Exception) -> None:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        typer.echo(f"error: {where}: {first['msg'].removeprefix('Value error, ')}", err=True)
    else:
        typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


@github_app.command("batch")
def batch(
    ctx: typer.Context,
    repo: str = typer.Option(..., "--repo", help="OWNER/NAME of the repository."),
    label: str | None = typer.Option(None, "--label", help="Only issues with this label (default: .patchswarm.yml's label, else all)."),
    query: str | None = typer.Option(None, "--query", help="Search qualifiers, e.g. 'is:open label:bug' (the search API)."),
    since: str | None = typer.Option(None, "--since", help="Only issues updated since DATE (YYYY-MM-DD or ISO 8601)."),
    limit: int | None = typer.Option(None, "--limit", help="At most N issues (oldest first)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Post nothing; say what would be posted."),
    open_prs: bool = typer.Option(False, "--open-prs", help="One draft PR per confident patch and a status comment per issue."),
    commit: str | None = typer.Option(None, "--commit", help="Commit or branch to solve at (default: the default branch's head)."),
    setup: list[str] = typer.Option(None, "--setup", help="Setup command (repeatable); default: .patchswarm.yml's."),
    test_cmd: str | None = typer.Option(None, "--test-cmd", help="The repository's test command; default: .patchswarm.yml's."),
    preset: str | None = typer.Option(None, "--preset", help="Config preset (default: .patchswarm.yml's, else default)."),
    config_file: Path | None = typer.Option(None, "--config", "-c", help="YAML config file."),
    model: str | None = typer.Option(None, "--model", "-m", help="litellm model for every role; --set models.roles.ROLE=... still overrides one."),
    overrides: list[str] = typer.Option(None, "--set", "-s", help="Config override key=value (repeatable)."),
    scripted: list[str] = typer.Option(None, "--scripted", help="Register a scripted model NAME=SPEC (tests, demos)."),
    max_cost: float | None = typer.Option(None, "--max-cost", help="USD limit of the whole batch, across workers."),
    max_cost_per_instance: float | None = typer.Option(None, "--max-cost-per-instance", help="USD limit per issue."),
    workers: int | None = typer.Option(None, "--workers", help="Issues solved concurrently."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Run directory (default runs/github/OWNER__NAME/batch)."),
    redo: bool = typer.Option(False, "--redo", help="Recompute even finished issues."),
    executor_name: str = typer.Option("local", "--executor", help="local or ray (as `patchswarm batch`)."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Ray cluster to join (with --executor ray)."),
    token_env: str = typer.Option("GITHUB_TOKEN", "--token-env", help="Environment variable holding the token."),
    api_url: str = typer.Option("https://api.github.com", "--api-url", help="REST API root (GHE: https://HOST/api/v3)."),
    fork_owner: str | None = typer.Option(None, "--fork-owner", help="Push to OWNER's fork and open the PRs from it."),
    include_test: bool = typer.Option(False, "--include-test", help="Commit the reproduction test to each PR branch."),
    min_votes: int = typer.Option(1, "--min-votes", help="Votes a PR needs when the selection reports no confidence."),
    min_confidence: str = typer.Option("high", "--min-confidence", help="Selection confidence a PR needs when reported: low, medium, high, or 0..1."),
    report_url: str | None = typer.Option(None, "--report-url", help="Link to where the HTML report is."),
    quiet: bool = typer.Option(False, "--quiet", help="Line-oriented progress (automatic when not a TTY)."),
) -> None:
    """Solve a repository's issues as one resumable batch; with --open-prs answer each as `resolve` does."""
    from patchswarm.cli.common import executor_or_fail, fail, scripted_or_fail
    from patchswarm.github.batch import BatchOptions, run_batch
    from patchswarm.store import RunDirInUse
    from sandbox.errors import SandboxError

    _bot_logging()
    providers = scripted_or_fail(ctx, scripted, bad_spec_code=2)
    try:
        options = BatchOptions(
            repo=repo, label=label, query=query, since=since, limit=limit, dry_run=dry_run, open_prs=open_prs,
            commit=commit, setup=setup or None, test_cmd=test_cmd, preset=preset, config_file=config_file,
            overrides=[*_model_overrides(model), *(overrides or [])], max_cost=max_cost, max_cost_per_instance=max_cost_per_instance,
            workers=workers, run_dir=run_dir, redo=redo, token_env=token_env, api_url=api_url,
            fork_owner=fork_owner, include_test=include_test, min_votes=min_votes, min_confidence=min_confidence,
            report_url=report_url, live=False if quiet else None)
    except ValueError as exc:  # pydantic's ValidationError is one
        _options_error(exc)
    executor = executor_or_fail(executor_name, ray_address, scripted)
    try:
        outcome = run_batch(options, executor=executor, providers=providers)
    except (SandboxError, RunDirInUse, ConnectionError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        typer.echo(f"interrupted; rerun the same command to resume ({options.default_run_dir()})", err=True)
        raise typer.Exit(130) from None
    if outcome.exit_code == 2:
        typer.echo(f"error: {outcome.message}", err=True)
    else:
        typer.echo(outcome.message)
    raise typer.Exit(outcome.exit_code)


@github_app.command("follow-up")
def follow_up_cmd(
    ctx: typer.Context,
    repo: str = typer.Option(..., "--repo", help="OWNER/NAME of the repository."),
    pr: int = typer.Option(..., "--pr", help="Number of the bot's pull request."),
    comment_id: int | None = typer.Option(None, "--comment-id", help="The comment, review comment or review that asks."),
    comment_kind: str = typer.Option("issue", "--comment-kind", help="issue (a PR comment), review-comment, review, or none (a label: all review comments)."),
    actor: str | None = typer.Option(None, "--actor", help="Login that triggered the run (default: the comment's author)."),
    allow: list[str] = typer.Option(None, "--allow-association", help="Allowed author association (repeatable)."),
    setup: list[str] = typer.Option(None, "--setup", help="Setup command (repeatable); default: .patchswarm.yml's."),
    test_cmd: str | None = typer.Option(None, "--test-cmd", help="The repository's test command."),
    preset: str | None = typer.Option(None, "--preset", help="Config preset."),
    config_file: Path | None = typer.Option(None, "--config", "-c", help="YAML config file."),
    model: str | None = typer.Option(None, "--model", "-m", help="litellm model for every role; --set models.roles.ROLE=... still overrides one."),
    overrides: list[str] = typer.Option(None, "--set", "-s", help="Config override key=value (repeatable)."),
    scripted: list[str] = typer.Option(None, "--scripted", help="Register a scripted model NAME=SPEC (tests, demos)."),
    max_cost: float | None = typer.Option(None, "--max-cost", help="USD limit of the run."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Run directory (default runs/github/OWNER__NAME/pr-N)."),
    token_env: str = typer.Option("GITHUB_TOKEN", "--token-env", help="Environment variable holding the token."),
    api_url: str = typer.Option("https://api.github.com", "--api-url", help="REST API root (GHE: https://HOST/api/v3)."),
    min_votes: int = typer.Option(1, "--min-votes", help="Votes a push needs when the selection reports no confidence."),
    min_confidence: str = typer.Option("high", "--min-confidence", help="Selection confidence a push needs when reported: low, medium, high, or 0..1."),
    report_url: str | None = typer.Option(None, "--report-url", help="Link to the workflow run."),
    remove_label: str | None = typer.Option(None, "--remove-label", help="Label to take off the PR at the end."),
    quiet: bool = typer.Option(False, "--quiet", help="Line-oriented progress."),
) -> None:
    """Answer a review comment or @patchswarm mention on the bot's PR: a new commit on the same branch."""
    from patchswarm.cli.common import scripted_or_fail
    from patchswarm.github.followup import CommentKind, FollowUpOptions, follow_up

    _bot_logging()
    providers = scripted_or_fail(ctx, scripted, bad_spec_code=2)
    try:
        options = FollowUpOptions(
            repo=repo, pr=pr, comment_id=comment_id, actor=actor,
            comment_kind=cast(CommentKind, comment_kind),  # typer takes a str; FollowUpOptions validates it
            allowed_associations=[a.upper() for a in allow] if allow else list(DEFAULT_ASSOCIATIONS),
            setup=setup or None, test_cmd=test_cmd, preset=preset, config_file=config_file,
            overrides=[*_model_overrides(model), *(overrides or [])], max_cost=max_cost, run_dir=run_dir, token_env=token_env, api_url=api_url,
            min_votes=min_votes, min_confidence=min_confidence, report_url=report_url,
            remove_label=remove_label, live=False if quiet else None)
    except ValueError as exc:
        _options_error(exc)
    outcome = follow_up(options, providers=providers)
    if outcome.pr_url:
        typer.echo(outcome.pr_url)
    raise typer.Exit(outcome.exit_code)
