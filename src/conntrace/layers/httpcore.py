"""Layer: httpcore's connection pools (httpx's transport), sync and async.

httpcore is one pool for every server a client talks to; the ledger keeps one ``Pool`` per
server of it (the ledger numbers them per server, so a second ``httpx.Client`` to a server
is ``new_pool``). What each hook records:

* ``ConnectionPool.handle_request`` (``AsyncConnectionPool.handle_async_request``): one
  attempt, inside the current call or as a call of its own (a plain httpx request, as a
  plain ``urlopen`` is). It hands httpcore a ``trace`` request extension of its own, which
  passes every event on to the program's ``trace`` callback, if it set one, unchanged.
* ``HTTPConnection.handle_request`` (async too): which connection the pool assigned, and
  when; reused if it is connected, else new and why. httpcore never
  reconnects a connection object: a lost one is dropped and a new one made, so why it was
  lost is kept per server (``_Origin.lost``) for the connection that replaces it.
* The ``trace`` events: the setup and its TCP and TLS steps (``connection.connect_tcp.*``,
  ``connection.start_tls.*``; DNS comes from the DNS layer inside them), a connect retry
  (``connection.retry.*``, from ``httpx.HTTPTransport(retries=n)``) as a further attempt,
  ``Connection: close`` in the response headers, and the response's end
  (``http11.response_closed.*``): kept for the next request, or lost and why.
* ``HTTPConnection.has_expired``: a pooled connection the pool is about to drop, because
  ``keepalive_expiry`` passed or the peer closed it while idle (``stale``).
* ``ConnectionPool._assign_requests_to_connections``: the requests it leaves queued
  (``max_connections`` reached: the pool wait runs from then to the assignment), and the
  idle connections it closes to stay within its limits, discarded as urllib3 discards one
  that comes back to a full pool.
* ``HTTPConnection.close`` (``aclose``): the connection's end.

Proxied, Unix-socket and HTTP/2 pools are left untraced.
"""

from __future__ import annotations

import sys
import threading
import time
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

from .. import _runtime, ledger
from .. import attributes as A
from .._context import current_attempt, current_call
from ..ledger import BROKEN, DISCARDED, HTTPX, KEPT, Attempt, Call, Connection, Event, Pool, Setup
from . import origin as where
from .dns_tcp import Connect
from .pool import _server, _start_close, connection_of
from .tls import handshake

if TYPE_CHECKING:
    from .._patching import Patcher
    from .tls import _Handshake

_lock = threading.Lock()


def _ms(nanoseconds: int) -> float:
    return round(nanoseconds / 1e6, 3)


class _Origin:
    """One server of an httpcore pool: its ledger pool, and why connections were lost."""

    __slots__ = ("lost", "pool")

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        # (reason, idle ms when the peer dropped it) for each lost connection not yet replaced.
        self.lost: list[tuple[str, float | None]] = []

    def reason_for_new(self) -> tuple[str, float | None]:
        reason = self.pool.reason_for_new_object()
        if reason == A.REASON_POOL_BUSY:
            with _lock:
                if self.lost:
                    return self.lost.pop(0)
        return reason, None


def _origin_of(pool: Any, url: Any) -> _Origin:
    key = (url.scheme, url.host, url.port)
    origins: dict[Any, _Origin] | None = pool.__dict__.get("_conntrace_origins")
    origin = origins.get(key) if origins is not None else None
    if origin is not None:
        return origin
    with _lock:
        origins = pool.__dict__.setdefault("_conntrace_origins", {})
        origin = origins.get(key)
        if origin is not None:
            return origin
        # What the pool keeps: max_keepalive_connections, never more than max_connections
        # (httpcore's sys.maxsize: no limit).
        kept = pool._max_keepalive_connections
        record = Pool(
            url.scheme.decode("ascii"),
            url.host.decode("ascii"),
            url.port,
            kept if kept != sys.maxsize else 0,
            library=HTTPX,
        )
        record.origin = where.made_at(pool)
        origin = origins[key] = _Origin(record)
    ledger.pool_created(record)
    return origin


async def _nothing() -> None:
    """What the async ``trace`` callback returns when the program set none of its own."""


