"""Layer: urllib3 connection pools, and the HTTP attempts made through them.

What each hook records in the ledger:

* ``PoolManager.__init__``: where the program made the client or session that owns the
  manager (``layers.origin``); botocore and requests make their manager when the client or
  session is made, and its pools, made later at the first request, inherit that origin.
* ``HTTPConnectionPool.__init__``: a pool (the ledger numbers the pools of each server, so
  a second one is ``new_pool``), with its origin: its manager's (``PoolManager._new_pool``
  marks the manager at work), else the pool's own creation's.
* ``urlopen``: an attempt, inside the current call; a ``urlopen`` made outside any API
  call is a call of its own, and urllib3's retries and redirects (``urlopen`` calling
  itself) are its further attempts.
* ``_get_conn``: the checkout. A pooled connection with a live socket is reused.
  Otherwise the reason comes from what this pool saw before (``Pool.reason_for_new_object``)
  or, for a pooled object whose socket is gone, from how it went (``server_closed`` or
  ``stale``).
* ``_make_request``: the exchange: request number on the connection, status, error, and
  ``Connection: close`` (http.client drops the socket as soon as a response says so).
* ``_put_conn``: the return: ``None`` means an error broke the connection; a live
  connection that comes back closed was discarded because the pool was full.
* ``HTTPConnection.connect``: the setup, whose steps the DNS, TCP and TLS layers record.
* ``http.client.HTTPConnection.close``: the connection's end, and why (``A.CLOSE_CAUSES``),
  from where it happens: during an exchange, the response (``Connection: close`` or
  HTTP/1.0) or an error; during a checkout, urllib3 found the idle socket readable: data of
  a response released unread, else the peer's FIN or reset; during a return, a full or
  closed pool; while checked out, the program closed its response; while idle in the pool,
  the pool was closed.
"""

from __future__ import annotations

import http.client
import select
import socket
import sys
import time
import weakref
from contextvars import ContextVar
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from .. import _runtime, ledger
from .. import attributes as A
from .._context import current_attempt, current_call, current_setup
from ..ledger import (
    BOTOCORE,
    BROKEN,
    DISCARDED,
    KEPT,
    Attempt,
    Call,
    Connection,
    Event,
    Origin,
    Pool,
    Setup,
)
from . import origin as origins
from .proxy import proxy_of, replaced_tunnel, setup_server, target_of

if TYPE_CHECKING:
    from .._patching import Patcher


class PoolLike(Protocol):
    """What conntrace reads of a urllib3 ``HTTPConnectionPool`` (1.26 and 2.x)."""

    scheme: str
    host: str
    port: int | None
    block: bool
    pool: Any  # the LifoQueue of connections, None once the pool is closed


class ConnectionLike(Protocol):
    """What conntrace reads of a urllib3 ``HTTPConnection``."""

    host: str
    port: int | None
    sock: Any


def pool_of(pool: PoolLike) -> Pool:
    record: Pool | None = getattr(pool, "_conntrace_pool", None)
    if record is None:
        # A pool made before conntrace was switched on: its history is unknown.
        record = _new_pool(pool)
    return record


def _new_pool(pool: PoolLike, origin: Origin | None = None) -> Pool:
    queue = getattr(pool, "pool", None)
    record = Pool(
        pool.scheme, pool.host, pool.port, getattr(queue, "maxsize", 0) or 0, proxy_of(pool)
    )
    record.origin = origin
    call = current_call.get()
    if call is not None and call.is_api:
        record.service = str(call.settings.get(A.RPC_SERVICE, ""))
    # The library the program made it with words the advice; a pool of an API call whose
    # client is of unknown origin is botocore's.
    if origin is not None:
        record.library = origin.library
    elif record.service:
        record.library = BOTOCORE
    # A pool made before conntrace was switched on may have made connections already: its
    # next new one is then not its first.
    record.objects = getattr(pool, "num_connections", 0) or 0
    pool._conntrace_pool = record  # type: ignore[attr-defined]
    return record


def connection_of(conn: ConnectionLike, pool: Pool | None = None) -> Connection:
    record: Connection | None = getattr(conn, "_conntrace", None)
    if record is None:
        record = Connection(pool)
        conn._conntrace = record  # type: ignore[attr-defined]
    elif record.pool is None and pool is not None:
        record.pool = pool
    return record


