"""aiohttp through conntrace: reuse, the reasons for new connections, setup steps, failures."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
import textwrap
from typing import Any

import aiohttp
import pytest

import conntrace
from conntrace import _runtime, ledger
from conntrace import attributes as A
from conntrace.ledger import Attempt, BaseSink

from ..servers import Response, free_port, run_without_network


class Attempts(BaseSink):
    """The ledger's attempts, as the findings and the report read them."""

    def __init__(self) -> None:
        self.ended: list[Attempt] = []

    def attempt_ended(self, attempt: Attempt) -> None:
        self.ended.append(attempt)


@pytest.fixture
def attempts(spans):
    sink = Attempts()
    ledger.add_sink(sink)
    yield sink.ended
    ledger.remove_sink(sink)


async def _get(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, bytes]:
    async with session.get(url + "/item", **kwargs) as response:
        return response.status, await response.read()


def _reasons(spans) -> list[Any]:
    return [a.attributes.get(A.CONNECTION_REASON) for a in spans.attempts]


def test_requests_on_one_session_share_one_connection(spans, server):
    local = server()

    async def main() -> list[tuple[int, bytes]]:
        async with aiohttp.ClientSession() as session:
            results = []
            for _ in range(5):
                results.append(await _get(session, local.url))
                await asyncio.sleep(0.02)
            return results

    assert asyncio.run(main()) == [(200, b"{}")] * 5

    assert len(local.connections) == 1
    assert local.connections[0].requests == 5
    first, *reused = spans.attempts
    [setup] = spans.setups
    assert first.attributes[A.CONNECTION_REUSED] is False
    assert first.attributes[A.CONNECTION_REASON] == A.REASON_FIRST
    assert first.attributes[A.CONNECTION_REQUEST_NUMBER] == 1
    assert setup.parent.span_id == first.context.span_id
    assert len(reused) == 4
    for number, attempt in enumerate(reused, start=2):
        attributes = attempt.attributes
        assert attributes[A.CONNECTION_REUSED] is True
        assert A.CONNECTION_REASON not in attributes
        assert attributes[A.CONNECTION_ID] == setup.attributes[A.CONNECTION_ID]
        assert attributes[A.CONNECTION_REQUEST_NUMBER] == number
        assert attributes[A.CONNECTION_IDLE_MS] >= 15
        assert attributes[A.HTTP_RESPONSE_STATUS_CODE] == 200
        assert attributes[A.URL_FULL] == f"http://127.0.0.1:{local.port}/item"
        assert spans.children(attempt) == []
    # An address needs no lookup: the setup is the TCP connect alone.
    assert [s.name.split(" ")[0] for s in spans.children(setup)] == ["socket"]
    [tcp] = spans.children(setup)
    assert tcp.attributes[A.NETWORK_PEER_PORT] == local.port
    assert tcp.attributes[A.NETWORK_LOCAL_PORT] == local.connections[0].client_port


def test_a_session_per_request_is_a_new_pool(spans, server):
    local = server()

    async def main() -> None:
        for _ in range(3):
            async with aiohttp.ClientSession() as session:
                assert (await _get(session, local.url))[0] == 200

    asyncio.run(main())

    assert len(local.connections) == 3
    assert _reasons(spans) == [A.REASON_FIRST, A.REASON_NEW_POOL, A.REASON_NEW_POOL]
    second = spans.attempts[1]
    [created] = [e for e in second.events if e.name == A.EVENT_POOL_CREATED]
    assert created.attributes[A.POOL_COUNT] == 2


def test_more_requests_than_the_connector_limit_wait_for_the_pool(spans, server, attempts):
    local = server(respond=lambda request: Response(delay=0.1))

    async def main() -> list[tuple[int, bytes]]:
        connector = aiohttp.TCPConnector(limit_per_host=2)
        async with aiohttp.ClientSession(connector=connector) as session:
            return await asyncio.gather(*(_get(session, local.url) for _ in range(6)))

    assert [status for status, _ in asyncio.run(main())] == [200] * 6

    assert len(local.connections) == 2
    assert sum(c.requests for c in local.connections) == 6
    assert sorted(r for r in _reasons(spans) if r) == [A.REASON_FIRST, A.REASON_POOL_BUSY]
    waited = [a for a in attempts if a.wait_ms is not None]
    assert len(waited) == 4
    assert all(a.reused for a in waited)
    # Each waited for at least one response of about 100 ms.
    assert all(a.wait_ms >= 50 for a in waited)
    assert all(a.pool.max_size == 2 for a in attempts)
    assert {a.pool.peak for a in attempts} == {2}
    for span in spans.attempts:
        if span.attributes.get(A.CONNECTION_REUSED):
            assert span.attributes[A.POOL_WAIT_MS] >= 50


