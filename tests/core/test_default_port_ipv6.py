"""URLs as users write them: no port (80), an IPv6 host, credentials in the userinfo.

Port 80 and ``[::1]`` are served in a network namespace of the test's own (``unshare -n``,
loopback brought up inside), so nothing binds a well-known port on the machine and
nothing leaves it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from conntrace import attributes as A

_PROGRAM = textwrap.dedent(
    """
    import json, socket, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import conntrace

    seen = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            seen.append([self.path, self.headers.get("Authorization")])
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    class Server6(ThreadingHTTPServer):
        address_family = socket.AF_INET6

    for server in (ThreadingHTTPServer(("127.0.0.1", 80), Handler), Server6(("::1", 80), Handler)):
        threading.Thread(target=server.serve_forever, daemon=True).start()

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    conntrace.instrument(tracer_provider=provider)
    import requests

    # requests, as many programs do: it sends a URL's credentials as basic authentication.
    http = requests.Session()
    statuses = [
        http.get(url).status_code
        for url in [
            "http://user:s3cret-pw@localhost/items?token=t0ken-value",
            "http://localhost/items",
            "http://[::1]/v6?page=2",
            "http://user:s3cret-pw@[::1]/v6",
        ]
    ]
    finished = exporter.get_finished_spans()
    spans = [{"name": s.name, "attributes": dict(s.attributes)} for s in finished]
    print(json.dumps({"statuses": statuses, "seen": seen, "spans": spans}))
    """
)


@pytest.fixture(scope="module")
def traced() -> dict:
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-n", "true"]).returncode != 0:
        pytest.fail("this test needs `unshare -n` (util-linux, run as root)")
    # In the new namespace loopback is down until brought up.
    inside = 'ip link set lo up && exec "$0" -c "$1"'
    done = subprocess.run(
        [unshare, "-n", "sh", "-c", inside, sys.executable, _PROGRAM],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _attempts(traced: dict) -> list[dict]:
    return [s["attributes"] for s in traced["spans"] if A.HTTP_REQUEST_METHOD in s["attributes"]]


def test_the_default_port_is_port_80_everywhere(traced):
    assert traced["statuses"] == [200, 200, 200, 200]
    first, second, *_ = _attempts(traced)
    assert first[A.URL_FULL] == "http://localhost:80/items?token=REDACTED"
    assert second[A.URL_FULL] == "http://localhost:80/items"
    assert (first[A.SERVER_ADDRESS], first[A.SERVER_PORT]) == ("localhost", 80)
    assert (first[A.CONNECTION_REUSED], second[A.CONNECTION_REUSED]) == (False, True)
    assert first[A.CONNECTION_ID] == second[A.CONNECTION_ID]
    [setup, _] = [s for s in traced["spans"] if s["name"].startswith(A.SPAN_CONNECTION_SETUP)]
    assert setup["name"] == f"{A.SPAN_CONNECTION_SETUP} localhost:80"
    assert setup["attributes"][A.SERVER_PORT] == 80


def test_an_ipv6_host_is_bracketed_and_its_connection_is_ipv6(traced):
    *_, third, fourth = _attempts(traced)
    assert third[A.URL_FULL] == "http://[::1]:80/v6?page=REDACTED"
    assert fourth[A.URL_FULL] == "http://[::1]:80/v6"
    assert (third[A.SERVER_ADDRESS], third[A.SERVER_PORT]) == ("::1", 80)
    assert fourth[A.CONNECTION_REUSED] is True
    [connect] = [s for s in traced["spans"] if s["name"].startswith("socket connect ::1")]
    assert connect["attributes"][A.NETWORK_TYPE] == "ipv6"
    assert connect["attributes"][A.NETWORK_PEER_ADDRESS] == "::1"


def test_credentials_in_the_userinfo_reach_the_server_and_no_span(traced):
    # Sent as basic authentication: the server got them, no span did.
    assert [auth for _, auth in traced["seen"]].count("Basic dXNlcjpzM2NyZXQtcHc=") == 2
    text = json.dumps(traced["spans"])
    for secret in ("s3cret-pw", "dXNlcjpzM2NyZXQtcHc", "t0ken-value", "user:"):
        assert secret not in text
