"""Layer: urllib3 connection pools.

One CLIENT span per HTTP attempt (``HTTPConnectionPool.urlopen``), and the bookkeeping
that tells, for every attempt, whether its connection was reused or new and why:

* ``HTTPConnectionPool.__init__``: a pool for a host that already had one is ``new_pool``.
* ``_get_conn``: a pooled connection with a live socket is reused. Otherwise the reason
  comes from what this pool saw before (see ``PoolState.reason_for_new_object``) or, for
  a pooled object whose socket is gone, from how it went (``server_closed`` or ``stale``).
* ``_make_request``: counts requests per TCP connection and sees ``Connection: close``.
* ``_put_conn``: ``None`` means a connection was lost to an error; a live connection
  that comes back closed was discarded because the pool was full.
* ``HTTPConnection.connect``: the ``connection_setup`` span, under which the DNS, TCP
  and TLS layers put their spans.
"""

from __future__ import annotations

import http.client
import itertools
import os
import threading
import time
import weakref
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import _runtime
from .. import attributes as A
from .._context import current_attempt, current_call
from .._patching import Patcher
from .._redact import full_url

# Connection ids number TCP connections across the process in the order they open.
_connection_ids = itertools.count(1)

# One lock for every pool's counters: it guards only the rare paths (a new pool, a new
# connection, an error, a discard), and one lock is simple to renew in a forked child.
_lock = threading.Lock()
_pools_per_host: dict[tuple[str, str, int | None], int] = {}

# Connection objects that have connected at least once, for gauges of open connections.
_connections: weakref.WeakSet[Any] = weakref.WeakSet()


def reset() -> None:
    """Forget which hosts had pools (used when conntrace is switched off)."""
    with _lock:
        _pools_per_host.clear()


def _renew_lock_in_child() -> None:
    # A fork while another thread held the lock would leave the child's copy held for ever.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX only
    os.register_at_fork(after_in_child=_renew_lock_in_child)


class PoolState:
    """What one urllib3 pool has seen: enough to say why it opens a new connection."""

    __slots__ = (
        "discards_pending",
        "errors_pending",
        "host",
        "max_size",
        "objects",
        "port",
        "replaces",
        "scheme",
    )

    def __init__(self, pool: Any, replaces: int) -> None:
        self.scheme: str = pool.scheme
        self.host: str = pool.host
        self.port: int | None = pool.port
        queue = getattr(pool, "pool", None)
        self.max_size: int = getattr(queue, "maxsize", 0) or 0
        self.replaces = replaces
        self.objects = 0
        self.errors_pending = 0
        self.discards_pending = 0

    @property
    def server_port(self) -> int:
        return self.port or _default_port(self.scheme)

    def reason_for_new_object(self) -> str:
        # urllib3's pool queue is LIFO: pooled connections sit above empty slots, and the
        # empty slots that errors put back sit above the initial ones. So when urllib3
        # builds a new connection object, every pooled connection was checked out, and an
        # error slot, if there is one, is the slot it took.
        with _lock:
            self.objects += 1
            if self.errors_pending:
                self.errors_pending -= 1
                return A.REASON_ERROR
            if self.objects == 1:
                return A.REASON_NEW_POOL if self.replaces else A.REASON_FIRST
            if self.discards_pending:
                self.discards_pending -= 1
                return A.REASON_POOL_DISCARDED
            return A.REASON_POOL_BUSY


class ConnectionState:
    """One urllib3 connection object; it carries a new TCP connection after each connect."""

    __slots__ = (
        "checked_out",
        "closed_at",
        "connected_once",
        "id",
        "open",
        "opened_at",
        "pending_reason",
        "pool",
        "released_at",
        "requests",
        "server_closed",
        "setup",
    )

    def __init__(self, pool: PoolState | None) -> None:
        self.pool = pool
        self.id: int | None = None
        self.setup: trace.SpanContext | None = None
        self.opened_at = 0.0
        self.released_at: float | None = None
        self.requests = 0
        self.open = False
        self.checked_out = False
        self.connected_once = False
        self.server_closed = False
        self.closed_at: float | None = None
        self.pending_reason: str | None = None

    def reason_for_reconnect(self) -> str:
        return A.REASON_SERVER_CLOSED if self.server_closed else A.REASON_STALE


def open_connections() -> Iterator[ConnectionState]:
    """The TCP connections open now, checked out (``checked_out``) or idle in a pool."""
    for conn in list(_connections):
        state = conn._conntrace
        if state.open:
            yield state


