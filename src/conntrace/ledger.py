"""The connection ledger: what the hooks saw, as typed records, and who reads them.

Every layer (``layers/``) records here as things happen, whether or not a span is live and
whatever the trace sampler decides: a pool was created, a connection checked out (reused,
or new and why), a request went out on it, it came back to the pool (kept, discarded
because the pool was full, broken), a connection was set up (DNS, TCP, TLS) or closed, an
attempt or a call ended. The records are small slotted objects that live as long as the
connection, attempt or call they describe.

Everything a user reads is a view of these records, fed to ``BaseSink`` readers:
the findings and per-host counts (``findings.Diagnosis``), OpenTelemetry spans
(``spans.SpanView``), the terminal view, the metrics, the JSON report and the pytest
recorder. A layer that records the same facts gets all of them.

Hooks record and return: the ledger keeps the few counters that must be exact at the
moment they change (connections checked out now, and their peak, per pool) and hands
finished records to the sinks; computing views is the sinks' business.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import attributes as A
from ._context import current_attempt, current_call

if TYPE_CHECKING:
    from opentelemetry.trace import SpanContext

Server = tuple[str, int]

# A checkout that took this long waited for a connection to come back to its pool.
POOL_WAIT_MIN_MS = 1.0

# How a connection came back to its pool.
KEPT, DISCARDED, BROKEN = "kept", "discarded", "broken"


# The libraries whose pools conntrace records, and, for urllib3's, the one the program made
# them with (``Origin.library``; plain urllib3 when not known).
URLLIB3, AIOHTTP, AIOBOTOCORE, HTTPX = "urllib3", "aiohttp", "aiobotocore", "httpx"
BOTOCORE, AWSCLI, REQUESTS = "botocore", "awscli", "requests"


def default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


class Origin:
    """Where the program made the client or session that owns a pool: the first frame
    outside the HTTP and AWS libraries, and which of them it called (``library``)."""

    __slots__ = ("file", "function", "library", "line")

    def __init__(self, file: str, line: int, function: str, library: str) -> None:
        self.file = file
        self.line = line
        self.function = function
        self.library = library

    @property
    def key(self) -> tuple[str, int, str, str]:
        return self.file, self.line, self.function, self.library

    def where(self) -> str:
        """``handler.py:12 in handle()``: the path relative to the working directory when it
        lies beneath it."""
        path = self.file
        try:
            relative = os.path.relpath(path)
        except ValueError:  # another drive, on Windows
            relative = path
        if not relative.startswith(os.pardir):
            path = relative
        return f"{path}:{self.line} in {self.function}()"


class Pool:
    """One connection pool: a urllib3 ``HTTPConnectionPool`` (one host, one scheme), or an
    aiohttp connector's or an httpcore pool's connections to one server."""

    __slots__ = (
        "checked_out",
        "discards_pending",
        "errors_pending",
        "held",
        "host",
        "in_flight",
        "kind",
        "library",
        "max_size",
        "number",
        "objects",
        "origin",
        "peak",
        "pending",
        "port",
        "proxy",
        "scheme",
        "service",
    )

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int | None,
        max_size: int,
        proxy: Server | None = None,
        library: str = URLLIB3,
    ) -> None:
        self.scheme = scheme
        # Whose pool it is: the findings word their advice in its settings.
        self.library = library
        self.host = host
        self.port: int = port or default_port(scheme)
        self.max_size = max_size
        # The proxy its connections go through: its host is then the target of a CONNECT
        # tunnel, or the proxy itself for plain HTTP forwarded by it.
        self.proxy = proxy
        # This pool is the nth for its scheme, host and port in this process (0: unknown,
        # a pool made before conntrace was switched on).
        self.number = 0
        # Connection objects made, and the slots that errors and discards put back: they
        # tell why the pool needs a new connection (``reason_for_new_object``).
        self.objects = 0
        self.errors_pending = 0
        self.discards_pending = 0
        self.checked_out = 0
        self.peak = 0
        # The connections checked out now, and the attempts in progress: connections held
        # while no attempt needs them were left out by responses never read or closed.
        self.held: weakref.WeakSet[Connection] = weakref.WeakSet()
        self.in_flight = 0
        # What kind of client uses it (the service of its first API call; "" for plain HTTP).
        self.kind: str | None = None
        # Events that happened when no attempt or call of this pool was in progress (a
        # connection discarded after a body read outside urlopen): its next attempt shows them.
        self.pending: list[Event] = []
        # Where the client or session that owns it was made (None: not seen), and the AWS
        # service of that client ("" for other libraries).
        self.origin: Origin | None = None
        self.service = ""

    @property
    def server(self) -> Server:
        return self.host, self.port

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
                return A.REASON_NEW_POOL if self.number > 1 else A.REASON_FIRST
            if self.discards_pending:
                self.discards_pending -= 1
                return A.REASON_POOL_DISCARDED
            return A.REASON_POOL_BUSY


class Connection:
    """One connection object of a pool; it carries a new TCP connection after each setup."""

    __slots__ = (
        "__weakref__",
        "checked_out",
        "close_cause",
        "connected_once",
        "exchanging",
        "holder",
        "id",
        "open",
        "opened_ns",
        "peer",
        "pending_reason",
        "pool",
        "released_ns",
        "requests",
        "response",
        "setup_context",
        "setup_seen",
    )

    def __init__(self, pool: Pool | None) -> None:
        self.pool = pool
        self.id: int | None = None
        self.opened_ns = 0
        self.released_ns: int | None = None
        self.requests = 0
        self.open = False
        self.checked_out = False
        self.connected_once = False
        # Why its last TCP connection ended (one of ``A.CLOSE_CAUSES``), once it has.
        self.close_cause: str | None = None
        # A request is being sent or its response head read on it now.
        self.exchanging = False
        # The label of the call that last took it from the pool.
        self.holder = ""
        # The last response read on it (http.client's), while the program holds it: whether
        # its body was read tells an unread body from a peer's close.
        self.response: weakref.ref[Any] | None = None
        # False: found open, made before conntrace was switched on (``connection_found``).
        self.setup_seen = True
        self.pending_reason: str | None = None
        # The address and port its socket connected to, when that is a proxy's.
        self.peer: Server | None = None
        # The span context of the setup that opened it, when that was traced: reused
        # attempts link to it.
        self.setup_context: SpanContext | None = None

    def reason_for_reconnect(self) -> str:
        """Why this object opens a new TCP connection: how its last one ended."""
        cause = self.close_cause
        if cause in A.CLOSED_BY_SERVER:
            return A.REASON_SERVER_CLOSED
        if cause in A.CLOSED_BY_CLIENT:
            return A.REASON_CLIENT_CLOSED
        if cause == A.CLOSED_ERROR:
            return A.REASON_ERROR
        # Closed by the peer while idle, or closed where conntrace could not see it.
        return A.REASON_STALE


class Step:
    """One step of a connection setup: a DNS lookup, a TCP connect, a proxy's CONNECT
    exchange, a TLS handshake. Steps taken to reach a proxy (its lookup, the TCP connect to
    it, TLS to an HTTPS proxy) carry the proxy's address in their details."""

    __slots__ = ("details", "end_ns", "error", "name", "start_ns")

    def __init__(self, name: str, start_ns: int) -> None:
        self.name = name
        self.start_ns = start_ns
        self.end_ns = start_ns
        self.error: BaseException | None = None
        # Span attributes as the step saw them (answers, peer address, TLS version...).
        self.details: dict[str, Any] = {}

    @property
    def ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


