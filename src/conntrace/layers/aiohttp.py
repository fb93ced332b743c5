"""Layer: aiohttp client sessions and connectors (and so aiobotocore, which runs on them).

The same model as urllib3's (``layers/pool.py``), recorded in the ledger. A connector is the
pool: one ledger ``Pool`` per connector and server, numbered per server, so a second
``ClientSession`` (with its own connector) to the same server is ``new_pool``.

Why hooks on the connector, not a ``TraceConfig``: a TraceConfig must be handed to every
``ClientSession`` (conntrace would have to rewrite the program's constructor calls), its
signals carry no connection (which socket, the TLS handshake, who closed it) and they are
sent only for sessions that have one. The hooks are:

* ``ClientSession._request``: one request of the program; outside an API call it is a call
  of its own (like a plain ``urlopen``). It ends when the response headers are in.
* ``BaseConnector.connect``: one attempt (redirects and client middlewares connect again:
  further attempts of the call) and the checkout: reused, with idle time, or new.
* ``BaseConnector._wait_for_available_connection``: the wait for a free slot when the
  connector's ``limit`` or ``limit_per_host`` is reached (``conntrace.pool.wait_ms``).
* ``TCPConnector._create_connection``: the setup, and why it was needed (below).
* ``TCPConnector._resolve_host``: the DNS step, only when aiohttp really looks the name up
  (not for an address, a hit in its DNS cache, or a lookup already under way for another
  request). It runs in the setup's task, so the setup is known there even though
  ``loop.getaddrinfo`` runs in an executor thread that does not copy context variables.
* ``aiohappyeyeballs.start_connection``: the TCP step (every address tried), and
  ``TCPConnector._wrap_create_connection``: the TLS handshake that follows on that socket.
* ``ClientResponse.start``: the exchange: request number, status, ``Connection: close``.
* ``BaseConnector._release``: the return: kept in the pool, or closed (after a response
  that said so, or after an error).
* ``ResponseHandler.connection_lost``: the connection's end; an idle pooled connection that
  ends while aiohttp still holds its transport was closed by the peer.

Why a new connection: a pooled connection lost while idle (``stale``: closed by the peer,
or by aiohttp's own ``keepalive_timeout``), else one closed after a ``Connection: close``
response (``server_closed``), else what the pool saw before (``Pool.reason_for_new_object``:
``error`` after a failure, ``first`` / ``new_pool``, and ``pool_busy`` when every
connection of the pool was in use).
"""

from __future__ import annotations

import ipaddress
import time
from contextvars import ContextVar
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .. import _runtime, ledger
from .. import attributes as A
from .._context import current_attempt, current_call, current_setup
from ..ledger import (
    AIOBOTOCORE,
    AIOHTTP,
    BROKEN,
    DNS,
    KEPT,
    TCP,
    TLS,
    Attempt,
    Call,
    Connection,
    Event,
    Pool,
    Setup,
    Step,
)
from . import origin as where
from .dns_tcp import describe_socket

if TYPE_CHECKING:
    from contextvars import Token

    from .._patching import Patcher


class _PoolState:
    """One connector's pool for one server, and what it lost since its last new connection."""

    __slots__ = ("closed_by_server", "lost_idle", "pool")

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        # Pooled connections that ended while idle, with whether the peer closed them.
        self.lost_idle: list[tuple[Connection, bool]] = []
        self.closed_by_server = 0


class _Link:
    """What conntrace hangs on an aiohttp ``ResponseHandler`` (one TCP connection)."""

    __slots__ = ("closing", "connection", "state")

    def __init__(self, connection: Connection, state: _PoolState) -> None:
        self.connection = connection
        self.state = state
        # Closed by aiohttp on its return to the pool (a response said so, or an error).
        self.closing = False


def _max_size(connector: Any) -> int:
    """Connections the pool may hold for one server (0: no limit)."""
    limits = [n for n in (connector.limit, connector.limit_per_host) if n]
    return min(limits) if limits else 0