# Set while urllib3 takes a connection from a pool, or puts one back: a close then is urllib3's.
_checking: ContextVar[bool] = ContextVar("conntrace_checking", default=False)
_returning: ContextVar[PoolLike | None] = ContextVar("conntrace_returning", default=None)


def _ms(nanoseconds: int) -> float:
    return round(nanoseconds / 1e6, 3)


# --- pool creation -------------------------------------------------------------------------------

# The PoolManager whose ``_new_pool`` is running: its pools inherit its origin.
_manager_at_work: ContextVar[Any] = ContextVar("conntrace_manager_at_work", default=None)


class _ManagerCreation:
    __slots__ = ("manager", "origin")

    def __init__(self, manager: Any) -> None:
        self.manager = manager
        self.origin = origins.find(sys._getframe(2))

    def finish(self, result: Any, error: BaseException | None) -> None:
        if error is None:
            self.manager._conntrace_origin = self.origin


def _start_manager_creation(instance: Any, args: tuple, kwargs: dict) -> _ManagerCreation:
    return _ManagerCreation(instance)


class _ManagerAtWork:
    __slots__ = ("token",)

    def __init__(self, manager: Any) -> None:
        self.token = _manager_at_work.set(manager)

    def finish(self, result: Any, error: BaseException | None) -> None:
        _manager_at_work.reset(self.token)


def _start_new_pool(instance: Any, args: tuple, kwargs: dict) -> _ManagerAtWork:
    return _ManagerAtWork(instance)


def _origin_of_new_pool() -> Origin | None:
    manager = _manager_at_work.get()
    if manager is None:
        # A pool the program made itself (urllib3.HTTPConnectionPool, connection_from_url).
        return origins.find(sys._getframe(2))
    # None: a manager made before conntrace was switched on; where is not known.
    found = getattr(manager, "_conntrace_origin", None)
    return found if isinstance(found, Origin) else None


class _PoolCreation:
    __slots__ = ("origin", "pool")

    def __init__(self, pool: PoolLike) -> None:
        self.pool = pool
        self.origin = _origin_of_new_pool()

    def finish(self, result: Any, error: BaseException | None) -> None:
        if error is not None:
            return
        ledger.pool_created(_new_pool(self.pool, self.origin))


def _start_pool_creation(instance: Any, args: tuple, kwargs: dict) -> _PoolCreation:
    return _PoolCreation(instance)


def _server(pool: Pool, attributes: dict[str, Any]) -> dict[str, Any]:
    return {A.SERVER_ADDRESS: pool.host, A.SERVER_PORT: pool.port, **attributes}


# --- one attempt per urlopen ---------------------------------------------------------------------


class _Urlopen:
    """One ``urlopen``: an attempt, and the call it opened when it is a call of its own."""

    __slots__ = ("attempt", "call_token", "own_call", "token")

    def __init__(self, attempt: Attempt, own_call: Call | None) -> None:
        self.attempt = attempt
        self.own_call = own_call
        self.call_token = current_call.set(own_call) if own_call is not None else None
        self.token = current_attempt.set(attempt)

    def finish(self, result: Any, error: BaseException | None) -> None:
        current_attempt.reset(self.token)
        ledger.request_ended(self.attempt, self.own_call, getattr(result, "status", None), error)
        if self.own_call is not None:
            current_call.reset(self.call_token)  # type: ignore[arg-type]


def _start_urlopen(instance: Any, args: tuple, kwargs: dict) -> _Urlopen:
    method = args[0] if args else kwargs.get("method", "GET")
    url = args[1] if len(args) > 1 else kwargs.get("url", "/")
    pool = pool_of(instance)
    # Forwarded through a proxy, the request's absolute URL names its server.
    server = target_of(url) if pool.proxy is not None and "://" in url else None
    previous = current_attempt.get()
    own_call = None
    if previous is not None and previous.pool is pool and not previous.ended:
        # urllib3 retries and follows redirects by calling urlopen again from inside
        # urlopen: the earlier attempt ended when its exchange did.
        ledger.attempt_ended(previous)
        call = previous.call
    else:
        call = current_call.get()  # type: ignore[assignment]
        if call is None:
            host, port = server or pool.server
            call = own_call = Call(f"{host}:{port}", {})
            ledger.call_started(call)
    attempt = Attempt(call, pool, method, url)
    if server is not None:
        attempt.server = server
    if pool.kind is None:
        pool.kind = str(call.settings.get(A.RPC_SERVICE, ""))
    ledger.attempt_started(attempt)
    call.attempts.append(attempt)
    call.attempt_started(attempt)
    if pool.pending:
        attempt.events.extend(pool.pending)
        pool.pending.clear()
    return _Urlopen(attempt, own_call)