def _cause(error: BaseException) -> BaseException:
    # httpcore raises its own ConnectError from the socket's or ssl's error (from anyio's
    # "All connection attempts failed" in turn, for the async backend).
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def _closes(http_version: bytes, headers: Any) -> str | None:
    """How the response says the server closes the connection after it, if it does."""
    tokens = [value.lower() for name, value in headers if name.lower() == b"connection"]
    if any(b"close" in value for value in tokens):
        return A.CLOSED_CONNECTION_CLOSE
    if http_version == b"HTTP/1.0" and not any(b"keep-alive" in value for value in tokens):
        return A.CLOSED_HTTP_1_0
    return None


# --- one request through the pool ----------------------------------------------------------------


class _Request:
    """One request through an httpcore pool: its attempt (more when httpcore retries the
    connect), the connection it was given, and the ``trace`` callback that hears the rest."""

    __slots__ = (
        "attempt",
        "call_token",
        "conn",
        "connect",
        "connection",
        "https",
        "origin",
        "out",
        "own_call",
        "queued_ns",
        "setup",
        "tls",
        "token",
        "user",
    )

    def __init__(self, origin: _Origin, request: Any, is_async: bool) -> None:
        self.origin = origin
        self.conn: Any = None
        self.connection: Connection | None = None
        self.setup: Setup | None = None
        self.connect: Connect | None = None
        self.tls: _Handshake | None = None
        # The connection is checked out (counted as in use) by this request.
        self.out = False
        # When the pool first left this request waiting for a connection (0: it did not).
        self.queued_ns = 0
        url = request.url
        self.https = url.scheme in (b"https", b"wss")
        call = current_call.get()
        own_call = None
        if call is None:
            pool = origin.pool
            call = own_call = Call(f"{pool.host}:{pool.port}", {})
            ledger.call_started(call)
        self.own_call = own_call
        method, target = request.method.decode("ascii"), url.target.decode("latin-1")
        self.attempt = self._attempt(call, method, target)
        # The program's own callback, called as before; a request sent twice keeps one.
        extensions = request.extensions
        user = extensions.get("trace")
        earlier = getattr(user, "__self__", None)
        self.user: Callable[..., Any] | None = (
            earlier.user if isinstance(earlier, _Request) else user
        )
        request.extensions = {**extensions, "trace": self.trace_async if is_async else self.trace}
        self.call_token = current_call.set(own_call) if own_call is not None else None
        self.token = current_attempt.set(self.attempt)

    def _attempt(self, call: Call, method: str, target: str) -> Attempt:
        pool = self.origin.pool
        attempt = Attempt(call, pool, method, target)
        call.attempts.append(attempt)
        call.attempt_started(attempt)
        if pool.pending:
            attempt.events.extend(pool.pending)
            pool.pending.clear()
        return attempt

    # The callbacks httpcore calls; what they return is the program's callback's own answer.

    def trace(self, name: str, info: dict[str, Any]) -> Any:
        self.heard(name, info)
        return self.user(name, info) if self.user is not None else None

    def trace_async(self, name: str, info: dict[str, Any]) -> Any:
        self.heard(name, info)
        return self.user(name, info) if self.user is not None else _nothing()

    def heard(self, name: str, info: dict[str, Any]) -> None:
        handler = _EVENTS.get(name)
        if handler is None or not _runtime.active:
            return
        try:
            handler(self, info)
        except Exception:
            _runtime.report_internal_error(f"httpcore.trace {name}")

    # --- the pool's answer -----------------------------------------------------------------

    def finish(self, result: Any, error: BaseException | None) -> None:
        current_attempt.reset(self.token)
        ledger.request_ended(self.attempt, self.own_call, getattr(result, "status", None), error)
        if self.own_call is not None:
            current_call.reset(self.call_token)  # type: ignore[arg-type]

    # --- the connection the pool assigned ------------------------------------------------------

    def assigned(self, conn: Any) -> None:
        now = time.time_ns()
        origin = self.origin
        pool = origin.pool
        connection = self.connection = connection_of(conn, pool)
        conn._conntrace_origin = origin
        self.conn = conn
        attempt = self.attempt
        attempt.connection = connection
        attempt.wait_ms = _ms(now - self.queued_ns) if self.queued_ns else 0.0
        if conn._connection is not None:
            attempt.reused = True
            if connection.released_ns is not None:
                attempt.idle_ms = _ms(now - connection.released_ns)
            return
        reason, idle = origin.reason_for_new()
        attempt.reason = reason
        if idle is not None:
            attempt.idle_dropped_ms.append(idle)

    def check_out(self, info: dict[str, Any]) -> None:
        # Counted once the request has the connection for itself (it connects it, or sends
        # on it): the async pool may hand one idle connection to two waiting requests, and
        # the second then asks again (ConnectionNotAvailable).
        connection = self.connection
        if connection is not None and not self.out:
            self.out = True
            ledger.checked_out(self.origin.pool, connection)

    def give_back(self, how: str) -> None:
        connection = self.connection
        if connection is not None and self.out:
            self.out = False
            ledger.returned(self.origin.pool, connection, how)

    def exchanged(self, error: BaseException | None) -> None:
        now = time.time_ns()
        connection = self.connection
        if connection is None:
            return
        if isinstance(error, _not_available):
            # The connection was taken by another request first: the pool assigns another.
            self.give_back(KEPT)
            self.connection = None
            attempt = self.attempt
            attempt.connection, attempt.reused, attempt.reason = None, False, None
            return
        attempt = self.attempt
        attempt.exchanged = True
        attempt.end_ns = now
        if connection.id is not None:
            connection.requests += 1
            attempt.request_number = connection.requests
            attempt.age_ms = _ms(now - connection.opened_ns)
        if error is not None and self.conn._connection is None:
            # The connect failed: no response will close anything.
            self.give_back(BROKEN)

    # --- the trace events ------------------------------------------------------------------------

    def tcp_started(self, info: dict[str, Any]) -> None:
        self.check_out(info)
        attempt = self.attempt
        pool = self.origin.pool
        host, port = str(info["host"]), int(info["port"])
        setup = self.setup = Setup(
            host, port, attempt.reason or A.REASON_FIRST, pool.max_size, time.time_ns()
        )
        attempt.setup = setup
        self.connect = Connect(setup, host, port)

    def tcp_complete(self, info: dict[str, Any]) -> None:
        connect = self.connect
        if connect is None:
            return
        self.connect = None
        connect.finish(info["return_value"].get_extra_info("socket"), None)
        if not self.https:
            self.opened(None)

    def tcp_failed(self, info: dict[str, Any]) -> None:
        connect = self.connect
        if connect is None:
            return
        self.connect = None
        error = info["exception"]
        connect.finish(None, _cause(error))
        self.opened(error)

    def tls_started(self, info: dict[str, Any]) -> None:
        if self.setup is not None:
            self.tls = handshake(self.setup, info.get("server_hostname"))

    def tls_ended(self, info: dict[str, Any]) -> None:
        step = self.tls
        if step is None:
            return
        self.tls = None
        error = info.get("exception")
        if error is None:
            step.finish(info["return_value"].get_extra_info("ssl_object"), None)
        else:
            step.finish(None, _cause(error))
        self.opened(error)

    def opened(self, error: BaseException | None) -> None:
        setup, connection = self.setup, self.connection
        if setup is None or connection is None:
            return
        setup.end_ns = time.time_ns()
        setup.error = error
        ledger.connection_opened(setup, connection)

    def retry(self, info: dict[str, Any]) -> None:
        # httpcore connects again on the same connection object after a backoff: the failed
        # try ends as an attempt, and the next one opens a connection because of that error.
        connection, setup = self.connection, self.setup
        if connection is None or setup is None:
            return
        failed = self.attempt
        failed.error = setup.error
        self.exchanged(setup.error)
        ledger.attempt_ended(failed)
        attempt = self.attempt = self._attempt(failed.call, failed.method, failed.url)
        current_attempt.set(attempt)
        self.setup = None
        attempt.connection = connection
        attempt.reason, _idle = self.origin.reason_for_new()

    def headers(self, info: dict[str, Any]) -> None:
        http_version, status, _phrase, headers = info["return_value"]
        attempt = self.attempt
        attempt.status = status
        connection = self.connection
        cause = _closes(http_version, headers)
        if connection is not None and cause is not None:
            connection.close_cause = cause
            attempt.server_closed(connection)

    def returning(self, info: dict[str, Any]) -> None:
        # Decided before httpcore marks the connection idle: from then on the pool can give
        # it to a waiting request, whose checkout must not count this one as still out.
        connection = self.connection
        if connection is None or not self.out:
            return
        state = getattr(self.conn._connection, "_h11_state", None)
        if state is not None and state.our_state is _DONE and state.their_state is _DONE:
            connection.released_ns = time.time_ns()
            self.give_back(KEPT)
        elif connection.close_cause in A.CLOSED_BY_SERVER:
            self.give_back(KEPT)
            self.origin.lost.append((A.REASON_SERVER_CLOSED, None))
        else:
            # An error, or a response closed before its body was read: httpcore drops it.
            self.give_back(BROKEN)

    def response_closed(self, info: dict[str, Any]) -> None:
        connection = self.connection
        if connection is not None and connection.open and self.conn.is_closed():
            ledger.connection_closed(connection)


