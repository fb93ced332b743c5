"""``Diagnosis``: the span processor that derives findings and metrics from conntrace's spans.

Spans end child first: DNS, TCP and TLS, then the connection setup, then the HTTP attempt,
then the API call. What a setup cost is rolled up into its attempt, so every rule is decided
when an attempt ends, while its API call span is still open: a finding that concerns the
attempt becomes a ``conntrace.finding`` event on that nearest open ancestor. Only spans still
open are held, so memory stays bounded.

The same counts, kept per host and per operation for the whole process, give
``Diagnosis.findings()``: the end-of-run summary and the JSON report are made from them.
Each rule fires only on what healthy traffic never shows (a reused client with enough pool
slots opens one connection per concurrent request and keeps it).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any, Callable, Protocol

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from .. import _runtime
from .. import attributes as A
from ..metrics import ConnectionMetrics
from .model import Attempt, Finding, HostStats, OperationStats, Setup
from .rules import HOST_RULES, OPERATION_RULES, Rule, fire
from .spans import (
    ATTEMPT,
    CALL,
    DNS,
    SETUP,
    TCP,
    TLS,
    Server,
    duration_s,
    idle_ms,
    server_of,
    span_ids,
    span_kind,
)

_SEVERITY_ORDER = {A.SEVERITY_WARNING: 0, A.SEVERITY_INFO: 1}


class _CallTrack:
    """The attempts so far of one call (keyed by the span they all share as parent)."""

    __slots__ = ("attempts_ms", "last_end", "last_error", "server")

    def __init__(self) -> None:
        self.attempts_ms = 0.0
        self.last_end = 0
        self.last_error: str | None = None
        self.server: Server | None = None


class Listener(Protocol):
    """Anything that wants the spans a diagnosis sees, as a span processor gets them."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None: ...

    def on_end(self, span: ReadableSpan) -> None: ...