# --- checkout ------------------------------------------------------------------------------------


class _Checkout:
    __slots__ = ("pool", "started", "token")

    def __init__(self, pool: PoolLike) -> None:
        self.pool = pool
        # Only a blocking pool makes a request wait for a connection.
        self.started = time.time_ns() if pool.block else 0
        self.token = _checking.set(True)

    def finish(self, conn: Any, error: BaseException | None) -> None:
        _checking.reset(self.token)
        if error is not None:
            replaced_tunnel()
            return
        now = time.time_ns()
        pool = pool_of(self.pool)
        connection = connection_of(conn, pool)
        ledger.checked_out(pool, connection)
        attempt = current_attempt.get()
        if attempt is not None:
            connection.holder = attempt.call.label
            attempt.connection = connection
            if self.started:
                attempt.wait_ms = _ms(now - self.started)
        if conn.sock is not None:
            # Open, but its setup never seen: made before conntrace was switched on (the
            # exporter's own connections, set up while suppressed, are not the program's).
            if not connection.connected_once and not _runtime.suppressed():
                ledger.connection_found(connection)
            if attempt is not None:
                attempt.reused = True
                if connection.released_ns is not None:
                    attempt.idle_ms = _ms(now - connection.released_ns)
            return
        # urllib3 1.26 replaces the object of a tunnel whose socket is gone with a new one:
        # the new object carries on for the connection the old one carried.
        previous = connection if connection.connected_once else replaced_tunnel()
        if previous is not None:
            reason = previous.reason_for_reconnect()
            if attempt is not None:
                _replacing(attempt, previous, reason, now)
        else:
            reason = pool.reason_for_new_object()
            if reason == A.REASON_POOL_BUSY and attempt is not None:
                _left_out(attempt, pool, connection)
        connection.pending_reason = reason
        if attempt is not None:
            attempt.reason = reason


def _replacing(attempt: Attempt, connection: Connection, reason: str, now: int) -> None:
    """The attempt reconnects a pooled object: say how its last connection ended."""
    cause = attempt.replaced_cause = connection.close_cause
    attributes: dict[str, Any] = {A.CONNECTION_ID: connection.id or 0}
    if cause is not None:
        attributes[A.CONNECTION_CLOSE_CAUSE] = cause
    if reason == A.REASON_STALE:
        idle = _ms(now - connection.released_ns) if connection.released_ns else 0.0
        attempt.idle_dropped_ms.append(idle)
        attempt.events.append(
            Event(A.EVENT_CONNECTION_DROPPED, {**attributes, A.CONNECTION_IDLE_MS: idle})
        )
    elif reason == A.REASON_CLIENT_CLOSED:
        attempt.events.append(Event(A.EVENT_CLIENT_CLOSED, attributes))


def _left_out(attempt: Attempt, pool: Pool, connection: Connection) -> None:
    """Every pooled connection is out, yet this is the pool's only attempt in progress: the
    others are held by responses whose bodies were never read or closed."""
    if pool.in_flight != 1:
        return
    held = tuple(sorted(c.holder for c in list(pool.held) if c is not connection))
    if not held:
        return
    attempt.unreturned = held
    attempt.events.append(
        Event(A.EVENT_CONNECTIONS_NOT_RETURNED, _server(pool, {A.POOL_CHECKED_OUT: len(held)}))
    )


def _start_checkout(instance: Any, args: tuple, kwargs: dict) -> _Checkout:
    return _Checkout(instance)


# --- one request on a connection -----------------------------------------------------------------


