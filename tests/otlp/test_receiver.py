"""The test receiver itself: metrics decoded right, and bad requests refused as a collector does."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from ..otlp_receiver import OtlpReceiver


def metric_exporter(protocol: str, endpoint: str) -> Any:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(endpoint=endpoint, insecure=True, timeout=10)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(endpoint=endpoint, timeout=10)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_metrics_arrive_decoded(protocol):
    with OtlpReceiver(protocol=protocol) as receiver:  # type: ignore[arg-type]
        reader = PeriodicExportingMetricReader(
            metric_exporter(protocol, receiver.metrics_endpoint), export_interval_millis=60_000
        )
        provider = MeterProvider(
            metric_readers=[reader], resource=Resource.create({"service.name": "meters"})
        )
        meter = provider.get_meter("receiver-test")
        meter.create_counter("opened").add(3, {"reason": "first"})
        meter.create_histogram("took", unit="s").record(0.02, {"phase": "tls"})
        provider.shutdown()
        metrics = receiver.wait_for_metrics(lambda got: len(got) >= 2)

    by_name = {metric.name: metric for metric in metrics}
    opened, took = by_name["opened"], by_name["took"]
    assert (opened.type, opened.is_monotonic) == ("sum", True)
    assert [(p.attributes, p.value) for p in opened.points] == [({"reason": "first"}, 3)]
    assert (took.type, took.unit) == ("histogram", "s")
    [point] = took.points
    assert (point.attributes, point.count, point.sum) == ({"phase": "tls"}, 1, 0.02)
    assert sum(point.bucket_counts) == 1
    assert len(point.bucket_counts) == len(point.explicit_bounds) + 1
    assert opened.resource["service.name"] == "meters"


@pytest.mark.parametrize(
    ("path", "content_type", "status"),
    [
        ("/v1/logs", "application/x-protobuf", 404),
        ("/v1/traces", "application/json", 415),
        ("/v1/traces", "application/x-protobuf", 400),  # the body is not a protobuf message
    ],
)
def test_http_receiver_refuses_what_it_cannot_take(path, content_type, status):
    with OtlpReceiver(protocol="http") as receiver:
        request = urllib.request.Request(
            receiver.endpoint + path,
            data=b"\xff\xff not protobuf",
            headers={"Content-Type": content_type},
            method="POST",
        )
        # No proxy from the environment: this request goes to 127.0.0.1 and nowhere else.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with pytest.raises(urllib.error.HTTPError) as refused:
            opener.open(request, timeout=10)
        assert refused.value.code == status
        assert receiver.spans() == []
