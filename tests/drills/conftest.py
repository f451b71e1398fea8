"""The drills of issue 14: one cheap CI test per way a hostile repository, a flaky provider or a careless
user broke a run. Each test failed on the code before its fix.

Layout: one file per owner/area, `test_<area>.py` (e.g. `test_sandbox_limits.py`, `test_budget.py`,
`test_paths.py`, `test_inputs.py`, `test_votes.py`, `test_github_redaction.py`); each test's docstring names
the issue item it drills (`item N`). The expensive drills (disk filler against a second engine, daemon
restart, fork bomb timings, a 30%-fault provider over a 20-instance batch) are not CI: they live in
`scripts/drills.py`, which prints a table.

Fixtures come from tests/conftest.py (docker_client, base_image, manager, scripted, ...) and
tests/sandbox/conftest.py (calc_repo, calc_image, sandbox), re-exported here.
"""

from tests.sandbox.conftest import calc_image, calc_repo, sandbox  # noqa: F401