class _Exchange:
    __slots__ = ("attempt", "conn", "id_at_start", "live_at_start", "record")

    def __init__(self, conn: ConnectionLike, attempt: Attempt | None) -> None:
        self.conn = conn
        self.attempt = attempt
        record = self.record = connection_of(conn)
        self.live_at_start = record.open
        self.id_at_start = record.id
        record.exchanging = True

    def finish(self, response: Any, error: BaseException | None) -> None:
        now = time.time_ns()
        record = self.record
        record.exchanging = False
        # The request went out on a connection that was live, or that opened meanwhile.
        if self.live_at_start or record.id != self.id_at_start:
            record.requests += 1
        # http.client closes the socket as soon as a response says it will close.
        closed_by_server = response is not None and self.conn.sock is None
        raw = _http_client_response(response)
        if closed_by_server:
            record.close_cause = _server_close_cause(raw)
        elif response is None and not record.open:
            record.close_cause = A.CLOSED_ERROR
        if raw is not None and not closed_by_server:
            try:
                record.response = weakref.ref(raw)
            except TypeError:
                record.response = None
        attempt = self.attempt
        if attempt is None:
            return
        attempt.exchange_ended(record, getattr(response, "status", None), error, now)
        if closed_by_server:
            attempt.server_closed(record)
        headers = getattr(response, "headers", None)
        if headers is not None:
            attempt.keep_alive_timeout_s = _keep_alive_timeout(headers.get("Keep-Alive"))


def _keep_alive_timeout(value: str | None) -> float | None:
    """The ``timeout`` of a ``Keep-Alive: timeout=5, max=100`` header, in seconds."""
    if not value:
        return None
    for part in value.split(","):
        name, _, number = part.partition("=")
        if name.strip().lower() == "timeout":
            try:
                return float(number.strip())
            except ValueError:
                return None
    return None


def _http_client_response(response: Any) -> Any:
    """http.client's response: urllib3 2.x wraps it, 1.26's ``_make_request`` returns it."""
    if response is None:
        return None
    return getattr(response, "_original_response", None) or response


def _server_close_cause(raw: Any) -> str:
    # http.client closes after an HTTP/1.0 response unless it asked for keep-alive.
    header = ""
    getheader = getattr(raw, "getheader", None)
    if getheader is not None:
        header = (getheader("connection") or "").lower()
    if getattr(raw, "version", 11) == 10 and "close" not in header:
        return A.CLOSED_HTTP_1_0
    return A.CLOSED_CONNECTION_CLOSE


def _start_exchange(instance: Any, args: tuple, kwargs: dict) -> _Exchange:
    conn = args[0] if args else kwargs["conn"]
    return _Exchange(conn, current_attempt.get())


# --- return to the pool --------------------------------------------------------------------------


class _Return:
    __slots__ = ("conn", "pool", "token", "was_open")

    def __init__(self, pool: PoolLike, conn: ConnectionLike | None) -> None:
        self.pool = pool
        self.conn = conn
        self.was_open = conn is not None and conn.sock is not None
        self.token = _returning.set(pool)

    def finish(self, result: Any, error: BaseException | None) -> None:
        _returning.reset(self.token)
        pool = pool_of(self.pool)
        conn = self.conn
        if conn is None:
            # urllib3 puts an empty slot back when an error broke the connection.
            attempt = current_attempt.get()
            ledger.returned(pool, None, BROKEN, attempt.connection if attempt else None)
            return
        connection = connection_of(conn, pool)
        if self.was_open and conn.sock is None and self.pool.pool is not None:
            ledger.returned(pool, connection, DISCARDED)
            ledger.place_event(
                Event(
                    A.EVENT_POOL_DISCARDED,
                    _server(
                        pool, {A.POOL_MAX_SIZE: pool.max_size, A.CONNECTION_ID: connection.id or 0}
                    ),
                ),
                pool,
            )
            return
        connection.released_ns = time.time_ns()
        ledger.returned(pool, connection, KEPT)


def _start_return(instance: Any, args: tuple, kwargs: dict) -> _Return:
    return _Return(instance, args[0] if args else kwargs.get("conn"))


# --- connection setup ----------------------------------------------------------------------------


class _Setup:
    __slots__ = ("connection", "setup", "token")

    def __init__(self, conn: Any, connection: Connection) -> None:
        self.connection = connection
        reason = connection.pending_reason or (
            connection.reason_for_reconnect() if connection.connected_once else A.REASON_FIRST
        )
        connection.pending_reason = None
        pool = connection.pool
        attempt = current_attempt.get()
        mine = attempt is not None and attempt.connection is connection
        if mine:
            (host, port), proxy = attempt.server, attempt.proxy  # type: ignore[union-attr]
        else:
            host, port, proxy = setup_server(conn, pool)
        setup = self.setup = Setup(
            host, port, reason, pool.max_size if pool else 0, time.time_ns(), proxy
        )
        if pool is not None:
            setup.origin = pool.origin
        if mine:
            attempt.setup = setup  # type: ignore[union-attr]
        self.token = current_setup.set(setup)

    def finish(self, result: Any, error: BaseException | None) -> None:
        current_setup.reset(self.token)
        setup = self.setup
        setup.end_ns = time.time_ns()
        setup.error = error
        ledger.connection_opened(setup, self.connection)


