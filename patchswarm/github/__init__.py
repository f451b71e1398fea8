"""GitHub integration: `patchswarm github resolve` turns an issue into a draft PR (or one comment).

Modules: `options` (what a run is asked, `.patchswarm.yml`), `api` (PyGithub: issue, association,
status comment, PR), `gitops` (clone/commit/push with the token only in git's environment), `summary`
(the Markdown written), `redact` (secrets out of logs and texts), `resolve` (the flow), `cli`.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `github` sub-app to the main CLI."""
    from patchswarm.github.cli import github_app

    app.add_typer(github_app, name="github")
