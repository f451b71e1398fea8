"""Loopback stand-ins for the internet that some repositories' tests reach, so offline grading keeps the official verdict.

The official harness grades with network. psf/requests' tests talk to httpbin.org (through their
`HTTPBIN_URL` knob, some by its name; later versions run pytest-httpbin's local server) and expect a
connect to the unroutable 10.255.255.1 to time out. Our grading sandboxes have no network: there the first
fail on every patch, the gold one included, and the second fail at once ("network is unreachable")
instead of timing out. For such repositories the environment layer installs the services that stand in
(in a venv of their own, so the tests never see their dependencies), and the grading sandbox, still
without network, starts them before the eval script: each service on 127.0.0.1 with a variable pointing
at it and its host's name in /etc/hosts (ports 80 and 443, the HTTPS certificate signed by a CA made at
build time, which the bundle the tests are pointed at trusts; a test that ignores that variable and trusts
only its own bundle still fails), and the tarpit networks routed into `lo`, where a SYN is dropped and a
connect waits for its timeout as it does with network. The grading report names what stood in.
"""

from __future__ import annotations

import shlex
from types import MappingProxyType

from pydantic import BaseModel, Field

STAND_IN_VENV = "/opt/patchswarm-stand-ins"
# A CA made at build time for the stand-ins' HTTPS: its bundle (the image's own CAs plus it) is what the
# tests are told to trust, so https://httpbin.org reaches the stand-in as it reaches the real host.
TLS_DIR = f"{STAND_IN_VENV}/tls"
CA_BUNDLE = f"{TLS_DIR}/ca-bundle.pem"
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
    tls_command: list[str] | None = Field(None, description="Argument vector after `python` serving HTTPS on 443 for "
                                          "the hostnames; {certfile} and {keyfile} are filled in.")
    ca_bundle_variable: str | None = Field(None, description="The variable the tests read the CA bundle from.")
    ready_path: str = "/"

    def python(self) -> str:
        return f"{STAND_IN_VENV}/bin/python" if self.requirements else SYSTEM_PYTHON

    def url(self) -> str:
        return f"http://{self.hostnames[0]}/" if self.hostnames else f"http://127.0.0.1:{self.port}/"


class StandIns(BaseModel):
    """What stands in for the network in one repository's grading."""

    services: list[LoopbackService] = Field(default_factory=list)
    tarpits: list[str] = Field(default_factory=list, description="Networks whose connects hang (routed into lo).")

    def describe(self) -> list[str]:
        """One line per stand-in, for the grading report."""
        out = [f"{s.stands_for}: {' '.join(s.requirements) or ' '.join(s.command[:2])} on 127.0.0.1"
               f"{' (http and https, a CA of its own)' if s.tls_command else ''} ({s.url_variable})" for s in self.services]
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
    tls_command=["-m", "gunicorn", "--bind", "127.0.0.1:443", "--certfile", "{certfile}", "--keyfile", "{keyfile}",
                 "--worker-class", "gevent", "httpbin:app"],
    port=8765, url_variable="HTTPBIN_URL", ca_bundle_variable="REQUESTS_CA_BUNDLE", ready_path="/get",
    hostnames=["httpbin.org"])
STAND_INS = MappingProxyType({
    "psf/requests": StandIns(services=[HTTPBIN], tarpits=["10.255.255.0/24"]),
})


def stand_ins_for(repo: str) -> StandIns | None:
    return STAND_INS.get(repo)


def install_commands(stand_ins: StandIns) -> list[str]:
    """Root commands of the environment layer (with network) that install the services' packages."""
    requirements = [r for s in stand_ins.services for r in s.requirements]
    commands = []
    if requirements:  # the spec's constraints are for the repository's venv, not this one
        commands.append(f"{SYSTEM_PYTHON} -m venv {STAND_IN_VENV} && PIP_CONSTRAINT= {STAND_IN_VENV}/bin/python -m pip "
                        "install -q " + " ".join(shlex.quote(r) for r in requirements))
    names = [n for s in stand_ins.services if s.tls_command for n in s.hostnames]
    if names:
        commands.append(_certificates_command(names))
    return commands