def _start_setup(instance: Any, args: tuple, kwargs: dict) -> _Setup | None:
    if current_setup.get() is not None:
        # HTTPSConnection.connect calling HTTPConnection.connect: one setup.
        return None
    return _Setup(instance, connection_of(instance))


# --- close ---------------------------------------------------------------------------------------


class _Close:
    __slots__ = ("connection",)

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def finish(self, result: Any, error: BaseException | None) -> None:
        ledger.connection_closed(self.connection)


def _start_close(instance: Any, args: tuple, kwargs: dict) -> _Close | None:
    # Every close of a urllib3 connection ends in http.client's; connections conntrace
    # never saw open are left alone.
    record = getattr(instance, "_conntrace", None)
    if record is None or not record.open:
        return None
    if not record.exchanging:
        # An exchange's close is the response's or the error's: its end says which.
        record.close_cause = _close_cause(instance, record)
    return _Close(record)


def _close_cause(conn: Any, record: Connection) -> str:
    if _checking.get():
        # urllib3 found the idle socket readable: data of a response released unread, or
        # the peer's FIN or reset.
        return _unread_body(record) or _peer_close(getattr(conn, "sock", None))
    returning = _returning.get()
    if returning is not None:
        # urllib3 closes what it cannot put back: a full queue, or none (the pool was closed).
        return A.CLOSED_POOL_FULL if returning.pool is not None else A.CLOSED_POOL_CLOSED
    if record.checked_out:
        attempt = current_attempt.get()
        if attempt is not None and attempt.connection is record and attempt.error is not None:
            return A.CLOSED_ERROR
        return _unread_body(record) or A.CLOSED_BY_PROGRAM
    return A.CLOSED_POOL_CLOSED


def _unread_body(record: Connection) -> str | None:
    response = record.response() if record.response is not None else None
    # http.client closes a response read to its end; one with no body (HEAD, 204) has nothing
    # to read.
    if response is not None and not response.isclosed() and response.length != 0:
        return A.CLOSED_UNREAD_BODY
    return None


_PEEK = socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)


def _peer_close(sock: Any) -> str:
    """FIN or reset, from the socket itself (a peek that takes nothing, and never waits)."""
    if sock is None or not hasattr(socket, "MSG_DONTWAIT") or not hasattr(select, "poll"):
        return A.CLOSED_PEER_IDLE
    try:
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        if not poller.poll(0):
            return A.CLOSED_PEER_IDLE
        # The plain socket's recv, also beneath TLS: the bytes on the wire, not the records.
        socket.socket.recv(sock, 1, _PEEK)
    except ConnectionResetError:
        return A.CLOSED_PEER_RESET
    except (OSError, ValueError):
        pass
    return A.CLOSED_PEER_IDLE


def apply(patcher: Patcher, urllib3: ModuleType) -> None:
    pool, connection = urllib3.connectionpool, urllib3.connection
    hook = _runtime.hook
    patcher.wrap(pool, "HTTPConnectionPool.urlopen", hook("pool.urlopen", _start_urlopen))
    setup = hook("connection.connect", _start_setup)
    patcher.wrap(connection, "HTTPConnection.connect", setup)
    patcher.wrap(connection, "HTTPSConnection.connect", setup)
    # A pool the OTLP exporter makes while it exports is not the program's: not recorded.
    patcher.wrap(pool, "HTTPConnectionPool.__init__", hook("pool.__init__", _start_pool_creation))
    manager = urllib3.poolmanager
    patcher.wrap(
        manager, "PoolManager.__init__", hook("pool.manager_init", _start_manager_creation)
    )
    patcher.wrap(manager, "PoolManager._new_pool", hook("pool.new_pool", _start_new_pool))
    # The hooks below keep books only, on the exporter's pools too (it makes no attempts).
    for name, start in (
        ("_get_conn", _start_checkout),
        ("_make_request", _start_exchange),
        ("_put_conn", _start_return),
    ):
        patcher.wrap(
            pool, f"HTTPConnectionPool.{name}", hook(f"pool.{name}", start, makes_spans=False)
        )
    close = hook("connection.close", _start_close, makes_spans=False)
    patcher.wrap(http.client, "HTTPConnection.close", close)
