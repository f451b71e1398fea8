"""The Docker labels patchswarm puts on what it creates, in one place.

`patchswarm.run` (with the owner's pid, its start time and the host) marks everything a run owns, so a
sweep can remove a run's leftovers and tell crashed runs from live ones. `patchswarm.kind` says what a
container or image is: a run's containers are not all sandboxes (a quota-volume holder and an image probe
are up for a moment while a sandbox starts), and tools and tests that count sandboxes must tell them apart.
"""

from __future__ import annotations

LABEL_RUN = "patchswarm.run"
LABEL_PID = "patchswarm.pid"
LABEL_PID_START = "patchswarm.pid_start"
LABEL_HOST = "patchswarm.host"
LABEL_KIND = "patchswarm.kind"
LABEL_VOLUME_OF = "patchswarm.sandbox_volume"

# Values of LABEL_KIND.
KIND_SANDBOX = "sandbox"
KIND_QUOTA_HOLDER = "quota-holder"
KIND_IMAGE_PROBE = "image-probe"
KIND_ENV_BUILD = "env-build"
KIND_BASE_BUILD = "base-build"
