from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import conntrace
from conntrace import attributes as A
from conntrace import findings
from conntrace.findings import Diagnosis, Finding


class Diagnosed:
    """conntrace on with a ``Diagnosis`` wired as ``findings.install`` wires it."""

    def __init__(
        self,
        provider: TracerProvider,
        diagnosis: Diagnosis,
        exporter: InMemorySpanExporter,
        reader: InMemoryMetricReader,
    ) -> None:
        self.provider = provider
        self.diagnosis = diagnosis
        self.exporter = exporter
        self.reader = reader

    def findings(self) -> list[Finding]:
        return self.diagnosis.findings()

    def ids(self) -> list[str]:
        return [finding.id for finding in self.findings()]

    def finding(self, finding_id: str) -> Finding:
        matching = [finding for finding in self.findings() if finding.id == finding_id]
        assert len(matching) == 1, [finding.render() for finding in self.findings()]
        return matching[0]

    @property
    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def finding_events(self) -> list[tuple[ReadableSpan, dict[str, Any]]]:
        """Every ``conntrace.finding`` event, with the span that carries it."""
        return [
            (span, dict(event.attributes or {}))
            for span in self.spans
            for event in span.events
            if event.name == A.EVENT_FINDING
        ]

    def points(self, name: str) -> list[tuple[str, dict[str, Any], Any]]:
        """(unit, attributes, data point) for every point of the metric ``name``."""
        data = self.reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found += [
                            (metric.unit, dict(point.attributes), point)
                            for point in metric.data.data_points
                        ]
        return found


@pytest.fixture
def diagnosed() -> Iterator[Diagnosed]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    diagnosis = findings.install(meters, report=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    conntrace.instrument(tracer_provider=provider, meter_provider=meters)
    try:
        yield Diagnosed(provider, diagnosis, exporter, reader)
    finally:
        conntrace.uninstrument()
        diagnosis.close()
        provider.shutdown()
        meters.shutdown()