def test_idle_connections_closed_by_the_server_are_stale(spans, server, attempts):
    local = server()

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            assert (await _get(session, local.url))[0] == 200
            local.close_idle_connections()
            await asyncio.sleep(0.2)
            assert (await _get(session, local.url))[0] == 200

    asyncio.run(main())

    assert len(local.connections) == 2
    assert _reasons(spans) == [A.REASON_FIRST, A.REASON_STALE]
    second = attempts[1]
    assert len(second.idle_dropped_ms) == 1
    assert second.idle_dropped_ms[0] >= 150
    assert [e.name for e in spans.attempts[1].events] == [A.EVENT_CONNECTION_DROPPED]


def test_connection_close_from_the_server_opens_a_connection_per_request(spans, server):
    local = server(close_after_response=True)

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                assert (await _get(session, local.url))[0] == 200

    asyncio.run(main())

    assert len(local.connections) == 3
    assert _reasons(spans) == [A.REASON_FIRST, A.REASON_SERVER_CLOSED, A.REASON_SERVER_CLOSED]
    for attempt in spans.attempts:
        assert A.EVENT_SERVER_CLOSED in [e.name for e in attempt.events]


def test_https_has_a_tls_step_with_its_version(spans, tls_server, ca):
    local = tls_server()
    context = ssl.create_default_context()
    ca.configure_trust(context)

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                assert (await _get(session, local.url, ssl=context))[0] == 200

    asyncio.run(main())

    # aiohttp 3.10 sometimes opens a second connection here; 3.14 does not.
    assert len(spans.setups) == len(local.connections)
    first, second = spans.attempts
    [setup] = spans.children(first)
    steps = sorted(spans.children(setup), key=lambda span: span.start_time)
    assert [s.name for s in steps] == [
        "DNS lookup localhost",
        steps[1].name,
        "TLS client handshake localhost",
    ]
    dns, tcp, tls = steps
    assert "127.0.0.1" in dns.attributes[A.DNS_ANSWERS]
    assert tcp.name.startswith("socket connect")
    assert tcp.end_time <= tls.start_time
    assert tls.attributes[A.TLS_PROTOCOL_VERSION] in ("1.2", "1.3")
    assert tls.attributes[A.TLS_CIPHER]
    assert second.attributes[A.CONNECTION_REUSED] is (len(local.connections) == 1)


def test_the_dns_cache_is_not_a_lookup(spans, server):
    local = server(host_name="localhost", close_after_response=True)

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                assert (await _get(session, local.url))[0] == 200
        # A new connector has an empty cache: it looks the name up again.
        async with aiohttp.ClientSession() as session:
            assert (await _get(session, local.url))[0] == 200

    asyncio.run(main())

    assert len(local.connections) == 3
    assert len(spans.named("DNS lookup")) == 2
    assert len(spans.named("socket connect")) == 3


def test_bad_certificate_fails_the_tls_step_and_keeps_the_programs_error(spans, tls_server):
    local = tls_server()

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            await _get(session, local.url)

    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        asyncio.run(main())

    [tls] = spans.named("TLS client handshake")
    assert tls.status.status_code.name == "ERROR"
    assert tls.attributes[A.ERROR_TYPE] == "ClientConnectorCertificateError"
    [setup] = spans.setups
    assert setup.status.status_code.name == "ERROR"
    [attempt] = spans.attempts
    assert attempt.status.status_code.name == "ERROR"
    assert attempt.attributes[A.CONNECTION_REASON] == A.REASON_FIRST
    assert A.CONNECTION_ID not in attempt.attributes


def test_refused_port_fails_the_connect_step_and_the_next_is_error(spans):
    port = free_port()  # nothing listens there any more

    async def main() -> list[str]:
        errors = []
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                try:
                    await _get(session, f"http://127.0.0.1:{port}")
                except aiohttp.ClientConnectorError as error:
                    errors.append(type(error).__name__)
        return errors

    assert asyncio.run(main()) == ["ClientConnectorError"] * 2

    tcp = spans.named("socket connect")
    assert len(tcp) == 2
    assert all(span.status.status_code.name == "ERROR" for span in tcp)
    assert tcp[0].attributes[A.SERVER_PORT] == port
    assert tcp[0].attributes[A.ERROR_TYPE] == "ConnectionRefusedError"
    assert _reasons(spans) == [A.REASON_FIRST, A.REASON_ERROR]
    assert all(a.attributes[A.ERROR_TYPE] == "ClientConnectorError" for a in spans.attempts)


def test_redirects_are_further_attempts_of_one_call(spans, server):
    def respond(request):
        if request.target == "/item":
            return Response(status=302, headers={"Location": "/moved"}, body=b"")
        return Response()

    local = server(respond=respond)

    async def main() -> int:
        async with aiohttp.ClientSession() as session:
            return (await _get(session, local.url))[0]

    assert asyncio.run(main()) == 200

    first, second = spans.attempts
    assert first.attributes[A.HTTP_RESPONSE_STATUS_CODE] == 302
    assert second.attributes[A.HTTP_RESPONSE_STATUS_CODE] == 200
    assert second.attributes[A.HTTP_REQUEST_RESEND_COUNT] == 1
    assert second.attributes[A.CONNECTION_REUSED] is True
    assert first.context.trace_id == second.context.trace_id