def _certificates_command(names: list[str]) -> str:
    """A CA and a server certificate for `names` (and 127.0.0.1), and the bundle of the image's CAs plus ours."""
    san = ",".join([*(f"DNS:{n}" for n in names), "IP:127.0.0.1"])
    return " && ".join([
        f"mkdir -p {TLS_DIR}", f"cd {TLS_DIR}",
        "openssl req -x509 -newkey rsa:2048 -nodes -days 36500 -subj '/CN=patchswarm stand-in CA' "
        "-keyout ca.key -out ca.pem 2>/dev/null",
        f"openssl req -newkey rsa:2048 -nodes -subj '/CN={names[0]}' -keyout server.key -out server.csr 2>/dev/null",
        f"printf 'subjectAltName={san}\\nbasicConstraints=CA:FALSE\\n' > server.ext",
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 36500 -extfile server.ext "
        "-out server.pem 2>/dev/null",
        f"cat \"${{REQUESTS_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}}\" ca.pem > {CA_BUNDLE}",
        "chmod 644 *.pem server.key"])


def _start_service(service: LoopbackService, index: int, ready_timeout_s: float) -> list[str]:
    fill = {"{port}": str(service.port), "{certfile}": f"{TLS_DIR}/server.pem", "{keyfile}": f"{TLS_DIR}/server.key"}

    def argv(command: list[str]) -> str:
        out = []
        for arg in command:
            for key, value in fill.items():
                arg = arg.replace(key, value)
            out.append(shlex.quote(arg))
        return " ".join(out)

    lines = []
    runs = [(service.command, f"http://127.0.0.1:{service.port}{service.ready_path}", "")]
    if service.tls_command and service.hostnames:
        runs.append((service.tls_command, f"https://{service.hostnames[0]}{service.ready_path}", CA_BUNDLE))
    for number, (command, ready, cafile) in enumerate(runs):
        log = f"/tmp/patchswarm-stand-in-{index}-{number}.log"
        lines += [f"setsid {service.python()} {argv(command)} > {log} 2>&1 < /dev/null &",
                  _ready_check(service.stands_for, ready, log, cafile, ready_timeout_s)]
    return lines


def _ready_check(stands_for: str, url: str, log: str, cafile: str, ready_timeout_s: float) -> str:
    """Wait until `url` answers (trusting `cafile` for https): the eval script must not race the start."""
    return (
        f"{SYSTEM_PYTHON} - {shlex.quote(url)} {shlex.quote(log)} {shlex.quote(cafile)} <<'EOF_READY'\n"
        "import ssl, sys, time, urllib.request\n"
        "context = ssl.create_default_context(cafile=sys.argv[3]) if sys.argv[3] else None\n"
        f"deadline = time.monotonic() + {ready_timeout_s}\n"
        "while True:\n"
        "    try:\n"
        "        urllib.request.urlopen(sys.argv[1], timeout=2, context=context).read()\n"
        "        break\n"
        "    except OSError as exc:\n"
        "        if time.monotonic() > deadline:\n"
        "            tail = open(sys.argv[2], errors='replace').read()[-300:].strip()\n"
        f"            sys.exit(f'{stands_for} stand-in did not answer at {{sys.argv[1]}} in {ready_timeout_s:g}s: {{exc}}; {{tail}}')\n"
        "        time.sleep(0.2)\n"
        "EOF_READY")


def start_script(stand_ins: StandIns, ready_timeout_s: float = READY_TIMEOUT_S) -> str:
    """Root, in the grading sandbox before the eval script: the tarpit routes, then each service, until it answers."""
    lines = ["set -eu", *[f"ip route replace {shlex.quote(net)} dev lo" for net in stand_ins.tarpits]]
    for index, service in enumerate(stand_ins.services):
        lines += _start_service(service, index, ready_timeout_s)
    return "\n".join(lines) + "\n"


def eval_env(stand_ins: StandIns) -> dict[str, str]:
    """Variables the eval script gets so the tests reach the stand-ins."""
    env = {s.url_variable: s.url() for s in stand_ins.services}
    env.update({s.ca_bundle_variable: CA_BUNDLE for s in stand_ins.services if s.tls_command and s.ca_bundle_variable})
    return env