class Setup:
    """Opening one TCP connection: why, and each step with what it cost."""

    __slots__ = (
        "connection_id",
        "end_ns",
        "error",
        "host",
        "max_size",
        "origin",
        "port",
        "proxy",
        "reason",
        "span_id",
        "start_ns",
        "steps",
    )

    def __init__(
        self,
        host: str,
        port: int,
        reason: str,
        max_size: int,
        start_ns: int,
        proxy: Server | None = None,
    ) -> None:
        # Where the client that owns the pool was made, when known.
        self.origin: Origin | None = None
        # The server the connection is for: the target of a proxy's tunnel, not the proxy.
        self.host = host
        self.port = port
        self.proxy = proxy
        self.reason = reason
        self.max_size = max_size
        self.start_ns = start_ns
        self.end_ns = start_ns
        self.error: BaseException | None = None
        self.connection_id: int | None = None
        self.steps: list[Step] = []
        self.span_id = 0

    @property
    def ok(self) -> bool:
        return self.connection_id is not None

    def add(self, step: Step) -> None:
        """Record ``step``; until a proxy's tunnel is open, each step reaches the proxy (its
        lookup, the TCP connect to it, TLS to an HTTPS proxy), and is labelled so."""
        if self.proxy is not None and step.name != PROXY and self.tunnel is None:
            A.with_proxy(self.proxy, step.details)
        self.steps.append(step)

    @property
    def tunnel(self) -> Step | None:
        """The proxy's CONNECT exchange, when the connection is a tunnel through one."""
        for step in self.steps:
            if step.name == PROXY:
                return step
        return None

    @property
    def setup_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    def _ms(self, name: str) -> float:
        return sum(step.ms for step in self.steps if step.name == name)

    @property
    def dns_ms(self) -> float:
        return self._ms(DNS)

    @property
    def tcp_ms(self) -> float:
        return self._ms(TCP)

    @property
    def tls_ms(self) -> float:
        return self._ms(TLS)

    @property
    def proxy_ms(self) -> float:
        return self._ms(PROXY)

    @property
    def dns_lookups(self) -> int:
        return sum(1 for step in self.steps if step.name == DNS)

    @property
    def peer(self) -> Server | None:
        for step in self.steps:
            if step.name == TCP and A.NETWORK_PEER_ADDRESS in step.details:
                details = step.details
                return details[A.NETWORK_PEER_ADDRESS], details[A.NETWORK_PEER_PORT]
        return None

    @property
    def keepalive(self) -> bool | None:
        for step in self.steps:
            if step.name == TCP and A.SOCKET_KEEPALIVE in step.details:
                return bool(step.details[A.SOCKET_KEEPALIVE])
        return None

    @property
    def keepalive_timers(self) -> tuple[int, int, int] | None:
        """TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT on the socket, when SO_KEEPALIVE was on
        and the OS tells them."""
        names = (A.SOCKET_KEEPALIVE_IDLE, A.SOCKET_KEEPALIVE_INTERVAL, A.SOCKET_KEEPALIVE_COUNT)
        for step in self.steps:
            if step.name == TCP and all(name in step.details for name in names):
                idle, interval, count = (int(step.details[name]) for name in names)
                return idle, interval, count
        return None


