"""Fixtures shared by the tests of this package (the GitHub stand-in and its remote)."""

from tests.patchswarm.github_helpers import remote, stub, token_env  # noqa: F401
