"""Findings: what to change, with the evidence, derived from conntrace's spans as they end.

``Diagnosis`` is a span processor. Spans end child first: DNS, TCP and TLS, then the
connection setup, then the HTTP attempt, then the API call. What a setup cost is rolled up
into its attempt, so every rule is decided when an attempt ends, while its API call span
is still open: a finding that concerns the attempt becomes a ``conntrace.finding`` event on
that nearest open ancestor. Only spans still open are held, so memory stays bounded.

The same counts, kept per host and per operation for the whole process, give
``Diagnosis.findings()``: the end-of-run summary and the JSON report are made from them.
Each rule fires only on what healthy traffic never shows (a reused client with enough pool
slots opens one connection per concurrent request and keeps it).
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Generic, Protocol, TypeVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind

from . import _runtime
from . import attributes as A
from .metrics import ConnectionMetrics

# Connections opened for these reasons are needed; the others replace one that was lost.
_NEEDED = frozenset({A.REASON_FIRST, A.REASON_POOL_BUSY})
_SCOPE = "conntrace"
# botocore's connect and read timeouts when the client's config leaves them unset.
BOTOCORE_DEFAULT_TIMEOUT_S = 60.0

# Thresholds. One extra pool is common and fine (two clients for one service); one
# 'Connection: close' can be a server restarting; one lost connection costs one setup.
CLIENT_RECREATED_MIN = 2
SERVER_CLOSES_MIN = 2
SERVER_CLOSES_SHARE = 0.5
REPEATED_DNS_MIN = 2
SETUP_SHARE_MIN = 0.2
SETUP_SHARE_SETUPS_MIN = 2

_Server = tuple[str, int]
CALL, ATTEMPT, SETUP, DNS, TCP, TLS = "call", "attempt", "setup", "dns", "tcp", "tls"
_STEPS = (
    (A.SPAN_CONNECTION_SETUP, SETUP),
    (A.SPAN_DNS, DNS),
    (A.SPAN_CONNECT, TCP),
    (A.SPAN_TLS, TLS),
)
_SPANS_KEPT = 5
_IDLE_SAMPLES_KEPT = 10
_SEVERITY_ORDER = {A.SEVERITY_WARNING: 0, A.SEVERITY_INFO: 1}


# --- what a finding is ---------------------------------------------------------------------


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


# --- what the rules look at ------------------------------------------------------------------


class _Setup:
    """One connection setup beneath an attempt: why it was opened and what each step cost."""

    __slots__ = (
        "dns_lookups",
        "dns_ms",
        "keepalive",
        "ok",
        "reason",
        "setup_ms",
        "tcp_ms",
        "tls_ms",
    )

    def __init__(self) -> None:
        self.reason: str | None = None
        self.ok = False
        self.setup_ms = 0.0
        self.dns_ms = 0.0
        self.dns_lookups = 0
        self.tcp_ms = 0.0
        self.tls_ms = 0.0
        self.keepalive: bool | None = None


@dataclass
class _Attempt:
    """One HTTP attempt as the rules see it."""

    ref: tuple[int, int]
    duration_ms: float
    reused: bool
    reason: str | None
    setup: _Setup | None
    resend: int
    error_type: str | None
    status: int | None
    closed_by_server: bool
    idle_dropped_ms: list[float]
    label: str
    settings: Mapping[str, Any]
    prior_ms: float = 0.0
    backoff_ms: float = 0.0
    prior_error: str | None = None

    @property
    def replaced(self) -> bool:
        """The connection was opened to replace one that was lost."""
        return self.reason is not None and self.reason not in _NEEDED

    @property
    def failed(self) -> bool:
        if self.error_type is None:
            return False
        # A 4xx answer is the caller's mistake, not a slow or broken connection
        # (throttling comes back as a retry and is caught there).
        return self.status is None or self.status >= 500 or self.status == 429

    @property
    def on_default_timeouts(self) -> bool:
        return BOTOCORE_DEFAULT_TIMEOUT_S in (
            self.settings.get(A.AWS_CONNECT_TIMEOUT),
            self.settings.get(A.AWS_READ_TIMEOUT),
        )


class _Examples:
    """The first spans that showed each finding, for the evidence."""

    def __init__(self) -> None:
        self.spans: dict[str, list[tuple[int, int]]] = {}

    def keep(self, finding_id: str, ref: tuple[int, int]) -> None:
        kept = self.spans.setdefault(finding_id, [])
        if len(kept) < _SPANS_KEPT:
            kept.append(ref)

    def refs(self, finding_id: str) -> tuple[SpanRef, ...]:
        return tuple(_span_ref(ref) for ref in self.spans.get(finding_id, ()))


class HostStats(_Examples):
    """What the process saw for one server (address and port)."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self.target = f"{host}:{port}"
        self.requests = 0
        self.reused = 0
        self.request_ms = 0.0
        self.opened: Counter[str] = Counter()
        self.setup_ms: defaultdict[str, float] = defaultdict(float)
        self.replaced_dns_ms = 0.0
        self.replaced_tcp_ms = 0.0
        self.replaced_tls_ms = 0.0
        self.dns_lookups = 0
        self.dns_repeated = 0
        self.dns_ms = 0.0
        self.dns_ms_max = 0.0
        self.pools = 0
        self.pool_max_size = 0
        self.max_concurrency = 0
        self.discarded = 0
        self.closed_by_server = 0
        self.dropped = 0
        self.idle_ms_samples: list[float] = []
        self.idle_ms_min: float | None = None
        self.idle_ms_max: float | None = None
        self.keepalive: set[bool] = set()

    @property
    def pools_seen(self) -> int:
        """Pools made for this server: events count the second and later ones."""
        return max(self.pools, 1 if self.requests else 0)

    @property
    def replaced(self) -> int:
        return sum(count for reason, count in self.opened.items() if reason not in _NEEDED)

    @property
    def replaced_setup_ms(self) -> float:
        return sum(ms for reason, ms in self.setup_ms.items() if reason not in _NEEDED)

    def add(self, attempt: _Attempt) -> None:
        self.requests += 1
        self.reused += attempt.reused
        self.request_ms += attempt.duration_ms
        self.closed_by_server += attempt.closed_by_server
        for idle in attempt.idle_dropped_ms:
            self.dropped += 1
            if len(self.idle_ms_samples) < _IDLE_SAMPLES_KEPT:
                self.idle_ms_samples.append(idle)
            self.idle_ms_min = idle if self.idle_ms_min is None else min(self.idle_ms_min, idle)
            self.idle_ms_max = idle if self.idle_ms_max is None else max(self.idle_ms_max, idle)
        setup = attempt.setup
        if setup is None or setup.reason is None:
            return
        self.dns_lookups += setup.dns_lookups
        self.dns_ms += setup.dns_ms
        self.dns_ms_max = max(self.dns_ms_max, setup.dns_ms)
        if setup.keepalive is not None:
            self.keepalive.add(setup.keepalive)
        if not setup.ok:
            return
        self.opened[setup.reason] += 1
        self.setup_ms[setup.reason] += setup.setup_ms
        if attempt.replaced:
            self.dns_repeated += setup.dns_lookups
            self.replaced_dns_ms += setup.dns_ms
            self.replaced_tcp_ms += setup.tcp_ms
            self.replaced_tls_ms += setup.tls_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "server_address": self.host,
            "server_port": self.port,
            "requests": self.requests,
            "reused": self.reused,
            "request_ms": _round(self.request_ms),
            "connections_opened": {reason: self.opened.get(reason, 0) for reason in A.REASONS},
            "setup_ms": {reason: _round(self.setup_ms.get(reason, 0.0)) for reason in A.REASONS},
            "dns_lookups": self.dns_lookups,
            "dns_ms": _round(self.dns_ms),
            "pools": self.pools_seen,
            "pool_max_size": self.pool_max_size,
            "max_concurrency": self.max_concurrency,
            "discarded": self.discarded,
            "closed_by_server": self.closed_by_server,
            "dropped_idle": self.dropped,
        }


