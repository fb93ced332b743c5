"""A small, real OTLP receiver for the tests: gRPC or HTTP/protobuf, on 127.0.0.1.

It decodes what OpenTelemetry exporters send into plain Python values, so tests can
assert on spans and metrics exactly as a collector would have received them::

    with OtlpReceiver(protocol="grpc") as rx:
        exporter = OTLPSpanExporter(endpoint=rx.endpoint, insecure=True)
        ...
        spans = rx.wait_for_spans(lambda spans: len(spans) >= 3)

It can also misbehave on purpose, for exporter-failure tests: ``fail`` answers every
export with an error (``"retryable"``: gRPC UNAVAILABLE / HTTP 503, which exporters
retry with backoff; ``"permanent"``: gRPC INVALID_ARGUMENT / HTTP 400, which they drop),
and ``delay`` holds every answer back that many seconds (what arrives is recorded when
its answer goes out, so a request cut off by the exporter's timeout or by ``stop`` is not
in ``spans()``). Both can be changed while the receiver runs.
"""

from __future__ import annotations

import gzip
import sys
import threading
import zlib
from collections.abc import Iterable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Callable, Literal, TypeVar, Union

import grpc
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.trace import SpanKind, StatusCode

Protocol = Literal["grpc", "http"]
Failure = Literal["retryable", "permanent"]
Signal = Literal["traces", "metrics"]
AttributeValue = Union[str, bool, int, float, bytes, tuple, dict, None]
Attributes = dict[str, AttributeValue]

T = TypeVar("T")


# --- what the receiver hands to tests -----------------------------------------------------


@dataclass(frozen=True)
class ReceivedEvent:
    name: str
    time_unix_nano: int
    attributes: Attributes


