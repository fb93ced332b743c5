"""Layer: name resolution and TCP connect, beneath ``urllib3.util.connection.create_connection``.

urllib3 resolves with ``socket.getaddrinfo`` and then connects, trying each address in
turn. ``getaddrinfo`` is wrapped process-wide, but only acts inside a
``create_connection`` that conntrace watches; every other caller pays one context
lookup. The TCP span runs from the end of the lookup to the connected socket, so it
covers every address tried.
"""

from __future__ import annotations

import socket
import time
from contextvars import ContextVar
from types import ModuleType
from typing import Any, Callable

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import _runtime
from .. import attributes as A
from .._patching import Patcher

_SOCKET_OPTIONS = (
    (A.SOCKET_KEEPALIVE, socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    (A.SOCKET_NODELAY, socket.IPPROTO_TCP, socket.TCP_NODELAY),
)


class _Connect:
    """One ``create_connection`` call: a DNS span, then a TCP span."""

    __slots__ = ("context", "host", "lookup_ended", "lookup_failed", "port", "started", "token")

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.context = trace.set_span_in_context(trace.get_current_span())
        self.started = time.time_ns()
        self.lookup_ended: int | None = None
        self.lookup_failed = False
        self.token = _resolving.set(self)

    def resolved(self, started: int, answers: Any, error: BaseException | None) -> None:
        self.lookup_ended = time.time_ns()
        self.lookup_failed = error is not None
        span = _runtime.tracer.start_span(
            f"{A.SPAN_DNS} {self.host}",
            context=self.context,
            kind=SpanKind.INTERNAL,
            start_time=started,
            attributes={A.DNS_QUESTION_NAME: self.host},
        )
        if span.is_recording():
            if error is not None:
                _fail(span, error)
            else:
                span.set_attribute(A.DNS_ANSWERS, _addresses(answers))
        span.end(end_time=self.lookup_ended)

    def finish(self, sock: Any, error: BaseException | None) -> None:
        _resolving.reset(self.token)
        if self.lookup_failed:
            return
        span = _runtime.tracer.start_span(
            f"{A.SPAN_CONNECT} {self.host}:{self.port}",
            context=self.context,
            kind=SpanKind.INTERNAL,
            start_time=self.lookup_ended or self.started,
            attributes={A.NETWORK_TRANSPORT: "tcp"},
        )
        if span.is_recording():
            if error is not None:
                span.set_attributes({A.SERVER_ADDRESS: self.host, A.SERVER_PORT: self.port})
                _fail(span, error)
            else:
                span.set_attributes(_describe(sock))
        span.end()


_resolving: ContextVar[_Connect | None] = ContextVar("conntrace_resolving", default=None)


def _fail(span: trace.Span, error: BaseException) -> None:
    span.set_attribute(A.ERROR_TYPE, type(error).__qualname__)
    span.set_status(Status(StatusCode.ERROR, str(error)))


def _addresses(answers: Any) -> list[str]:
    seen: dict[str, None] = {}
    for *_, sockaddr in answers:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


def _describe(sock: socket.socket) -> dict[str, Any]:
    peer = sock.getpeername()
    local = sock.getsockname()
    described: dict[str, Any] = {
        A.NETWORK_PEER_ADDRESS: peer[0],
        A.NETWORK_PEER_PORT: peer[1],
        A.NETWORK_LOCAL_ADDRESS: local[0],
        A.NETWORK_LOCAL_PORT: local[1],
        A.NETWORK_TYPE: "ipv6" if sock.family == socket.AF_INET6 else "ipv4",
    }
    for name, level, option in _SOCKET_OPTIONS:
        described[name] = bool(sock.getsockopt(level, option))
    return described


def _start_connect(instance: Any, args: tuple, kwargs: dict) -> _Connect:
    address = args[0] if args else kwargs["address"]
    return _Connect(str(address[0]), int(address[1]))


def _getaddrinfo(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
    connect = _resolving.get()
    if connect is None or connect.lookup_ended is not None or not _runtime.active:
        return wrapped(*args, **kwargs)
    started = time.time_ns()
    try:
        answers = wrapped(*args, **kwargs)
    except BaseException as error:
        _record_lookup(connect, started, None, error)
        raise
    _record_lookup(connect, started, answers, None)
    return answers


def _record_lookup(
    connect: _Connect, started: int, answers: Any, error: BaseException | None
) -> None:
    try:
        connect.resolved(started, answers, error)
    except Exception:
        _runtime.report_internal_error("dns.getaddrinfo")


def apply(patcher: Patcher, urllib3: ModuleType) -> None:
    patcher.wrap(
        urllib3.util.connection,
        "create_connection",
        _runtime.hook("dns_tcp.create_connection", _start_connect),
    )
    patcher.wrap(socket, "getaddrinfo", _getaddrinfo)
