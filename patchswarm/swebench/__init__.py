"""SWE-bench: load instances, build their environments, grade predictions like the official harness.

Solving stages only ever receive `SweInstance.to_task()` (a `SweTask`): the issue, the repository and
its commits, never the gold patch, the test patch or the FAIL_TO_PASS / PASS_TO_PASS lists.

Submodules: `dataset` (instances, predictions), `specs` (install table), `scripts` (build and eval
scripts), `environments` (instance images), `grading` (one instance), `evaluation` (a run and its
summary), `cli` (`patchswarm eval`). Only the light ones are imported here, so solvers that need
`SweTask` do not load Docker or the harness.
"""

from patchswarm.swebench.dataset import (
    DatasetError,
    Prediction,
    SweInstance,
    SweTask,
    load_instances,
    load_predictions,
)
from patchswarm.swebench.specs import SpecError, SpecTable, VersionSpec, load_spec_table

__all__ = [
    "DatasetError", "Prediction", "SpecError", "SpecTable", "SweInstance", "SweTask", "VersionSpec",
    "load_instances", "load_predictions", "load_spec_table",
]
