"""urllib3, requests and boto3 through a real local proxy: CONNECT tunnels and forwarding.

Every count is compared with what the proxy and the server counted; every view (spans,
per-host counts, the console summary, the report's hosts, the metrics) names the target
server, with the proxy as an attribute.
"""

from __future__ import annotations

import io
import json
import re
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
import urllib3
from botocore.config import Config

import conntrace
from conntrace import attributes as A
from conntrace import report
from conntrace.console import Style, render_summary

from ..conftest import dynamodb
from ..proxy import LocalProxy
from ..servers import wait_until
from .conftest import Diagnosed

USER, PASSWORD = "proxy-user-7f3a", "s3cret-proxy-pass-91c2"


@pytest.fixture
def client_context(ca: Any) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def ca_file(ca: Any, tmp_path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port bound for the test but not listening: a connect to it is refused, and no
    other test's server can take it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def named(spans: list[Any], prefix: str) -> list[Any]:
    return sorted(
        (span for span in spans if span.name.startswith(prefix)), key=lambda s: s.start_time
    )


def attempts(spans: list[Any]) -> list[Any]:
    return sorted(
        (span for span in spans if A.HTTP_REQUEST_METHOD in (span.attributes or {})),
        key=lambda s: s.start_time,
    )


def children(spans: list[Any], parent: Any) -> list[Any]:
    found = [
        s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id
    ]
    return sorted(found, key=lambda s: s.start_time)


def summary(diagnosed: Diagnosed) -> str:
    stream = io.StringIO()
    lines = render_summary("test", diagnosed.diagnosis.host_stats(), 0, Style(stream, "never"))
    return "\n".join(lines)


def written(diagnosed: Diagnosed) -> str:
    """Everything conntrace wrote about the run: spans, metrics, summary, report."""
    spans = [
        (s.name, dict(s.attributes or {}), [(e.name, dict(e.attributes or {})) for e in s.events])
        for s in diagnosed.spans
    ]
    statuses = [s.status.description for s in diagnosed.spans]
    metrics = diagnosed.reader.get_metrics_data()
    section = report.section(diagnosed.diagnosis)
    return "\n".join(
        (
            repr(spans),
            repr(statuses),
            metrics.to_json() if metrics else "",
            summary(diagnosed),
            json.dumps(section),
        )
    )


def assert_no_credentials(text: str) -> None:
    for secret in (USER, PASSWORD, "Proxy-Authorization", "cHJveHkt"):  # base64 of "proxy-"
        assert secret.lower() not in text.lower()


def assert_counted_under_target(diagnosed: Diagnosed, target: tuple[str, int], proxy: LocalProxy):
    [host] = diagnosed.diagnosis.host_stats()
    assert (host.host, host.port) == target
    assert host.proxy == (proxy.host_name, proxy.port)
    [entry] = report.section(diagnosed.diagnosis)["hosts"]
    assert (entry["server_address"], entry["server_port"]) == target
    assert (entry["proxy_address"], entry["proxy_port"]) == (proxy.host_name, proxy.port)
    text = summary(diagnosed)
    assert f"{target[0]}:{target[1]} via proxy {proxy.host_name}:{proxy.port}" in text
    # The proxy is no host of its own.
    assert f"\n  {proxy.host_name}:{proxy.port}" not in text
    points = diagnosed.points(A.METRIC_REQUESTS)
    assert {(p[1][A.SERVER_ADDRESS], p[1][A.SERVER_PORT]) for p in points} == {target}
    assert {p[1][A.PROXY_PORT] for p in points} == {proxy.port}
    return host, entry


# --- CONNECT tunnels -----------------------------------------------------------------------------


def test_urllib3_proxy_manager_tunnels_once_for_n_requests(
    diagnosed: Diagnosed, tls_server, proxy, client_context
):
    local = tls_server()
    through = proxy()
    http = urllib3.ProxyManager(through.url(), ssl_context=client_context)
    for _ in range(3):
        assert http.request("GET", f"{local.url}/item").status == 200

    # One client connection, one tunnel, one server connection carrying the three requests.
    assert through.accepted == 1
    assert through.connects == [("localhost", local.port)]
    assert [c.requests for c in local.connections] == [3]

    spans = diagnosed.spans
    sent = attempts(spans)
    assert [s.attributes[A.CONNECTION_REUSED] for s in sent] == [False, True, True]
    for span in sent:
        assert (span.attributes[A.SERVER_ADDRESS], span.attributes[A.SERVER_PORT]) == (
            "localhost",
            local.port,
        )
        assert span.attributes[A.PROXY_PORT] == through.port
        assert span.attributes[A.NETWORK_PEER_PORT] == through.port
    [setup] = named(spans, A.SPAN_CONNECTION_SETUP)
    assert setup.name == f"{A.SPAN_CONNECTION_SETUP} localhost:{local.port}"
    assert setup.attributes[A.PROXY_ADDRESS] == "127.0.0.1"
    # The proxy is an IP address: not looked up. The TCP connect reached it, and says so.
    tcp, tunnel, tls = children(spans, setup)
    assert tcp.attributes[A.NETWORK_PEER_PORT] == through.port
    assert tcp.attributes[A.PROXY_PORT] == through.port
    assert tunnel.name == f"{A.SPAN_PROXY} localhost:{local.port}"
    assert tunnel.attributes[A.HTTP_RESPONSE_STATUS_CODE] == 200
    assert tunnel.status.status_code.name == "UNSET"
    # TLS runs to the target, through the tunnel.
    assert tls.name == f"{A.SPAN_TLS} localhost"
    assert A.PROXY_ADDRESS not in tls.attributes

    host, entry = assert_counted_under_target(diagnosed, ("localhost", local.port), through)
    assert (host.requests, host.reused, host.opened[A.REASON_FIRST]) == (3, 2, 1)
    assert entry["proxy_ms"] > 0
    assert "CONNECT" in summary(diagnosed)
    # The pooled connection is open now: counted for the server, with the proxy named.
    [(_, attributes, point)] = [
        found
        for found in diagnosed.points(A.METRIC_OPEN_CONNECTIONS)
        if found[1][A.SERVER_PORT] == local.port
    ]
    assert (point.value, attributes[A.PROXY_PORT]) == (1, through.port)


def test_requests_with_proxy_credentials_never_writes_them(
    diagnosed: Diagnosed, tls_server, proxy, ca_file
):
    local = tls_server()
    through = proxy(credentials=(USER, PASSWORD))
    session = requests.Session()
    session.proxies = {"https": through.url(USER, PASSWORD)}
    for _ in range(3):
        assert session.get(f"{local.url}/item?token=abc", verify=ca_file).status_code == 200

    # requests sent the credentials to the proxy, once, on the CONNECT.
    assert len(through.authorizations) == 1 and through.authorizations[0].startswith("Basic ")
    assert through.connects == [("localhost", local.port)]
    assert [c.requests for c in local.connections] == [3]
    host, _ = assert_counted_under_target(diagnosed, ("localhost", local.port), through)
    assert (host.requests, sum(host.opened.values())) == (3, 1)
    assert_no_credentials(written(diagnosed))


def test_connection_close_opens_a_tunnel_per_request(
    diagnosed: Diagnosed, tls_server, proxy, ca_file
):
    local = tls_server(close_after_response=True)
    # A name, so that each tunnel looks it up (an IP address is not looked up).
    through = proxy(host_name="localhost")
    session = requests.Session()
    session.proxies = {"https": through.url()}
    for _ in range(3):
        assert session.get(local.url, verify=ca_file).status_code == 200

    assert len(through.connects) == 3 == through.accepted
    assert [c.requests for c in local.connections] == [1, 1, 1]
    [host] = diagnosed.diagnosis.host_stats()
    assert dict(host.opened) == {A.REASON_FIRST: 1, A.REASON_SERVER_CLOSED: 2}
    assert len(named(diagnosed.spans, A.SPAN_PROXY)) == 3
    # Each new tunnel looked the proxy up, not the server (the proxy resolves that).
    finding = diagnosed.finding(A.FINDING_REPEATED_DNS)
    assert finding.target == f"localhost:{local.port}"
    assert finding.summary.startswith("localhost was looked up 3 times")


def test_a_tunnel_closed_while_idle_is_reopened_as_stale(
    diagnosed: Diagnosed, tls_server, proxy, client_context
):
    local = tls_server()
    through = proxy()
    http = urllib3.ProxyManager(through.url(), ssl_context=client_context)
    assert http.request("GET", local.url).status == 200
    local.close_idle_connections()
    # The proxy passes the server's close on to the client's end of the tunnel.
    assert wait_until(lambda: through.open_tunnels == 0)
    assert http.request("GET", local.url).status == 200

    assert len(through.connects) == 2
    assert [c.requests for c in local.connections] == [1, 1]
    [host] = diagnosed.diagnosis.host_stats()
    assert dict(host.opened) == {A.REASON_FIRST: 1, A.REASON_STALE: 1}
    assert host.dropped == 1
    second = attempts(diagnosed.spans)[1]
    assert second.attributes[A.CONNECTION_REASON] == A.REASON_STALE
    assert A.EVENT_CONNECTION_DROPPED in [e.name for e in second.events]


def test_a_refused_proxy_fails_the_setup_with_the_programs_own_error(
    diagnosed: Diagnosed, tls_server, refused_port, client_context
):
    local = tls_server()
    http = urllib3.ProxyManager(
        f"http://127.0.0.1:{refused_port}", ssl_context=client_context, retries=False
    )
    with pytest.raises(urllib3.exceptions.ProxyError) as raised:
        http.request("GET", local.url)
    assert "refused" in repr(raised.value).lower()

    spans = diagnosed.spans
    [setup] = named(spans, A.SPAN_CONNECTION_SETUP)
    assert setup.name == f"{A.SPAN_CONNECTION_SETUP} localhost:{local.port}"
    assert setup.status.status_code.name == "ERROR"
    assert setup.attributes[A.PROXY_PORT] == refused_port
    [tcp] = named(spans, A.SPAN_CONNECT)
    assert tcp.attributes[A.ERROR_TYPE] == "ConnectionRefusedError"
    assert not named(spans, A.SPAN_PROXY)
    [host] = diagnosed.diagnosis.host_stats()
    assert (host.host, host.port, host.proxy) == (
        "localhost",
        local.port,
        ("127.0.0.1", refused_port),
    )
    assert (host.requests, host.failed_connects) == (1, 1)
    assert local.connections == []


def test_a_407_is_the_tunnels_error_with_its_status(
    diagnosed: Diagnosed, tls_server, proxy, ca_file
):
    local = tls_server()
    through = proxy(credentials=(USER, PASSWORD))
    session = requests.Session()
    session.proxies = {"https": through.url(USER, "wrong-" + PASSWORD)}
    with pytest.raises(requests.exceptions.ProxyError) as raised:
        session.get(local.url, verify=ca_file)
    # The program's own error: the proxy's refusal, as requests words it.
    assert "407" in str(raised.value)

    assert through.connect_statuses == [407]
    spans = diagnosed.spans
    [tunnel] = named(spans, A.SPAN_PROXY)
    assert tunnel.attributes[A.HTTP_RESPONSE_STATUS_CODE] == 407
    assert tunnel.attributes[A.ERROR_TYPE] == "407"
    assert tunnel.status.status_code.name == "ERROR"
    [setup] = named(spans, A.SPAN_CONNECTION_SETUP)
    assert setup.status.status_code.name == "ERROR"
    assert not named(spans, A.SPAN_TLS)
    [host] = diagnosed.diagnosis.host_stats()
    assert (host.host, host.port, host.failed_connects) == ("localhost", local.port, 1)
    assert local.connections == []
    assert_no_credentials(written(diagnosed))


def test_a_bad_certificate_on_the_target_fails_tls_through_the_tunnel(
    diagnosed: Diagnosed, tls_server, proxy
):
    local = tls_server()
    through = proxy()
    # Trusts the system's CAs only, not the test CA that signed the server's certificate.
    http = urllib3.ProxyManager(
        through.url(), ssl_context=ssl.create_default_context(), retries=False
    )
    with pytest.raises(urllib3.exceptions.SSLError):
        http.request("GET", local.url)

    assert through.connect_statuses == [200]
    spans = diagnosed.spans
    [tunnel] = named(spans, A.SPAN_PROXY)
    assert tunnel.status.status_code.name == "UNSET"
    [tls] = named(spans, A.SPAN_TLS)
    assert tls.attributes[A.ERROR_TYPE] == "SSLCertVerificationError"
    assert tls.attributes[A.TLS_SERVER_NAME] == "localhost"
    [host] = diagnosed.diagnosis.host_stats()
    assert (host.host, host.failed_connects) == ("localhost", 1)


def https_proxy(proxy: Any, ca: Any, client_context: ssl.SSLContext) -> LocalProxy:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    return proxy(tls=context, upstream_tls=client_context, host_name="localhost")


def test_https_proxy_tunnel_is_tls_to_the_proxy_then_tls_inside(
    diagnosed: Diagnosed, tls_server, proxy, ca, client_context
):
    local = tls_server()
    through = https_proxy(proxy, ca, client_context)
    http = urllib3.ProxyManager(
        through.url(), ssl_context=client_context, proxy_ssl_context=client_context
    )
    for _ in range(2):
        assert http.request("GET", local.url).status == 200

    assert (through.accepted, len(through.connects)) == (1, 1)
    assert [c.requests for c in local.connections] == [2]
    spans = diagnosed.spans
    [setup] = named(spans, A.SPAN_CONNECTION_SETUP)
    dns, tcp, to_proxy, tunnel, inside = children(spans, setup)
    assert dns.attributes[A.DNS_QUESTION_NAME] == "localhost"
    assert tcp.attributes[A.NETWORK_PEER_PORT] == through.port
    assert (to_proxy.name, to_proxy.attributes[A.PROXY_PORT]) == (
        f"{A.SPAN_TLS} localhost",
        through.port,
    )
    assert tunnel.name == f"{A.SPAN_PROXY} localhost:{local.port}"
    assert inside.name == f"{A.SPAN_TLS} localhost"
    assert A.PROXY_ADDRESS not in inside.attributes
    assert inside.status.status_code.name == "UNSET"
    host, _ = assert_counted_under_target(diagnosed, ("localhost", local.port), through)
    assert (host.requests, host.reused) == (2, 1)


def test_https_forwarded_by_an_https_proxy_has_no_tunnel(
    diagnosed: Diagnosed, tls_server, proxy, ca, client_context
):
    local = tls_server()
    through = https_proxy(proxy, ca, client_context)
    http = urllib3.ProxyManager(
        through.url(),
        proxy_ssl_context=client_context,
        use_forwarding_for_https=True,
        # 1.26 speaks TLS to a forwarding proxy with ``ssl_context``; 2.x with
        # ``proxy_ssl_context``, and warns that ``ssl_context`` will be refused there.
        **({"ssl_context": client_context} if urllib3.__version__.startswith("1.") else {}),
    )
    for _ in range(2):
        assert http.request("GET", f"{local.url}/item").status == 200

    assert through.connects == []
    assert through.forwarded == [f"{local.url}/item"] * 2
    spans = diagnosed.spans
    [setup] = named(spans, A.SPAN_CONNECTION_SETUP)
    steps = children(spans, setup)
    # One TLS session, to the proxy: it reads the requests and forwards them.
    assert [s.name.split(" ")[0] for s in steps] == ["DNS", "socket", "TLS"]
    assert all(s.attributes[A.PROXY_PORT] == through.port for s in steps)
    host, _ = assert_counted_under_target(diagnosed, ("localhost", local.port), through)
    assert (host.requests, host.reused) == (2, 1)


# --- forwarding ----------------------------------------------------------------------------------


def test_plain_http_through_a_forwarding_proxy_is_counted_under_the_target(
    diagnosed: Diagnosed, server, proxy
):
    local = server()
    through = proxy(credentials=(USER, PASSWORD))
    session = requests.Session()
    session.proxies = {"http": through.url(USER, PASSWORD)}
    for _ in range(3):
        assert session.get(f"{local.url}/path").status_code == 200

    assert through.accepted == 1
    assert len(through.forwarded) == 3
    assert through.connects == []
    assert sum(c.requests for c in local.connections) == 3

    spans = diagnosed.spans
    sent = attempts(spans)
    assert [s.attributes[A.SERVER_PORT] for s in sent] == [local.port] * 3
    assert [s.attributes[A.NETWORK_PEER_PORT] for s in sent] == [through.port] * 3
    assert sent[0].attributes[A.URL_FULL] == f"http://127.0.0.1:{local.port}/path"
    [setup] = named(spans, A.SPAN_CONNECTION_SETUP)
    assert setup.name == f"{A.SPAN_CONNECTION_SETUP} 127.0.0.1:{local.port}"
    host, _ = assert_counted_under_target(diagnosed, ("127.0.0.1", local.port), through)
    assert (host.requests, host.reused, sum(host.opened.values())) == (3, 2, 1)
    # Each GET is a call of its own, named by its server (what operation findings name).
    assert list(diagnosed.diagnosis._operations) == [f"127.0.0.1:{local.port}"]
    assert_no_credentials(written(diagnosed))


# --- boto3 ---------------------------------------------------------------------------------------


def test_boto3_through_a_forwarding_proxy_to_moto(diagnosed: Diagnosed, moto_endpoint, proxy):
    through = proxy(credentials=(USER, PASSWORD))
    client = dynamodb(moto_endpoint, proxies={"http": through.url(USER, PASSWORD)})
    for _ in range(3):
        client.list_tables()

    assert through.accepted == 1
    assert len(through.forwarded) == 3
    target = ("127.0.0.1", int(moto_endpoint.rpartition(":")[2]))
    host, _ = assert_counted_under_target(diagnosed, target, through)
    assert (host.calls, host.requests, sum(host.opened.values())) == (3, 3, 1)
    assert_no_credentials(written(diagnosed))


def test_boto3_through_a_connect_tunnel(diagnosed: Diagnosed, tls_server, proxy, ca_file):
    local = tls_server()
    through = proxy(credentials=(USER, PASSWORD))
    client = boto3.client(
        "dynamodb",
        endpoint_url=local.url,
        region_name="us-east-1",
        verify=ca_file,
        config=Config(proxies={"https": through.url(USER, PASSWORD)}),
    )
    for _ in range(3):
        client.list_tables()

    assert through.accepted == 1
    assert through.connects == [("localhost", local.port)]
    assert [c.requests for c in local.connections] == [3]
    host, _ = assert_counted_under_target(diagnosed, ("localhost", local.port), through)
    assert (host.calls, host.requests, host.reused, sum(host.opened.values())) == (3, 3, 2, 1)
    [tunnel] = named(diagnosed.spans, A.SPAN_PROXY)
    assert tunnel.attributes[A.HTTP_RESPONSE_STATUS_CODE] == 200
    assert_no_credentials(written(diagnosed))


def test_boto3_takes_https_proxy_from_the_environment(
    diagnosed: Diagnosed, tls_server, proxy, ca_file, monkeypatch
):
    local = tls_server()
    through = proxy(credentials=(USER, PASSWORD))
    monkeypatch.setenv("HTTPS_PROXY", through.url(USER, PASSWORD))
    client = boto3.client(
        "dynamodb", endpoint_url=local.url, region_name="us-east-1", verify=ca_file
    )
    for _ in range(2):
        client.list_tables()

    assert through.connects == [("localhost", local.port)]
    host, _ = assert_counted_under_target(diagnosed, ("localhost", local.port), through)
    assert (host.requests, sum(host.opened.values())) == (2, 1)
    assert_no_credentials(written(diagnosed))


def test_the_proxy_layer_is_removed_with_the_others():
    connection_class, pools = urllib3.connection.HTTPConnection, urllib3.connectionpool
    tunnel, dropped = connection_class._tunnel, pools.is_connection_dropped
    conntrace.instrument()
    try:
        assert connection_class._tunnel is not tunnel
        if urllib3.__version__.startswith("1."):
            assert pools.is_connection_dropped is not dropped
    finally:
        conntrace.uninstrument()
    assert (connection_class._tunnel, pools.is_connection_dropped) == (tunnel, dropped)


def test_error_messages_lose_the_credentials_of_the_urls_they_name():
    from conntrace._redact import redact_userinfo

    message = f"Cannot connect to proxy http://{USER}:{PASSWORD}@proxy.internal:3128/ (timeout)"
    assert redact_userinfo(message) == (
        "Cannot connect to proxy http://REDACTED:REDACTED@proxy.internal:3128/ (timeout)"
    )
    assert redact_userinfo("mail me at someone@example.com") == "mail me at someone@example.com"


def test_the_program_gets_the_same_proxy_errors_traced_or_not(
    spans_off, tls_server, proxy, refused_port, ca_file
):
    local = tls_server()
    through = proxy(credentials=(USER, PASSWORD))

    def errors() -> list[tuple[type, str]]:
        seen = []
        for proxy_url in (through.url(USER, "wrong"), f"http://127.0.0.1:{refused_port}"):
            with pytest.raises(requests.exceptions.ProxyError) as raised:
                requests.get(local.url, proxies={"https": proxy_url}, verify=ca_file)
            # Object addresses differ from run to run.
            seen.append((type(raised.value), re.sub(r"0x[0-9a-f]+", "0x", str(raised.value))))
        return seen

    untraced = errors()
    spans = spans_off.enable()
    assert errors() == untraced
    assert len(spans.setups) == 2


def test_the_pytest_recorder_counts_a_tunnel_under_its_server(
    conntrace_recorder, tls_server, proxy, client_context
):
    local = tls_server()
    through = proxy()
    http = urllib3.ProxyManager(through.url(), ssl_context=client_context)
    for _ in range(3):
        assert http.request("GET", local.url).status == 200

    conntrace_recorder.assert_connections(local.url, opened=1, reasons={A.REASON_FIRST: 1})
    conntrace_recorder.assert_reused(local.url, count=2)
    assert conntrace_recorder.opened(f"127.0.0.1:{through.port}") == {}
