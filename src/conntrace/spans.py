"""The span view: OpenTelemetry spans built from the ledger's records when a call ends.

The hooks never touch the SDK. When a call starts, this view asks the tracer provider's
sampler once (children follow their root, as the SDK's parent-based samplers do) and, if
the call is to be traced, gives it ids; when it ends, the call, its attempts, their
connection setups and the setups' DNS, TCP and TLS steps become ``ReadableSpan`` objects,
handed straight to the provider's span processor. That costs a fraction of opening and
ending each span through the tracer (measured in ``benchmarks/``), and off the request's
path until the call is over.

The spans are the same as the SDK would make (names, kinds, attributes, events, links,
parentage, status); the OTLP tests pin them. Only the processors' ``on_start`` is not
called: the spans do not exist while they are open. A tracer that is not the SDK's gets
its spans through the tracer API instead, with the recorded start and end times.
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import Event as SpanEvent
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from . import _runtime
from . import attributes as A
from ._context import current_attempt
from ._redact import full_url, redact_userinfo
from .ledger import DNS, PROXY, TCP, Attempt, BaseSink, Call, Event, Pool, Setup, Step

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)
_OK = Status(StatusCode.UNSET)


class _Tracer:
    """What the view needs of an SDK tracer, resolved once per root."""

    __slots__ = ("processor", "resource", "sampler", "scope")

    def __init__(self, tracer: Any) -> None:
        self.sampler = tracer.sampler
        self.processor = tracer.span_processor
        self.resource = tracer.resource
        self.scope = tracer._instrumentation_scope


def _sdk_tracer() -> _Tracer | None:
    tracer: Any = _runtime.tracer
    # A ProxyTracer (no provider set when conntrace was switched on) resolves later.
    tracer = getattr(tracer, "_real_tracer", None) or tracer
    if not hasattr(tracer, "span_processor") or not hasattr(tracer, "_instrumentation_scope"):
        return None
    config = getattr(tracer, "_tracer_config", None)
    if config is not None and not getattr(config, "is_enabled", True):
        return None
    if getattr(tracer.span_processor, "_span_processors", None) == ():
        # A provider with no processors (traces exporter "none"): spans would go nowhere.
        return None
    return _Tracer(tracer)


class SpanView(BaseSink):
    """Builds the spans of each call as it ends; see the module's docstring."""

    def call_started(self, call: Call) -> None:
        if call.own_span:
            self._decide(call, otel_context.get_current(), call.label, call.settings)

    def connection_opened(self, setup: Setup, pool: Pool | None) -> None:
        attempt = current_attempt.get()
        if attempt is None or attempt.setup is not setup:
            return
        call = attempt.call
        if self._traced(call):
            setup.span_id = _new_span_id()
            connection = attempt.connection
            if connection is not None and setup.connection_id is not None:
                connection.setup_context = SpanContext(
                    call.trace_id, setup.span_id, False, _SAMPLED if call.sampled else _UNSAMPLED
                )

    def attempt_ended(self, attempt: Attempt) -> None:
        if self._traced(attempt.call):
            attempt.span_id = _new_span_id()

    def call_ended(self, call: Call) -> None:
        if not call.trace_id:
            return
        tracer = _sdk_tracer()
        if tracer is None:
            return
        spans = list(self._spans(call, tracer))
        processor = tracer.processor
        for span in spans:
            processor.on_end(span)

    # --- sampling ---------------------------------------------------------------------------

    def _traced(self, call: Call) -> bool:
        if call.sampled is None and not call.own_span:
            # The attempts are roots of their own under the span current now (the program's,
            # or OpenTelemetry's botocore span).
            attempt = call.attempts[0] if call.attempts else None
            name = attempt.method if attempt is not None else call.label
            self._decide(call, otel_context.get_current(), name, {})
        return bool(call.trace_id)

    def _decide(self, call: Call, context: Any, name: str, attributes: Any) -> None:
        call.sampled = False
        if _runtime.suppressed():
            return
        tracer = _sdk_tracer()
        if tracer is None:
            return
        parent = trace.get_current_span(context).get_span_context()
        call.parent = parent if parent.is_valid else None
        trace_id = parent.trace_id if parent.is_valid else random.getrandbits(128)
        kind = SpanKind.CLIENT
        result = tracer.sampler.should_sample(context, trace_id, name, kind, attributes)
        if not result.decision.is_recording():
            return
        call.sampled = result.decision.is_sampled()
        call.trace_id = trace_id
        if call.own_span:
            call.span_id = _new_span_id()

    # --- building --------------------------------------------------------------------------

    def _spans(self, call: Call, tracer: _Tracer) -> list[ReadableSpan]:
        build = _Build(call, tracer)
        if not call.own_span:
            for attempt in call.attempts:
                build.attempt(attempt, call.parent)
            return build.spans
        own = build.context(call.span_id)
        for attempt in call.attempts:
            build.attempt(attempt, own)
        attributes = dict(call.settings)
        attributes[A.AWS_ATTEMPTS] = len(call.attempts)
        request_id = getattr(call, "request_id", None)
        if request_id:
            attributes[A.AWS_REQUEST_ID] = request_id
        if call.status:
            attributes[A.HTTP_RESPONSE_STATUS_CODE] = call.status
        events = _events(call.events)
        status = _failed(call.error, attributes, events, call.end_ns)
        # A parent ends after its children: appended last.
        build.span(
            call.label, own, call.parent, SpanKind.CLIENT, call.start_ns, call.end_ns,
            attributes, events, (), status,
        )  # fmt: skip
        return build.spans