@dataclass(frozen=True)
class ReceivedLink:
    trace_id: str
    span_id: str
    attributes: Attributes


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as it arrived. Ids are lower-case hex, as Jaeger shows them."""

    name: str
    kind: SpanKind
    trace_id: str
    span_id: str
    parent_span_id: str | None
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: Attributes
    events: tuple[ReceivedEvent, ...]
    links: tuple[ReceivedLink, ...]
    status_code: StatusCode
    status_message: str
    resource: Attributes
    scope_name: str
    scope_version: str

    @property
    def duration_ms(self) -> float:
        return (self.end_time_unix_nano - self.start_time_unix_nano) / 1e6


@dataclass(frozen=True)
class ReceivedPoint:
    """One data point. ``value`` for sums and gauges; ``count``/``sum``/buckets for histograms."""

    attributes: Attributes
    value: int | float | None = None
    count: int | None = None
    sum: float | None = None
    bucket_counts: tuple[int, ...] = ()
    explicit_bounds: tuple[float, ...] = ()


@dataclass(frozen=True)
class ReceivedMetric:
    name: str
    description: str
    unit: str
    # "sum", "gauge", "histogram", "exponential_histogram" or "summary"
    type: str
    points: tuple[ReceivedPoint, ...]
    resource: Attributes
    scope_name: str
    is_monotonic: bool | None = None


@dataclass(frozen=True)
class ExportRequest:
    """One export call, answered or refused: what tests check about the transport itself."""

    signal: Signal
    headers: dict[str, str]
    # The body's content encoding over HTTP ("gzip"), or gRPC's message encoding.
    encoding: str
    accepted: bool
    items: int


# --- decoding -------------------------------------------------------------------------------


def _value(value: AnyValue) -> AttributeValue:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        # The SDK stores sequences as tuples: compare like with like.
        return tuple(_value(item) for item in value.array_value.values)
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, which)


def _attributes(pairs: Iterable[KeyValue]) -> Attributes:
    return {pair.key: _value(pair.value) for pair in pairs}


def _hex(raw: bytes) -> str:
    return raw.hex()


def _kind(kind: int) -> SpanKind:
    # The proto enum starts with UNSPECIFIED; map by name onto the API's enum.
    name = trace_pb2.Span.SpanKind.Name(kind).removeprefix("SPAN_KIND_")
    return SpanKind[name] if name in SpanKind.__members__ else SpanKind.INTERNAL


def _status(code: int) -> StatusCode:
    name = trace_pb2.Status.StatusCode.Name(code).removeprefix("STATUS_CODE_")
    return StatusCode[name]


def decode_spans(request: trace_service_pb2.ExportTraceServiceRequest) -> list[ReceivedSpan]:
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        kind=_kind(span.kind),
                        trace_id=_hex(span.trace_id),
                        span_id=_hex(span.span_id),
                        parent_span_id=_hex(span.parent_span_id) or None,
                        start_time_unix_nano=span.start_time_unix_nano,
                        end_time_unix_nano=span.end_time_unix_nano,
                        attributes=_attributes(span.attributes),
                        events=tuple(
                            ReceivedEvent(e.name, e.time_unix_nano, _attributes(e.attributes))
                            for e in span.events
                        ),
                        links=tuple(
                            ReceivedLink(
                                _hex(k.trace_id), _hex(k.span_id), _attributes(k.attributes)
                            )
                            for k in span.links
                        ),
                        status_code=_status(span.status.code),
                        status_message=span.status.message,
                        resource=resource,
                        scope_name=scope.name,
                        scope_version=scope.version,
                    )
                )
    return spans


def _number(point: metrics_pb2.NumberDataPoint) -> ReceivedPoint:
    which = point.WhichOneof("value")
    value = getattr(point, which) if which else None
    return ReceivedPoint(_attributes(point.attributes), value=value)


def _histogram(point: metrics_pb2.HistogramDataPoint) -> ReceivedPoint:
    return ReceivedPoint(
        _attributes(point.attributes),
        count=point.count,
        sum=point.sum if point.HasField("sum") else None,
        bucket_counts=tuple(point.bucket_counts),
        explicit_bounds=tuple(point.explicit_bounds),
    )


def _points(metric: metrics_pb2.Metric, which: str) -> tuple[ReceivedPoint, ...]:
    data = getattr(metric, which)
    if which in ("sum", "gauge"):
        return tuple(_number(point) for point in data.data_points)
    if which == "histogram":
        return tuple(_histogram(point) for point in data.data_points)
    # Exponential histograms and summaries: counts and sums are what tests can use.
    return tuple(
        ReceivedPoint(_attributes(point.attributes), count=point.count, sum=point.sum)
        for point in data.data_points
    )


def decode_metrics(
    request: metrics_service_pb2.ExportMetricsServiceRequest,
) -> list[ReceivedMetric]:
    metrics: list[ReceivedMetric] = []
    for resource_metrics in request.resource_metrics:
        resource = _attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                which = metric.WhichOneof("data") or ""
                metrics.append(
                    ReceivedMetric(
                        name=metric.name,
                        description=metric.description,
                        unit=metric.unit,
                        type=which,
                        points=_points(metric, which) if which else (),
                        resource=resource,
                        scope_name=scope_metrics.scope.name,
                        is_monotonic=metric.sum.is_monotonic if which == "sum" else None,
                    )
                )
    return metrics


# --- the receiver ---------------------------------------------------------------------------


@dataclass
class _Store:
    spans: list[ReceivedSpan] = field(default_factory=list)
    metrics: list[ReceivedMetric] = field(default_factory=list)
    requests: list[ExportRequest] = field(default_factory=list)


class _QuietServer(ThreadingHTTPServer):
    """An exporter that gives up mid-request (a slow receiver at its exit) is expected."""

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class OtlpReceiver:
    """An OTLP/gRPC or OTLP/HTTP (protobuf) receiver on 127.0.0.1, on a free port.

    Use it as a context manager, or call ``start`` and ``stop``. ``stop`` may be called
    early to simulate a collector that went away; it cuts off answers still being delayed.
    """

    def __init__(
        self,
        protocol: Protocol = "grpc",
        fail: Failure | None = None,
        delay: float = 0.0,
    ) -> None:
        if protocol not in ("grpc", "http"):
            raise ValueError(f"protocol must be 'grpc' or 'http', not {protocol!r}")
        self.protocol: Protocol = protocol
        self.fail: Failure | None = fail
        self.delay = delay
        self.port = 0
        self._store = _Store()
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._grpc: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None

    # --- addresses ---

    @property
    def endpoint(self) -> str:
        """The base address: what ``OTEL_EXPORTER_OTLP_ENDPOINT`` takes, for either protocol."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def traces_endpoint(self) -> str:
        """What an ``OTLPSpanExporter(endpoint=...)`` of this protocol takes."""
        return self.endpoint if self.protocol == "grpc" else f"{self.endpoint}/v1/traces"

    @property
    def metrics_endpoint(self) -> str:
        """What an ``OTLPMetricExporter(endpoint=...)`` of this protocol takes."""
        return self.endpoint if self.protocol == "grpc" else f"{self.endpoint}/v1/metrics"

    def environ(self) -> dict[str, str]:
        """Environment variables that point an OpenTelemetry SDK's OTLP exporters here."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc" if self.protocol == "grpc" else "http/protobuf",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
        }

    # --- life cycle ---

    def start(self) -> OtlpReceiver:
        self._stopping.clear()
        if self.protocol == "grpc":
            self._start_grpc()
        else:
            self._start_http()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait(5)
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- what arrived ---

    def spans(self) -> list[ReceivedSpan]:
        with self._changed:
            return list(self._store.spans)

    def metrics(self) -> list[ReceivedMetric]:
        with self._changed:
            return list(self._store.metrics)

    def requests(self) -> list[ExportRequest]:
        with self._changed:
            return list(self._store.requests)

    def wait_for_spans(
        self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 10.0
    ) -> list[ReceivedSpan]:
        """Wait until ``predicate(all spans so far)`` holds; return those spans."""
        return self._wait(self.spans, predicate, timeout, "spans")

    def wait_for_metrics(
        self, predicate: Callable[[list[ReceivedMetric]], bool], timeout: float = 10.0
    ) -> list[ReceivedMetric]:
        """Wait until ``predicate(all metrics so far)`` holds; return those metrics."""
        return self._wait(self.metrics, predicate, timeout, "metrics")

    def wait_for_requests(
        self, predicate: Callable[[list[ExportRequest]], bool], timeout: float = 10.0
    ) -> list[ExportRequest]:
        """Wait until ``predicate(all export requests so far)`` holds, accepted or not."""
        return self._wait(self.requests, predicate, timeout, "export requests")

    def clear(self) -> None:
        with self._changed:
            self._store = _Store()

    def _wait(
        self,
        snapshot: Callable[[], list[T]],
        predicate: Callable[[list[T]], bool],
        timeout: float,
        what: str,
    ) -> list[T]:
        with self._changed:
            if self._changed.wait_for(lambda: predicate(snapshot()), timeout):
                return snapshot()
            got = snapshot()
        names = sorted({getattr(item, "name", getattr(item, "signal", "?")) for item in got})
        raise TimeoutError(
            f"OTLP receiver: condition on {what} not met within {timeout}s; "
            f"{len(got)} received: {names}"
        )

    # --- shared by both transports ---

    def _hold_back(self) -> None:
        # Interruptible, so that stop() never waits out a long delay.
        if self.delay > 0:
            self._stopping.wait(self.delay)

    def _record(
        self,
        signal: Signal,
        message: Message,
        headers: Mapping[str, str],
        encoding: str,
    ) -> bool:
        """Store a decoded request; False if it must be refused (``fail`` is set)."""
        accepted = self.fail is None
        decoded: list[Any] = []
        if accepted:
            if isinstance(message, trace_service_pb2.ExportTraceServiceRequest):
                decoded = decode_spans(message)
            else:
                decoded = decode_metrics(message)  # type: ignore[arg-type]
        with self._changed:
            self._store.requests.append(
                ExportRequest(
                    signal,
                    {name.lower(): value for name, value in headers.items()},
                    encoding,
                    accepted,
                    len(decoded),
                )
            )
            if signal == "traces":
                self._store.spans.extend(decoded)
            else:
                self._store.metrics.extend(decoded)
            self._changed.notify_all()
        return accepted

    # --- gRPC ---

    def _start_grpc(self) -> None:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_GrpcTraces(self), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_GrpcMetrics(self), server)
        self.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._grpc = server

    def _grpc_export(
        self, signal: Signal, request: Message, context: grpc.ServicerContext, answer: Message
    ) -> Message:
        self._hold_back()
        metadata = {key: str(value) for key, value in context.invocation_metadata()}
        encoding = metadata.get("grpc-encoding", "identity")
        if self._record(signal, request, metadata, encoding):
            return answer
        if self.fail == "retryable":
            context.abort(grpc.StatusCode.UNAVAILABLE, "receiver told to fail (retryable)")
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "receiver told to fail (permanent)")
        raise AssertionError("unreachable: context.abort raises")

    # --- HTTP/protobuf ---

    def _start_http(self) -> None:
        receiver = self

        class Handler(_HttpHandler):
            owner = receiver

        server = _QuietServer(("127.0.0.1", 0), Handler)
        # Threads stuck in a delayed answer must not hold up stop().
        server.daemon_threads = True
        server.block_on_close = False
        self.port = server.server_address[1]
        self._http = server
        threading.Thread(target=server.serve_forever, name="otlp-http", daemon=True).start()


class _GrpcTraces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, owner: OtlpReceiver) -> None:
        self.owner = owner

    def Export(self, request: Message, context: grpc.ServicerContext) -> Message:
        answer = trace_service_pb2.ExportTraceServiceResponse()
        return self.owner._grpc_export("traces", request, context, answer)


class _GrpcMetrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, owner: OtlpReceiver) -> None:
        self.owner = owner

    def Export(self, request: Message, context: grpc.ServicerContext) -> Message:
        answer = metrics_service_pb2.ExportMetricsServiceResponse()
        return self.owner._grpc_export("metrics", request, context, answer)


_HTTP_ROUTES: dict[str, tuple[Signal, type[Message], type[Message]]] = {
    "/v1/traces": (
        "traces",
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse,
    ),
    "/v1/metrics": (
        "metrics",
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
    ),
}


class _HttpHandler(BaseHTTPRequestHandler):
    owner: OtlpReceiver
    protocol_version = "HTTP/1.1"
    # Answers go out in one write (see tests/servers.py on Nagle + delayed ACK).
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        route = _HTTP_ROUTES.get(self.path.split("?", 1)[0])
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if route is None:
            self._answer(404, b"unknown OTLP path", "text/plain")
            return
        if self.headers.get_content_type() != "application/x-protobuf":
            self._answer(415, b"only application/x-protobuf", "text/plain")
            return
        signal, request_type, answer_type = route
        encoding = (self.headers.get("Content-Encoding") or "identity").lower()
        try:
            message = request_type.FromString(_decompress(body, encoding))
        except (DecodeError, OSError, EOFError, zlib.error, ValueError) as error:
            self._answer(400, f"bad body: {error}".encode(), "text/plain")
            return
        owner = self.owner
        owner._hold_back()
        if owner._stopping.is_set():
            self.close_connection = True
            return
        if owner._record(signal, message, dict(self.headers.items()), encoding):
            self._answer(200, answer_type().SerializeToString(), "application/x-protobuf")
        elif owner.fail == "retryable":
            self._answer(503, b"receiver told to fail (retryable)", "text/plain")
        else:
            self._answer(400, b"receiver told to fail (permanent)", "text/plain")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Keep test output clean; the store records every request.
        pass


def _decompress(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "identity":
        return body
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")