def _state(connector: Any, key: Any) -> _PoolState:
    states: dict[Any, _PoolState] | None = connector.__dict__.get("_conntrace_pools")
    if states is None:
        states = connector.__dict__["_conntrace_pools"] = {}
    server = (key.host, key.port, key.is_ssl)
    state = states.get(server)
    if state is None:
        # aiobotocore makes a connector per client, inside the client's first call.
        call = current_call.get()
        library = AIOBOTOCORE if call is not None and call.is_api else AIOHTTP
        scheme = "https" if key.is_ssl else "http"
        pool = Pool(scheme, key.host, key.port, _max_size(connector), library=library)
        pool.origin = where.made_at(connector)
        state = states[server] = _PoolState(pool)
        ledger.pool_created(pool)
    return state


def _ms(nanoseconds: int) -> float:
    return round(nanoseconds / 1e6, 3)


# --- one request of the program ------------------------------------------------------------------


class _Request:
    """One ``ClientSession._request``: the attempts its connects make, and its own call when
    no API call is in progress."""

    __slots__ = ("attempt_token", "call_token", "own_call", "scope_token")

    def __init__(self) -> None:
        self.own_call: Call | None = None
        self.call_token: Token[Call | None] | None = None
        self.attempt_token = current_attempt.set(None)
        self.scope_token = _request.set(self)

    def call_for(self, pool: Pool) -> Call:
        call = current_call.get()
        if call is not None and not call.end_ns:
            return call
        call = self.own_call = Call(f"{pool.host}:{pool.port}", {})
        self.call_token = current_call.set(call)
        ledger.call_started(call)
        return call

    def finish(self, response: Any, error: BaseException | None) -> None:
        attempt = current_attempt.get()
        _request.reset(self.scope_token)
        current_attempt.reset(self.attempt_token)
        ledger.request_ended(attempt, self.own_call, getattr(response, "status", None), error)
        if self.own_call is not None:
            current_call.reset(self.call_token)  # type: ignore[arg-type]


_request: ContextVar[_Request | None] = ContextVar("conntrace_aiohttp_request", default=None)


def _start_request(instance: Any, args: tuple, kwargs: dict) -> _Request:
    return _Request()


# --- one attempt: the connect and the checkout ---------------------------------------------------


class _Connect:
    __slots__ = ("attempt", "state")

    def __init__(self, state: _PoolState, attempt: Attempt | None) -> None:
        self.state = state
        self.attempt = attempt

    def finish(self, conn: Any, error: BaseException | None) -> None:
        if error is not None:
            return
        now = time.time_ns()
        proto = conn.protocol
        link: _Link | None = getattr(proto, "_conntrace", None)
        if link is None:
            # A connection opened before conntrace was switched on: its history is unknown.
            link = _link(proto, Connection(self.state.pool), self.state)
        connection = link.connection
        ledger.checked_out(self.state.pool, connection)
        attempt = self.attempt
        if attempt is None:
            return
        attempt.connection = connection
        if attempt.setup is None or attempt.setup.connection_id != connection.id:
            attempt.reused = True
            if connection.released_ns is not None:
                attempt.idle_ms = _ms(now - connection.released_ns)


def _start_connect(instance: Any, args: tuple, kwargs: dict) -> _Connect:
    req = args[0] if args else kwargs["req"]
    state = _state(instance, req.connection_key)
    scope = _request.get()
    if scope is None:
        # A connect outside ClientSession._request: the pool's books only.
        return _Connect(state, None)
    pool = state.pool
    previous = current_attempt.get()
    if previous is not None and not previous.ended:
        # A redirect, or a client middleware sending again: the earlier attempt is over.
        ledger.attempt_ended(previous)
        call = previous.call
    else:
        call = scope.call_for(pool)
    attempt = Attempt(call, pool, req.method, str(req.url.raw_path_qs))
    call.attempts.append(attempt)
    call.attempt_started(attempt)
    if pool.pending:
        attempt.events.extend(pool.pending)
        pool.pending.clear()
    # Not reset here: the exchange and the request's end read it; _Request resets it.
    current_attempt.set(attempt)
    return _Connect(state, attempt)


class _Wait:
    __slots__ = ("attempt", "started")

    def __init__(self, attempt: Attempt) -> None:
        self.attempt = attempt
        self.started = time.time_ns()

    def finish(self, result: Any, error: BaseException | None) -> None:
        self.attempt.wait_ms = (self.attempt.wait_ms or 0.0) + _ms(time.time_ns() - self.started)


