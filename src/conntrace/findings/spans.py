"""Reading spans: which span of conntrace's model one is, and the values the diagnosis takes
from spans and their events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from .. import attributes as A

Server = tuple[str, int]
CALL, ATTEMPT, SETUP, DNS, TCP, TLS = "call", "attempt", "setup", "dns", "tcp", "tls"
_SCOPE = "conntrace"
_STEPS = (
    (A.SPAN_CONNECTION_SETUP, SETUP),
    (A.SPAN_DNS, DNS),
    (A.SPAN_CONNECT, TCP),
    (A.SPAN_TLS, TLS),
)


def span_kind(span: ReadableSpan) -> str | None:
    """Which span of the model this is (``CALL``, ``ATTEMPT``, ``SETUP``, ``DNS``, ``TCP``,
    ``TLS``); None for any other span."""
    attributes = span.attributes or {}
    if attributes.get(A.RPC_SYSTEM) == A.RPC_SYSTEM_AWS and span.kind is SpanKind.CLIENT:
        # OpenTelemetry's botocore instrumentation may own the call span: any scope.
        return CALL
    scope = span.instrumentation_scope
    if scope is None or scope.name != _SCOPE:
        return None
    for prefix, kind in _STEPS:
        if span.name.startswith(prefix):
            return kind
    if span.kind is SpanKind.CLIENT and A.HTTP_REQUEST_METHOD in attributes:
        return ATTEMPT
    return None


def server_of(attributes: Mapping[str, Any]) -> Server | None:
    host, port = attributes.get(A.SERVER_ADDRESS), attributes.get(A.SERVER_PORT)
    return None if host is None or port is None else (str(host), int(port))


def duration_s(span: ReadableSpan) -> float:
    if span.start_time is None or span.end_time is None:
        return 0.0
    return max(span.end_time - span.start_time, 0) / 1e9


def span_ids(span: ReadableSpan) -> tuple[int, int]:
    return span.context.trace_id, span.context.span_id


def idle_ms(event: Any) -> float:
    return float((event.attributes or {}).get(A.CONNECTION_IDLE_MS, 0.0))
