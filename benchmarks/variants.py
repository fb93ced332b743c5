"""The ways a benchmark client can be traced, each set up the same way but for the tracer.

Every variant, ``plain`` included, runs with a real SDK ``TracerProvider`` and a
``BatchSpanProcessor`` with its default settings, exporting to ``CountingExporter``: an
exporter that counts the spans of each batch and drops them. The batch processor's
worker thread therefore runs as it would in production (same queue, same wake-ups); only
the network write of the spans is left out, which the export benchmark measures.
``conntrace_unsampled`` has a sampler that samples nothing, to tell conntrace's own work
from the SDK's spans.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

PLAIN = "plain"
CONNTRACE = "conntrace"
# conntrace with a sampler that records nothing: what its hooks cost without the SDK's spans.
UNSAMPLED = "conntrace_unsampled"
OTEL = "otel"
VARIANTS = (PLAIN, CONNTRACE, UNSAMPLED, OTEL)

# What each variant means, for tables and the README.
NAMES = {
    PLAIN: "plain",
    CONNTRACE: "conntrace",
    UNSAMPLED: "conntrace, unsampled",
    OTEL: "OpenTelemetry",
}


class CountingExporter(SpanExporter):  # type: ignore[misc]
    """Counts the spans it is given and drops them."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def tracer_provider(exporter: SpanExporter, sampled: bool = True) -> TracerProvider:
    provider = TracerProvider(sampler=None if sampled else ALWAYS_OFF)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def enable(variant: str, provider: TracerProvider, botocore: bool) -> None:
    """Switch ``variant`` on; ``botocore`` adds OpenTelemetry's botocore instrumentation."""
    if variant == PLAIN:
        return
    if variant in (CONNTRACE, UNSAMPLED):
        import conntrace

        conntrace.instrument(tracer_provider=provider)
        return
    if variant == OTEL:
        from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

        instrumentors: list[Any] = [URLLib3Instrumentor()]
        if botocore:
            from opentelemetry.instrumentation.botocore import BotocoreInstrumentor

            instrumentors.append(BotocoreInstrumentor())
        for instrumentor in instrumentors:
            instrumentor.instrument(tracer_provider=provider)
        return
    raise ValueError(f"unknown variant {variant!r}")