_EVENTS: dict[str, Callable[[_Request, dict[str, Any]], None]] = {
    "connection.connect_tcp.started": _Request.tcp_started,
    "connection.connect_tcp.complete": _Request.tcp_complete,
    "connection.connect_tcp.failed": _Request.tcp_failed,
    "connection.start_tls.started": _Request.tls_started,
    "connection.start_tls.complete": _Request.tls_ended,
    "connection.start_tls.failed": _Request.tls_ended,
    "connection.retry.started": _Request.retry,
    "http11.send_request_headers.started": _Request.check_out,
    "http11.receive_response_headers.complete": _Request.headers,
    "http11.response_closed.started": _Request.returning,
    "http11.response_closed.complete": _Request.response_closed,
    "http11.response_closed.failed": _Request.response_closed,
}
# httpcore.ConnectionNotAvailable and h11.DONE, once httpcore is imported.
_not_available: type[BaseException] | tuple[()] = ()
_DONE: Any = None


def _traced_pool(pool: Any) -> bool:
    # HTTP/2 multiplexes requests on one connection, and its events are not http11's.
    return (
        not getattr(pool, "_http2", False)
        and getattr(pool, "_proxy", None) is None
        and getattr(pool, "_uds", None) is None
        and not hasattr(pool, "_proxy_url")
    )