class Diagnosis(SpanProcessor):
    """Derives metrics and findings from conntrace's spans; see the module's docstring.

    ``annotate=False`` keeps the findings to itself (no span events), for a second
    diagnosis fed from the first one (``add_listener``), as the pytest plugin does.
    """

    def __init__(self, metrics: ConnectionMetrics | None = None, annotate: bool = True) -> None:
        self.metrics = metrics
        self.annotate = annotate
        self.closed = False
        self._listeners: list[Listener] = []
        self.reset()

    def reset(self) -> None:
        """Forget everything seen (a forked child starts afresh)."""
        self._lock = threading.Lock()
        self._open: dict[int, Span] = {}
        self._setups: dict[int, Setup] = {}
        self._attempt_setups: dict[int, Setup] = {}
        self._calls: dict[int, _CallTrack] = {}
        self._hosts: dict[Server, HostStats] = {}
        self._operations: dict[str, OperationStats] = {}
        self._api_calls = 0

    # --- listeners -----------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Also hand every span this processor sees to ``listener`` (start and end)."""
        self._listeners = [*self._listeners, listener]

    def remove_listener(self, listener: Listener) -> None:
        self._listeners = [known for known in self._listeners if known is not listener]

    # --- SpanProcessor --------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self.closed:
            return
        self._open[span.context.span_id] = span
        for listener in self._listeners:
            _guarded(listener.on_start, span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if self.closed:
            return
        try:
            self._end(span)
        except Exception:
            _runtime.report_internal_error("findings.on_end")
        for listener in self._listeners:
            _guarded(listener.on_end, span)

    def shutdown(self) -> None:
        self.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def close(self) -> None:
        """Stop watching spans and recording metrics; what was seen stays readable."""
        self.closed = True
        if self.metrics is not None:
            self.metrics.close()
        self._open.clear()

    # --- what was found ----------------------------------------------------------------------

    def findings(self) -> list[Finding]:
        """Every rule that fired in this process so far: by target, warnings first."""
        with self._lock:
            found = [
                self._finding(rule, stats)
                for rule in HOST_RULES
                for stats in self._hosts.values()
                if rule.active(stats)
            ]
            found += [
                self._finding(rule, stats)
                for rule in OPERATION_RULES
                for stats in self._operations.values()
                if rule.active(stats)
            ]
        order = {finding_id: index for index, finding_id in enumerate(A.FINDINGS)}
        return sorted(
            found, key=lambda f: (f.target, _SEVERITY_ORDER.get(f.severity, 9), order[f.id])
        )

    def hosts(self) -> list[dict[str, Any]]:
        """Per server address: requests, reuse, connections opened and why, what they cost."""
        with self._lock:
            return [stats.to_dict() for _, stats in sorted(self._hosts.items())]

    def totals(self) -> dict[str, Any]:
        with self._lock:
            hosts = list(self._hosts.values())
            opened: Counter[str] = Counter()
            for stats in hosts:
                opened.update(stats.opened)
            return {
                "api_calls": self._api_calls,
                "requests": sum(stats.requests for stats in hosts),
                "reused": sum(stats.reused for stats in hosts),
                "connections_opened": sum(opened.values()),
                "connections_by_reason": {reason: opened.get(reason, 0) for reason in A.REASONS},
                "dns_lookups": sum(stats.dns_lookups for stats in hosts),
                "retries": sum(stats.extra_attempts for stats in self._operations.values()),
            }

    def _finding(self, rule: Rule[Any], stats: HostStats | OperationStats) -> Finding:
        target, summary, advice, evidence = rule.describe(stats)
        spans = stats.refs(rule.id)
        return Finding(rule.id, rule.severity, rule.title, target, summary, advice, evidence, spans)

    # --- reading spans --------------------------------------------------------------------------

    def _end(self, span: ReadableSpan) -> None:
        span_id = span.context.span_id
        attributes: Mapping[str, Any] = span.attributes or {}
        kind = span_kind(span)
        # Counted while this attempt is still among the open spans: the first attempt of a
        # burst to end then sees the whole burst.
        server = server_of(attributes)
        in_flight = self._in_flight(server) if kind == ATTEMPT else 0
        self._open.pop(span_id, None)
        setup = self._setups.pop(span_id, None)
        attempt_setup = self._attempt_setups.pop(span_id, None)
        call = self._calls.pop(span_id, None)
        if kind == CALL:
            with self._lock:
                self._api_calls += 1
        if kind == SETUP:
            self._setup_ended(span, attributes, setup or Setup())
        elif kind in (DNS, TCP, TLS):
            self._step_ended(span, kind, attributes)
        elif kind == ATTEMPT:
            self._attempt_ended(span, attributes, attempt_setup, in_flight)
        else:
            # Pool events land on whatever span is current, often the API call's: its
            # attempts tell which server they are about.
            self._count_events(span, server or (call.server if call is not None else None))

    def _in_flight(self, server: Server | None) -> int:
        return sum(
            1
            for other in list(self._open.values())
            if span_kind(other) == ATTEMPT and server_of(other.attributes or {}) == server
        )

    def _setup_of(self, span: ReadableSpan) -> tuple[Setup | None, Mapping[str, Any]]:
        """The setup a DNS, TCP or TLS span belongs to, and the setup span's attributes."""
        parent = span.parent
        setup_span = self._open.get(parent.span_id) if parent is not None else None
        if setup_span is None or not setup_span.name.startswith(A.SPAN_CONNECTION_SETUP):
            return None, {}
        setup = self._setups.get(setup_span.context.span_id)
        if setup is None:
            setup = self._setups[setup_span.context.span_id] = Setup()
        return setup, setup_span.attributes or {}

    def _step_ended(self, span: ReadableSpan, step: str, attributes: Mapping[str, Any]) -> None:
        seconds = duration_s(span)
        error = attributes.get(A.ERROR_TYPE)
        setup, setup_attributes = self._setup_of(span)
        address = setup_attributes.get(A.SERVER_ADDRESS, "")
        port = setup_attributes.get(A.SERVER_PORT, 0)
        if step == DNS:
            if self.metrics is not None:
                self.metrics.dns_lookup(
                    str(attributes.get(A.DNS_QUESTION_NAME, "")), seconds, error
                )
            if setup is not None:
                setup.dns_lookups += 1
                setup.dns_ms += seconds * 1000.0
        elif step == TCP:
            if self.metrics is not None and address:
                self.metrics.tcp_connect(address, port, seconds, error)
            if setup is not None:
                setup.tcp_ms += seconds * 1000.0
                if A.SOCKET_KEEPALIVE in attributes:
                    setup.keepalive = bool(attributes[A.SOCKET_KEEPALIVE])
        else:
            if self.metrics is not None and address:
                version = attributes.get(A.TLS_PROTOCOL_VERSION)
                self.metrics.tls_handshake(address, port, seconds, version, error)
            if setup is not None:
                setup.tls_ms += seconds * 1000.0

    def _setup_ended(self, span: ReadableSpan, attributes: Mapping[str, Any], setup: Setup) -> None:
        setup.reason = attributes.get(A.CONNECTION_REASON)
        setup.pool_max_size = int(attributes.get(A.POOL_MAX_SIZE, 0))
        setup.ok = A.CONNECTION_ID in attributes
        setup.setup_ms = duration_s(span) * 1000.0
        if setup.ok and self.metrics is not None and setup.reason:
            address = str(attributes.get(A.SERVER_ADDRESS, ""))
            self.metrics.connection_opened(address, attributes.get(A.SERVER_PORT, 0), setup.reason)
        if span.parent is not None:
            self._attempt_setups[span.parent.span_id] = setup

    def _count_events(self, span: ReadableSpan, server: Server | None) -> None:
        """Count the pool events a span carries for their server."""
        for event in span.events:
            if event.name not in (A.EVENT_POOL_DISCARDED, A.EVENT_POOL_CREATED):
                continue
            attributes: Mapping[str, Any] = event.attributes or {}
            host = attributes.get(A.SERVER_ADDRESS)
            port = attributes.get(A.SERVER_PORT) or (server[1] if server else None)
            if host is None or port is None or (server is not None and server[0] != host):
                continue
            with self._lock:
                stats = self._host((str(host), int(port)))
                if event.name == A.EVENT_POOL_DISCARDED:
                    stats.discarded += 1
                    stats.keep(A.FINDING_POOL_TOO_SMALL, span_ids(span))
                else:
                    stats.pools = max(stats.pools, int(attributes.get(A.POOL_COUNT, 0)))

    def _attempt_ended(
        self,
        span: ReadableSpan,
        attributes: Mapping[str, Any],
        setup: Setup | None,
        in_flight: int,
    ) -> None:
        host, port = server = server_of(attributes) or ("", 0)
        parent = self._open.get(span.parent.span_id) if span.parent is not None else None
        parent_attributes: Mapping[str, Any] = (parent.attributes or {}) if parent else {}
        api = parent_attributes.get(A.RPC_SYSTEM) == A.RPC_SYSTEM_AWS
        status = attributes.get(A.HTTP_RESPONSE_STATUS_CODE)
        attempt = Attempt(
            ref=span_ids(span),
            duration_ms=duration_s(span) * 1000.0,
            reused=bool(attributes.get(A.CONNECTION_REUSED, False)),
            reason=setup.reason if setup is not None else attributes.get(A.CONNECTION_REASON),
            setup=setup,
            resend=int(attributes.get(A.HTTP_REQUEST_RESEND_COUNT, 0)),
            error_type=attributes.get(A.ERROR_TYPE),
            status=int(status) if status is not None else None,
            closed_by_server=any(e.name == A.EVENT_SERVER_CLOSED for e in span.events),
            idle_dropped_ms=[
                idle_ms(e) for e in span.events if e.name == A.EVENT_CONNECTION_DROPPED
            ],
            label=parent.name if api and parent is not None else f"{host}:{port}",
            settings=parent_attributes if api else {},
        )
        if self.metrics is not None:
            scheme = str(attributes.get(A.URL_FULL, "http")).split(":", 1)[0]
            wait = attributes.get(A.POOL_WAIT_MS)
            self.metrics.request(
                host,
                port,
                scheme,
                str(attributes.get(A.HTTP_REQUEST_METHOD, "")),
                attempt.reused,
                None if wait is None else float(wait) / 1000.0,
            )
        if span.parent is not None:
            self._track_retry(span, span.parent.span_id, attempt).server = server
        events: list[tuple[str, str, str]] = []
        with self._lock:
            stats = self._host(server)
            stats.max_concurrency = max(stats.max_concurrency, in_flight)
            if setup is not None:
                stats.pool_max_size = max(stats.pool_max_size, setup.pool_max_size)
            stats.add(attempt)
            operation = self._operation(attempt.label)
            operation.add(attempt)
            events += fire(HOST_RULES, attempt, stats)
            events += fire(OPERATION_RULES, attempt, operation)
        self._count_events(span, server)
        if events and parent is not None and self.annotate and parent.end_time is None:
            for finding_id, severity, message in events:
                parent.add_event(
                    A.EVENT_FINDING,
                    {
                        A.FINDING_ID: finding_id,
                        A.FINDING_SEVERITY: severity,
                        A.FINDING_MESSAGE: message,
                    },
                )

    def _track_retry(self, span: ReadableSpan, parent_id: int, attempt: Attempt) -> _CallTrack:
        track = self._calls.get(parent_id)
        if track is None or not attempt.resend:
            # A first attempt starts a new call, even under a parent that made calls before.
            track = self._calls[parent_id] = _CallTrack()
        else:
            attempt.prior_ms = track.attempts_ms
            attempt.backoff_ms = max((span.start_time or 0) - track.last_end, 0) / 1e6
            attempt.prior_error = track.last_error
        track.attempts_ms += attempt.duration_ms
        track.last_end = span.end_time or 0
        track.last_error = attempt.error_type
        return track

    def _host(self, server: Server) -> HostStats:
        stats = self._hosts.get(server)
        if stats is None:
            stats = self._hosts[server] = HostStats(*server)
        return stats

    def _operation(self, label: str) -> OperationStats:
        stats = self._operations.get(label)
        if stats is None:
            stats = self._operations[label] = OperationStats(label)
        return stats


def _guarded(call: Callable[..., Any], *args: Any) -> None:
    try:
        call(*args)
    except Exception:
        _runtime.report_internal_error("findings.listener")
