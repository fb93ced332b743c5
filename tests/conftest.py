from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Iterator
from typing import Any, Callable

import pytest

# boto3 must never look for credentials or regions off this machine (no instance
# metadata, no shared config), so the whole suite runs with fixed, fake ones.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing-session-token",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
)
for _name in ("AWS_PROFILE", "AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS", "BOTOCORE_TCP_KEEPALIVE"):
    os.environ.pop(_name, None)
# A developer's proxy settings would send the tests' loopback traffic (and the OTLP
# exporters') to that proxy, in this process and in every program a test runs.
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
for _name in PROXY_VARIABLES:
    os.environ.pop(_name, None)
    os.environ.pop(_name.lower(), None)

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

import conntrace  # noqa: E402
from conntrace import attributes as A  # noqa: E402

from .servers import LocalServer  # noqa: E402


class Spans:
    """The spans a test produced, with the look-ups the assertions need."""

    def __init__(self, exporter: InMemorySpanExporter, provider: TracerProvider) -> None:
        self.exporter = exporter
        self.provider = provider

    @property
    def all(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [span for span in self.all if span.name.startswith(prefix)]

    @property
    def attempts(self) -> list[ReadableSpan]:
        spans = [s for s in self.all if A.HTTP_REQUEST_METHOD in (s.attributes or {})]
        return sorted(spans, key=lambda span: span.start_time or 0)

    @property
    def setups(self) -> list[ReadableSpan]:
        return sorted(self.named(A.SPAN_CONNECTION_SETUP), key=lambda span: span.start_time or 0)

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        return [
            span
            for span in self.all
            if span.parent is not None and span.parent.span_id == parent.context.span_id
        ]

    def clear(self) -> None:
        self.exporter.clear()


def _tracing() -> Spans:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    conntrace.instrument(tracer_provider=provider)
    return Spans(exporter, provider)


@pytest.fixture
def spans() -> Iterator[Spans]:
    """conntrace on, for the whole test, with spans kept in memory."""
    spans = _tracing()
    try:
        yield spans
    finally:
        conntrace.uninstrument()
        spans.provider.shutdown()


class TracingSwitch:
    """conntrace off until ``enable()``: to run the same code without it and with it."""

    def __init__(self) -> None:
        self.spans: Spans | None = None

    def enable(self) -> Spans:
        self.spans = _tracing()
        return self.spans


@pytest.fixture
def spans_off() -> Iterator[TracingSwitch]:
    switch = TracingSwitch()
    yield switch
    conntrace.uninstrument()
    if switch.spans is not None:
        switch.spans.provider.shutdown()


@pytest.fixture
def server() -> Iterator[Callable[..., LocalServer]]:
    started: list[LocalServer] = []

    def start(**options: Any) -> LocalServer:
        local = LocalServer(**options)
        started.append(local)
        return local

    yield start
    for local in started:
        local.stop()


@pytest.fixture(scope="session")
def ca() -> Any:
    import trustme

    return trustme.CA()


@pytest.fixture
def tls_server(server: Callable[..., LocalServer], ca: Any) -> Callable[..., LocalServer]:
    def start(**options: Any) -> LocalServer:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost").configure_cert(context)
        # A name, not an address: urllib3 1.26 cannot check a certificate for an IP
        # address with a caller's SSLContext.
        return server(tls=context, host_name="localhost", **options)

    return start


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's DynamoDB server application on 127.0.0.1, with HTTP keep-alive.

    moto's own ``ThreadedMotoServer`` runs on werkzeug's development server, which
    answers every request with ``Connection: close`` (conntrace reports it as
    ``server_closed``). DynamoDB keeps connections alive, so the same moto application
    is served here by waitress, a WSGI server that does.
    """
    import waitress
    from moto.server import DomainDispatcherApplication, create_backend_app

    app = DomainDispatcherApplication(create_backend_app)
    wsgi = waitress.create_server(app, host="127.0.0.1", port=0, threads=8)
    threading.Thread(target=wsgi.run, daemon=True).start()
    yield f"http://127.0.0.1:{wsgi.effective_port}"
    # waitress's loop runs on while keep-alive connections stay open; the thread is a
    # daemon, so it is not waited for.
    wsgi.close()


def dynamodb(endpoint: str, **config: Any) -> Any:
    """A DynamoDB client on a local endpoint; ``config`` goes to ``botocore.config.Config``."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(**config),
    )


def create_table(client: Any, name: str) -> None:
    """A DynamoDB table keyed by the string ``pk``, billed per request."""
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
