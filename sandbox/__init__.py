"""Docker execution: images, isolated containers, exec with real timeouts, patch apply, reset.

Imports nothing else of patchswarm's.
"""

from sandbox.environments import EnvImage, EnvSpec, build_env_image, use_existing_image
from sandbox.errors import (
    EngineUnavailable,
    ImageBuildError,
    ImageError,
    PatchApplyError,
    RepoError,
    SandboxBroken,
    SandboxError,
)
from sandbox.execution import ExecResult
from sandbox.manager import Limits, SandboxManager, SandboxPool, remove_containers
from sandbox.repos import RepoSource
from sandbox.sandbox import REPO_DIR, Sandbox

__all__ = [
    "REPO_DIR", "EngineUnavailable", "EnvImage", "EnvSpec", "ExecResult", "ImageBuildError", "ImageError",
    "Limits", "PatchApplyError", "RepoError", "RepoSource", "Sandbox", "SandboxBroken", "SandboxError",
    "SandboxManager", "SandboxPool", "build_env_image", "remove_containers", "use_existing_image",
]
