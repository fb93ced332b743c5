"""httpx over httpcore, sync and async: what conntrace sees against what the server counted."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
import wrapt

import conntrace
from conntrace import attributes as A

from ..servers import LocalServer, Response, run_without_network, wait_until


def _host(diagnosis: Any, local: LocalServer) -> dict[str, Any]:
    [host] = [h for h in diagnosis.hosts() if h["server_port"] == local.port]
    return host


def _opened(host: dict[str, Any]) -> int:
    return sum(host["connections_opened"].values())


def _reasons(spans: Any) -> list[str | None]:
    return [span.attributes.get(A.CONNECTION_REASON) for span in spans.attempts]


def _trusting(ca: Any) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port bound on 127.0.0.1 with no listener, held for the test: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_requests_on_one_client_share_one_connection(driver, server, spans, diagnosis):
    local = server()
    assert driver.requests(local.url, 5) == [200] * 5

    assert len(local.connections) == 1 and local.connections[0].requests == 5
    attempts = spans.attempts
    assert [span.attributes[A.CONNECTION_REUSED] for span in attempts] == [False] + [True] * 4
    assert _reasons(spans) == [A.REASON_FIRST] + [None] * 4
    assert [span.attributes[A.CONNECTION_REQUEST_NUMBER] for span in attempts] == [1, 2, 3, 4, 5]
    assert len({span.attributes[A.CONNECTION_ID] for span in attempts}) == 1
    assert all(span.attributes[A.CONNECTION_IDLE_MS] >= 0 for span in attempts[1:])
    # No limit was reached: no request waited for the pool.
    assert [span.attributes[A.POOL_WAIT_MS] for span in attempts] == [0.0] * 5
    [setup] = spans.setups
    assert setup.attributes[A.CONNECTION_REASON] == A.REASON_FIRST
    host = _host(diagnosis, local)
    assert host["requests"] == len(local.requests) == 5
    assert _opened(host) == len(local.connections) == 1
    assert host["reused"] == 4
    assert diagnosis.findings() == []


def test_https_connection_has_dns_tcp_and_tls_steps(driver, tls_server, ca, spans, diagnosis):
    local = tls_server()
    assert driver.requests(local.url, 2, verify=_trusting(ca)) == [200, 200]

    assert len(local.connections) == 1
    first, second = spans.attempts
    [setup] = spans.children(first)
    steps = sorted(spans.children(setup), key=lambda span: span.start_time)
    assert [span.name for span in steps] == [
        "DNS lookup localhost",
        f"socket connect 127.0.0.1:{local.port}",
        "TLS client handshake localhost",
    ]
    dns, tcp, tls = steps
    assert list(dns.attributes[A.DNS_ANSWERS]) == ["127.0.0.1"]
    assert tcp.attributes[A.NETWORK_LOCAL_PORT] == local.connections[0].client_port
    assert tls.attributes[A.TLS_PROTOCOL_VERSION] in ("1.2", "1.3")
    assert tls.attributes[A.TLS_CIPHER]
    assert dns.end_time <= tcp.start_time <= tcp.end_time <= tls.start_time
    assert setup.start_time <= dns.start_time and tls.end_time <= setup.end_time
    assert second.attributes[A.CONNECTION_REUSED] is True
    assert spans.children(second) == []
    assert _host(diagnosis, local)["dns_lookups"] == 1


def test_a_client_per_call_is_a_new_pool(driver, server, spans, diagnosis):
    local = server()
    for _ in range(3):
        assert driver.requests(local.url, 1) == [200]

    assert len(local.connections) == 3
    assert _reasons(spans) == [A.REASON_FIRST, A.REASON_NEW_POOL, A.REASON_NEW_POOL]
    host = _host(diagnosis, local)
    assert _opened(host) == 3 and host["pools"] == 3
    [finding] = [f for f in diagnosis.findings() if f.id == A.FINDING_CLIENT_RECREATED]
    # In httpx's terms, not boto3's.
    assert "httpx.Client" in finding.advice and "boto3" not in finding.advice
    # Where the program made each client: the driver's line, for the sync and async client.
    [origin] = host["origins"]
    made = "httpx.Client(**client)" if driver.mode == "sync" else "httpx.AsyncClient(**client)"
    assert (origin["function"], origin["library"], origin["pools"]) == (
        "run" if driver.mode == "async" else "requests",
        "httpx",
        3,
    )
    assert made in Path(origin["file"]).read_text().splitlines()[origin["line"] - 1]
    assert "a new httpx Client is created on every call at" in finding.summary


def test_more_requests_than_max_connections_wait_for_the_pool(driver, server, spans, diagnosis):
    local = server(respond=lambda request: Response(delay=0.3))
    limits = httpx.Limits(max_connections=2)
    assert driver.concurrent(local.url, 4, limits=limits) == [200] * 4

    assert len(local.connections) == 2 and len(local.requests) == 4
    new = [span for span in spans.attempts if not span.attributes[A.CONNECTION_REUSED]]
    reused = [span for span in spans.attempts if span.attributes[A.CONNECTION_REUSED]]
    assert sorted(span.attributes[A.CONNECTION_REASON] for span in new) == [
        A.REASON_FIRST,
        A.REASON_POOL_BUSY,
    ]
    # The two beyond the limit waited for a response of 0.3 s to free a connection.
    assert len(reused) == 2
    assert all(span.attributes[A.POOL_WAIT_MS] > 100 for span in reused)
    assert [span.attributes[A.POOL_WAIT_MS] for span in new] == [0.0, 0.0]
    # Each attempt ends when its awaited response came, not when its coroutine was made.
    assert all(span.end_time - span.start_time >= 0.25e9 for span in spans.attempts)
    host = _host(diagnosis, local)
    assert host["max_concurrency"] == 2 and host["pool_max_size"] == 2
    assert _opened(host) == 2 and host["requests"] == 4
    [finding] = [f for f in diagnosis.findings() if f.id == A.FINDING_POOL_TOO_SMALL]
    assert "2 requests waited for a connection" in finding.summary
    assert "httpx.Limits(max_keepalive_connections=3) with max_connections" in finding.advice


def test_connections_beyond_max_keepalive_are_discarded_and_opened_again(
    driver, server, spans, diagnosis
):
    local = server(respond=lambda request: Response(delay=0.2))
    limits = httpx.Limits(max_connections=10, max_keepalive_connections=2)

    def burst(http: Any) -> Any:
        if driver.mode == "sync":
            return driver.threads(http, local.url, 5)
        return asyncio.gather(*(http.get(local.url) for _ in range(5)))

    outcomes = driver.each([burst, burst], limits=limits)
    assert [len(outcome) for outcome in outcomes] == [5, 5]

    # httpx closes idle connections while its pool holds more than two: each burst opens
    # three (or more) it will not keep.
    host = _host(diagnosis, local)
    assert _opened(host) == len(local.connections) > 5
    assert host["discarded"] >= 3
    assert host["connections_opened"][A.REASON_POOL_DISCARDED] >= 3
    discarded = [
        event
        for span in spans.attempts
        for event in span.events
        if event.name == A.EVENT_POOL_DISCARDED
    ]
    # The first burst's, on the second burst's requests (the second's wait for a next one).
    assert 3 <= len(discarded) < host["discarded"]
    assert all(event.attributes[A.POOL_MAX_SIZE] == 2 for event in discarded)
    [finding] = [f for f in diagnosis.findings() if f.id == A.FINDING_POOL_TOO_SMALL]
    assert "httpx.Limits(max_keepalive_connections=5)" in finding.advice


def test_a_connection_the_server_closed_while_idle_is_stale(driver, server, spans, diagnosis):
    local = server()

    def close_idle(http: Any) -> Any:
        local.close_idle_connections()
        assert wait_until(lambda: not local._open)
        return http.get(local.url)

    outcomes = driver.each([lambda http: http.get(local.url), close_idle])
    assert [response.status_code for response in outcomes] == [200, 200]

    assert len(local.connections) == 2
    first, second = spans.attempts
    assert second.attributes[A.CONNECTION_REASON] == A.REASON_STALE
    [dropped] = [event for event in second.events if event.name == A.EVENT_CONNECTION_DROPPED]
    assert dropped.attributes[A.CONNECTION_ID] == first.attributes[A.CONNECTION_ID]
    host = _host(diagnosis, local)
    assert host["dropped_idle"] == 1 and host["connections_opened"][A.REASON_STALE] == 1
    [finding] = [f for f in diagnosis.findings() if f.id == A.FINDING_IDLE_DROPPED]
    assert "1 had been closed by the peer while idle" in finding.summary
    assert "0 had outlived httpx's keepalive_expiry" in finding.summary
    assert "httpx.Limits(keepalive_expiry=" in finding.advice


def test_keepalive_expiry_is_stale_without_a_peer_drop(driver, server, spans, diagnosis):
    local = server()
    limits = httpx.Limits(keepalive_expiry=0)

    def later(http: Any) -> Any:
        assert wait_until(lambda: False, timeout=0.05) is False
        return http.get(local.url)

    outcomes = driver.each([lambda http: http.get(local.url), later], limits=limits)
    assert [response.status_code for response in outcomes] == [200, 200]

    assert len(local.connections) == 2
    assert _reasons(spans) == [A.REASON_FIRST, A.REASON_STALE]
    # httpx dropped it itself: no connection was found closed by the peer.
    assert not [e for e in spans.attempts[1].events if e.name == A.EVENT_CONNECTION_DROPPED]
    assert _host(diagnosis, local)["dropped_idle"] == 0
    [finding] = [f for f in diagnosis.findings() if f.id == A.FINDING_IDLE_DROPPED]
    assert "0 had been closed by the peer" in finding.summary
    assert "1 had outlived httpx's keepalive_expiry" in finding.summary


def test_connection_close_responses_are_server_closed(driver, server, spans, diagnosis):
    local = server(close_after_response=True)
    assert driver.requests(local.url, 3) == [200] * 3

    assert len(local.connections) == 3
    assert _reasons(spans) == [A.REASON_FIRST, A.REASON_SERVER_CLOSED, A.REASON_SERVER_CLOSED]
    for span in spans.attempts:
        assert A.EVENT_SERVER_CLOSED in [event.name for event in span.events]
    host = _host(diagnosis, local)
    assert host["closed_by_server"] == 3 and _opened(host) == 3
    assert A.FINDING_SERVER_CLOSES in [finding.id for finding in diagnosis.findings()]


def test_a_response_closed_unread_costs_its_connection(server, spans, diagnosis):
    local = server(respond=lambda request: Response(body=b"x" * 100_000))
    with httpx.Client() as http:
        with http.stream("GET", local.url) as response:
            assert response.status_code == 200  # the body is never read
        assert http.get(local.url).status_code == 200

    assert len(local.connections) == 2
    assert _reasons(spans) == [A.REASON_FIRST, A.REASON_ERROR]
    assert _opened(_host(diagnosis, local)) == 2


def test_a_refused_port_fails_the_connect_step(driver, refused_port, spans, diagnosis):
    [outcome] = driver.each([lambda http: http.get(f"http://127.0.0.1:{refused_port}/")])
    assert isinstance(outcome, httpx.ConnectError)

    [tcp] = spans.named("socket connect")
    assert tcp.status.status_code.name == "ERROR"
    assert tcp.attributes[A.ERROR_TYPE] == "ConnectionRefusedError"
    assert tcp.attributes[A.SERVER_PORT] == refused_port
    [setup] = spans.setups
    assert setup.status.status_code.name == "ERROR"
    [attempt] = spans.attempts
    assert attempt.attributes[A.ERROR_TYPE] == "ConnectError"
    assert attempt.attributes[A.CONNECTION_REASON] == A.REASON_FIRST
    assert A.CONNECTION_ID not in attempt.attributes


def test_connect_retries_are_further_attempts(driver, refused_port, spans, diagnosis):
    transport = (
        httpx.HTTPTransport(retries=1)
        if driver.mode == "sync"
        else httpx.AsyncHTTPTransport(retries=1)
    )
    url = f"http://127.0.0.1:{refused_port}/"
    [outcome] = driver.each([lambda http: http.get(url)], transport=transport)
    assert isinstance(outcome, httpx.ConnectError)

    first, second = spans.attempts
    assert first.attributes[A.CONNECTION_REASON] == A.REASON_FIRST
    assert second.attributes[A.CONNECTION_REASON] == A.REASON_ERROR
    assert second.attributes[A.HTTP_REQUEST_RESEND_COUNT] == 1
    assert first.parent == second.parent
    assert len(spans.named("socket connect")) == 2


def test_a_bad_certificate_fails_the_tls_step(driver, tls_server, spans, diagnosis):
    local = tls_server()
    [outcome] = driver.each([lambda http: http.get(local.url)], verify=ssl.create_default_context())
    assert isinstance(outcome, httpx.ConnectError)

    [tls] = spans.named("TLS client handshake")
    assert tls.status.status_code.name == "ERROR"
    assert tls.attributes[A.ERROR_TYPE] == "SSLCertVerificationError"
    [setup] = spans.setups
    assert setup.status.status_code.name == "ERROR"
    [attempt] = spans.attempts
    assert attempt.status.status_code.name == "ERROR"


def _trace_names(driver: Any, url: str) -> list[str]:
    heard: list[str] = []
    if driver.mode == "sync":

        def callback(name: str, info: dict[str, Any]) -> None:
            heard.append(name)

    else:

        async def callback(name: str, info: dict[str, Any]) -> None:  # type: ignore[misc]
            heard.append(name)

    driver.each([lambda http: http.get(url, extensions={"trace": callback})] * 2)
    return heard


def test_the_programs_own_trace_callback_hears_the_same_events(driver, server, spans_off):
    local = server()
    without = _trace_names(driver, local.url)
    spans = spans_off.enable()
    with_conntrace = _trace_names(driver, local.url)

    assert "connection.connect_tcp.started" in without
    assert with_conntrace == without
    assert len(spans.attempts) == 2


_FAILING = ("refused", "bad certificate", "404", "read timeout")


def _outcomes(driver: Any, local: LocalServer, tls: LocalServer, port: int) -> list[Any]:
    def described(outcome: Any) -> Any:
        if isinstance(outcome, Exception):
            return (type(outcome), str(outcome))
        return (outcome.status_code, outcome.content)

    missing = f"{local.url}/missing"
    slow = f"{local.url}/slow"
    calls = [
        lambda http: http.get(f"http://127.0.0.1:{port}/"),
        lambda http: http.get(tls.url),
        lambda http: http.get(missing),
        lambda http: http.get(slow, timeout=0.2),
        lambda http: http.get(local.url),
    ]
    return [described(outcome) for outcome in driver.each(calls)]


def test_the_programs_results_and_exceptions_are_unchanged(
    driver, server, tls_server, refused_port, spans_off
):
    def respond(request: Any) -> Response:
        if request.target == "/missing":
            return Response(status=404, body=b"nope")
        if request.target == "/slow":
            return Response(delay=0.6)
        return Response(body=b"hello")

    local = server(respond=respond)
    tls = tls_server()
    without = _outcomes(driver, local, tls, refused_port)
    spans = spans_off.enable()
    with_conntrace = _outcomes(driver, local, tls, refused_port)

    assert with_conntrace == without
    assert [kind for kind, _ in without[:2]] == [httpx.ConnectError, httpx.ConnectError]
    assert without[2] == (404, b"nope") and without[3][0] is httpx.ReadTimeout
    assert without[4] == (200, b"hello")
    assert len(spans.attempts) == 5


def test_uninstrument_restores_httpcore(server):
    originals = {
        (cls, name): vars(cls)[name]
        for cls, name in (
            (httpcore.ConnectionPool, "handle_request"),
            (httpcore.AsyncConnectionPool, "handle_async_request"),
            (httpcore.HTTPConnection, "handle_request"),
            (httpcore.HTTPConnection, "close"),
            (httpcore.AsyncHTTPConnection, "aclose"),
        )
    }
    conntrace.instrument()
    try:
        assert isinstance(vars(httpcore.ConnectionPool)["handle_request"], wrapt.FunctionWrapper)
        assert isinstance(
            vars(httpcore.AsyncConnectionPool)["handle_async_request"], wrapt.FunctionWrapper
        )
    finally:
        conntrace.uninstrument()
    for (cls, name), original in originals.items():
        assert vars(cls)[name] is original
    local = server()
    assert httpx.get(local.url).status_code == 200


def test_importing_conntrace_leaves_httpx_alone_until_the_program_imports_it():
    script = textwrap.dedent(
        """
        import sys
        import conntrace
        conntrace.instrument()
        assert not any(
            m.split(".")[0] in ("httpx", "httpcore", "anyio") for m in sys.modules
        ), "eager"
        import httpx, httpcore, wrapt
        assert isinstance(vars(httpcore.ConnectionPool)["handle_request"], wrapt.FunctionWrapper)
        print("lazy ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "lazy ok"


_UNRESOLVABLE = textwrap.dedent(
    """
    import asyncio, json
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import conntrace

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    conntrace.instrument(tracer_provider=provider)
    import httpx

    URL = "http://no-such-host.invalid/"

    async def get_async():
        async with httpx.AsyncClient() as http:
            await http.get(URL)

    outcomes = []
    for get in (lambda: httpx.Client().get(URL), lambda: asyncio.run(get_async())):
        try:
            get()
        except Exception as error:
            outcomes.append(type(error).__name__)
    spans = [
        {"name": s.name, "status": s.status.status_code.name, "attributes": dict(s.attributes)}
        for s in exporter.get_finished_spans()
    ]
    print(json.dumps({"outcomes": outcomes, "spans": spans}))
    """
)


def test_an_unresolvable_host_fails_the_dns_step(tmp_path):
    # Resolving a name would ask this machine's resolver, off the machine: run the lookup
    # in a new network namespace, where it fails at once and nothing leaves loopback.
    result = run_without_network(_UNRESOLVABLE, tmp_path)

    assert result["outcomes"] == ["ConnectError", "ConnectError"]
    lookups = [span for span in result["spans"] if span["name"].startswith("DNS lookup")]
    assert [span["name"] for span in lookups] == ["DNS lookup no-such-host.invalid"] * 2
    assert [span["status"] for span in lookups] == ["ERROR", "ERROR"]
    assert [span["attributes"][A.ERROR_TYPE] for span in lookups] == ["gaierror"] * 2
    assert not [span for span in result["spans"] if span["name"].startswith("socket connect")]
    setups = [span for span in result["spans"] if span["name"].startswith(A.SPAN_CONNECTION_SETUP)]
    assert [span["status"] for span in setups] == ["ERROR", "ERROR"]


def test_pools_that_may_speak_http2_are_left_untraced(server, spans):
    local = server()
    # http:// without prior knowledge stays on HTTP/1.1, so this runs without h2 installed.
    with httpcore.ConnectionPool(http1=True, http2=True) as pool:
        assert pool.request("GET", local.url).status == 200
    with httpcore.ConnectionPool() as pool:
        assert pool.request("GET", local.url).status == 200

    assert len(local.requests) == 2
    [attempt] = spans.attempts
    assert attempt.attributes[A.CONNECTION_REASON] == A.REASON_FIRST


def _fail_every_start(name: str, phase: str) -> None:
    if phase == "start":
        raise RuntimeError(f"injected fault in {name}")


def test_failing_hooks_change_nothing_and_warn_once(
    driver, server, refused_port, spans_off, monkeypatch, caplog
):
    from conntrace import _runtime
    from conntrace.layers import httpcore as layer

    local = server(close_after_response=True)
    url = f"http://127.0.0.1:{refused_port}/"

    def workload() -> list[Any]:
        calls = [lambda http: http.get(local.url)] * 3 + [lambda http: http.get(url)]
        outcomes = driver.each(calls)
        return [
            (type(outcome), str(outcome)) if isinstance(outcome, Exception) else outcome.status_code
            for outcome in outcomes
        ]

    def broken(probe: Any, info: dict[str, Any]) -> None:
        raise RuntimeError("injected fault in a trace handler")

    plain = workload()
    spans = spans_off.enable()
    monkeypatch.setattr(_runtime, "_reported", set())
    # First a handler of the trace callback fails on every response, then every hook.
    monkeypatch.setitem(layer._EVENTS, "http11.receive_response_headers.complete", broken)
    with caplog.at_level("WARNING", logger="conntrace"):
        handler_failing = workload()
        monkeypatch.setattr(_runtime, "fault", _fail_every_start)
        hooks_failing = workload()
    conntrace.uninstrument()

    assert handler_failing == hooks_failing == plain
    messages = [record.getMessage() for record in caplog.records if record.name == "conntrace"]
    places = [re.search(r"error in (.+); the program", message).group(1) for message in messages]
    assert sorted(places) == sorted(set(places)), "one warning per place, not per call"
    assert "httpcore.trace http11.receive_response_headers.complete" in places
    assert "httpcore.request" in places
    # Only the requests before the hooks failed were traced.
    assert len(spans.attempts) == 4


def test_an_httpcore_without_the_pool_queue_is_left_untraced_with_one_warning(monkeypatch, caplog):
    from types import ModuleType

    from conntrace import _runtime
    from conntrace._patching import Layer, Patcher
    from conntrace.layers import httpcore as layer

    # httpcore before 1.0.3 had no request queue in its pools: as if this were it.
    older = ModuleType("httpcore")
    classes = {}
    for name in ("ConnectionPool", "AsyncConnectionPool", "HTTPConnection"):
        classes[name] = type(name, (), {"handle_request": lambda self, request: None})
        setattr(older, name, classes[name])
    older.ConnectionNotAvailable = RuntimeError  # type: ignore[attr-defined]
    original = vars(classes["ConnectionPool"])["handle_request"]
    patcher = Patcher()
    monkeypatch.setattr(_runtime, "active", True)
    monkeypatch.setattr(_runtime, "_reported", set())
    with caplog.at_level("WARNING", logger="conntrace"):
        Layer("httpcore", "httpcore", layer.apply)._on_import(patcher, older)

    # All or nothing: the hook it had put on handle_request is gone again.
    assert vars(classes["ConnectionPool"])["handle_request"] is original
    [message] = [record.getMessage() for record in caplog.records]
    assert "patching httpcore" in message
