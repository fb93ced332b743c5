"""Switching conntrace on and off, lazily, safely, and as an OpenTelemetry instrumentor."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points

import urllib3
import wrapt
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import conntrace
from conntrace import attributes as A
from conntrace import ledger
from conntrace.layers import pool

_PATCHED = (
    (urllib3.connectionpool.HTTPConnectionPool, "urlopen"),
    (urllib3.connectionpool.HTTPConnectionPool, "_get_conn"),
    (urllib3.connection.HTTPConnection, "connect"),
    (urllib3.connection.HTTPSConnection, "connect"),
)


def _patched() -> list[bool]:
    return [isinstance(vars(owner)[name], wrapt.FunctionWrapper) for owner, name in _PATCHED]


def test_instrument_uninstrument_instrument_again(server):
    local = server()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    original = vars(urllib3.connectionpool.HTTPConnectionPool)["urlopen"]

    conntrace.instrument(tracer_provider=provider)
    conntrace.instrument(tracer_provider=provider)  # a second call changes nothing
    assert _patched() == [True] * len(_PATCHED)
    assert vars(urllib3.connectionpool.HTTPConnectionPool)["urlopen"].__wrapped__ is original
    urllib3.PoolManager().request("GET", local.url)
    assert len(exporter.get_finished_spans()) == 3  # attempt, setup, TCP (no DNS for an IP)

    conntrace.uninstrument()
    conntrace.uninstrument()
    assert _patched() == [False] * len(_PATCHED)
    assert vars(urllib3.connectionpool.HTTPConnectionPool)["urlopen"] is original
    assert not conntrace.is_instrumented()
    exporter.clear()
    urllib3.PoolManager().request("GET", local.url)
    assert exporter.get_finished_spans() == ()

    conntrace.instrument(tracer_provider=provider)
    try:
        urllib3.PoolManager().request("GET", local.url)
        [attempt] = [s for s in exporter.get_finished_spans() if s.name == "GET"]
        # A fresh start: the host's earlier pools are forgotten.
        assert attempt.attributes[A.CONNECTION_REASON] == A.REASON_FIRST
    finally:
        conntrace.uninstrument()


def test_patches_wait_for_the_program_to_import_urllib3_and_botocore():
    script = textwrap.dedent(
        """
        import sys
        import conntrace
        conntrace.instrument()
        assert not any(m.split(".")[0] in ("urllib3", "botocore") for m in sys.modules), "eager"
        import urllib3, wrapt
        assert isinstance(vars(urllib3.connectionpool.HTTPConnectionPool)["urlopen"],
                          wrapt.FunctionWrapper)
        assert "botocore" not in sys.modules
        import botocore.client
        assert isinstance(vars(botocore.client.BaseClient)["_make_api_call"],
                          wrapt.FunctionWrapper)
        print("lazy ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "lazy ok"


def test_suppressed_instrumentation_is_not_traced(spans, server):
    local = server()
    with suppress_instrumentation():
        urllib3.PoolManager().request("GET", local.url)
    assert spans.all == []


def test_an_internal_error_is_logged_once_and_the_program_goes_on(
    spans, server, monkeypatch, caplog
):
    local = server()

    def broken(*args, **kwargs):
        raise RuntimeError("conntrace bug")

    monkeypatch.setattr(pool, "Attempt", broken)
    opened = []

    class Opened(ledger.BaseSink):
        def connection_opened(self, setup, pool):
            opened.append(setup)

    sink = Opened()
    ledger.add_sink(sink)
    http = urllib3.PoolManager()
    try:
        with caplog.at_level(logging.WARNING, logger="conntrace"):
            results = [http.request("GET", local.url).status for _ in range(3)]
    finally:
        ledger.remove_sink(sink)

    assert results == [200, 200, 200]
    assert len(local.requests) == 3
    warnings = [r for r in caplog.records if r.name == "conntrace"]
    assert len(warnings) == 1
    assert "pool.urlopen" in warnings[0].getMessage()
    assert warnings[0].exc_info[1].args == ("conntrace bug",)
    # The hooks beneath the broken one still record what they see.
    assert len(opened) == 1 and opened[0].ok


def test_registered_as_an_opentelemetry_instrumentor(server):
    [entry] = [e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "conntrace"]
    instrumentor = entry.load()()
    assert isinstance(instrumentor, conntrace.ConntraceInstrumentor)

    local = server()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor.instrument(tracer_provider=provider)
    try:
        assert conntrace.is_instrumented()
        urllib3.PoolManager().request("GET", local.url)
    finally:
        instrumentor.uninstrument()
    assert not conntrace.is_instrumented()
    assert [s.name for s in exporter.get_finished_spans()][-1] == "GET"


def test_connections_made_before_instrument_get_an_id_and_say_their_setup_was_not_seen(
    server, spans_off, caplog
):
    """A pool and its connections from before ``instrument()``: reused attempts on them
    carry a connection id and request numbers counted from then, no age (unknown), and
    ``setup_seen`` false; a new connection of that pool is not called its first."""
    local = server()
    http = urllib3.PoolManager(maxsize=2)
    for _ in range(2):
        assert http.request("GET", local.url).status == 200
    spans = spans_off.enable()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert http.request("GET", local.url).status == 200
        # Two at once: the pool's second connection, opened under conntrace.
        pool = http.connection_from_url(local.url)
        first = pool._get_conn()
        second = pool.urlopen("GET", "/", preload_content=True)
        pool._put_conn(first)
        assert second.status == 200
    conntrace.uninstrument()

    attempts = spans.attempts
    assert len(attempts) == 4
    old = [a.attributes for a in attempts[:3]]
    assert [a[A.CONNECTION_REUSED] for a in old] == [True, True, True]
    assert {a[A.CONNECTION_ID] for a in old} == {1}
    # Counted since conntrace saw it: the server saw two requests on it before.
    assert [a[A.CONNECTION_REQUEST_NUMBER] for a in old] == [1, 2, 3]
    assert [a[A.CONNECTION_SETUP_SEEN] for a in old] == [False, False, False]
    assert not [a for a in old if A.CONNECTION_AGE_MS in a]
    new = attempts[3].attributes
    assert new[A.CONNECTION_REUSED] is False
    assert new[A.CONNECTION_REASON] == A.REASON_POOL_BUSY
    assert new[A.CONNECTION_ID] == 2 and new[A.CONNECTION_REQUEST_NUMBER] == 1
    assert A.CONNECTION_SETUP_SEEN not in new and new[A.CONNECTION_AGE_MS] >= 0
    assert len(local.connections) == 2 and len(local.requests) == 6
    assert not caplog.records, [r.getMessage() for r in caplog.records]


def test_connections_opened_while_suppressed_are_not_found_later(server, spans):
    """An exporter's connections are set up under suppression: reusing them does not make
    them look like connections from before instrument()."""
    local = server()
    http = urllib3.PoolManager()
    with suppress_instrumentation():
        for _ in range(3):
            assert http.request("GET", local.url).status == 200
    pooled = http.connection_from_url(local.url).pool.queue
    assert [conn._conntrace.id for conn in pooled if conn is not None] == [None]
    assert urllib3.PoolManager().request("GET", local.url).status == 200
    [attempt] = spans.attempts
    assert attempt.attributes[A.CONNECTION_ID] == 1
