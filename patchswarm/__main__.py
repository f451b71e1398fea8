"""`python -m patchswarm`: the command line, run with this interpreter (and its PYTHONPATH)."""

from patchswarm.cli import app

app()