class _Build:
    """The spans of one call, in the order they end."""

    __slots__ = ("flags", "spans", "trace_id", "tracer")

    def __init__(self, call: Call, tracer: _Tracer) -> None:
        self.tracer = tracer
        self.trace_id = call.trace_id
        self.flags = _SAMPLED if call.sampled else _UNSAMPLED
        self.spans: list[ReadableSpan] = []

    def context(self, span_id: int) -> SpanContext:
        return SpanContext(self.trace_id, span_id, False, self.flags)

    def span(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        start: int,
        end: int,
        attributes: dict[str, Any],
        events: Sequence[SpanEvent] = (),
        links: Sequence[Link] = (),
        status: Status = _OK,
    ) -> None:
        tracer = self.tracer
        self.spans.append(
            ReadableSpan(
                name=name,
                context=context,
                parent=parent,
                resource=tracer.resource,
                attributes=attributes,
                events=events,
                links=links,
                kind=kind,
                status=status,
                start_time=start,
                end_time=end,
                instrumentation_scope=tracer.scope,
            )
        )

    def attempt(self, attempt: Attempt, parent: SpanContext | None) -> None:
        if not attempt.span_id:
            return
        pool = attempt.pool
        attributes: dict[str, Any] = {
            A.HTTP_REQUEST_METHOD: attempt.method,
            A.URL_FULL: full_url(pool.scheme, pool.host, pool.port, attempt.url),
            A.SERVER_ADDRESS: attempt.server[0],
            A.SERVER_PORT: attempt.server[1],
        }
        connection = attempt.connection
        if attempt.proxy is not None:
            A.with_proxy(attempt.proxy, attributes)
            if connection is not None and connection.peer is not None:
                # The socket's other end is the proxy, not the server.
                attributes[A.NETWORK_PEER_ADDRESS], attributes[A.NETWORK_PEER_PORT] = (
                    connection.peer
                )
        if attempt.resend:
            attributes[A.HTTP_REQUEST_RESEND_COUNT] = attempt.resend
        if attempt.wait_ms is not None:
            attributes[A.POOL_WAIT_MS] = attempt.wait_ms
        links: tuple[Link, ...] = ()
        if attempt.exchanged:
            attributes[A.CONNECTION_REUSED] = attempt.reused
            if attempt.reason is not None:
                attributes[A.CONNECTION_REASON] = attempt.reason
            if connection is not None and attempt.request_number:
                attributes[A.CONNECTION_ID] = connection.id
                attributes[A.CONNECTION_REQUEST_NUMBER] = attempt.request_number
                if attempt.age_ms is not None:
                    attributes[A.CONNECTION_AGE_MS] = attempt.age_ms
                if not connection.setup_seen:
                    attributes[A.CONNECTION_SETUP_SEEN] = False
        if attempt.idle_ms is not None:
            attributes[A.CONNECTION_IDLE_MS] = attempt.idle_ms
        if attempt.reused and connection is not None and connection.setup_context is not None:
            links = (Link(connection.setup_context),)
        if attempt.status:
            attributes[A.HTTP_RESPONSE_STATUS_CODE] = attempt.status
        events = _events(attempt.events)
        status = _failed(attempt.error, attributes, events, attempt.end_ns)
        if attempt.error is None and attempt.status and attempt.status >= 400:
            attributes[A.ERROR_TYPE] = str(attempt.status)
            status = Status(StatusCode.ERROR)
        own = self.context(attempt.span_id)
        if attempt.setup is not None and attempt.setup.span_id:
            self.setup(attempt.setup, own)
        self.span(
            attempt.method, own, parent, SpanKind.CLIENT, attempt.start_ns, attempt.end_ns,
            attributes, events, links, status,
        )  # fmt: skip

    def setup(self, setup: Setup, parent: SpanContext) -> None:
        attributes: dict[str, Any] = {
            A.SERVER_ADDRESS: setup.host,
            A.SERVER_PORT: setup.port,
            A.CONNECTION_REASON: setup.reason,
        }
        A.with_proxy(setup.proxy, attributes)
        if setup.max_size:
            attributes[A.POOL_MAX_SIZE] = setup.max_size
        if setup.connection_id is not None:
            attributes[A.CONNECTION_ID] = setup.connection_id
        status = _failed(setup.error, attributes, None, setup.end_ns)
        own = self.context(setup.span_id)
        for step in setup.steps:
            self.step(step, own)
        self.span(
            f"{A.SPAN_CONNECTION_SETUP} {setup.host}:{setup.port}", own, parent,
            SpanKind.INTERNAL, setup.start_ns, setup.end_ns, attributes, (), (), status,
        )  # fmt: skip

    def step(self, step: Step, parent: SpanContext) -> None:
        details = step.details
        if step.name == DNS:
            name = f"{A.SPAN_DNS} {details.get(A.DNS_QUESTION_NAME, '')}"
        elif step.name == TCP:
            peer = details.get(A.NETWORK_PEER_ADDRESS) or details.get(A.SERVER_ADDRESS, "")
            port = details.get(A.NETWORK_PEER_PORT) or details.get(A.SERVER_PORT, "")
            name = f"{A.SPAN_CONNECT} {peer}:{port}"
        elif step.name == PROXY:
            target = f"{details.get(A.SERVER_ADDRESS, '')}:{details.get(A.SERVER_PORT, '')}"
            name = f"{A.SPAN_PROXY} {target}"
        else:
            name = f"{A.SPAN_TLS} {details.get(A.TLS_SERVER_NAME, '')}".rstrip()
        attributes = dict(details)
        status = _failed(step.error, attributes, None, step.end_ns)
        answer = details.get(A.HTTP_RESPONSE_STATUS_CODE)
        if answer is not None and answer >= 400:
            # The proxy answered (407: credentials refused): its status is the error.
            attributes[A.ERROR_TYPE] = str(answer)
        self.span(
            name, self.context(_new_span_id()), parent, SpanKind.INTERNAL, step.start_ns,
            step.end_ns, attributes, (), (), status,
        )  # fmt: skip


def _failed(
    error: BaseException | None,
    attributes: dict[str, Any],
    events: list[SpanEvent] | None,
    time_ns: int,
) -> Status:
    """Mark a span as failed on ``error``, as the SDK's ``record_exception`` would."""
    if error is None:
        return _OK
    attributes[A.ERROR_TYPE] = type(error).__qualname__
    # urllib3 names a proxy by its URL in its errors, credentials and all.
    message = redact_userinfo(str(error))
    if events is not None:
        events.append(
            SpanEvent(
                A.EVENT_EXCEPTION,
                {
                    A.EXCEPTION_TYPE: type(error).__name__,
                    A.EXCEPTION_MESSAGE: message,
                    A.EXCEPTION_STACKTRACE: redact_userinfo(
                        "".join(traceback.format_exception(type(error), error, error.__traceback__))
                    ),
                    "exception.escaped": "False",
                },
                time_ns,
            )
        )
    return Status(StatusCode.ERROR, message)


def _new_span_id() -> int:
    return random.getrandbits(64) or 1


def _events(events: Sequence[Event]) -> list[SpanEvent]:
    return [SpanEvent(event.name, event.attributes, event.time_ns) for event in events]