def pool_state(pool: Any) -> PoolState:
    state = getattr(pool, "_conntrace_pool", None)
    if state is None:
        # A pool made before conntrace was switched on: its history is unknown.
        state = pool._conntrace_pool = PoolState(pool, replaces=0)
    return state


def connection_state(conn: Any, pool: PoolState | None = None) -> ConnectionState:
    state = getattr(conn, "_conntrace", None)
    if state is None:
        state = conn._conntrace = ConnectionState(pool)
    return state


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


# --- pool creation --------------------------------------------------------------------


class _PoolCreation:
    __slots__ = ("pool",)

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def finish(self, result: Any, error: BaseException | None) -> None:
        if error is not None:
            return
        pool = self.pool
        key = (pool.scheme, pool.host, pool.port)
        with _lock:
            earlier = _pools_per_host.get(key, 0)
            _pools_per_host[key] = earlier + 1
        state = pool._conntrace_pool = PoolState(pool, replaces=earlier)
        if earlier:
            _pool_event(A.EVENT_POOL_CREATED, state, {A.POOL_COUNT: earlier + 1})


def _start_pool_creation(instance: Any, args: tuple, kwargs: dict) -> _PoolCreation:
    return _PoolCreation(instance)


# --- one span per HTTP attempt ------------------------------------------------------------


class Attempt:
    """One HTTP request/response exchange: a ``urlopen`` call, or one of its retries.

    What the hooks beneath learn about the connection is gathered in ``attributes`` and
    set on the span once, when it ends: each call into the SDK's span takes a lock.
    """

    __slots__ = (
        "attributes",
        "ended",
        "error",
        "finished_ns",
        "link",
        "parent",
        "pool",
        "reason",
        "resend",
        "reused",
        "span",
        "status",
        "var_token",
    )

    def __init__(self, pool: Any, parent: otel_context.Context, resend: int, method: str, url: str):
        state = pool_state(pool)
        self.pool = pool
        self.parent = parent
        self.resend = resend
        self.reused = False
        self.reason: str | None = None
        self.status: int | None = None
        self.error: BaseException | None = None
        self.finished_ns: int | None = None
        self.link: trace.SpanContext | None = None
        self.ended = False
        self.attributes: dict[str, Any] = {}
        tracer = _runtime.tracer
        attributes = {
            A.HTTP_REQUEST_METHOD: method,
            A.URL_FULL: full_url(state.scheme, state.host, state.port, url),
            A.SERVER_ADDRESS: state.host,
            A.SERVER_PORT: state.server_port,
        }
        if resend:
            attributes[A.HTTP_REQUEST_RESEND_COUNT] = resend
        self.span = tracer.start_span(
            method, context=parent, kind=SpanKind.CLIENT, attributes=attributes
        )
        # The span is not made current: only a new connection puts spans beneath it, and
        # _Setup names it as their parent itself.
        self.var_token = current_attempt.set(self)

    def end(
        self,
        result: Any = None,
        error: BaseException | None = None,
        end_time: int | None = None,
    ) -> None:
        self.ended = True
        span = self.span
        if span.is_recording():
            attributes = self.attributes
            status = getattr(result, "status", None) or self.status
            # What broke the exchange itself says more than urllib3's MaxRetryError around it.
            error = self.error or error
            if status:
                attributes[A.HTTP_RESPONSE_STATUS_CODE] = status
            if error is not None:
                attributes[A.ERROR_TYPE] = type(error).__qualname__
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, str(error)))
            elif status and status >= 400:
                attributes[A.ERROR_TYPE] = str(status)
                span.set_status(Status(StatusCode.ERROR))
            span.set_attributes(attributes)
            if self.link is not None:
                span.add_link(self.link)
        span.end(end_time=end_time)

    def finish(self, result: Any, error: BaseException | None) -> None:
        current_attempt.reset(self.var_token)
        if not self.ended:
            self.end(result, error)


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _pool_event(name: str, pool: PoolState, attributes: dict[str, Any]) -> None:
    """A pool event on the attempt in progress, else the current span, naming its server."""
    attempt = current_attempt.get()
    span = attempt.span if attempt is not None and not attempt.ended else trace.get_current_span()
    if span.is_recording():
        server = {A.SERVER_ADDRESS: pool.host, A.SERVER_PORT: pool.server_port}
        span.add_event(name, {**server, **attributes})


