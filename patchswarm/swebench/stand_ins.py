"""Loopback stand-ins for the internet that some repositories' tests reach, so offline grading keeps the official verdict.

The official harness grades with network. psf/requests' tests talk to httpbin.org (through their
`HTTPBIN_URL` knob, some by its name; later versions run pytest-httpbin's local server) and expect a
connect to the unroutable 10.255.255.1 to time out. Our grading sandboxes have no network: there the first
fail on every patch, the gold one included, and the second fail at once ("network is unreachable")
instead of timing out. For such repositories the environment layer installs the services that stand in
(in a venv of their own, so the tests never see their dependencies), and the grading sandbox, still
without network, starts them before the eval script: each service on 127.0.0.1 with a variable pointing
at it and its host's name in /etc/hosts (served on port 80; HTTPS to it cannot be stood in: no
certificate the tests trust), and the tarpit networks routed into `lo`, where a SYN is dropped and a
connect waits for its timeout as it does with network. The grading report names what stood in.
"""

from __future__ import annotations

import shlex
from types import MappingProxyType

from pydantic import BaseModel, Field

STAND_IN_VENV = "/opt/patchswarm-stand-ins"
SYSTEM_PYTHON = "/usr/bin/python3"
READY_TIMEOUT_S = 60


class LoopbackService(BaseModel):
    """An HTTP service run on 127.0.0.1 in the grading sandbox in place of a host on the internet."""

    stands_for: str = Field(description="The host it replaces, for the report, e.g. httpbin.org.")
    requirements: list[str] = Field(default_factory=list, description="pip requirements installed in the stand-in venv; none: the system Python serves it.")
    command: list[str] = Field(description="Argument vector after `python`; {port} is filled in.")
    port: int
    url_variable: str = Field(description="The variable the tests read the service's URL from.")
    hostnames: list[str] = Field(default_factory=list, description="Names resolved to 127.0.0.1 in the sandbox, "
                                 "for tests that name the host itself; the command must then also serve port 80.")
    ready_path: str = "/"

    def python(self) -> str:
        return f"{STAND_IN_VENV}/bin/python" if self.requirements else SYSTEM_PYTHON

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


class StandIns(BaseModel):
    """What stands in for the network in one repository's grading."""

    services: list[LoopbackService] = Field(default_factory=list)
    tarpits: list[str] = Field(default_factory=list, description="Networks whose connects hang (routed into lo).")

    def describe(self) -> list[str]:
        """One line per stand-in, for the grading report."""
        out = [f"{s.stands_for}: {' '.join(s.requirements) or ' '.join(s.command[:2])} on 127.0.0.1:{s.port} ({s.url_variable})"
               for s in self.services]
        return out + [f"{net}: unanswered, a connect times out (routed into lo)" for net in self.tarpits]

    def capabilities(self) -> tuple[str, ...]:
        """What the grading sandbox's root needs for them: routes of its own namespace (which has only lo),
        and port 80 for the services that answer to a host's own name."""
        return (("NET_ADMIN",) if self.tarpits else ()) + \
            (("NET_BIND_SERVICE",) if any(s.hostnames for s in self.services) else ())

    def hosts(self) -> dict[str, str]:
        return {name: "127.0.0.1" for s in self.services for name in s.hostnames}


# httpbin.org serves the httpbin package (Flask; 0.10 is its maintained release) with gunicorn's gevent
# workers. Flask's own development server is not a stand-in for it: it closes every connection and answers
# a chunked upload with 501, which requests' keep-alive and streaming-upload tests check (requests-863).
HTTPBIN = LoopbackService(
    stands_for="httpbin.org", requirements=["httpbin==0.10.2", "gunicorn==23.0.0", "gevent==24.2.1"],
    command=["-m", "gunicorn", "--bind", "127.0.0.1:{port}", "--bind", "127.0.0.1:80", "--worker-class", "gevent",
             "httpbin:app"],
    port=8765, url_variable="HTTPBIN_URL", ready_path="/get", hostnames=["httpbin.org"])
STAND_INS = MappingProxyType({
    "psf/requests": StandIns(services=[HTTPBIN], tarpits=["10.255.255.0/24"]),
})


def stand_ins_for(repo: str) -> StandIns | None:
    return STAND_INS.get(repo)


def install_commands(stand_ins: StandIns) -> list[str]:
    """Root commands of the environment layer (with network) that install the services' packages."""
    requirements = [r for s in stand_ins.services for r in s.requirements]
    if not requirements:
        return []
    # The spec's constraints are for the repository's venv, not this one.
    return [f"{SYSTEM_PYTHON} -m venv {STAND_IN_VENV} && PIP_CONSTRAINT= {STAND_IN_VENV}/bin/python -m pip install -q "
            + " ".join(shlex.quote(r) for r in requirements)]


def _start_service(service: LoopbackService, index: int, ready_timeout_s: float) -> list[str]:
    argv = " ".join(shlex.quote(a.replace("{port}", str(service.port))) for a in service.command)
    log = f"/tmp/patchswarm-stand-in-{index}.log"
    ready = f"http://127.0.0.1:{service.port}{service.ready_path}"
    return [
        f"setsid {service.python()} {argv} > {log} 2>&1 < /dev/null &",
        # Ready when it answers: the eval script must not race its start.
        f"{SYSTEM_PYTHON} - {shlex.quote(ready)} {shlex.quote(log)} <<'EOF_READY'\n"
        "import sys, time, urllib.request\n"
        f"deadline = time.monotonic() + {ready_timeout_s}\n"
        "while True:\n"
        "    try:\n"
        "        urllib.request.urlopen(sys.argv[1], timeout=2).read()\n"
        "        break\n"
        "    except OSError as exc:\n"
        "        if time.monotonic() > deadline:\n"
        "            tail = open(sys.argv[2], errors='replace').read()[-300:].strip()\n"
        f"            sys.exit(f'{service.stands_for} stand-in did not answer at {{sys.argv[1]}} in {ready_timeout_s:g}s: {{exc}}; {{tail}}')\n"
        "        time.sleep(0.2)\n"
        "EOF_READY",
    ]


def start_script(stand_ins: StandIns, ready_timeout_s: float = READY_TIMEOUT_S) -> str:
    """Root, in the grading sandbox before the eval script: the tarpit routes, then each service, until it answers."""
    lines = ["set -eu", *[f"ip route replace {shlex.quote(net)} dev lo" for net in stand_ins.tarpits]]
    for index, service in enumerate(stand_ins.services):
        lines += _start_service(service, index, ready_timeout_s)
    return "\n".join(lines) + "\n"


def eval_env(stand_ins: StandIns) -> dict[str, str]:
    """Variables the eval script gets so the tests reach the stand-ins."""
    return {s.url_variable: s.url() for s in stand_ins.services}