class OperationStats(_Examples):
    """What the process saw for one API operation (``DynamoDB.GetItem``), or one host's
    requests when no API call wraps them."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label
        self.calls = 0
        self.retried_calls = 0
        self.extra_attempts = 0
        self.failed_ms = 0.0
        self.backoff_ms = 0.0
        self.errors: Counter[str] = Counter()
        self.problems_on_defaults = 0
        self.settings: Mapping[str, Any] = {}
        self.ok_attempts = 0
        self.ok_ms = 0.0

    def add(self, attempt: _Attempt) -> None:
        if attempt.settings:
            self.settings = attempt.settings
        if attempt.resend == 0:
            self.calls += 1
        else:
            self.extra_attempts += 1
            self.retried_calls += attempt.resend == 1
            self.failed_ms += attempt.prior_ms
            self.backoff_ms += attempt.backoff_ms
            self.errors[attempt.prior_error or "unknown"] += 1
        if attempt.error_type is None:
            self.ok_attempts += 1
            self.ok_ms += attempt.duration_ms
        if (attempt.failed or attempt.resend) and attempt.on_default_timeouts:
            self.problems_on_defaults += 1


# --- the rules -----------------------------------------------------------------------------

S = TypeVar("S", HostStats, OperationStats)


@dataclass(frozen=True)
class Rule(Generic[S]):
    """``concerns``: this attempt is an instance of the problem; ``active``: the process has
    seen enough of it to say so; ``event``: the line for the attempt's span event;
    ``describe``: the finding's target, summary, advice and evidence."""

    id: str
    severity: str
    title: str
    concerns: Callable[[_Attempt], bool]
    active: Callable[[S], bool]
    event: Callable[[_Attempt, S], str]
    describe: Callable[[S], tuple[str, str, str, dict[str, Any]]]


def _client_recreated(h: HostStats) -> tuple[str, str, str, dict[str, Any]]:
    count = h.opened[A.REASON_NEW_POOL]
    pools = h.pools_seen
    setup_ms = h.setup_ms[A.REASON_NEW_POOL]
    summary = (
        f"{count} connections to {h.target} were opened by a new connection pool ({pools} pools "
        "so far): a client is being created per call or per invocation, and each new client "
        "starts without connections."
    )
    advice = (
        "Create the boto3 client or resource once (at module level, outside the Lambda "
        "handler) and reuse it for every call; clients are thread-safe. Each new client pays "
        f"DNS, TCP and TLS again: {_duration(setup_ms)} here so far."
    )
    evidence = {"connections": count, "pools": pools, "setup_ms": _round(setup_ms)}
    return h.target, summary, advice, {**evidence, "requests": h.requests}


def _pool_suggestion(h: HostStats) -> int:
    return max(h.max_concurrency, h.pool_max_size + 1)


