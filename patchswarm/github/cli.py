"""`patchswarm github …` commands."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from patchswarm.github.options import DEFAULT_ASSOCIATIONS

github_app = typer.Typer(no_args_is_help=True, help="Resolve GitHub issues: draft pull requests from issues.")


@github_app.command("resolve")
def resolve(
    repo: str = typer.Option(..., "--repo", help="OWNER/NAME of the repository."),
    issue: int = typer.Option(..., "--issue", help="Issue number."),
    ref: str | None = typer.Option(None, "--ref", help="Branch, tag or commit to solve at (default: default branch)."),
    setup: list[str] = typer.Option(None, "--setup", help="Setup command (repeatable); default: .patchswarm.yml's."),
    test_cmd: str | None = typer.Option(None, "--test-cmd", help="The repository's test command; default: .patchswarm.yml's."),
    preset: str | None = typer.Option(None, "--preset", help="Config preset (default: .patchswarm.yml's, else default)."),
    config_file: Path | None = typer.Option(None, "--config", "-c", help="YAML config file."),
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
    min_confidence: float = typer.Option(0.5, "--min-confidence", help="Selection confidence a PR needs, when the selection reports one."),
    report_url: str | None = typer.Option(None, "--report-url", help="Link to where the HTML report is (workflow run)."),
    remove_label: str | None = typer.Option(None, "--remove-label", help="Label to take off the issue at the end."),
    quiet: bool = typer.Option(False, "--quiet", help="Line-oriented progress (automatic when not a TTY)."),
) -> None:
    """Solve one issue: a draft PR when a patch is backed by tests, else one comment saying why not."""
    from pydantic import ValidationError

    from patchswarm.github.options import ResolveOptions
    from patchswarm.github.resolve import resolve_issue
    from patchswarm.scripted_cli import register_scripted_specs

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("LiteLLM").setLevel(logging.WARNING)  # one line per model call drowns the bot's own
    try:
        register_scripted_specs(scripted or [])
        options = ResolveOptions(
            repo=repo, issue=issue, ref=ref, setup=setup or None, test_cmd=test_cmd, preset=preset,
            config_file=config_file, overrides=overrides or [], max_cost=max_cost, run_dir=run_dir,
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
    outcome = resolve_issue(options)
    if outcome.pr_url:
        typer.echo(outcome.pr_url)
    raise typer.Exit(outcome.exit_code)
