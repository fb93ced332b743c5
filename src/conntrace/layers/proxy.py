"""Layer: HTTP proxies beneath urllib3 (``ProxyManager``, requests' ``proxies=``, botocore's
``proxies``), in 1.26 and 2.x alike.

urllib3 reaches an HTTPS server through a proxy by a ``CONNECT`` tunnel: the pool is the
target's, its connection objects are made for the proxy's host and port, and
``set_tunnel`` names the target before ``connect``. ``connect`` looks the proxy up,
connects to it (TLS first, to an HTTPS proxy), then ``_tunnel`` sends ``CONNECT
host:port`` and reads the proxy's answer; TLS to the target runs through the tunnel. Plain
HTTP (and HTTPS with ``use_forwarding_for_https``) is forwarded instead: the request goes
to the proxy with the target's absolute URL.

What this layer gives the ledger: the proxy of each pool; the server a setup is for (the
tunnel's target, not the proxy); and the ``CONNECT`` exchange as a ``proxy`` step of the
setup, with the proxy's answer. The pool layer takes a forwarded request's server from
its absolute URL. Nothing here reads the proxy's credentials: a proxy is named by its
host and port only, and ``Proxy-Authorization`` is never looked at.
"""

from __future__ import annotations

import re
import threading
import time
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .. import _runtime
from .. import attributes as A
from .._context import current_setup
from ..ledger import PROXY, Connection, Pool, Server, Step, default_port

if TYPE_CHECKING:
    from .._patching import Patcher

# http.client (and urllib3's copies of its ``_tunnel``, for the Pythons whose own lacks a
# fix) raise a bare OSError when the proxy refuses the tunnel, with its status only in the
# message; on 3.9 to 3.13 alike.
_REFUSED = re.compile(r"Tunnel connection failed: (\d{3})")


def proxy_of(pool: Any) -> Server | None:
    """The host and port of the proxy a urllib3 pool goes through (never its credentials)."""
    proxy: Any = getattr(pool, "proxy", None)
    host = getattr(proxy, "host", None)
    if not host:
        return None
    return str(host), int(proxy.port or default_port(proxy.scheme or "http"))


def target_of(url: str) -> Server:
    """The server of an absolute URL (what a forwarding proxy is asked for)."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or default_port(parts.scheme)


def setup_server(conn: Any, pool: Pool | None) -> tuple[str, int, Server | None]:
    """The server a connection object connects for, and the proxy on the way, when no
    attempt of its pool says so (a connection opened outside ``urlopen``)."""
    tunnel = getattr(conn, "_tunnel_host", None)
    if tunnel:
        port = conn._tunnel_port or default_port("https")
        return str(tunnel), int(port), (str(conn.host), int(conn.port or default_port("http")))
    port = conn.port or default_port(getattr(conn, "scheme", "http"))
    return conn.host, port, pool.proxy if pool is not None else None


# urllib3 1.26 never reconnects a tunnel's connection object (http.client's tunnel state
# would send the next request past the proxy): ``_get_conn`` closes one whose socket is gone
# and makes a new object. The old one's record waits here, on the thread of that checkout,
# for the pool layer to take (``replaced_tunnel``).
_replaced = threading.local()


def replaced_tunnel() -> Connection | None:
    """The connection a new connection object replaces, in this checkout (1.26 tunnels)."""
    record: Connection | None = getattr(_replaced, "connection", None)
    if record is not None:
        _replaced.connection = None
    return record


class _DroppedCheck:
    """urllib3 1.26 checks a pooled tunnel for a lost socket: if it was lost, the new object
    the pool makes carries on for this one."""

    __slots__ = ("conn",)

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def finish(self, dropped: Any, error: BaseException | None) -> None:
        if dropped:
            _replaced.connection = getattr(self.conn, "_conntrace", None)


def _start_dropped_check(instance: Any, args: tuple, kwargs: dict) -> _DroppedCheck | None:
    conn = args[0] if args else kwargs.get("conn")
    return _DroppedCheck(conn) if getattr(conn, "auto_open", 1) == 0 else None


class _Tunnel:
    __slots__ = ("step",)

    def __init__(self, step: Step) -> None:
        self.step = step

    def finish(self, result: Any, error: BaseException | None) -> None:
        step = self.step
        step.end_ns = time.time_ns()
        step.error = error
        if error is None:
            # Any other answer raises: the tunnel is open.
            step.details[A.HTTP_RESPONSE_STATUS_CODE] = 200
            return
        refused = _REFUSED.search(str(error))
        if refused is not None:
            step.details[A.HTTP_RESPONSE_STATUS_CODE] = int(refused.group(1))


def _start_tunnel(instance: Any, args: tuple, kwargs: dict) -> _Tunnel | None:
    setup = current_setup.get()
    if setup is None or setup.tunnel is not None:
        return None
    step = Step(PROXY, time.time_ns())
    step.details.update(
        {
            A.SERVER_ADDRESS: str(instance._tunnel_host),
            A.SERVER_PORT: int(instance._tunnel_port or default_port("https")),
            A.PROXY_ADDRESS: str(instance.host),
            A.PROXY_PORT: int(instance.port or default_port("http")),
        }
    )
    setup.add(step)
    return _Tunnel(step)


def apply(patcher: Patcher, urllib3: ModuleType) -> None:
    # urllib3 2.x carries its own ``_tunnel`` on some Pythons, and inherits http.client's on
    # the others (and in 1.26): wrapping the name on urllib3's class covers both, and leaves
    # http.client's other users alone.
    patcher.wrap(
        urllib3.connection,
        "HTTPConnection._tunnel",
        _runtime.hook("proxy.tunnel", _start_tunnel),
    )
    if urllib3.__version__.startswith("1."):
        # Only 1.26 marks a tunnel's object as not to be reconnected (``auto_open = 0``).
        patcher.wrap(
            urllib3.connectionpool,
            "is_connection_dropped",
            _runtime.hook("proxy.is_connection_dropped", _start_dropped_check, makes_spans=False),
        )
