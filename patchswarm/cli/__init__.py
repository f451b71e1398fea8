"""Resolve software issues with many sandboxed LLM trajectories and test-based patch selection.

Quick start (MODEL: any litellm model name; the defaults: `patchswarm config show`):

    patchswarm demo                                   offline, no key needed
    patchswarm models check -m MODEL                  key set, model answers
    patchswarm solve --repo . --issue @issue.md -m MODEL --max-cost 5
"""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from patchswarm.benchselect.cli import register as register_bench_select
from patchswarm.cli import checks, images, runs, selecting, solving
from patchswarm.github import register as register_github
from patchswarm.report import register as register_report
from patchswarm.swebench.cli import register as register_eval

# The order a user meets the commands in: try it, run it, look at the results, then the rest.
COMMAND_ORDER = ("demo", "solve", "batch", "eval", "report", "runs", "predictions", "select", "github",
                 "models", "config", "doctor", "images", "clean")


class _UserOrder(TyperGroup):
    def list_commands(self, ctx) -> list[str]:
        rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(super().list_commands(ctx), key=lambda name: rank.get(name, len(rank)))


app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__, cls=_UserOrder,
                  context_settings={"help_option_names": ["-h", "--help"]})


def _print_version(value: bool) -> None:
    if value:
        from patchswarm import __version__

        typer.echo(f"patchswarm {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the version and exit."),
) -> None:
    pass


for _module in (solving, selecting, runs, checks, images):
    _module.register(app)
register_report(app)
register_eval(app)
register_bench_select(app)
register_github(app)

__all__ = ["COMMAND_ORDER", "app"]
