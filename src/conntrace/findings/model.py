"""What the rules look at, and what they report.

The rules read the ledger's ``Attempt`` records (with the ``Setup`` of the connection an
attempt opened, if any); the functions below say what an attempt means to them.
``HostStats`` and ``OperationStats`` add attempts up for the whole process, per server and
per call label, and keep the first spans that showed each finding. A ``Finding`` is what a
rule reports, with ``SpanRef``s to those spans.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace

from .. import attributes as A
from ..ledger import TLS, URLLIB3, Attempt, Origin, Pool, Setup

# Connections opened for these reasons are needed; the others replace one that was lost (a
# new pool's first connection only when clients are being created again and again).
NEEDED = frozenset({A.REASON_FIRST, A.REASON_POOL_BUSY})
# How a connection ended, in words (events, the terminal and the findings say it so).
CLOSE_CAUSE_WORDS = {
    A.CLOSED_UNREAD_BODY: "by the client: its response was released with the body unread",
    A.CLOSED_BY_PROGRAM: "by the client: the program closed the response or the connection",
    A.CLOSED_POOL_CLOSED: "by the client: its pool was closed or cleared",
    A.CLOSED_POOL_FULL: "by the client: the pool was full",
    A.CLOSED_CONNECTION_CLOSE: "by the server after the response ('Connection: close')",
    A.CLOSED_HTTP_1_0: "by the server after the response (HTTP/1.0 without keep-alive)",
    A.CLOSED_PEER_IDLE: "by the peer while idle (FIN)",
    A.CLOSED_PEER_RESET: "by the peer while idle (reset)",
    A.CLOSED_ERROR: "by an error",
}
# botocore's connect and read timeouts when the client's config leaves them unset.
BOTOCORE_DEFAULT_TIMEOUT_S = 60.0
# A client made per call: at least this many pools beyond one per thread, serving on average
# no more than this many requests each (long-lived clients serve many).
CLIENT_RECREATED_MIN = 2
CLIENT_RECREATED_REQUESTS_PER_POOL = 5
_SPANS_KEPT = 5
_IDLE_SAMPLES_KEPT = 10


# --- what a finding is ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SpanRef:
    """A span that shows the finding, as a trace backend names it (lower-case hex)."""

    trace_id: str
    span_id: str


@dataclass(frozen=True)
class Finding:
    id: str
    severity: str
    title: str
    target: str
    summary: str
    advice: str
    evidence: Mapping[str, Any]
    spans: tuple[SpanRef, ...] = ()

    def render(self) -> str:
        """A few lines of plain text for a terminal: what, the numbers, what to do."""
        lines = [f"[{self.severity}] {self.title}: {self.target}  ({self.id})"]
        lines.append(f"  {self.summary}")
        lines.append(f"  advice: {self.advice}")
        if self.spans:
            shown = ", ".join(f"{ref.trace_id}/{ref.span_id}" for ref in self.spans[:2])
            lines.append(f"  spans: {shown}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "severity": self.severity,
            "title": self.title,
            "target": self.target,
            "summary": self.summary,
            "advice": self.advice,
            "evidence": dict(self.evidence),
            "spans": [{"trace_id": ref.trace_id, "span_id": ref.span_id} for ref in self.spans],
        }


# --- one attempt, as the rules read it -----------------------------------------------------------


def api_call(attempt: Attempt) -> bool:
    """Made by an SDK's API call (botocore), not a plain urllib3 or requests call."""
    return attempt.call.is_api


def failed(attempt: Attempt) -> bool:
    if attempt.error_type is None:
        return False
    # A 4xx answer is the caller's mistake, not a slow or broken connection
    # (throttling comes back as a retry and is caught there).
    return attempt.status is None or attempt.status >= 500 or attempt.status == 429