def _pool_too_small(h: HostStats) -> tuple[str, str, str, dict[str, Any]]:
    busy, again = h.opened[A.REASON_POOL_BUSY], h.opened[A.REASON_POOL_DISCARDED]
    suggestion = _pool_suggestion(h)
    summary = (
        f"Up to {h.max_concurrency} requests to {h.target} ran at once, but its pool keeps "
        f"{h.pool_max_size} connections: {h.discarded} connections were discarded when they "
        f"came back to a full pool, and {again} were opened again to replace them."
    )
    advice = (
        f"Set botocore.config.Config(max_pool_connections={suggestion}) on the client these "
        "threads share (it is per client; the default is 10). urllib3 does not make a thread "
        "wait for a pooled connection: it opens an extra one and throws it away afterwards "
        '("Connection pool is full, discarding connection").'
    )
    evidence = {
        "max_concurrency": h.max_concurrency,
        "pool_max_size": h.pool_max_size,
        "discarded": h.discarded,
        "opened_pool_busy": busy,
        "opened_pool_discarded": again,
        "suggested_max_pool_connections": suggestion,
        "setup_ms": _round(h.setup_ms[A.REASON_POOL_DISCARDED]),
    }
    return h.target, summary, advice, evidence


def _server_closes(h: HostStats) -> tuple[str, str, str, dict[str, Any]]:
    again = h.opened[A.REASON_SERVER_CLOSED]
    summary = (
        f"{h.closed_by_server} of {h.requests} responses from {h.target} closed their connection "
        f"('Connection: close'), so {again} later requests had to open a new one."
    )
    advice = (
        "The server, or a proxy or load balancer in front of it, ends keep-alive after each "
        "response: check its keep-alive settings (keep-alive off, an HTTP/1.0 hop, a low "
        "maximum of requests per connection). No client setting keeps open a connection that "
        "the server closes."
    )
    evidence = {
        "closed_by_server": h.closed_by_server,
        "responses": h.requests,
        "opened_server_closed": again,
        "setup_ms": _round(h.setup_ms[A.REASON_SERVER_CLOSED]),
    }
    return h.target, summary, advice, evidence


def _idle_dropped(h: HostStats) -> tuple[str, str, str, dict[str, Any]]:
    keepalive = next(iter(h.keepalive)) if len(h.keepalive) == 1 else None
    summary = (
        f"{h.dropped} pooled connections to {h.target} had been closed by the peer while idle "
        f"({_idle_range(h)}); urllib3 found them dead when it took them from the pool and "
        f"opened {h.opened[A.REASON_STALE]} new ones."
    )
    keepalive_seen = {True: "was on", False: "was off", None: "varied"}[keepalive]
    advice = (
        "Something closes idle connections before the next call comes: the server's idle "
        "timeout, a load balancer, a NAT gateway (AWS NAT gateways drop connections idle for "
        "350 s) or a Lambda freeze between invocations. After long pauses this is expected "
        "and costs one new connection. tcp_keepalive (Config(tcp_keepalive=True), "
        "BOTOCORE_TCP_KEEPALIVE=true or tcp_keepalive in the shared config file) only sets "
        "SO_KEEPALIVE on new sockets: the kernel then probes a connection idle for "
        "net.ipv4.tcp_keepalive_time (7200 s by default on Linux), which keeps a NAT mapping "
        "alive only if that time is below the NAT's idle timeout. It does not stop a server "
        "from closing idle HTTP connections, sends nothing while a Lambda environment is "
        f"frozen, and does not change pooling. SO_KEEPALIVE {keepalive_seen} on these "
        "connections."
    )
    evidence = {
        "dropped": h.dropped,
        "idle_ms_min": _round(h.idle_ms_min or 0.0),
        "idle_ms_max": _round(h.idle_ms_max or 0.0),
        "idle_ms_samples": [_round(idle) for idle in h.idle_ms_samples],
        "opened_stale": h.opened[A.REASON_STALE],
        "socket_keepalive": keepalive,
    }
    return h.target, summary, advice, evidence


def _repeated_dns(h: HostStats) -> tuple[str, str, str, dict[str, Any]]:
    summary = (
        f"{h.host} was looked up {h.dns_lookups} times ({_duration(h.dns_ms)} in all, slowest "
        f"{_duration(h.dns_ms_max)}); {h.dns_repeated} of them for connections that replaced "
        "one that was lost."
    )
    advice = (
        "Python, urllib3 and botocore keep no DNS cache: every new connection calls "
        "getaddrinfo again. Remove what forces the new connections (see the other findings "
        "for this host); where new connections cannot be avoided, a caching resolver on the "
        "machine (systemd-resolved, nscd or dnsmasq) answers repeated lookups locally."
    )
    evidence = {
        "lookups": h.dns_lookups,
        "repeated": h.dns_repeated,
        "dns_ms": _round(h.dns_ms),
        "dns_ms_max": _round(h.dns_ms_max),
    }
    return h.target, summary, advice, evidence


