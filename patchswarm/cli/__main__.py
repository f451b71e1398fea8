"""`python -m patchswarm.cli`: the command line, run with this interpreter (and its PYTHONPATH)."""

from patchswarm.cli import app

app()