DNS, TCP, TLS, PROXY = "dns", "tcp", "tls", "proxy"


class Event:
    """Something that happened to a pool or connection, shown on the span of the moment."""

    __slots__ = ("attributes", "name", "time_ns")

    def __init__(self, name: str, attributes: dict[str, Any]) -> None:
        self.name = name
        self.time_ns = time.time_ns()
        self.attributes = attributes


class Call:
    """One call of the program into a client library, with its HTTP attempts.

    An API call (``ApiCall`` in the botocore layer) when an SDK made the requests; otherwise
    one ``urlopen`` of urllib3 (requests, plain urllib3), whose retries and redirects are
    its further attempts. ``span`` holds what the span view allocated for it.
    """

    __slots__ = (
        "attempts",
        "end_ns",
        "error",
        "events",
        "label",
        "parent",
        "sampled",
        "settings",
        "span_id",
        "start_ns",
        "status",
        "trace_id",
    )

    # An API call made by an SDK (its settings and words of advice are the SDK's); with
    # ``own_span``, conntrace makes its span. An HTTP call is only the group of its attempts.
    is_api = False
    own_span = False

    def __init__(self, label: str, settings: dict[str, Any]) -> None:
        self.label = label
        self.settings = settings
        self.start_ns = time.time_ns()
        self.end_ns = 0
        self.attempts: list[Attempt] = []
        self.events: list[Event] = []
        self.error: BaseException | None = None
        self.status: int | None = None
        # Filled by the span view: the parent span, sampled or not (None: not decided), ids.
        self.parent: SpanContext | None = None
        self.sampled: bool | None = None
        self.trace_id = 0
        self.span_id = 0

    def attempt_started(self, attempt: Attempt) -> None:
        """Told of each attempt as it starts (the botocore layer enriches its API span)."""