def _start_attempt(instance: Any, args: tuple, kwargs: dict) -> Attempt:
    method = args[0] if args else kwargs.get("method", "GET")
    url = args[1] if len(args) > 1 else kwargs.get("url", "/")
    previous = current_attempt.get()
    if previous is not None and previous.pool is instance and not previous.ended:
        # urllib3 retries and follows redirects by calling urlopen again from inside
        # urlopen: end the earlier attempt when its outcome was known, and start a
        # sibling, not a child.
        previous.end(end_time=previous.finished_ns)
        return Attempt(instance, previous.parent, previous.resend + 1, method, url)
    call = current_call.get()
    resend = 0
    if call is not None:
        resend = call.attempts
        call.attempts += 1
        call.enrich_current_span()
    return Attempt(instance, otel_context.get_current(), resend, method, url)


# --- checkout ---------------------------------------------------------------------------------


class _Checkout:
    __slots__ = ("pool", "started")

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.started = time.monotonic()

    def finish(self, conn: Any, error: BaseException | None) -> None:
        if error is not None:
            return
        now = time.monotonic()
        pool = pool_state(self.pool)
        state = connection_state(conn, pool)
        state.checked_out = True
        attempt = current_attempt.get()
        span = attempt.span if attempt is not None else trace.INVALID_SPAN
        recording = span.is_recording()
        if recording and self.pool.block:
            # Only a blocking pool makes a request wait for a connection.
            attempt.attributes[A.POOL_WAIT_MS] = _ms(now - self.started)
        if getattr(conn, "sock", None) is not None:
            if attempt is not None:
                attempt.reused = True
            if recording:
                if state.released_at is not None:
                    attempt.attributes[A.CONNECTION_IDLE_MS] = _ms(now - state.released_at)
                attempt.link = state.setup
            return
        if state.connected_once:
            reason = state.reason_for_reconnect()
            if reason == A.REASON_STALE and recording:
                idle = now - state.released_at if state.released_at is not None else 0.0
                span.add_event(
                    A.EVENT_CONNECTION_DROPPED,
                    {A.CONNECTION_ID: state.id or 0, A.CONNECTION_IDLE_MS: _ms(idle)},
                )
        else:
            reason = pool.reason_for_new_object()
        state.pending_reason = reason
        if attempt is not None:
            attempt.reason = reason


def _start_checkout(instance: Any, args: tuple, kwargs: dict) -> _Checkout:
    return _Checkout(instance)


# --- one request on a connection ---------------------------------------------------------


class _Exchange:
    __slots__ = ("attempt", "conn", "id_at_start", "live_at_start", "state")

    def __init__(self, conn: Any, attempt: Attempt | None) -> None:
        self.conn = conn
        self.attempt = attempt
        state = self.state = connection_state(conn)
        self.live_at_start = state.open
        self.id_at_start = state.id

    def finish(self, response: Any, error: BaseException | None) -> None:
        now = time.monotonic()
        state = self.state
        # The request went out on a connection that was live, or that opened meanwhile.
        if self.live_at_start or state.id != self.id_at_start:
            state.requests += 1
        # http.client closes the socket as soon as a response says it will close.
        closed_by_server = response is not None and getattr(self.conn, "sock", 1) is None
        if closed_by_server:
            state.server_closed = True
        attempt = self.attempt
        if attempt is None:
            return
        attempt.status = getattr(response, "status", None)
        attempt.error = error
        attempt.finished_ns = time.time_ns()
        span = attempt.span
        if not span.is_recording():
            return
        attributes = attempt.attributes
        attributes[A.CONNECTION_REUSED] = attempt.reused
        if attempt.reason is not None:
            attributes[A.CONNECTION_REASON] = attempt.reason
        if state.id is not None:
            attributes[A.CONNECTION_ID] = state.id
            attributes[A.CONNECTION_REQUEST_NUMBER] = state.requests
            attributes[A.CONNECTION_AGE_MS] = _ms(now - state.opened_at)
        if closed_by_server:
            span.add_event(A.EVENT_SERVER_CLOSED, {A.CONNECTION_ID: state.id or 0})


def _start_exchange(instance: Any, args: tuple, kwargs: dict) -> _Exchange:
    conn = args[0] if args else kwargs["conn"]
    return _Exchange(conn, current_attempt.get())


# --- return to the pool -------------------------------------------------------------------


