"""A program with its own OpenTelemetry set-up: its provider, its exporter, its spans.

``own_otel.py URL MODE``: MODE says how it sets up tracing:

- ``set``: ``trace.set_tracer_provider`` with an in-memory exporter, then a span of its own
  around one request;
- ``instrument``: the same provider passed to ``conntrace.instrument(tracer_provider=...)``,
  never made global;
- ``set+instrument``: ``set``, then ``conntrace.instrument()`` in code;
- ``auto``: ``opentelemetry.instrumentation.auto_instrumentation.initialize()``, as
  ``opentelemetry-instrument`` does, exporting where the OTEL_* variables say;
- ``none``: no provider of its own, a span from the global tracer.

With ``meters`` as a third argument it also sets its own ``MeterProvider`` and counts one.
It prints, as JSON, the spans its own exporter got and the metrics its own reader got.
"""

from __future__ import annotations

import json
import sys

import urllib3
from opentelemetry import metrics, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def main() -> int:
    url, mode = sys.argv[1], sys.argv[2]
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = None
    if "meters" in sys.argv[3:]:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        metrics.get_meter("app").create_counter("app.work").add(1)
    if mode in ("set", "set+instrument"):
        trace.set_tracer_provider(provider)
    if mode == "set+instrument":
        import conntrace

        conntrace.instrument()
    if mode == "instrument":
        import conntrace

        conntrace.instrument(tracer_provider=provider)
    if mode == "auto":
        from opentelemetry.instrumentation import auto_instrumentation

        auto_instrumentation.initialize()
    tracer = (provider if mode == "instrument" else trace.get_tracer_provider()).get_tracer("app")
    with tracer.start_as_current_span("work"):
        urllib3.PoolManager().request("GET", url)
    spans = [
        {
            "name": span.name,
            "trace_id": f"{span.context.trace_id:032x}",
            "scope": span.instrumentation_scope.name if span.instrumentation_scope else "",
        }
        for span in exporter.get_finished_spans()
    ]
    names: list[str] = []
    if reader is not None:
        data = reader.get_metrics_data()
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                names += [f"{scope_metrics.scope.name}:{m.name}" for m in scope_metrics.metrics]
    print(json.dumps({"spans": spans, "metrics": sorted(set(names))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