def _setup_share(h: HostStats) -> tuple[str, str, str, dict[str, Any]]:
    setup_ms = h.replaced_setup_ms
    share = setup_ms / h.request_ms if h.request_ms else 0.0
    reasons = {r: n for r, n in sorted(h.opened.items()) if r not in _NEEDED and n}
    summary = (
        f"Connections to {h.target} that had to be opened again took {_duration(setup_ms)} of "
        f"the {_duration(h.request_ms)} spent in requests ({share:.0%}): {h.replaced} setups, "
        f"DNS {_duration(h.replaced_dns_ms)}, TCP {_duration(h.replaced_tcp_ms)}, "
        f"TLS {_duration(h.replaced_tls_ms)}."
    )
    causes = ", ".join(f"{reason} ({count})" for reason, count in reasons.items())
    advice = (
        "Every connection opened again pays DNS, TCP and TLS before its request is sent. "
        f"Remove the cause, by reason: {causes}; the other findings for this host say how."
    )
    evidence = {
        "setups": h.replaced,
        "setup_ms": _round(setup_ms),
        "request_ms": _round(h.request_ms),
        "share": round(share, 4),
        "dns_ms": _round(h.replaced_dns_ms),
        "tcp_ms": _round(h.replaced_tcp_ms),
        "tls_ms": _round(h.replaced_tls_ms),
        "reasons": reasons,
    }
    return h.target, summary, advice, evidence


def _retry_time(o: OperationStats) -> tuple[str, str, str, dict[str, Any]]:
    lost = o.failed_ms + o.backoff_ms
    errors = ", ".join(f"{error} (x{count})" for error, count in o.errors.most_common())
    summary = (
        f"{o.retried_calls} of {o.calls} {o.label} calls needed retries ({o.extra_attempts} "
        f"extra attempts): {_duration(lost)} lost, {_duration(o.failed_ms)} in attempts that "
        f"failed and {_duration(o.backoff_ms)} waiting between attempts. Retried after: {errors}."
    )
    advice = (
        "Retries turn failures into latency. Look at the errors first (throttling: more "
        "capacity or smoother load; 5xx: the service or a proxy on the way). Bound the "
        "attempts to what your latency budget allows: retries={'mode': 'standard', "
        "'total_max_attempts': 3} backs off exponentially with jitter; 'adaptive' also slows "
        "the client down while it is throttled."
    )
    evidence = {
        "calls": o.calls,
        "retried_calls": o.retried_calls,
        "extra_attempts": o.extra_attempts,
        "failed_attempt_ms": _round(o.failed_ms),
        "backoff_ms": _round(o.backoff_ms),
        "lost_ms": _round(lost),
        "errors": dict(o.errors),
    }
    return o.label, summary, advice, evidence


def _default_timeouts(o: OperationStats) -> tuple[str, str, str, dict[str, Any]]:
    connect = float(o.settings.get(A.AWS_CONNECT_TIMEOUT, BOTOCORE_DEFAULT_TIMEOUT_S))
    read = float(o.settings.get(A.AWS_READ_TIMEOUT, BOTOCORE_DEFAULT_TIMEOUT_S))
    attempts = int(o.settings.get(A.AWS_MAX_ATTEMPTS, 1))
    mode = str(o.settings.get(A.AWS_RETRY_MODE, "unknown"))
    worst = attempts * (connect + read)
    typical = o.ok_ms / o.ok_attempts if o.ok_attempts else None
    usually = f"usually takes {_duration(typical)}" if typical is not None else "has not succeeded"
    summary = (
        f"{o.problems_on_defaults} attempts of {o.label} failed or were retried on botocore's "
        f"default timeouts (connect_timeout={connect:g} s, read_timeout={read:g} s) with "
        f"retries '{mode}' allowing {attempts} attempts: a call that {usually} can wait up "
        f"to {_duration(worst * 1000)} before it fails."
    )
    advice = (
        "For latency-sensitive calls, AWS's guidance on tuning SDK HTTP settings (written for "
        "DynamoDB) sets timeouts from the latency budget instead of keeping the defaults: a "
        "short connect timeout (1 s or less), a read timeout a little above the slowest normal "
        "response (well under a second for single-item DynamoDB calls; about 5.5 s for batch "
        "calls, as DynamoDB gives up on an item after 5 s) and few attempts with backoff, e.g. "
        "Config(connect_timeout=1, read_timeout=2, retries={'mode': 'standard', "
        "'total_max_attempts': 3}). botocore has no deadline for a whole call: bound it in "
        "your code if you need one. Values too low fail calls on a brief network hiccup."
    )
    evidence = {
        "problem_attempts": o.problems_on_defaults,
        "connect_timeout_s": connect,
        "read_timeout_s": read,
        "retry_mode": mode,
        "max_attempts": attempts,
        "worst_case_s": worst,
        "typical_attempt_ms": None if typical is None else _round(typical),
    }
    return o.label, summary, advice, evidence