class _Return:
    __slots__ = ("conn", "pool", "was_open")

    def __init__(self, pool: Any, conn: Any) -> None:
        self.pool = pool
        self.conn = conn
        self.was_open = conn is not None and getattr(conn, "sock", None) is not None

    def finish(self, result: Any, error: BaseException | None) -> None:
        state = pool_state(self.pool)
        conn = self.conn
        if conn is None:
            # urllib3 puts an empty slot back when an error broke the connection.
            with _lock:
                state.errors_pending += 1
            return
        conn_state = connection_state(conn, state)
        conn_state.checked_out = False
        discarded = self.was_open and conn.sock is None and self.pool.pool is not None
        if not discarded:
            conn_state.released_at = time.monotonic()
            return
        with _lock:
            state.discards_pending += 1
        _pool_event(
            A.EVENT_POOL_DISCARDED,
            state,
            {A.POOL_MAX_SIZE: state.max_size, A.CONNECTION_ID: conn_state.id or 0},
        )


def _start_return(instance: Any, args: tuple, kwargs: dict) -> _Return:
    return _Return(instance, args[0] if args else kwargs.get("conn"))


# --- connection setup -------------------------------------------------------------------------


class _Setup:
    __slots__ = ("conn", "span", "state", "token")

    def __init__(self, conn: Any, state: ConnectionState) -> None:
        self.conn = conn
        self.state = state
        reason = state.pending_reason or (
            state.reason_for_reconnect() if state.connected_once else A.REASON_FIRST
        )
        state.pending_reason = None
        port = conn.port or _default_port(getattr(conn, "scheme", "http"))
        attributes: dict[str, Any] = {
            A.SERVER_ADDRESS: conn.host,
            A.SERVER_PORT: port,
            A.CONNECTION_REASON: reason,
        }
        if state.pool is not None:
            attributes[A.POOL_MAX_SIZE] = state.pool.max_size
        # Beneath the attempt that needs the connection (attempts are not made current).
        attempt = current_attempt.get()
        parent = None if attempt is None else trace.set_span_in_context(attempt.span)
        span = self.span = _runtime.tracer.start_span(
            f"{A.SPAN_CONNECTION_SETUP} {conn.host}:{port}",
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
        )
        self.token = otel_context.attach(trace.set_span_in_context(span))

    def finish(self, result: Any, error: BaseException | None) -> None:
        otel_context.detach(self.token)
        span, state = self.span, self.state
        if error is not None:
            state.open = False
            span.set_attribute(A.ERROR_TYPE, type(error).__qualname__)
            span.set_status(Status(StatusCode.ERROR, str(error)))
            span.end()
            return
        state.id = next(_connection_ids)
        state.opened_at = time.monotonic()
        state.requests = 0
        state.open = state.connected_once = True
        state.server_closed = False
        state.setup = span.get_span_context()
        _connections.add(self.conn)
        if span.is_recording():
            span.set_attribute(A.CONNECTION_ID, state.id)
        span.end()


def _start_setup(instance: Any, args: tuple, kwargs: dict) -> _Setup | None:
    state = connection_state(instance)
    return _Setup(instance, state)


# --- close ---------------------------------------------------------------------------------


class _Close:
    __slots__ = ("state",)

    def __init__(self, state: ConnectionState) -> None:
        self.state = state

    def finish(self, result: Any, error: BaseException | None) -> None:
        state = self.state
        state.open = False
        state.closed_at = time.monotonic()
        for observe in _runtime.close_observers:
            observe(state)


def _start_close(instance: Any, args: tuple, kwargs: dict) -> _Close | None:
    # Every close of a urllib3 connection ends in http.client's; connections conntrace
    # never saw open are left alone.
    state = getattr(instance, "_conntrace", None)
    if state is None or not state.open:
        return None
    return _Close(state)


def apply(patcher: Patcher, urllib3: ModuleType) -> None:
    pool, connection = urllib3.connectionpool, urllib3.connection
    hook = _runtime.hook
    patcher.wrap(pool, "HTTPConnectionPool.urlopen", hook("pool.urlopen", _start_attempt))
    setup = hook("connection.connect", _start_setup)
    patcher.wrap(connection, "HTTPConnection.connect", setup)
    patcher.wrap(connection, "HTTPSConnection.connect", setup)
    # The hooks below keep the books that tell reused from new and why; they make no span.
    for name, start in (
        ("__init__", _start_pool_creation),
        ("_get_conn", _start_checkout),
        ("_make_request", _start_exchange),
        ("_put_conn", _start_return),
    ):
        patcher.wrap(
            pool, f"HTTPConnectionPool.{name}", hook(f"pool.{name}", start, makes_spans=False)
        )
    close = hook("connection.close", _start_close, makes_spans=False)
    patcher.wrap(http.client, "HTTPConnection.close", close)
