"""Layer: name resolution and TCP connect, beneath ``urllib3.util.connection.create_connection``
and httpcore's ``connect_tcp``.

urllib3 and httpcore's sync backend resolve with ``socket.getaddrinfo`` and then connect,
trying each address in turn. ``getaddrinfo`` is wrapped process-wide, but only records
inside a connect (``Connect``) that belongs to a setup conntrace watches; every other
caller pays one context lookup. The TCP step runs from the end of the lookup to the
connected socket, so it covers every address tried. An IP address is not looked up:
``getaddrinfo`` returns it without asking a resolver, so no DNS step is recorded for it.

httpcore's async backend resolves with anyio's ``getaddrinfo``, which asyncio runs in a
thread pool that does not copy context variables: the sync hook never sees the setup
there. The lookup is timed around anyio's coroutine instead, in the task that awaits it,
so the step includes any wait for a free worker thread (as the request did).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from contextvars import ContextVar
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

from .. import _runtime
from .. import attributes as A
from .._context import current_setup
from ..ledger import DNS, TCP, Setup, Step

if TYPE_CHECKING:
    from .._patching import Patcher

_SOCKET_OPTIONS = (
    (A.SOCKET_KEEPALIVE, socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    (A.SOCKET_NODELAY, socket.IPPROTO_TCP, socket.TCP_NODELAY),
)
# The keepalive timers, where the OS names them so (Linux; macOS lacks TCP_KEEPIDLE).
_KEEPALIVE_TIMERS = tuple(
    (name, getattr(socket, option))
    for name, option in (
        (A.SOCKET_KEEPALIVE_IDLE, "TCP_KEEPIDLE"),
        (A.SOCKET_KEEPALIVE_INTERVAL, "TCP_KEEPINTVL"),
        (A.SOCKET_KEEPALIVE_COUNT, "TCP_KEEPCNT"),
    )
    if hasattr(socket, option)
)


class Connect:
    """One ``create_connection`` call: a DNS step, then a TCP step."""

    __slots__ = ("host", "literal", "lookup", "port", "setup", "started", "token")

    def __init__(self, setup: Setup, host: str, port: int) -> None:
        self.setup = setup
        self.host = host
        self.port = port
        self.literal = _is_address(host)
        self.started = time.time_ns()
        self.lookup: Step | None = None
        self.token = _resolving.set(self)

    def resolved(self, started: int, answers: Any, error: BaseException | None) -> None:
        step = self.lookup = Step(DNS, started)
        step.end_ns = time.time_ns()
        step.error = error
        step.details[A.DNS_QUESTION_NAME] = self.host
        if error is None:
            step.details[A.DNS_ANSWERS] = _addresses(answers)
        self.setup.add(step)

    def finish(self, sock: Any, error: BaseException | None) -> None:
        _resolving.reset(self.token)
        lookup = self.lookup
        if lookup is not None and lookup.error is not None:
            return
        step = Step(TCP, lookup.end_ns if lookup is not None else self.started)
        step.end_ns = time.time_ns()
        step.error = error
        if error is None:
            step.details.update(describe_socket(sock))
        else:
            step.details.update(
                {A.NETWORK_TRANSPORT: "tcp", A.SERVER_ADDRESS: self.host, A.SERVER_PORT: self.port}
            )
        self.setup.add(step)


_resolving: ContextVar[Connect | None] = ContextVar("conntrace_resolving", default=None)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def _addresses(answers: Any) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for *_, sockaddr in answers:
        seen.setdefault(str(sockaddr[0]), None)
    return tuple(seen)


def describe_socket(sock: socket.socket) -> dict[str, Any]:
    peer = sock.getpeername()
    local = sock.getsockname()
    described: dict[str, Any] = {
        A.NETWORK_TRANSPORT: "tcp",
        A.NETWORK_PEER_ADDRESS: peer[0],
        A.NETWORK_PEER_PORT: peer[1],
        A.NETWORK_LOCAL_ADDRESS: local[0],
        A.NETWORK_LOCAL_PORT: local[1],
        A.NETWORK_TYPE: "ipv6" if sock.family == socket.AF_INET6 else "ipv4",
    }
    for name, level, option in _SOCKET_OPTIONS:
        described[name] = bool(sock.getsockopt(level, option))
    if described[A.SOCKET_KEEPALIVE]:
        for name, option in _KEEPALIVE_TIMERS:
            described[name] = sock.getsockopt(socket.IPPROTO_TCP, option)
    return described


def _start_connect(instance: Any, args: tuple, kwargs: dict) -> Connect | None:
    setup = current_setup.get()
    if setup is None:
        return None
    address = args[0] if args else kwargs["address"]
    return Connect(setup, str(address[0]), int(address[1]))


def _watching() -> Connect | None:
    """The connect whose lookup this is, if conntrace records it."""
    connect = _resolving.get()
    if connect is None or connect.lookup is not None or connect.literal or not _runtime.active:
        return None
    return connect


_GETADDRINFO = "dns.getaddrinfo"


def _begin() -> int | None:
    """When a watched lookup starts (None: conntrace failed, the lookup goes on untraced)."""
    try:
        if _runtime.fault is not None:
            _runtime.fault(_GETADDRINFO, "start")
        return time.time_ns()
    except Exception:
        _runtime.report_internal_error(_GETADDRINFO)
        return None


def _getaddrinfo(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
    connect = _watching()
    started = _begin() if connect is not None else None
    if connect is None or started is None:
        return wrapped(*args, **kwargs)
    try:
        answers = wrapped(*args, **kwargs)
    except BaseException as error:
        _record_lookup(connect, started, None, error)
        raise
    _record_lookup(connect, started, answers, None)
    return answers


def _record_lookup(
    connect: Connect, started: int, answers: Any, error: BaseException | None
) -> None:
    try:
        if _runtime.fault is not None:
            _runtime.fault(_GETADDRINFO, "finish")
        connect.resolved(started, answers, error)
    except Exception:
        _runtime.report_internal_error(_GETADDRINFO)


# Named as ``_runtime.hook`` names its wrappers: it is one of the hooks.
_getaddrinfo.__name__ = f"conntrace_{_GETADDRINFO}"


async def _getaddrinfo_async(
    wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
) -> Any:
    connect = _watching()
    started = _begin() if connect is not None else None
    if connect is None or started is None:
        return await wrapped(*args, **kwargs)
    try:
        answers = await wrapped(*args, **kwargs)
    except BaseException as error:
        _record_lookup(connect, started, None, error)
        raise
    _record_lookup(connect, started, answers, None)
    return answers


_getaddrinfo_async.__name__ = f"conntrace_{_GETADDRINFO}"


def apply(patcher: Patcher, urllib3: ModuleType) -> None:
    patcher.wrap(
        urllib3.util.connection,
        "create_connection",
        _runtime.hook("dns_tcp.create_connection", _start_connect),
    )


def apply_getaddrinfo(patcher: Patcher, module: ModuleType) -> None:
    patcher.wrap(socket, "getaddrinfo", _getaddrinfo)


def apply_anyio(patcher: Patcher, sockets: ModuleType) -> None:
    # anyio's connect_tcp calls the module's own getaddrinfo.
    patcher.wrap(sockets, "getaddrinfo", _getaddrinfo_async)