HOST_RULES: tuple[Rule[HostStats], ...] = (
    Rule(
        A.FINDING_CLIENT_RECREATED,
        A.SEVERITY_WARNING,
        "client created again and again",
        concerns=lambda a: a.reason == A.REASON_NEW_POOL,
        active=lambda h: h.opened[A.REASON_NEW_POOL] >= CLIENT_RECREATED_MIN,
        event=lambda a, h: (
            f"connection opened by a new pool for {h.target} ({h.opened[A.REASON_NEW_POOL]} so "
            "far): create the client once and reuse it"
        ),
        describe=_client_recreated,
    ),
    Rule(
        A.FINDING_POOL_TOO_SMALL,
        A.SEVERITY_WARNING,
        "connection pool smaller than concurrency",
        concerns=lambda a: a.reason in (A.REASON_POOL_BUSY, A.REASON_POOL_DISCARDED),
        active=lambda h: h.discarded > 0 or h.opened[A.REASON_POOL_DISCARDED] > 0,
        event=lambda a, h: (
            f"opened because every pooled connection was in use ({a.reason}); up to "
            f"{h.max_concurrency} requests at once for {h.pool_max_size} pooled connections: "
            f"set max_pool_connections={_pool_suggestion(h)}"
        ),
        describe=_pool_too_small,
    ),
    Rule(
        A.FINDING_SERVER_CLOSES,
        A.SEVERITY_WARNING,
        "server closes connections after each response",
        concerns=lambda a: a.closed_by_server,
        active=lambda h: (
            h.closed_by_server >= SERVER_CLOSES_MIN
            and h.closed_by_server >= SERVER_CLOSES_SHARE * h.requests
        ),
        event=lambda a, h: (
            f"the response closed its connection ('Connection: close'): {h.closed_by_server} of "
            f"{h.requests} responses from {h.target} did"
        ),
        describe=_server_closes,
    ),
    Rule(
        A.FINDING_IDLE_DROPPED,
        A.SEVERITY_INFO,
        "idle connections dropped by the peer",
        concerns=lambda a: bool(a.idle_dropped_ms) or a.reason == A.REASON_STALE,
        active=lambda h: h.dropped > 0 or h.opened[A.REASON_STALE] > 0,
        event=lambda a, h: (
            f"the pooled connection had been closed by the peer after "
            f"{_duration(max(a.idle_dropped_ms, default=0.0))} idle: opened a new one"
        ),
        describe=_idle_dropped,
    ),
    Rule(
        A.FINDING_REPEATED_DNS,
        A.SEVERITY_INFO,
        "repeated DNS lookups",
        concerns=lambda a: a.replaced and a.setup is not None and a.setup.dns_lookups > 0,
        active=lambda h: h.dns_repeated >= REPEATED_DNS_MIN,
        event=lambda a, h: (
            f"{h.host} looked up again ({_duration(a.setup.dns_ms if a.setup else 0.0)}) for a "
            f"connection opened because of {a.reason}; Python keeps no DNS cache"
        ),
        describe=_repeated_dns,
    ),
    Rule(
        A.FINDING_SETUP_SHARE,
        A.SEVERITY_WARNING,
        "connection setup is a large share of request time",
        concerns=lambda a: a.replaced and a.setup is not None and a.setup.ok,
        active=lambda h: (
            h.replaced >= SETUP_SHARE_SETUPS_MIN
            and h.replaced_setup_ms >= SETUP_SHARE_MIN * h.request_ms
        ),
        event=lambda a, h: (
            f"opening this connection again ({a.reason}) took "
            f"{_duration(a.setup.setup_ms if a.setup else 0.0)} of this "
            f"{_duration(a.duration_ms)} request"
        ),
        describe=_setup_share,
    ),
)

OPERATION_RULES: tuple[Rule[OperationStats], ...] = (
    Rule(
        A.FINDING_RETRY_TIME,
        A.SEVERITY_WARNING,
        "time lost to retries",
        concerns=lambda a: a.resend > 0,
        active=lambda o: o.extra_attempts > 0,
        event=lambda a, o: (
            f"retry {a.resend}: {_duration(a.prior_ms)} in earlier attempts "
            f"({a.prior_error or 'unknown error'}) and {_duration(a.backoff_ms)} waiting before "
            "this one"
        ),
        describe=_retry_time,
    ),
    Rule(
        A.FINDING_DEFAULT_TIMEOUTS,
        A.SEVERITY_INFO,
        "default timeouts on a call that failed",
        concerns=lambda a: (a.failed or a.resend > 0) and a.on_default_timeouts,
        active=lambda o: o.problems_on_defaults > 0,
        event=lambda a, o: (
            "this call failed or was retried on botocore's default timeouts (connect "
            f"{a.settings.get(A.AWS_CONNECT_TIMEOUT)} s, read {a.settings.get(A.AWS_READ_TIMEOUT)} "
            f"s) with up to {a.settings.get(A.AWS_MAX_ATTEMPTS, 1)} attempts"
        ),
        describe=_default_timeouts,
    ),
)


# --- the span processor ---------------------------------------------------------------------


class _CallTrack:
    """The attempts so far of one call (keyed by the span they all share as parent)."""

    __slots__ = ("attempts_ms", "last_end", "last_error", "server")

    def __init__(self) -> None:
        self.attempts_ms = 0.0
        self.last_end = 0
        self.last_error: str | None = None
        self.server: _Server | None = None


