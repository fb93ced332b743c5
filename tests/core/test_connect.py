"""The spans of opening a connection: DNS lookup, TCP connect, TLS handshake, and their failures."""

from __future__ import annotations

import ssl
import textwrap

import pytest
import urllib3

from conntrace import attributes as A

from ..servers import free_port, run_without_network


def _tree(spans, attempt):
    [setup] = spans.children(attempt)
    children = sorted(spans.children(setup), key=lambda span: span.start_time)
    return setup, children


def test_new_http_connection_has_dns_and_tcp_spans(spans, server):
    local = server(host_name="localhost")
    urllib3.PoolManager().request("GET", local.url)

    [attempt] = spans.attempts
    setup, children = _tree(spans, attempt)
    assert setup.name == f"HTTP connection_setup localhost:{local.port}"
    assert setup.attributes[A.CONNECTION_REASON] == A.REASON_FIRST
    assert setup.attributes[A.CONNECTION_ID] == attempt.attributes[A.CONNECTION_ID]
    dns, tcp = children
    assert dns.name == "DNS lookup localhost"
    assert dns.attributes[A.DNS_QUESTION_NAME] == "localhost"
    assert "127.0.0.1" in list(dns.attributes[A.DNS_ANSWERS])
    assert tcp.name.startswith("socket connect ") and tcp.name.endswith(f":{local.port}")
    assert tcp.attributes[A.NETWORK_PEER_ADDRESS] in list(dns.attributes[A.DNS_ANSWERS])
    assert tcp.attributes[A.NETWORK_PEER_PORT] == local.port
    assert tcp.attributes[A.NETWORK_LOCAL_PORT] == local.connections[-1].client_port
    assert tcp.attributes[A.NETWORK_TRANSPORT] == "tcp"
    # urllib3 sets TCP_NODELAY by default and leaves SO_KEEPALIVE off.
    assert tcp.attributes[A.SOCKET_NODELAY] is True
    assert tcp.attributes[A.SOCKET_KEEPALIVE] is False
    assert dns.end_time <= tcp.start_time
    assert setup.start_time <= dns.start_time and tcp.end_time <= setup.end_time


def test_socket_options_are_reported(spans, server):
    import socket

    local = server()
    options = [*urllib3.connection.HTTPConnection.default_socket_options]
    options.append((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1))
    urllib3.PoolManager(socket_options=options).request("GET", local.url)

    [tcp] = spans.named("socket connect")
    assert tcp.attributes[A.SOCKET_KEEPALIVE] is True


def test_https_connection_has_a_tls_span(spans, tls_server, ca):
    local = tls_server()
    http = urllib3.PoolManager(ssl_context=_client_context(ca))
    for _ in range(2):
        assert http.request("GET", local.url).status == 200

    first, second = spans.attempts
    _setup, children = _tree(spans, first)
    assert [span.name.split(" ")[0] for span in children] == ["DNS", "socket", "TLS"]
    tls = children[2]
    assert tls.name == "TLS client handshake localhost"
    assert tls.attributes[A.TLS_PROTOCOL_VERSION] in ("1.2", "1.3")
    assert tls.attributes[A.TLS_CIPHER]
    assert tls.attributes[A.TLS_RESUMED] is False
    assert tls.status.status_code.name == "UNSET"
    assert second.attributes[A.CONNECTION_REUSED] is True
    assert spans.children(second) == []


def test_bad_certificate_fails_the_tls_span_and_keeps_the_programs_error(spans, tls_server):
    local = tls_server()
    http = urllib3.PoolManager(
        ssl_context=ssl.create_default_context(), retries=urllib3.Retry(total=0)
    )
    with pytest.raises(urllib3.exceptions.MaxRetryError) as raised:
        http.request("GET", local.url)
    assert isinstance(raised.value.reason, urllib3.exceptions.SSLError)

    [tls] = spans.named("TLS client handshake")
    assert tls.status.status_code.name == "ERROR"
    assert tls.attributes[A.ERROR_TYPE] == "SSLCertVerificationError"
    [setup] = spans.setups
    assert setup.status.status_code.name == "ERROR"
    [attempt] = spans.attempts
    assert attempt.status.status_code.name == "ERROR"
    assert attempt.attributes[A.CONNECTION_REASON] == A.REASON_FIRST
    assert A.CONNECTION_ID not in attempt.attributes


def test_an_ip_address_is_not_looked_up(spans, server):
    local = server()
    urllib3.PoolManager().request("GET", local.url)

    [attempt] = spans.attempts
    _setup, children = _tree(spans, attempt)
    assert [span.name for span in children] == [f"socket connect 127.0.0.1:{local.port}"]


def test_refused_port_fails_the_connect_span(spans):
    port = free_port()  # nothing listens there any more
    http = urllib3.PoolManager(retries=urllib3.Retry(total=0))
    with pytest.raises(urllib3.exceptions.MaxRetryError) as raised:
        http.request("GET", f"http://127.0.0.1:{port}/")
    assert "refused" in str(raised.value.reason).lower()

    # An IP address is not looked up: no DNS span, the connect fails.
    assert spans.named("DNS lookup") == []
    [tcp] = spans.named("socket connect")
    assert tcp.status.status_code.name == "ERROR"
    assert tcp.attributes[A.ERROR_TYPE] == "ConnectionRefusedError"
    assert tcp.attributes[A.SERVER_PORT] == port
    [attempt] = spans.attempts
    assert attempt.attributes[A.ERROR_TYPE] == "NewConnectionError"


_UNRESOLVABLE = textwrap.dedent(
    """
    import json
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import conntrace

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    conntrace.instrument(tracer_provider=provider)
    import urllib3

    try:
        urllib3.PoolManager(retries=False).request("GET", "http://no-such-host.invalid/")
    except Exception as error:
        outcome = type(error).__name__
    spans = [
        {"name": s.name, "status": s.status.status_code.name, "attributes": dict(s.attributes)}
        for s in exporter.get_finished_spans()
    ]
    print(json.dumps({"outcome": outcome, "spans": spans}))
    """
)


def test_unresolvable_host_fails_the_dns_span(tmp_path):
    # Resolving a name would ask this machine's resolver, off the machine: run the lookup
    # in a new network namespace, where it fails at once and nothing leaves loopback.
    result = run_without_network(_UNRESOLVABLE, tmp_path)

    assert result["outcome"] == "NameResolutionError" or result["outcome"] == "NewConnectionError"
    [dns] = [span for span in result["spans"] if span["name"].startswith("DNS lookup")]
    assert dns["name"] == "DNS lookup no-such-host.invalid"
    assert dns["status"] == "ERROR"
    assert dns["attributes"][A.ERROR_TYPE] == "gaierror"
    assert not [span for span in result["spans"] if span["name"].startswith("socket connect")]


def _client_context(ca) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context
