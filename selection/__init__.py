"""Choosing one patch: test matrix, votes on real evidence, regression check, selector, outside candidates.

Imports agent and sandbox, never patchswarm.
"""

from selection.cache import OutcomeCache
from selection.models import (
    BehaviourGroup,
    Candidate,
    CandidateReport,
    GeneratedTest,
    MatrixCell,
    RegressionReport,
    ReproTestReport,
    SelectionConfig,
    SelectionResult,
    TranscriptMessage,
)
from selection.outside import load_patch_dir, load_prediction_files, write_predictions
from selection.select import GenerateTests, select_patch

__all__ = [
    "BehaviourGroup", "Candidate", "CandidateReport", "GenerateTests", "GeneratedTest", "MatrixCell",
    "OutcomeCache", "RegressionReport", "ReproTestReport", "SelectionConfig", "SelectionResult",
    "TranscriptMessage", "load_patch_dir", "load_prediction_files", "select_patch", "write_predictions",
]
