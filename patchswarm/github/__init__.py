"""GitHub integration: `patchswarm github resolve | follow-up | batch` (see docs/github.md).

Modules: `options` (what a run is asked, `.patchswarm.yml`), `api` (PyGithub: issue, association,
status comment, PR), `rest` (listings: pagination, ETags, rate limits), `listing` (which issues a batch
solves), `gitops` (clone/commit/push with the token only in git's environment), `publish` (confidence,
failure, branches, the answer), `summary` (the Markdown written), `redact` (secrets out of every text),
`resolve`, `followup`, `batch` (the flows), `cli`.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `github` sub-app to the main CLI."""
    from patchswarm.github.cli import github_app

    app.add_typer(github_app, name="github")