def test_the_programs_results_and_errors_are_unchanged(spans_off, server):
    local = server(respond=lambda request: Response(status=404, body=b'{"a": 1}'))
    port = free_port()

    async def main() -> list[Any]:
        results: list[Any] = []
        async with aiohttp.ClientSession() as session:
            results.append(await _get(session, local.url))
            try:
                await _get(session, f"http://127.0.0.1:{port}")
            except aiohttp.ClientConnectorError as error:
                results.append((type(error).__name__, str(error.os_error)))
        return results

    without = asyncio.run(main())
    spans = spans_off.enable()
    assert asyncio.run(main()) == without
    assert without[0] == (404, b'{"a": 1}')
    assert len(spans.attempts) == 2


def test_hooks_that_fail_inside_conntrace_change_nothing(spans_off, server, monkeypatch, caplog):
    local = server(close_after_response=True)

    async def main() -> list[Any]:
        async with aiohttp.ClientSession() as session:
            return [await _get(session, local.url) for _ in range(3)]

    plain = asyncio.run(main())
    spans = spans_off.enable()

    def fail(name: str, phase: str) -> None:
        raise RuntimeError(f"injected fault in {name} ({phase})")

    monkeypatch.setattr(_runtime, "fault", fail)
    monkeypatch.setattr(_runtime, "_reported", set())
    with caplog.at_level("WARNING", logger="conntrace"):
        broken = asyncio.run(main())

    assert broken == plain == [(200, b"{}")] * 3
    assert spans.all == []
    messages = [r.getMessage() for r in caplog.records if r.name == "conntrace"]
    assert len(messages) == len(set(messages)), "one warning per hook, not per call"
    assert any("aiohttp.request" in message for message in messages)
    assert any("aiohttp.connect" in message for message in messages)


def test_uninstrument_restores_aiohttp(spans, server):
    import aiohappyeyeballs
    from aiohttp import client_proto, client_reqrep, connector

    patched = [
        aiohttp.ClientSession._request,
        connector.BaseConnector.connect,
        connector.TCPConnector._create_connection,
        connector.TCPConnector._resolve_host,
        connector.BaseConnector._release,
        client_reqrep.ClientResponse.start,
        client_proto.ResponseHandler.connection_lost,
        aiohappyeyeballs.start_connection,
    ]
    assert all(hasattr(f, "__wrapped__") for f in patched)
    conntrace.uninstrument()
    restored = [
        aiohttp.ClientSession._request,
        connector.BaseConnector.connect,
        connector.TCPConnector._create_connection,
        connector.TCPConnector._resolve_host,
        connector.BaseConnector._release,
        client_reqrep.ClientResponse.start,
        client_proto.ResponseHandler.connection_lost,
        aiohappyeyeballs.start_connection,
    ]
    assert not any(hasattr(f, "__wrapped__") for f in restored)
    local = server()

    async def main() -> int:
        async with aiohttp.ClientSession() as session:
            return (await _get(session, local.url))[0]

    assert asyncio.run(main()) == 200
    assert spans.attempts == []


def test_importing_conntrace_does_not_import_aiohttp():
    code = "import sys, conntrace; conntrace.instrument(); print('aiohttp' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


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
    import aiohttp

    async def main():
        async with aiohttp.ClientSession() as session:
            await session.get("http://no-such-host.invalid/")

    try:
        asyncio.run(main())
    except Exception as error:
        outcome = type(error).__name__
    spans = [
        {"name": s.name, "status": s.status.status_code.name, "attributes": dict(s.attributes)}
        for s in exporter.get_finished_spans()
    ]
    print(json.dumps({"outcome": outcome, "spans": spans}))
    """
)


def test_unresolvable_host_fails_the_dns_step(tmp_path):
    # As tests/core does: the lookup runs in a new network namespace, where it fails at
    # once and nothing leaves loopback. aiohttp resolves in an executor thread.
    result = run_without_network(_UNRESOLVABLE, tmp_path)

    assert result["outcome"] == "ClientConnectorDNSError"
    [dns] = [span for span in result["spans"] if span["name"].startswith("DNS lookup")]
    assert dns["name"] == "DNS lookup no-such-host.invalid"
    assert dns["status"] == "ERROR"
    assert dns["attributes"][A.ERROR_TYPE] == "gaierror"
    assert not [span for span in result["spans"] if span["name"].startswith("socket connect")]
    [attempt] = [span for span in result["spans"] if A.HTTP_REQUEST_METHOD in span["attributes"]]
    assert attempt["attributes"][A.ERROR_TYPE] == "ClientConnectorDNSError"