def _start_request(is_async: bool) -> Callable[[Any, tuple, dict], _Request | None]:
    def start(instance: Any, args: tuple, kwargs: dict) -> _Request | None:
        request = args[0] if args else kwargs["request"]
        if not _traced_pool(instance) or request.url.scheme not in (b"http", b"https"):
            return None
        return _Request(_origin_of(instance, request.url), request, is_async)

    return start


class _Send:
    __slots__ = ("probe",)

    def __init__(self, probe: _Request) -> None:
        self.probe = probe

    def finish(self, result: Any, error: BaseException | None) -> None:
        self.probe.exchanged(error)


def _start_send(instance: Any, args: tuple, kwargs: dict) -> _Send | None:
    request = args[0] if args else kwargs["request"]
    probe = getattr(request.extensions.get("trace"), "__self__", None)
    if not isinstance(probe, _Request):
        return None
    probe.assigned(instance)
    return _Send(probe)


# --- a pooled connection the pool drops ----------------------------------------------------------


def _has_expired(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
    # Asked of every pooled connection whenever the pool assigns requests: only its answer
    # matters, so this is a plain wrapper rather than a hook with a probe.
    expired = wrapped(*args, **kwargs)
    if expired is True and _runtime.active:
        try:
            _dropped(instance)
        except Exception:
            _runtime.report_internal_error("httpcore.has_expired")
    return expired


def _dropped(conn: Any) -> None:
    """The pool drops ``conn``: its keepalive_expiry passed, or the peer closed it."""
    connection: Connection | None = getattr(conn, "_conntrace", None)
    origin: _Origin | None = getattr(conn, "_conntrace_origin", None)
    if connection is None or origin is None or not connection.open or connection.checked_out:
        return
    conn._conntrace_expired = True
    expire_at = getattr(conn._connection, "_expire_at", None)
    if expire_at is not None and time.monotonic() > expire_at:
        # httpx's own keepalive_expiry: the client drops it, not the peer.
        origin.lost.append((A.REASON_STALE, None))
        return
    idle = _ms(time.time_ns() - connection.released_ns) if connection.released_ns else 0.0
    origin.lost.append((A.REASON_STALE, idle))
    ledger.place_event(
        Event(
            A.EVENT_CONNECTION_DROPPED,
            {A.CONNECTION_ID: connection.id or 0, A.CONNECTION_IDLE_MS: idle},
        ),
        origin.pool,
    )


def _assign(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
    # What the pool decided as it assigned requests: which requests it left waiting for a
    # connection (max_connections reached), and which connections it closes: expired ones
    # (``_dropped`` saw them), and idle ones closed because the pool holds more connections
    # than max_keepalive_connections, or needs the room for another server's.
    closing = wrapped(*args, **kwargs)
    if _runtime.active:
        try:
            _queued(instance._requests)
            for conn in closing:
                _discarded(conn)
        except Exception:
            _runtime.report_internal_error("httpcore.assign")
    return closing


def _queued(requests: list[Any]) -> None:
    now = 0
    for pool_request in requests:
        if pool_request.connection is not None:
            continue
        probe = getattr(pool_request.request.extensions.get("trace"), "__self__", None)
        if isinstance(probe, _Request) and not probe.queued_ns:
            now = now or time.time_ns()
            probe.queued_ns = now


def _discarded(conn: Any) -> None:
    connection: Connection | None = getattr(conn, "_conntrace", None)
    origin: _Origin | None = getattr(conn, "_conntrace_origin", None)
    if connection is None or origin is None or not connection.open or connection.checked_out:
        return
    if getattr(conn, "_conntrace_expired", False):
        return
    pool = origin.pool
    ledger.returned(pool, connection, DISCARDED)
    ledger.place_event(
        Event(
            A.EVENT_POOL_DISCARDED,
            _server(pool, {A.POOL_MAX_SIZE: pool.max_size, A.CONNECTION_ID: connection.id or 0}),
        ),
        pool,
    )


def apply(patcher: Patcher, httpcore: ModuleType) -> None:
    # All there from httpcore 1.0.3 (its pools' request queue); with any of them missing the
    # layer fails whole (``Layer``), and httpx runs untraced after one warning.
    global _DONE, _not_available
    import h11

    hook, async_hook = _runtime.hook, _runtime.async_hook
    patcher.wrap(
        httpcore, "ConnectionPool.handle_request", hook("httpcore.request", _start_request(False))
    )
    patcher.wrap(
        httpcore,
        "AsyncConnectionPool.handle_async_request",
        async_hook("httpcore.request", _start_request(True)),
    )
    made = hook("httpcore.pool_made", where.noting_where_made(HTTPX), makes_spans=False)
    patcher.wrap(httpcore, "ConnectionPool.__init__", made)
    patcher.wrap(httpcore, "AsyncConnectionPool.__init__", made)
    # The hooks below keep books only: they act on requests the pool hook took up.
    patcher.wrap(
        httpcore,
        "HTTPConnection.handle_request",
        hook("httpcore.connection", _start_send, makes_spans=False),
    )
    patcher.wrap(
        httpcore,
        "AsyncHTTPConnection.handle_async_request",
        async_hook("httpcore.connection", _start_send, makes_spans=False),
    )
    patcher.wrap(httpcore, "ConnectionPool._assign_requests_to_connections", _assign)
    patcher.wrap(httpcore, "AsyncConnectionPool._assign_requests_to_connections", _assign)
    patcher.wrap(httpcore, "HTTPConnection.has_expired", _has_expired)
    patcher.wrap(httpcore, "AsyncHTTPConnection.has_expired", _has_expired)
    patcher.wrap(
        httpcore, "HTTPConnection.close", hook("httpcore.close", _start_close, makes_spans=False)
    )
    patcher.wrap(
        httpcore,
        "AsyncHTTPConnection.aclose",
        async_hook("httpcore.close", _start_close, makes_spans=False),
    )
    _not_available = httpcore.ConnectionNotAvailable
    _DONE = h11.DONE
