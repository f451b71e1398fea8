"""Errors raised by the sandbox package. Each message names the bad thing in one line."""


class SandboxError(Exception):
    """Base class: something about a sandbox, an image or the engine went wrong."""


class EngineUnavailable(SandboxError):
    """No Docker engine answers."""


class ImageError(SandboxError):
    """An image is unknown or could not be built."""


class ImageBuildError(ImageError):
    """Building an environment image failed; carries the full log's path and its last lines."""

    def __init__(self, message: str, log_path: str | None = None, tail: str = ""):
        self.log_path = log_path
        self.tail = tail
        full = message if not log_path else f"{message} (full log: {log_path})"
        super().__init__(full)


class RepoError(SandboxError):
    """A repository source or commit cannot be used."""


class PatchApplyError(SandboxError):
    """A patch does not apply; `rejected` names the files/hunks that failed."""

    def __init__(self, message: str, rejected: list[str] | None = None, output: str = ""):
        self.rejected = rejected or []
        self.output = output
        super().__init__(message)


class SandboxBroken(SandboxError):
    """The container stopped answering; the sandbox must be discarded."""


class DiskLimitExceeded(SandboxBroken):
    """A sandbox wrote more than its disk limit outside its quota volumes and was killed for it."""