def _start_wait(instance: Any, args: tuple, kwargs: dict) -> _Wait | None:
    attempt = current_attempt.get()
    return _Wait(attempt) if attempt is not None and not attempt.ended else None


# --- connection setup ----------------------------------------------------------------------------


def _link(proto: Any, connection: Connection, state: _PoolState) -> _Link:
    link = _Link(connection, state)
    proto._conntrace = link
    return link


def _reason(state: _PoolState, attempt: Attempt | None, now: int) -> str:
    if state.lost_idle:
        lost, by_peer = state.lost_idle.pop(0)
        if by_peer and attempt is not None:
            idle = _ms(now - lost.released_ns) if lost.released_ns else 0.0
            attempt.idle_dropped_ms.append(idle)
            attempt.replaced_cause = A.CLOSED_PEER_IDLE
            attempt.events.append(
                Event(
                    A.EVENT_CONNECTION_DROPPED,
                    {
                        A.CONNECTION_ID: lost.id or 0,
                        A.CONNECTION_IDLE_MS: idle,
                        A.CONNECTION_CLOSE_CAUSE: A.CLOSED_PEER_IDLE,
                    },
                )
            )
        return A.REASON_STALE
    if state.closed_by_server:
        state.closed_by_server -= 1
        return A.REASON_SERVER_CLOSED
    return state.pool.reason_for_new_object()


class _Setup:
    __slots__ = ("attempt", "setup", "state", "token")

    def __init__(self, state: _PoolState, attempt: Attempt | None) -> None:
        self.state = state
        self.attempt = attempt
        now = time.time_ns()
        pool = state.pool
        reason = _reason(state, attempt, now)
        setup = self.setup = Setup(pool.host, pool.port, reason, pool.max_size, now)
        if attempt is not None:
            attempt.setup = setup
            attempt.reason = setup.reason
        self.token = current_setup.set(setup)

    def finish(self, proto: Any, error: BaseException | None) -> None:
        current_setup.reset(self.token)
        setup = self.setup
        setup.end_ns = time.time_ns()
        setup.error = error
        connection = Connection(self.state.pool)
        attempt = self.attempt
        if attempt is not None:
            attempt.connection = connection
        if error is None:
            _link(proto, connection, self.state)
        else:
            # The next new connection of this pool replaces the one that failed.
            self.state.pool.errors_pending += 1
            if attempt is not None:
                # As urllib3, whose request opens its connection: the attempt got that far.
                attempt.exchanged = True
        ledger.connection_opened(setup, connection)


def _start_setup(instance: Any, args: tuple, kwargs: dict) -> _Setup:
    req = args[0] if args else kwargs["req"]
    attempt = current_attempt.get()
    if attempt is not None and attempt.ended:
        attempt = None
    return _Setup(_state(instance, req.connection_key), attempt)


# --- DNS, TCP and TLS ----------------------------------------------------------------------------


class _Step:
    __slots__ = ("step",)

    def __init__(self, setup: Setup, name: str) -> None:
        self.step = Step(name, time.time_ns())
        setup.steps.append(self.step)

    def finish(self, result: Any, error: BaseException | None) -> None:
        step = self.step
        step.end_ns = time.time_ns()
        step.error = error
        if error is None:
            self.describe(result)

    def describe(self, result: Any) -> None:
        raise NotImplementedError


class _Lookup(_Step):
    __slots__ = ()

    def describe(self, answers: Any) -> None:
        seen = dict.fromkeys(str(answer.get("host", "")) for answer in answers or ())
        self.step.details[A.DNS_ANSWERS] = tuple(seen)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _start_lookup(instance: Any, args: tuple, kwargs: dict) -> _Lookup | None:
    setup = current_setup.get()
    if setup is None:
        return None
    host, port = (
        str(args[0] if args else kwargs["host"]),
        args[1] if len(args) > 1 else kwargs["port"],
    )
    if _is_address(host):
        return None
    key = (host, port)
    cache = getattr(instance, "_cached_hosts", None)
    if getattr(instance, "_use_dns_cache", False) and cache is not None:
        # A cache hit, or a lookup that another request started and this one waits for,
        # is not a lookup of this setup.
        if key in cache and not cache.expired(key):
            return None
        if key in getattr(instance, "_throttle_dns_futures", {}):
            return None
    lookup = _Lookup(setup, DNS)
    lookup.step.details[A.DNS_QUESTION_NAME] = host
    return lookup