class Attempt:
    """One HTTP request/response exchange on one connection."""

    __slots__ = (
        "age_ms",
        "call",
        "close_cause",
        "closed_by_server",
        "connection",
        "end_ns",
        "ended",
        "error",
        "events",
        "exchanged",
        "idle_dropped_ms",
        "idle_ms",
        "keep_alive_timeout_s",
        "method",
        "pool",
        "proxy",
        "reason",
        "replaced_cause",
        "request_number",
        "resend",
        "reused",
        "server",
        "setup",
        "span_id",
        "start_ns",
        "status",
        "unreturned",
        "url",
        "wait_ms",
    )

    def __init__(self, call: Call, pool: Pool, method: str, url: str) -> None:
        self.call = call
        self.pool = pool
        self.method = method
        self.url = url
        # The server the request is for (a proxied request's target, not the proxy), and
        # the proxy it went through.
        self.server: Server = (pool.host, pool.port)
        self.proxy: Server | None = pool.proxy
        self.resend = len(call.attempts)
        self.start_ns = time.time_ns()
        self.end_ns = 0
        self.ended = False
        self.connection: Connection | None = None
        self.reused = False
        self.reason: str | None = None
        self.setup: Setup | None = None
        self.idle_ms: float | None = None
        self.wait_ms: float | None = None
        self.request_number = 0
        self.age_ms: float | None = None
        self.status: int | None = None
        self.error: BaseException | None = None
        self.exchanged = False
        self.closed_by_server = False
        # How the server closed the connection after this response (``A.CLOSED_BY_SERVER``).
        self.close_cause: str | None = None
        # How the connection that this attempt's new one replaced had ended.
        self.replaced_cause: str | None = None
        # Opened while no other attempt of its pool was in progress: the labels of the calls
        # whose connections were still checked out (their responses never read or closed).
        self.unreturned: tuple[str, ...] = ()
        self.idle_dropped_ms: list[float] = []
        # The response's ``Keep-Alive: timeout=N``, when it had one.
        self.keep_alive_timeout_s: float | None = None
        self.events: list[Event] = []
        self.span_id = 0

    # --- as the rules read it --------------------------------------------------------------

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    @property
    def waited(self) -> bool:
        """It waited for a connection because its pool's limit was reached (aiohttp records
        only the waits it queues for; a blocking urllib3 pool times every checkout)."""
        return self.wait_ms is not None and self.wait_ms >= POOL_WAIT_MIN_MS

    @property
    def error_type(self) -> str | None:
        if self.error is not None:
            return type(self.error).__qualname__
        if self.status is not None and self.status >= 400:
            return str(self.status)
        return None

    @property
    def label(self) -> str:
        return self.call.label

    @property
    def settings(self) -> dict[str, Any]:
        return self.call.settings

    @property
    def previous(self) -> Attempt | None:
        return self.call.attempts[self.resend - 1] if self.resend else None

    @property
    def prior_ms(self) -> float:
        """Time spent in this call's earlier attempts."""
        return sum(earlier.duration_ms for earlier in self.call.attempts[: self.resend])

    @property
    def backoff_ms(self) -> float:
        """Time between the end of the previous attempt and the start of this one."""
        previous = self.previous
        return max(self.start_ns - previous.end_ns, 0) / 1e6 if previous is not None else 0.0

    @property
    def prior_error(self) -> str | None:
        previous = self.previous
        return previous.error_type if previous is not None else None

    def exchange_ended(
        self, connection: Connection, status: int | None, error: BaseException | None, now_ns: int
    ) -> None:
        """The request went out on ``connection`` and its exchange ended."""
        self.exchanged = True
        self.status = status
        self.error = error
        self.end_ns = now_ns
        if connection.id is not None:
            self.request_number = connection.requests
            if connection.setup_seen:
                self.age_ms = round((now_ns - connection.opened_ns) / 1e6, 3)

    def server_closed(self, connection: Connection) -> None:
        """The server closed ``connection`` after this response (``close_cause`` says how)."""
        self.closed_by_server = True
        self.close_cause = connection.close_cause
        self.events.append(
            Event(
                A.EVENT_SERVER_CLOSED,
                {
                    A.CONNECTION_ID: connection.id or 0,
                    A.CONNECTION_CLOSE_CAUSE: connection.close_cause,
                },
            )
        )


class BaseSink:
    """A reader of the ledger. Each method is called as the fact happens, on the thread that
    saw it (a reader keeps its own lock); this base ignores every fact, and readers override
    what they use. ``None`` pools mean "not known"."""

    def pool_created(self, pool: Pool) -> None:
        pass

    def checked_out(self, pool: Pool) -> None:
        pass

    def returned(self, pool: Pool, connection: Connection | None, how: str) -> None:
        pass

    def connection_opened(self, setup: Setup, pool: Pool | None) -> None:
        pass

    def connection_closed(self, connection: Connection, closed_ns: int) -> None:
        pass

    def attempt_ended(self, attempt: Attempt) -> None:
        pass

    def call_started(self, call: Call) -> None:
        pass

    def call_ended(self, call: Call) -> None:
        pass