# Failures that happen before the request is written: the server cannot have seen it.
_NOT_SENT = frozenset(
    {
        "ConnectTimeoutError",
        "NewConnectionError",
        "NameResolutionError",
        "ConnectionRefusedError",
        "gaierror",
        "EndpointConnectionError",
        "ConnectTimeout",
    }
)


def maybe_delivered(attempt: Attempt) -> bool:
    """The attempt failed without an answer after its request may have reached the server (a
    read timeout, a reset or closed connection), not while connecting."""
    if attempt.error is None or attempt.status is not None:
        return False
    if attempt.setup is not None and not attempt.setup.ok:
        return False
    return type(attempt.error).__name__ not in _NOT_SENT


def resent_not_idempotent(attempt: Attempt) -> bool:
    """A retry of a call that is not safe to repeat, after an attempt that may have run."""
    previous = attempt.previous
    return (
        previous is not None
        and attempt.settings.get(A.AWS_IDEMPOTENT) is False
        and maybe_delivered(previous)
    )


def on_default_timeouts(attempt: Attempt) -> bool:
    """The client's connect or read timeout is botocore's default, not one the user set."""
    return bool(attempt.settings.get(A.AWS_DEFAULT_TIMEOUTS))


# --- the whole process, per host and per operation -----------------------------------------------


@dataclass(eq=False)
class _Examples:
    """The first spans that showed each finding, for the evidence."""

    spans: dict[str, list[tuple[int, int]]] = field(default_factory=dict, init=False, repr=False)

    def keep(self, finding_id: str, ref: tuple[int, int]) -> None:
        kept = self.spans.setdefault(finding_id, [])
        if len(kept) < _SPANS_KEPT:
            kept.append(ref)

    def refs(self, finding_id: str) -> tuple[SpanRef, ...]:
        return tuple(_span_ref(ref) for ref in self.spans.get(finding_id, ()))