class _TcpConnect(_Step):
    __slots__ = ("address",)

    def __init__(self, setup: Setup, address: tuple[str, int]) -> None:
        super().__init__(setup, TCP)
        self.address = address

    def describe(self, sock: Any) -> None:
        self.step.details.update(describe_socket(sock))

    def finish(self, result: Any, error: BaseException | None) -> None:
        super().finish(result, error)
        if error is not None:
            host, port = self.address
            self.step.details.update(
                {A.NETWORK_TRANSPORT: "tcp", A.SERVER_ADDRESS: host, A.SERVER_PORT: port}
            )


def _start_tcp(instance: Any, args: tuple, kwargs: dict) -> _TcpConnect | None:
    setup = current_setup.get()
    if setup is None:
        return None
    infos = kwargs.get("addr_infos") or (args[0] if args else ())
    address = infos[0][4] if infos else (setup.host, setup.port)
    return _TcpConnect(setup, (str(address[0]), int(address[1])))


class _Handshake:
    """The TLS handshake: from the connected socket to the transport aiohttp gets back."""

    __slots__ = ("server_name", "setup", "tcp_steps")

    def __init__(self, setup: Setup, server_name: str) -> None:
        self.setup = setup
        self.server_name = server_name
        self.tcp_steps = sum(1 for step in setup.steps if step.name == TCP)

    def finish(self, result: Any, error: BaseException | None) -> None:
        steps = [step for step in self.setup.steps if step.name == TCP]
        if len(steps) == self.tcp_steps or steps[-1].error is not None:
            return
        step = Step(TLS, steps[-1].end_ns)
        step.end_ns = time.time_ns()
        step.error = error
        step.details[A.TLS_PROTOCOL_NAME] = "tls"
        step.details[A.TLS_SERVER_NAME] = self.server_name
        self.setup.steps.append(step)
        if error is not None:
            return
        transport = result[0]
        tls = transport.get_extra_info("ssl_object")
        if tls is not None:
            cipher = tls.cipher()
            step.details[A.TLS_PROTOCOL_VERSION] = (tls.version() or "").replace("TLSv", "")
            step.details[A.TLS_CIPHER] = cipher[0] if cipher else ""
            step.details[A.TLS_RESUMED] = bool(getattr(tls, "session_reused", False))


def _start_handshake(instance: Any, args: tuple, kwargs: dict) -> _Handshake | None:
    setup = current_setup.get()
    if setup is None or not kwargs.get("ssl"):
        return None
    return _Handshake(setup, str(kwargs.get("server_hostname") or ""))


# --- the exchange, the return, the end -----------------------------------------------------------


def _says_close(response: Any) -> bool:
    tokens = {t.strip().lower() for t in response.headers.get("Connection", "").split(",")}
    return "close" in tokens or (tuple(response.version) < (1, 1) and "keep-alive" not in tokens)


class _Exchange:
    __slots__ = ("attempt", "link")

    def __init__(self, link: _Link, attempt: Attempt | None) -> None:
        self.link = link
        self.attempt = attempt

    def finish(self, response: Any, error: BaseException | None) -> None:
        now = time.time_ns()
        connection = self.link.connection
        connection.requests += 1
        closed_by_server = error is None and (
            connection.close_cause in A.CLOSED_BY_SERVER or _says_close(response)
        )
        if closed_by_server:
            connection.close_cause = A.CLOSED_CONNECTION_CLOSE
        attempt = self.attempt
        if attempt is None:
            return
        attempt.exchange_ended(connection, getattr(response, "status", None), error, now)
        if closed_by_server:
            attempt.server_closed(connection)


def _start_exchange(instance: Any, args: tuple, kwargs: dict) -> _Exchange | None:
    conn = args[0] if args else kwargs["connection"]
    link = getattr(conn.protocol, "_conntrace", None)
    if link is None:
        return None
    attempt = current_attempt.get()
    return _Exchange(link, attempt if attempt is not None and not attempt.ended else None)