class Listener(Protocol):
    """Anything that wants the spans a diagnosis sees, as a span processor gets them."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None: ...

    def on_end(self, span: ReadableSpan) -> None: ...


class Diagnosis(SpanProcessor):
    """Derives metrics and findings from conntrace's spans; see the module's docstring.

    ``annotate=False`` keeps the findings to itself (no span events), for a second
    diagnosis fed from the first one (``add_listener``), as the pytest plugin does.
    """

    def __init__(self, metrics: ConnectionMetrics | None = None, annotate: bool = True) -> None:
        self.metrics = metrics
        self.annotate = annotate
        self.closed = False
        self._listeners: list[Listener] = []
        self.reset()

    def reset(self) -> None:
        """Forget everything seen (a forked child starts afresh)."""
        self._lock = threading.Lock()
        self._open: dict[int, Span] = {}
        self._setups: dict[int, _Setup] = {}
        self._attempt_setups: dict[int, _Setup] = {}
        self._calls: dict[int, _CallTrack] = {}
        self._hosts: dict[_Server, HostStats] = {}
        self._operations: dict[str, OperationStats] = {}
        self._api_calls = 0

    # --- listeners -----------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Also hand every span this processor sees to ``listener`` (start and end)."""
        self._listeners = [*self._listeners, listener]

    def remove_listener(self, listener: Listener) -> None:
        self._listeners = [known for known in self._listeners if known is not listener]

    # --- SpanProcessor --------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self.closed:
            return
        self._open[span.context.span_id] = span
        for listener in self._listeners:
            _guarded(listener.on_start, span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if self.closed:
            return
        try:
            self._end(span)
        except Exception:
            _runtime.report_internal_error("findings.on_end")
        for listener in self._listeners:
            _guarded(listener.on_end, span)

    def shutdown(self) -> None:
        self.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def close(self) -> None:
        """Stop watching spans and recording metrics; what was seen stays readable."""
        self.closed = True
        if self.metrics is not None:
            self.metrics.close()
        self._open.clear()
        with _installed_lock:
            if self in _installed:
                _installed.remove(self)

    # --- what was found ----------------------------------------------------------------------

    def findings(self) -> list[Finding]:
        """Every rule that fired in this process so far: by target, warnings first."""
        with self._lock:
            found = [
                self._finding(rule, stats)
                for rule in HOST_RULES
                for stats in self._hosts.values()
                if rule.active(stats)
            ]
            found += [
                self._finding(rule, stats)
                for rule in OPERATION_RULES
                for stats in self._operations.values()
                if rule.active(stats)
            ]
        order = {finding_id: index for index, finding_id in enumerate(A.FINDINGS)}
        return sorted(
            found, key=lambda f: (f.target, _SEVERITY_ORDER.get(f.severity, 9), order[f.id])
        )

    def hosts(self) -> list[dict[str, Any]]:
        """Per server address: requests, reuse, connections opened and why, what they cost."""
        with self._lock:
            return [stats.to_dict() for _, stats in sorted(self._hosts.items())]

    def totals(self) -> dict[str, Any]:
        with self._lock:
            hosts = list(self._hosts.values())
            opened: Counter[str] = Counter()
            for stats in hosts:
                opened.update(stats.opened)
            return {
                "api_calls": self._api_calls,
                "requests": sum(stats.requests for stats in hosts),
                "reused": sum(stats.reused for stats in hosts),
                "connections_opened": sum(opened.values()),
                "connections_by_reason": {reason: opened.get(reason, 0) for reason in A.REASONS},
                "dns_lookups": sum(stats.dns_lookups for stats in hosts),
                "retries": sum(stats.extra_attempts for stats in self._operations.values()),
            }

    def _finding(self, rule: Rule[Any], stats: HostStats | OperationStats) -> Finding:
        target, summary, advice, evidence = rule.describe(stats)
        spans = stats.refs(rule.id)
        return Finding(rule.id, rule.severity, rule.title, target, summary, advice, evidence, spans)

    # --- reading spans --------------------------------------------------------------------------

    def _end(self, span: ReadableSpan) -> None:
        span_id = span.context.span_id
        attributes: Mapping[str, Any] = span.attributes or {}
        kind = span_kind(span)
        # Counted while this attempt is still among the open spans: the first attempt of a
        # burst to end then sees the whole burst.
        server = _server(attributes)
        in_flight = self._in_flight(server) if kind == ATTEMPT else 0
        self._open.pop(span_id, None)
        setup = self._setups.pop(span_id, None)
        attempt_setup = self._attempt_setups.pop(span_id, None)
        call = self._calls.pop(span_id, None)
        if kind == CALL:
            with self._lock:
                self._api_calls += 1
        if kind == SETUP:
            self._setup_ended(span, attributes, setup or _Setup())
        elif kind in (DNS, TCP, TLS):
            self._step_ended(span, kind, attributes)
        elif kind == ATTEMPT:
            self._attempt_ended(span, attributes, attempt_setup, in_flight)
        else:
            # Pool events land on whatever span is current, often the API call's: its
            # attempts tell which server they are about.
            self._count_events(span, server or (call.server if call is not None else None))

    def _in_flight(self, server: _Server | None) -> int:
        return sum(
            1
            for other in list(self._open.values())
            if span_kind(other) == ATTEMPT and _server(other.attributes or {}) == server
        )

    def _setup_of(self, span: ReadableSpan) -> tuple[_Setup | None, Mapping[str, Any]]:
        """The setup a DNS, TCP or TLS span belongs to, and the setup span's attributes."""
        parent = span.parent
        setup_span = self._open.get(parent.span_id) if parent is not None else None
        if setup_span is None or not setup_span.name.startswith(A.SPAN_CONNECTION_SETUP):
            return None, {}
        setup = self._setups.get(setup_span.context.span_id)
        if setup is None:
            setup = self._setups[setup_span.context.span_id] = _Setup()
        return setup, setup_span.attributes or {}

    def _step_ended(self, span: ReadableSpan, step: str, attributes: Mapping[str, Any]) -> None:
        seconds = _seconds(span)
        error = attributes.get(A.ERROR_TYPE)
        setup, setup_attributes = self._setup_of(span)
        address = setup_attributes.get(A.SERVER_ADDRESS, "")
        port = setup_attributes.get(A.SERVER_PORT, 0)
        if step == DNS:
            if self.metrics is not None:
                self.metrics.dns_lookup(
                    str(attributes.get(A.DNS_QUESTION_NAME, "")), seconds, error
                )
            if setup is not None:
                setup.dns_lookups += 1
                setup.dns_ms += seconds * 1000.0
        elif step == TCP:
            if self.metrics is not None and address:
                self.metrics.tcp_connect(address, port, seconds, error)
            if setup is not None:
                setup.tcp_ms += seconds * 1000.0
                if A.SOCKET_KEEPALIVE in attributes:
                    setup.keepalive = bool(attributes[A.SOCKET_KEEPALIVE])
        else:
            if self.metrics is not None and address:
                version = attributes.get(A.TLS_PROTOCOL_VERSION)
                self.metrics.tls_handshake(address, port, seconds, version, error)
            if setup is not None:
                setup.tls_ms += seconds * 1000.0

    def _setup_ended(
        self, span: ReadableSpan, attributes: Mapping[str, Any], setup: _Setup
    ) -> None:
        setup.reason = attributes.get(A.CONNECTION_REASON)
        setup.ok = A.CONNECTION_ID in attributes
        setup.setup_ms = _seconds(span) * 1000.0
        if setup.ok and self.metrics is not None and setup.reason:
            address = str(attributes.get(A.SERVER_ADDRESS, ""))
            self.metrics.connection_opened(address, attributes.get(A.SERVER_PORT, 0), setup.reason)
        if span.parent is not None:
            self._attempt_setups[span.parent.span_id] = setup

    def _count_events(self, span: ReadableSpan, server: _Server | None) -> None:
        """Count the pool events a span carries for their server."""
        for event in span.events:
            if event.name not in (A.EVENT_POOL_DISCARDED, A.EVENT_POOL_CREATED):
                continue
            attributes: Mapping[str, Any] = event.attributes or {}
            host = attributes.get(A.SERVER_ADDRESS)
            port = attributes.get(A.SERVER_PORT) or (server[1] if server else None)
            if host is None or port is None or (server is not None and server[0] != host):
                continue
            with self._lock:
                stats = self._host((str(host), int(port)))
                if event.name == A.EVENT_POOL_DISCARDED:
                    stats.discarded += 1
                    stats.keep(A.FINDING_POOL_TOO_SMALL, _ids(span))
                else:
                    stats.pools = max(stats.pools, int(attributes.get(A.POOL_COUNT, 0)))

    def _attempt_ended(
        self,
        span: ReadableSpan,
        attributes: Mapping[str, Any],
        setup: _Setup | None,
        in_flight: int,
    ) -> None:
        host, port = server = _server(attributes) or ("", 0)
        parent = self._open.get(span.parent.span_id) if span.parent is not None else None
        parent_attributes: Mapping[str, Any] = (parent.attributes or {}) if parent else {}
        api = parent_attributes.get(A.RPC_SYSTEM) == A.RPC_SYSTEM_AWS
        status = attributes.get(A.HTTP_RESPONSE_STATUS_CODE)
        attempt = _Attempt(
            ref=_ids(span),
            duration_ms=_seconds(span) * 1000.0,
            reused=bool(attributes.get(A.CONNECTION_REUSED, False)),
            reason=setup.reason if setup is not None else attributes.get(A.CONNECTION_REASON),
            setup=setup,
            resend=int(attributes.get(A.HTTP_REQUEST_RESEND_COUNT, 0)),
            error_type=attributes.get(A.ERROR_TYPE),
            status=int(status) if status is not None else None,
            closed_by_server=any(e.name == A.EVENT_SERVER_CLOSED for e in span.events),
            idle_dropped_ms=[
                _idle_ms(e) for e in span.events if e.name == A.EVENT_CONNECTION_DROPPED
            ],
            label=parent.name if api and parent is not None else f"{host}:{port}",
            settings=parent_attributes if api else {},
        )
        if self.metrics is not None:
            scheme = str(attributes.get(A.URL_FULL, "http")).split(":", 1)[0]
            wait = attributes.get(A.POOL_WAIT_MS)
            self.metrics.request(
                host,
                port,
                scheme,
                str(attributes.get(A.HTTP_REQUEST_METHOD, "")),
                attempt.reused,
                None if wait is None else float(wait) / 1000.0,
            )
        if span.parent is not None:
            self._track_retry(span, span.parent.span_id, attempt).server = server
        events: list[tuple[str, str, str]] = []
        with self._lock:
            stats = self._host(server)
            stats.max_concurrency = max(stats.max_concurrency, in_flight)
            stats.pool_max_size = max(stats.pool_max_size, int(attributes.get(A.POOL_MAX_SIZE, 0)))
            stats.add(attempt)
            operation = self._operation(attempt.label)
            operation.add(attempt)
            events += _fire(HOST_RULES, attempt, stats)
            events += _fire(OPERATION_RULES, attempt, operation)
        self._count_events(span, server)
        if events and parent is not None and self.annotate and parent.end_time is None:
            for finding_id, severity, message in events:
                parent.add_event(
                    A.EVENT_FINDING,
                    {
                        A.FINDING_ID: finding_id,
                        A.FINDING_SEVERITY: severity,
                        A.FINDING_MESSAGE: message,
                    },
                )

    def _track_retry(self, span: ReadableSpan, parent_id: int, attempt: _Attempt) -> _CallTrack:
        track = self._calls.get(parent_id)
        if track is None or not attempt.resend:
            # A first attempt starts a new call, even under a parent that made calls before.
            track = self._calls[parent_id] = _CallTrack()
        else:
            attempt.prior_ms = track.attempts_ms
            attempt.backoff_ms = max((span.start_time or 0) - track.last_end, 0) / 1e6
            attempt.prior_error = track.last_error
        track.attempts_ms += attempt.duration_ms
        track.last_end = span.end_time or 0
        track.last_error = attempt.error_type
        return track

    def _host(self, server: _Server) -> HostStats:
        stats = self._hosts.get(server)
        if stats is None:
            stats = self._hosts[server] = HostStats(*server)
        return stats

    def _operation(self, label: str) -> OperationStats:
        stats = self._operations.get(label)
        if stats is None:
            stats = self._operations[label] = OperationStats(label)
        return stats


def _fire(
    rules: tuple[Rule[Any], ...], attempt: _Attempt, stats: Any
) -> list[tuple[str, str, str]]:
    fired = []
    for rule in rules:
        if not rule.concerns(attempt):
            continue
        stats.keep(rule.id, attempt.ref)
        if rule.active(stats):
            fired.append((rule.id, rule.severity, rule.event(attempt, stats)))
    return fired


def span_kind(span: ReadableSpan) -> str | None:
    """Which span of the model this is (``CALL``, ``ATTEMPT``, ``SETUP``, ``DNS``, ``TCP``,
    ``TLS``); None for any other span."""
    attributes = span.attributes or {}
    if attributes.get(A.RPC_SYSTEM) == A.RPC_SYSTEM_AWS and span.kind is SpanKind.CLIENT:
        # OpenTelemetry's botocore instrumentation may own the call span: any scope.
        return CALL
    scope = span.instrumentation_scope
    if scope is None or scope.name != _SCOPE:
        return None
    for prefix, kind in _STEPS:
        if span.name.startswith(prefix):
            return kind
    if span.kind is SpanKind.CLIENT and A.HTTP_REQUEST_METHOD in attributes:
        return ATTEMPT
    return None


def _server(attributes: Mapping[str, Any]) -> _Server | None:
    host, port = attributes.get(A.SERVER_ADDRESS), attributes.get(A.SERVER_PORT)
    return None if host is None or port is None else (str(host), int(port))


def _guarded(call: Callable[..., Any], *args: Any) -> None:
    try:
        call(*args)
    except Exception:
        _runtime.report_internal_error("findings.listener")


def _idle_ms(event: Any) -> float:
    return float((event.attributes or {}).get(A.CONNECTION_IDLE_MS, 0.0))


def _seconds(span: ReadableSpan) -> float:
    if span.start_time is None or span.end_time is None:
        return 0.0
    return max(span.end_time - span.start_time, 0) / 1e9


def _ids(span: ReadableSpan) -> tuple[int, int]:
    return span.context.trace_id, span.context.span_id


def _span_ref(ids: tuple[int, int]) -> SpanRef:
    return SpanRef(trace.format_trace_id(ids[0]), trace.format_span_id(ids[1]))


def _round(ms: float) -> float:
    return round(ms, 3)


def _duration(ms: float) -> str:
    if ms >= 60_000.0:
        return f"{ms / 60_000.0:.1f} min"
    if ms >= 1000.0:
        return f"{ms / 1000.0:.2f} s"
    if ms >= 10.0:
        return f"{ms:.0f} ms"
    return f"{ms:.2f} ms"


def _idle_range(h: HostStats) -> str:
    low, high = h.idle_ms_min or 0.0, h.idle_ms_max or 0.0
    if abs(high - low) < 0.5:
        return f"idle {_duration(high)}"
    return f"idle {_duration(low)} to {_duration(high)}"


# --- wiring ------------------------------------------------------------------------------------

_installed_lock = threading.Lock()
_installed: list[Diagnosis] = []
_by_provider: weakref.WeakKeyDictionary[Any, Diagnosis] = weakref.WeakKeyDictionary()


def install(
    tracer_provider: Any = None,
    meter_provider: Any = None,
    *,
    metrics: bool = True,
    report: bool = True,
) -> Diagnosis | None:
    """Add a ``Diagnosis`` to an SDK tracer provider (the global one by default), once.

    Its metrics go to ``meter_provider``, else to the one given to ``conntrace.instrument``,
    else to the global one. With ``report``, ``CONNTRACE_REPORT=path`` makes it write the
    JSON report there at exit. Returns None for a provider that takes no span processors.
    """
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    if not hasattr(provider, "add_span_processor"):
        return None
    with _installed_lock:
        existing = _by_provider.get(provider)
        if existing is not None and not existing.closed:
            return existing
        diagnosis = Diagnosis(_connection_metrics(meter_provider) if metrics else None)
        provider.add_span_processor(diagnosis)
        _by_provider[provider] = diagnosis
        _installed.append(diagnosis)
    if report:
        from . import report as report_module

        report_module.write_at_exit(diagnosis)
    return diagnosis


def current() -> Diagnosis | None:
    """The diagnosis installed last and still open: the one the run's summary shows."""
    with _installed_lock:
        return _installed[-1] if _installed else None


def uninstall() -> None:
    """Close every installed diagnosis (conntrace is being switched off)."""
    with _installed_lock:
        installed = list(_installed)
    for diagnosis in installed:
        diagnosis.close()


def _connection_metrics(meter_provider: Any) -> ConnectionMetrics:
    from opentelemetry import metrics

    import conntrace

    provider = meter_provider if meter_provider is not None else conntrace.meter_provider
    return ConnectionMetrics(metrics.get_meter("conntrace", conntrace.__version__, provider))


__all__ = [
    "ATTEMPT",
    "CALL",
    "DNS",
    "SETUP",
    "TCP",
    "TLS",
    "Diagnosis",
    "Finding",
    "SpanRef",
    "current",
    "install",
    "span_kind",
    "uninstall",
]