@dataclass(eq=False)
class HostStats(_Examples):
    """What the process saw for one server (address and port)."""

    host: str
    port: int
    calls: int = 0
    requests: int = 0
    reused: int = 0
    failed_requests: int = 0
    failed_connects: int = 0
    request_ms: float = 0.0
    tcp_ms_all: float = 0.0
    tls_ms_all: float = 0.0
    opened: Counter[str] = field(default_factory=Counter)
    setup_ms: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    # Connections opened again to replace one that was lost, but those of new pools.
    reopened: Reopened = field(default_factory=lambda: Reopened())
    dns_lookups: int = 0
    dns_ms: float = 0.0
    dns_ms_max: float = 0.0
    pools: int = 0
    pool_max_size: int = 0
    max_concurrency: int = 0
    waited: int = 0
    wait_ms_max: float = 0.0
    # Whose pools these are (ledger.Pool.library): the advice uses its settings.
    library: str = URLLIB3
    discarded: int = 0
    closed_by_server: int = 0
    close_causes: Counter[str] = field(default_factory=Counter)
    tls_handshakes: int = 0
    pool_wait_ms: float = 0.0
    unreturned: Counter[str] = field(default_factory=Counter)
    opened_unreturned: int = 0
    kinds: dict[str, ClientKind] = field(default_factory=dict)
    dropped: int = 0
    idle_ms_samples: list[float] = field(default_factory=list)
    idle_ms_min: float | None = None
    idle_ms_max: float | None = None
    keepalive: set[bool] = field(default_factory=set)
    # For the idle timeout in the middle: the longest idle time after which a pooled
    # connection was still alive, the server's Keep-Alive timeout, the sockets' keepalive
    # timers (TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT).
    reused_idle_ms_max: float | None = None
    keep_alive_timeout_s: float | None = None
    keepalive_timers: set[tuple[int, int, int]] = field(default_factory=set)
    # Pools made, by where the program made their client or session and with what.
    origins: Counter[tuple[str, int, str, str, str]] = field(default_factory=Counter)
    # The proxy the requests went through (the last one seen), and what its CONNECT
    # exchanges cost: part of each tunnel's setup.
    proxy: tuple[str, int] | None = None
    proxy_ms_all: float = 0.0

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def add_pool(self, pool: Pool) -> None:
        self.pools = max(self.pools, pool.number)
        self.pool_max_size = max(self.pool_max_size, pool.max_size)
        if pool.origin is not None:
            self.origins[(*pool.origin.key, pool.service)] += 1

    @property
    def top_origin(self) -> tuple[Origin, str, int] | None:
        """Where most of this host's pools were made: the origin, the AWS service, the pools."""
        if not self.origins:
            return None
        (file, line, function, library, service), pools = self.origins.most_common(1)[0]
        return Origin(file, line, function, library), service, pools

    def origins_list(self) -> list[dict[str, Any]]:
        return [
            {
                "file": file,
                "line": line,
                "function": function,
                "library": library,
                "service": service,
                "pools": pools,
            }
            for (file, line, function, library, service), pools in self.origins.most_common()
        ]

    @property
    def dns_name(self) -> str:
        """The name each new connection looks up: the proxy's, for requests through one."""
        return self.proxy[0] if self.proxy is not None else self.host

    @property
    def pools_seen(self) -> int:
        """Pools made for this server: events count the second and later ones."""
        return max(self.pools, 1 if self.requests else 0)

    @property
    def setup_ms_all(self) -> float:
        """DNS, TCP, a proxy's CONNECT and TLS of every connection opened, whatever the reason."""
        return self.dns_ms + self.tcp_ms_all + self.proxy_ms_all + self.tls_ms_all

    @property
    def setup_share(self) -> float:
        """``setup_ms_all`` as a share of the time spent in requests: the summary's and the
        setup finding's one number."""
        return self.setup_ms_all / self.request_ms if self.request_ms else 0.0

    @property
    def pool_wait_share(self) -> float:
        return self.pool_wait_ms / self.request_ms if self.request_ms else 0.0

    @property
    def recreated(self) -> ClientKind | None:
        """The kind of client whose pools are being made per call, if any: more pools than
        threads using them, each serving few requests."""
        for kind in self.kinds.values():
            if kind.recreated:
                return kind
        return None

    @property
    def replaced(self) -> Reopened:
        """Every connection opened to replace one that was lost: closed, dropped, or that of
        a client made again for a call."""
        total = Reopened()
        for part in (self.reopened, *(k.reopened for k in self.kinds.values() if k.recreated)):
            total.merge(part)
        return total

    def lost(self, attempt: Attempt) -> bool:
        """The attempt's connection was opened to replace one that was lost: closed, dropped,
        or that of a client made again for this call."""
        reason = attempt.reason
        if reason is None or reason in NEEDED:
            return False
        if reason == A.REASON_NEW_POOL:
            kind = self.kinds.get(attempt.pool.kind or "")
            return kind is not None and kind.recreated
        return True

    def add(self, attempt: Attempt) -> None:
        self.library = attempt.pool.library
        if attempt.waited:
            self.waited += 1
            self.wait_ms_max = max(self.wait_ms_max, attempt.wait_ms or 0.0)
        self.requests += 1
        self.reused += attempt.reused
        self.request_ms += attempt.duration_ms
        self.closed_by_server += attempt.closed_by_server
        if attempt.reused and attempt.idle_ms is not None:
            self.reused_idle_ms_max = max(self.reused_idle_ms_max or 0.0, attempt.idle_ms)
        if attempt.keep_alive_timeout_s is not None:
            self.keep_alive_timeout_s = attempt.keep_alive_timeout_s
        pool = attempt.pool
        kind = self.kinds.get(pool.kind or "")
        if kind is None:
            kind = self.kinds[pool.kind or ""] = ClientKind(pool.kind or "")
        kind.add(pool.number or id(pool))
        if attempt.close_cause is not None:
            self.close_causes[attempt.close_cause] += 1
        if attempt.replaced_cause is not None and attempt.replaced_cause not in A.CLOSED_BY_SERVER:
            self.close_causes[attempt.replaced_cause] += 1
        if attempt.wait_ms:
            self.pool_wait_ms += attempt.wait_ms
        if attempt.unreturned:
            self.opened_unreturned += 1
            self.unreturned.update(attempt.unreturned)
        if attempt.proxy is not None:
            self.proxy = attempt.proxy
            # A forwarding proxy's pool serves many servers: its facts are the proxy's, and
            # each server sees the pool through its requests.
            self.pool_max_size = max(self.pool_max_size, attempt.pool.max_size)
        if attempt.error is not None and (attempt.connection is None or not attempt.request_number):
            self.failed_requests += 1
        for idle in attempt.idle_dropped_ms:
            self.dropped += 1
            if len(self.idle_ms_samples) < _IDLE_SAMPLES_KEPT:
                self.idle_ms_samples.append(idle)
            self.idle_ms_min = idle if self.idle_ms_min is None else min(self.idle_ms_min, idle)
            self.idle_ms_max = idle if self.idle_ms_max is None else max(self.idle_ms_max, idle)
        setup = attempt.setup
        if setup is None:
            return
        self.dns_lookups += setup.dns_lookups
        self.dns_ms += setup.dns_ms
        self.dns_ms_max = max(self.dns_ms_max, setup.dns_ms)
        self.tcp_ms_all += setup.tcp_ms
        self.tls_ms_all += setup.tls_ms
        self.tls_handshakes += sum(1 for step in setup.steps if step.name == TLS)
        self.proxy_ms_all += setup.proxy_ms
        if setup.keepalive is not None:
            self.keepalive.add(setup.keepalive)
        if setup.keepalive_timers is not None:
            self.keepalive_timers.add(setup.keepalive_timers)
        if not setup.ok:
            self.failed_connects += 1
            return
        self.opened[setup.reason] += 1
        self.setup_ms[setup.reason] += setup.setup_ms
        if setup.reason == A.REASON_NEW_POOL:
            # Lost only if clients of this kind turn out to be made per call: kept per kind.
            kind.reopened.add(setup)
        elif setup.reason not in NEEDED:
            self.reopened.add(setup)

    def to_dict(self) -> dict[str, Any]:
        return {
            "server_address": self.host,
            "server_port": self.port,
            "requests": self.requests,
            "reused": self.reused,
            "request_ms": round_ms(self.request_ms),
            "connections_opened": {reason: self.opened.get(reason, 0) for reason in A.REASONS},
            "setup_ms": {reason: round_ms(self.setup_ms.get(reason, 0.0)) for reason in A.REASONS},
            "dns_lookups": self.dns_lookups,
            "dns_ms": round_ms(self.dns_ms),
            "pools": self.pools_seen,
            "pool_max_size": self.pool_max_size,
            "max_concurrency": self.max_concurrency,
            "discarded": self.discarded,
            "closed_by_server": self.closed_by_server,
            "dropped_idle": self.dropped,
            "origins": self.origins_list(),
            "close_causes": {cause: self.close_causes.get(cause, 0) for cause in A.CLOSE_CAUSES},
            "pool_wait_ms": round_ms(self.pool_wait_ms),
            "pool_waits": self.waited,
            "opened_while_unreturned": self.opened_unreturned,
            **self._proxy_dict(),
        }

    def _proxy_dict(self) -> dict[str, Any]:
        if self.proxy is None:
            return {}
        return {
            "proxy_address": self.proxy[0],
            "proxy_port": self.proxy[1],
            "proxy_ms": round_ms(self.proxy_ms_all),
        }


