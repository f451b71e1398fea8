"""Network stand-ins for grading: installed where a repository's tests need them, and real in a sandbox.

The Docker test runs the real start script in a real no-network sandbox: a loopback service answers at
the URL its variable names, and a tarpit address times out as an unroutable one does with network, where
without the stand-ins it fails at once.
"""

from __future__ import annotations

from patchswarm.swebench.scripts import plan_build
from patchswarm.swebench.specs import load_spec_table
from patchswarm.swebench.stand_ins import (
    CA_BUNDLE,
    HTTPBIN,
    LoopbackService,
    StandIns,
    eval_env,
    install_commands,
    stand_ins_for,
    start_script,
)

HTTPS_SERVER = (
    "import http.server, ssl\n"
    "server = http.server.HTTPServer(('127.0.0.1', 443), http.server.SimpleHTTPRequestHandler)\n"
    "context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "context.load_cert_chain('{certfile}', '{keyfile}')\n"
    "server.socket = context.wrap_socket(server.socket, server_side=True)\n"
    "server.serve_forever()\n")
PROBE = """
import os, socket, ssl, sys, urllib.request
if os.environ.get("SERVICE_URL"):
    print("service", urllib.request.urlopen(os.environ["SERVICE_URL"], timeout=5).status)
    print("by name", urllib.request.urlopen("http://example.org/", timeout=5).status)
    context = ssl.create_default_context(cafile=os.environ["CA_VARIABLE"])
    print("https", urllib.request.urlopen("https://example.org/", timeout=5, context=context).status)
s = socket.socket()
s.settimeout(1.5)
try:
    s.connect(("10.255.255.1", 80))
    print("connected")
except socket.timeout:
    print("tarpit: timed out")
except OSError as exc:
    print("tarpit: failed at once:", exc.strerror)
"""


def test_requests_environments_install_httpbin_and_other_repositories_nothing():
    table = load_spec_table()
    requests = plan_build(table.spec("psf/requests", "2.3"), repo="psf/requests", version="2.3")
    assert any("httpbin==" in line and "-m venv /opt/patchswarm-stand-ins" in line for line in requests.root_setup)
    pytest_plan = plan_build(table.spec("pytest-dev/pytest", "6.0"), repo="pytest-dev/pytest", version="6.0")
    assert not any("stand-ins" in line for line in pytest_plan.root_setup)
    assert stand_ins_for("pytest-dev/pytest") is None
    requests_ins = stand_ins_for("psf/requests")
    assert requests_ins is not None and requests_ins.capabilities() == ("NET_ADMIN", "NET_BIND_SERVICE")
    assert requests_ins.hosts() == {"httpbin.org": "127.0.0.1"}
    assert eval_env(requests_ins) == {"HTTPBIN_URL": "http://httpbin.org/", "REQUESTS_CA_BUNDLE": CA_BUNDLE}
    assert HTTPBIN.tls_command and any("openssl x509" in c for c in install_commands(requests_ins))
    assert any(line.startswith("httpbin.org: httpbin==") for line in requests_ins.describe())
    # A service the system Python serves installs nothing.
    stdlib = StandIns(services=[LoopbackService(stands_for="x", command=["-m", "http.server"], port=1,
                                                url_variable="X")])
    assert install_commands(stdlib) == []


def test_stand_ins_answer_and_hang_in_a_no_network_sandbox(manager, base_image):
    service = LoopbackService(stands_for="example.org", command=["-m", "http.server", "--bind", "127.0.0.1",
                                                                  "{port}"], port=8799, url_variable="SERVICE_URL")
    # A host the tests name themselves: in /etc/hosts, served on port 80, and on 443 with a certificate of the
    # stand-ins' own CA, which the bundle in CA_VARIABLE trusts.
    by_name = LoopbackService(stands_for="example.org", command=["-m", "http.server", "--bind", "127.0.0.1", "80"],
                              tls_command=["-c", HTTPS_SERVER], port=80, url_variable="EXAMPLE_URL",
                              ca_bundle_variable="CA_VARIABLE", hostnames=["example.org"])
    stand_ins = StandIns(services=[service, by_name], tarpits=["10.255.255.0/24"])
    with_ins = manager.create(base_image, user="0", cap_add=stand_ins.capabilities(), hosts=stand_ins.hosts())
    made = with_ins.exec(" && ".join(install_commands(stand_ins)), timeout=120)  # the certificates (no pip here)
    assert made.exit_code == 0, made.output
    started = with_ins.exec(start_script(stand_ins), timeout=90)
    assert started.exit_code == 0, started.output
    probed = with_ins.exec(f"python3 - <<'EOF'\n{PROBE}\nEOF", timeout=30, env=eval_env(stand_ins))
    assert "service 200" in probed.output and "by name 200" in probed.output, probed.output
    assert "https 200" in probed.output, probed.output
    assert "tarpit: timed out" in probed.output, probed.output
    # The same sandbox without them: nothing answers, the connect fails at once.
    without = manager.create(base_image)
    bare = without.exec(f"python3 - <<'EOF'\n{PROBE}\nEOF", timeout=30)
    assert "tarpit: failed at once" in bare.output, bare.output


def test_a_stand_in_that_does_not_start_is_named_with_its_output(manager, base_image):
    broken = LoopbackService(stands_for="example.org", command=["-c", "import sys; sys.exit('cannot bind')"],
                             port=8798, url_variable="SERVICE_URL")
    sandbox = manager.create(base_image, user="0")
    started = sandbox.exec(start_script(StandIns(services=[broken]), ready_timeout_s=2), timeout=30)
    assert started.exit_code != 0
    assert "example.org stand-in did not answer" in started.output and "cannot bind" in started.output