class _Return:
    __slots__ = ("link", "proto")

    def __init__(self, link: _Link, proto: Any) -> None:
        self.link = link
        self.proto = proto

    def finish(self, result: Any, error: BaseException | None) -> None:
        link = self.link
        connection, state = link.connection, link.state
        if not connection.checked_out:
            return
        if self.proto.transport is not None:
            connection.released_ns = time.time_ns()
            ledger.returned(state.pool, connection, KEPT)
            return
        link.closing = True
        if connection.close_cause in A.CLOSED_BY_SERVER:
            state.closed_by_server += 1
            ledger.returned(state.pool, connection, KEPT)
        else:
            ledger.returned(state.pool, connection, BROKEN)


def _start_return(instance: Any, args: tuple, kwargs: dict) -> _Return | None:
    proto = args[1] if len(args) > 1 else kwargs["protocol"]
    link: _Link | None = getattr(proto, "_conntrace", None)
    if link is None:
        return None
    # aiohttp marks the protocol when a response says it closes (or the peer ended it
    # cleanly); an error marks it too, with the exception. This can come before the
    # exchange hook ends: aiohttp releases a connection as soon as the body is in.
    if getattr(proto, "_should_close", False) and getattr(proto, "_exception", None) is None:
        link.connection.close_cause = A.CLOSED_CONNECTION_CLOSE
    return _Return(link, proto)


class _Lost:
    __slots__ = ("by_peer", "link")

    def __init__(self, link: _Link, by_peer: bool) -> None:
        self.link = link
        self.by_peer = by_peer

    def finish(self, result: Any, error: BaseException | None) -> None:
        link = self.link
        connection = link.connection
        ledger.connection_closed(connection)
        if not connection.checked_out and not link.closing:
            link.state.lost_idle.append((connection, self.by_peer))


def _start_lost(instance: Any, args: tuple, kwargs: dict) -> _Lost | None:
    link = getattr(instance, "_conntrace", None)
    if link is None or not link.connection.open:
        return None
    # aiohttp's own close() lets go of the transport before the loop reports the end.
    return _Lost(link, by_peer=instance.transport is not None)


def apply(patcher: Patcher, aiohttp: ModuleType) -> None:
    import aiohappyeyeballs

    hook, async_hook = _runtime.hook, _runtime.async_hook
    # Where, what, and how: the hooks that make attempts and setups check for suppression.
    hooks: tuple[tuple[Any, str, Any], ...] = (
        (aiohttp.client, "ClientSession._request", async_hook("aiohttp.request", _start_request)),
        (aiohttp.connector, "BaseConnector.connect", async_hook("aiohttp.connect", _start_connect)),
        (
            aiohttp.connector,
            "TCPConnector._create_connection",
            async_hook("aiohttp.setup", _start_setup),
        ),
        *(
            (module, name, async_hook(f"aiohttp.{name}", start, makes_spans=False))
            for module, name, start in (
                (aiohttp.connector, "BaseConnector._wait_for_available_connection", _start_wait),
                (aiohttp.connector, "TCPConnector._resolve_host", _start_lookup),
                (aiohttp.connector, "TCPConnector._wrap_create_connection", _start_handshake),
                (aiohappyeyeballs, "start_connection", _start_tcp),
                (aiohttp.client_reqrep, "ClientResponse.start", _start_exchange),
            )
        ),
        (
            aiohttp.connector,
            "BaseConnector.__init__",
            hook("aiohttp.connector_made", where.noting_where_made(AIOHTTP), makes_spans=False),
        ),
        (
            aiohttp.connector,
            "BaseConnector._release",
            hook("aiohttp.release", _start_return, False),
        ),
        (
            aiohttp.client_proto,
            "ResponseHandler.connection_lost",
            hook("aiohttp.connection_lost", _start_lost, makes_spans=False),
        ),
    )
    # All or nothing: an aiohttp older than 3.10.11 lacks some of these, and half the hooks
    # would count checkouts that never come back.
    missing = [name for module, name, _ in hooks if not _has(module, name)]
    if missing:
        raise RuntimeError(f"aiohttp {aiohttp.__version__} has no {', '.join(missing)}")
    for module, name, wrapper in hooks:
        patcher.wrap(module, name, wrapper)


def _has(module: Any, path: str) -> bool:
    target = module
    for part in path.split("."):
        target = getattr(target, part, None)
        if target is None:
            return False
    return True