class Reopened:
    """Connections opened again, and what their setups cost."""

    __slots__ = ("dns_lookups", "dns_ms", "reasons", "setup_ms", "setups", "tcp_ms", "tls_ms")

    def __init__(self) -> None:
        self.setups = 0
        self.setup_ms = self.dns_ms = self.tcp_ms = self.tls_ms = 0.0
        self.dns_lookups = 0
        self.reasons: Counter[str] = Counter()

    def add(self, setup: Setup) -> None:
        self.setups += 1
        self.setup_ms += setup.setup_ms
        self.dns_lookups += setup.dns_lookups
        self.dns_ms += setup.dns_ms
        self.tcp_ms += setup.tcp_ms
        self.tls_ms += setup.tls_ms
        self.reasons[setup.reason] += 1

    def merge(self, other: Reopened) -> None:
        self.setups += other.setups
        self.setup_ms += other.setup_ms
        self.dns_lookups += other.dns_lookups
        self.dns_ms += other.dns_ms
        self.tcp_ms += other.tcp_ms
        self.tls_ms += other.tls_ms
        self.reasons.update(other.reasons)


class ClientKind:
    """The pools of one kind of client (one service's, or plain HTTP's) for one server, and
    the threads that used them: a client per thread makes one pool per thread, a client per
    call one pool per call."""

    __slots__ = ("name", "pools", "reopened", "requests", "threads")

    def __init__(self, name: str) -> None:
        self.name = name
        self.reopened = Reopened()
        self.pools: set[int] = set()
        self.threads: set[int] = set()
        self.requests = 0

    def add(self, pool: int) -> None:
        self.pools.add(pool)
        # The diagnosis is told on the thread that made the request.
        self.threads.add(threading.get_ident())
        self.requests += 1

    @property
    def extra_pools(self) -> int:
        """Pools beyond one per thread."""
        return len(self.pools) - len(self.threads)

    @property
    def recreated(self) -> bool:
        return (
            self.extra_pools >= CLIENT_RECREATED_MIN
            and self.requests <= CLIENT_RECREATED_REQUESTS_PER_POOL * len(self.pools)
        )


