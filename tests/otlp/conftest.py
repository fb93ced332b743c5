"""An export pipeline as a user builds one: conntrace -> BatchSpanProcessor -> OTLP exporter.

Every span also goes to an in-memory exporter, so each test can compare what conntrace
recorded with what a real OTLP receiver got over the wire.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import format_span_id

import conntrace

from ..otlp_receiver import OtlpReceiver, ReceivedSpan

SERVICE_NAME = "conntrace-otlp-test"

# (receiver protocol, exporter compression): each way an SDK can ship spans to a collector.
TRANSPORTS = {
    "grpc": ("grpc", None),
    "http": ("http", None),
    "http-gzip": ("http", "gzip"),
}


def otlp_exporter(protocol: str, endpoint: str, compression: str | None, timeout: float) -> Any:
    """The real OTLP span exporter of the opentelemetry-exporter-otlp package."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            Compression as GrpcCompression,
        )
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter(
            endpoint=endpoint,
            insecure=True,
            timeout=timeout,
            compression=GrpcCompression.Gzip if compression else None,
        )
    from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter(
        endpoint=endpoint,
        timeout=timeout,
        compression=HttpCompression.Gzip if compression else HttpCompression.NoCompression,
    )


class Pipeline:
    """conntrace instrumented with a provider that exports over OTLP and keeps a local copy."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.local = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.local))
        self.provider.add_span_processor(BatchSpanProcessor(exporter))

    def recorded(self) -> list[ReadableSpan]:
        return list(self.local.get_finished_spans())

    def received(self, receiver: OtlpReceiver, timeout: float = 15.0) -> dict[str, ReceivedSpan]:
        """Flush, wait until every recorded span reached ``receiver``, and index them by id."""
        wanted = {format_span_id(span.context.span_id) for span in self.recorded()}
        assert wanted, "the program under test recorded no span"
        self.provider.force_flush()
        spans = receiver.wait_for_spans(
            lambda got: wanted <= {span.span_id for span in got}, timeout
        )
        return {span.span_id: span for span in spans}


@pytest.fixture
def make_pipeline() -> Iterator[Any]:
    """Instrument conntrace with a pipeline around the given exporter; undone after the test."""
    made: list[Pipeline] = []

    def make(exporter: SpanExporter) -> Pipeline:
        pipeline = Pipeline(exporter)
        made.append(pipeline)
        conntrace.instrument(tracer_provider=pipeline.provider)
        return pipeline

    yield make
    conntrace.uninstrument()
    for pipeline in made:
        pipeline.provider.shutdown()


@pytest.fixture(params=sorted(TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    return TRANSPORTS[request.param]


@pytest.fixture
def receiver(transport: tuple[str, str | None]) -> Iterator[OtlpReceiver]:
    with OtlpReceiver(protocol=transport[0]) as started:  # type: ignore[arg-type]
        yield started


@pytest.fixture
def exported(
    make_pipeline: Any, receiver: OtlpReceiver, transport: tuple[str, str | None]
) -> Pipeline:
    """conntrace exporting over the parametrized transport to a running receiver."""
    protocol, compression = transport
    return make_pipeline(otlp_exporter(protocol, receiver.traces_endpoint, compression, 10.0))


@pytest.fixture
def client_tls(ca: Any) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context