# --- the ledger's own state ----------------------------------------------------------------------

# One lock for the counters that must be exact: pool numbering, checked-out counts, connection
# ids. Each use is a few bytecodes long.
_lock = threading.Lock()
_pools_per_server: dict[tuple[str, str, int], int] = {}
_next_connection_id = 0
# Every connection that opened, while its connection object lives: for the open-connections gauge.
_connections: weakref.WeakSet[Connection] = weakref.WeakSet()
sinks: tuple[BaseSink, ...] = ()
# Connections checked out now across every pool (the requests in flight), and the most at once.
in_flight = 0
peak_in_flight = 0


def open_connections() -> list[Connection]:
    """The TCP connections open now, checked out (``checked_out``) or idle in a pool."""
    return [connection for connection in list(_connections) if connection.open]


def add_sink(sink: BaseSink, first: bool = False) -> None:
    """Feed ``sink`` from now on; ``first`` puts it before the others (the diagnosis must
    see an attempt before the span view builds its call)."""
    global sinks
    with _lock:
        if sink not in sinks:
            sinks = (sink, *sinks) if first else (*sinks, sink)


def remove_sink(sink: BaseSink) -> None:
    global sinks
    with _lock:
        sinks = tuple(known for known in sinks if known is not sink)


def reset() -> None:
    """Forget which servers had pools (conntrace switched off, or a forked child)."""
    global _next_connection_id, in_flight, peak_in_flight
    with _lock:
        _pools_per_server.clear()
        _next_connection_id = 0
        in_flight = peak_in_flight = 0


# The facts that arrived on this thread while its readers were busy with another one.
_arrived = threading.local()


def _renew_lock_in_child() -> None:
    # A fork while another thread held the lock would leave the child's copy held for ever.
    global _lock
    _lock = threading.Lock()
    _arrived.facts = None


if hasattr(os, "register_at_fork"):  # POSIX only
    os.register_at_fork(after_in_child=_renew_lock_in_child)


def _tell(fact: str, *args: Any) -> None:
    """Hand a fact to every reader; a reader's failure is logged once, naming the reader and
    the fact, and never reaches the other readers or the hook that told it.

    A fact can arrive while a reader on the same thread is still taking the one before: the
    garbage collector runs urllib3's finalizer of a dropped pool (which closes its
    connections, a fact) at whatever allocation a reader makes, under that reader's lock.
    Such a fact waits until the readers are done with the one before; told at once, it
    would take the same lock again and hang the program."""
    waiting: list[tuple[str, tuple[Any, ...]]] | None = getattr(_arrived, "facts", None)
    if waiting is not None:
        waiting.append((fact, args))
        return
    waiting = _arrived.facts = []
    try:
        _hand_over(fact, args)
        _hand_over_waiting(waiting)
    finally:
        _arrived.facts = None


@contextlib.contextmanager
def facts_wait() -> Iterator[None]:
    """Facts told on this thread while the block runs wait, and reach the readers when it
    ends: for a reader that reads its own counts under its lock (the findings at exit), where
    the garbage collector can close a dropped pool's connections as well."""
    if getattr(_arrived, "facts", None) is not None:
        yield
        return
    waiting: list[tuple[str, tuple[Any, ...]]] = []
    _arrived.facts = waiting
    try:
        yield
        _hand_over_waiting(waiting)
    finally:
        _arrived.facts = None


def _hand_over_waiting(waiting: list[tuple[str, tuple[Any, ...]]]) -> None:
    while waiting:
        _hand_over(*waiting.pop(0))


def _hand_over(fact: str, args: tuple[Any, ...]) -> None:
    for sink in sinks:
        try:
            getattr(sink, fact)(*args)
        except Exception:
            from ._runtime import report_internal_error

            report_internal_error(f"{type(sink).__name__}.{fact}")


# --- facts ---------------------------------------------------------------------------------------


def pool_created(pool: Pool) -> None:
    """A pool was made; a second or later one for its server shows as an event where the
    program is (a client made again)."""
    with _lock:
        key = (pool.scheme, pool.host, pool.port)
        pool.number = _pools_per_server.get(key, 0) + 1
        _pools_per_server[key] = pool.number
    _tell("pool_created", pool)
    if pool.number > 1:
        attributes = {A.SERVER_ADDRESS: pool.host, A.SERVER_PORT: pool.port}
        place_event(Event(A.EVENT_POOL_CREATED, {**attributes, A.POOL_COUNT: pool.number}), pool)