@dataclass(eq=False)
class OperationStats(_Examples):
    """What the process saw for one API operation (``DynamoDB.GetItem``), or one host's
    requests when no API call wraps them."""

    label: str
    calls: int = 0
    retried_calls: int = 0
    extra_attempts: int = 0
    failed_ms: float = 0.0
    backoff_ms: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    problems_on_defaults: int = 0
    settings: Mapping[str, Any] = field(default_factory=dict)
    ok_attempts: int = 0
    ok_ms: float = 0.0
    library: str = URLLIB3
    # Retries of a call that is not idempotent, after an attempt that may have run.
    resent_unsafe: int = 0
    resent_unsafe_calls: int = 0
    resent_unsafe_errors: Counter[str] = field(default_factory=Counter)
    is_api: bool = False

    def add(self, attempt: Attempt) -> None:
        if attempt.settings:
            self.settings = attempt.settings
        self.library = attempt.pool.library
        self.is_api = attempt.call.is_api
        if attempt.resend == 0:
            self.calls += 1
        else:
            self.extra_attempts += 1
            self.retried_calls += attempt.resend == 1
            previous = attempt.previous
            self.failed_ms += previous.duration_ms if previous is not None else 0.0
            self.backoff_ms += attempt.backoff_ms
            self.errors[attempt.prior_error or "unknown"] += 1
        if attempt.error_type is None:
            self.ok_attempts += 1
            self.ok_ms += attempt.duration_ms
        if (failed(attempt) or attempt.resend) and on_default_timeouts(attempt):
            self.problems_on_defaults += 1
        if resent_not_idempotent(attempt):
            self.resent_unsafe += 1
            earlier = attempt.call.attempts[: attempt.resend]
            self.resent_unsafe_calls += not any(resent_not_idempotent(a) for a in earlier)
            self.resent_unsafe_errors[attempt.prior_error or "unknown"] += 1


def _span_ref(ids: tuple[int, int]) -> SpanRef:
    return SpanRef(trace.format_trace_id(ids[0]), trace.format_span_id(ids[1]))


def round_ms(ms: float) -> float:
    return round(ms, 3)