def checked_out(pool: Pool, connection: Connection) -> None:
    global in_flight, peak_in_flight
    connection.checked_out = True
    with _lock:
        pool.held.add(connection)
        pool.checked_out += 1
        if pool.checked_out > pool.peak:
            pool.peak = pool.checked_out
        in_flight += 1
        if in_flight > peak_in_flight:
            peak_in_flight = in_flight
    _tell("checked_out", pool)


def returned(
    pool: Pool, connection: Connection | None, how: str, broken: Connection | None = None
) -> None:
    """A checked-out connection came back (``connection`` None: an error broke ``broken``, the
    connection of the attempt in progress, if known)."""
    global in_flight
    with _lock:
        if (connection is None or connection.checked_out) and pool.checked_out:
            pool.checked_out -= 1
            in_flight = max(in_flight - 1, 0)
        gone = connection if connection is not None else broken
        if gone is not None:
            pool.held.discard(gone)
        if how == BROKEN:
            pool.errors_pending += 1
        elif how == DISCARDED:
            pool.discards_pending += 1
    if connection is not None:
        connection.checked_out = False
    _tell("returned", pool, connection, how)


def connection_opened(setup: Setup, connection: Connection) -> None:
    """A setup ended: ``connection`` carries a new TCP connection, unless it failed."""
    global _next_connection_id
    if setup.error is None:
        with _lock:
            _next_connection_id += 1
            setup.connection_id = _next_connection_id
        connection.id = setup.connection_id
        connection.opened_ns = setup.end_ns
        connection.requests = 0
        connection.open = connection.connected_once = True
        connection.close_cause = None
        connection.response = None
        connection.setup_seen = True
        # Only a proxied request's span names its peer: the proxy, not its server.
        connection.peer = setup.peer if setup.proxy is not None else None
        _connections.add(connection)
    else:
        connection.open = False
    _tell("connection_opened", setup, connection.pool)


def connection_found(connection: Connection) -> None:
    """A connection checked out open that conntrace never saw set up (it was made before
    conntrace was switched on): it gets an id, and its requests are counted from now."""
    global _next_connection_id
    with _lock:
        _next_connection_id += 1
        connection.id = _next_connection_id
    connection.setup_seen = False
    connection.requests = 0
    connection.open = connection.connected_once = True
    _connections.add(connection)


def connection_closed(connection: Connection) -> None:
    connection.open = False
    closed_ns = time.time_ns()
    _tell("connection_closed", connection, closed_ns)


def place_event(event: Event, pool: Pool) -> None:
    """Put a pool event on what is in progress: the attempt, else its call, else the pool's
    next attempt; never dropped."""
    attempt = current_attempt.get()
    if attempt is not None and not attempt.ended:
        attempt.events.append(event)
        return
    call = current_call.get()
    if call is not None and call.is_api and not call.end_ns:
        call.events.append(event)
        return
    pool.pending.append(event)


def call_started(call: Call) -> None:
    _tell("call_started", call)


def attempt_started(attempt: Attempt) -> None:
    with _lock:
        attempt.pool.in_flight += 1


def attempt_ended(attempt: Attempt) -> None:
    with _lock:
        attempt.pool.in_flight = max(attempt.pool.in_flight - 1, 0)
    attempt.ended = True
    if not attempt.end_ns:
        attempt.end_ns = time.time_ns()
    _tell("attempt_ended", attempt)


def call_ended(call: Call) -> None:
    call.end_ns = time.time_ns()
    _tell("call_ended", call)


def request_ended(
    attempt: Attempt | None, own_call: Call | None, status: int | None, error: BaseException | None
) -> None:
    """The program's request came back with ``status`` or ``error``: its attempt ends, unless
    a hook beneath ended it already, and so does the call a layer made for the request
    (``own_call``). What the exchange itself recorded is kept: the error that broke it says
    more than the one wrapped around it (urllib3's ``MaxRetryError``)."""
    if attempt is not None and not attempt.ended:
        if attempt.status is None:
            attempt.status = status
        if attempt.error is None:
            attempt.error = error
        attempt_ended(attempt)
    if own_call is not None:
        own_call.status = status
        own_call.error = error
        call_ended(own_call)
