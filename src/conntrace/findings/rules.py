"""The rules: when each finding fires, on what evidence, and what it says.

A rule looks at each attempt as it ends (``concerns``), at the counts kept for the attempt's
host or operation (``active``) and, once those are enough, words a span event for the
attempt (``event``) and the finding for the whole process (``describe``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

from .. import attributes as A
from .._durations import PROSE, format_ms
from ..ledger import AIOHTTP, AWSCLI, HTTPX, REQUESTS, URLLIB3, Attempt
from .advice import advice as advice_for
from .advice import words
from .model import (
    BOTOCORE_DEFAULT_TIMEOUT_S,
    CLOSE_CAUSE_WORDS,
    HostStats,
    OperationStats,
    failed,
    on_default_timeouts,
    resent_not_idempotent,
    round_ms,
)

# Thresholds. One extra pool is common and fine (two clients for one service, CLIENT_RECREATED_MIN
# in model.py); one 'Connection: close' can be a server restarting; one lost connection costs
# one setup; a short wait for a pooled connection is the point of a blocking pool.
SERVER_CLOSES_MIN = 2
SERVER_CLOSES_SHARE = 0.5
REPEATED_DNS_MIN = 2
# Findings that measure what another finding for the same server causes (connections opened
# again): the terminal's default view names them in one line under their cause.
CONSEQUENCES = frozenset({A.FINDING_SETUP_SHARE, A.FINDING_REPEATED_DNS})
SETUP_SHARE_MIN = 0.2
SETUP_SHARE_SETUPS_MIN = 2
POOL_WAIT_SHARE_MIN = 0.2
POOL_WAIT_MIN = 2
BODIES_NOT_CLOSED_MIN = 1

S = TypeVar("S", HostStats, OperationStats)


@dataclass(frozen=True)
class Rule(Generic[S]):
    """``concerns``: this attempt is an instance of the problem (read with the counts it was
    just added to); ``active``: the process has
    seen enough of it to say so; ``event``: the line for the attempt's span event;
    ``describe``: the finding's target, summary, advice and evidence."""

    id: str
    severity: str
    title: str
    concerns: Callable[[Attempt, S], bool]
    active: Callable[[S], bool]
    event: Callable[[Attempt, S], str]
    describe: Callable[[S], tuple[str, str, str, dict[str, Any]]]


def _client_recreated(h: HostStats) -> tuple[str, str, str, dict[str, Any]]:
    count = h.opened[A.REASON_NEW_POOL]
    kind = h.recreated
    pools = len(kind.pools) if kind is not None else h.pools_seen
    threads = len(kind.threads) if kind is not None else 1
    requests = kind.requests if kind is not None else h.requests
    which = f"{kind.name} " if kind is not None and kind.name else ""
    setup_ms = h.setup_ms[A.REASON_NEW_POOL]
    summary = (
        f"{pools} {_plural(pools, 'connection pool')} of {which}clients for {h.target} served "
        f"{requests} {_plural(requests, 'request')} from {threads} "
        f"{_plural(threads, 'thread')}: {_made_where(h)}, and each new client starts without "
        f"connections ({count} opened by new pools)."
    )
    advice = advice_for(A.FINDING_CLIENT_RECREATED, h.library, setup=_duration(setup_ms))
    evidence = {
        "connections": count,
        "pools": pools,
        "threads": threads,
        "client": kind.name if kind is not None else "",
        "setup_ms": round_ms(setup_ms),
    }
    return (
        h.target,
        summary,
        advice,
        {**evidence, "requests": requests, "origins": h.origins_list()},
    )


def _made_where(h: HostStats) -> str:
    """Where the pools' client is made, in the program's words: "a new DynamoDB client is
    created on every call at handler.py:12 in handle()"."""
    top = h.top_origin
    if top is None:
        return "a client is being created per call or per invocation"
    origin, service, made = top
    what = {
        AWSCLI: "AWS CLI client",
        REQUESTS: "requests Session",
        URLLIB3: "urllib3 pool",
        HTTPX: "httpx Client",
        AIOHTTP: "aiohttp ClientSession",
    }.get(origin.library, f"{service} client" if service else "client")
    how_often = (
        "on every call" if h.calls and made >= h.calls else f"again and again ({made} times)"
    )
    return f"a new {what} is created {how_often} at {origin.where()}"


def _pool_suggestion(h: HostStats) -> int:
    return max(h.max_concurrency, h.pool_max_size + 1)


def _pool_too_small(h: HostStats) -> tuple[str, str, str, dict[str, Any]]:
    busy, again = h.opened[A.REASON_POOL_BUSY], h.opened[A.REASON_POOL_DISCARDED]
    suggestion = _pool_suggestion(h)
    summary = (
        f"Up to {h.max_concurrency} requests to {h.target} ran at once, but its pool keeps "
        f"{h.pool_max_size} connections: "
    )
    if h.discarded or again:
        summary += (
            f"{h.discarded} connections were discarded when they came back to a full pool, "
            f"and {again} were opened again to replace them."
        )
    else:
        summary += (
            f"{h.waited} requests waited for a connection to come back to the pool (the "
            f"longest {_duration(h.wait_ms_max)})."
        )
    advice = advice_for(A.FINDING_POOL_TOO_SMALL, h.library, suggestion=suggestion)
    evidence = {
        "waited": h.waited,
        "wait_ms_max": round_ms(h.wait_ms_max),
        "max_concurrency": h.max_concurrency,
        "pool_max_size": h.pool_max_size,
        "discarded": h.discarded,
        "opened_pool_busy": busy,
        "opened_pool_discarded": again,
        "suggested_max_pool_connections": suggestion,
        "setup_ms": round_ms(h.setup_ms[A.REASON_POOL_DISCARDED]),
    }
    return h.target, summary, advice, evidence


def _server_closes(h: HostStats) -> tuple[str, str, str, dict[str, Any]]:
    again = h.opened[A.REASON_SERVER_CLOSED]
    how = _causes(h, A.CLOSED_BY_SERVER)
    summary = (
        f"{h.closed_by_server} of {h.requests} responses from {h.target} closed their connection "
        f"({how}), so {again} later requests had to open a new one."
    )
    http10 = h.close_causes[A.CLOSED_HTTP_1_0]
    advice = (
        "The server, or a proxy or load balancer in front of it, ends keep-alive after each "
        "response: check its keep-alive settings (keep-alive off, an HTTP/1.0 hop, a low "
        "maximum of requests per connection). No client setting keeps open a connection that "
        "the server closes."
    )
    if http10:
        advice += (
            " HTTP/1.0 responses without 'Connection: keep-alive' close their connection: "
            "the server or a proxy answers in HTTP/1.0."
        )
    evidence = {
        "closed_by_server": h.closed_by_server,
        "connection_close": h.close_causes[A.CLOSED_CONNECTION_CLOSE],
        "http_1_0": http10,
        "responses": h.requests,
        "opened_server_closed": again,
        "setup_ms": round_ms(h.setup_ms[A.REASON_SERVER_CLOSED]),
    }
    return h.target, summary, advice, evidence


def _idle_dropped(h: HostStats) -> tuple[str, str, str, dict[str, Any]]:
    if h.library == HTTPX:
        return _idle_dropped_httpx(h)
    keepalive = next(iter(h.keepalive)) if len(h.keepalive) == 1 else None
    summary = (
        f"{h.dropped} pooled connections to {h.target} had been closed by the peer while idle "
        f"({_idle_range(h)}; {_causes(h, A.CLOSED_BY_PEER_IDLE)}); "
        f"{words(h.library).finds_dead} and opened {h.opened[A.REASON_STALE]} new ones."
    )
    keepalive_seen = {True: "was on", False: "was off", None: "varied"}[keepalive]
    advice = (
        "Something closes idle connections before the next call comes: the server's idle "
        "timeout, a load balancer, a NAT gateway (AWS NAT gateways drop connections idle for "
        "350 s) or a Lambda freeze between invocations. After long pauses this is expected "
        f"and costs one new connection. {words(h.library).idle_settings} SO_KEEPALIVE "
        f"{keepalive_seen} on these connections."
    )
    evidence = {
        "dropped": h.dropped,
        "idle_ms_min": round_ms(h.idle_ms_min or 0.0),
        "idle_ms_max": round_ms(h.idle_ms_max or 0.0),
        "idle_ms_samples": [round_ms(idle) for idle in h.idle_ms_samples],
        "opened_stale": h.opened[A.REASON_STALE],
        "peer_idle": h.close_causes[A.CLOSED_PEER_IDLE],
        "peer_reset": h.close_causes[A.CLOSED_PEER_RESET],
        "socket_keepalive": keepalive,
    }
    return h.target, summary, advice, evidence


def _idle_dropped_httpx(h: HostStats) -> tuple[str, str, str, dict[str, Any]]:
    # httpx drops a pooled connection itself once keepalive_expiry passed: stale, but not
    # closed by the peer.
    stale = h.opened[A.REASON_STALE]
    expired = max(stale - h.dropped, 0)
    peer = f" ({_idle_range(h)})" if h.dropped else ""
    summary = (
        f"{stale} connections to {h.target} were opened again because pooled ones had gone "
        f"stale: {h.dropped} had been closed by the peer while idle{peer}, and {expired} had "
        "outlived httpx's keepalive_expiry."
    )
    advice = (
        "httpx closes a pooled connection idle for longer than keepalive_expiry (5 s by "
        "default) and drops one the peer closed when it next looks at the pool. A peer closes "
        "idle connections after its own idle timeout (a server, a load balancer, a NAT gateway: "
        "AWS NAT gateways drop connections idle for 350 s). When requests come further apart "
        "than keepalive_expiry and the server keeps connections longer, raise it to a little "
        "below the server's idle timeout: httpx.Limits(keepalive_expiry=...). After longer "
        "pauses a new connection is expected."
    )
    evidence = {
        "dropped": h.dropped,
        "expired": expired,
        "idle_ms_min": round_ms(h.idle_ms_min or 0.0),
        "idle_ms_max": round_ms(h.idle_ms_max or 0.0),
        "idle_ms_samples": [round_ms(idle) for idle in h.idle_ms_samples],
        "opened_stale": stale,
    }
    return h.target, summary, advice, evidence


def _repeated_dns(h: HostStats) -> tuple[str, str, str, dict[str, Any]]:
    summary = (
        f"{h.dns_name} was looked up {h.dns_lookups} times ({_duration(h.dns_ms)} in all, "
        f"slowest {_duration(h.dns_ms_max)}); {h.replaced.dns_lookups} of them for connections "
        f"opened again ({_reasons(h)})."
    )
    advice = (
        f"{words(h.library).dns_cache} Remove what forces the new connections (see the other "
        "findings for this host); where new connections cannot be avoided, a caching resolver "
        "on the machine (systemd-resolved, nscd or dnsmasq) answers repeated lookups locally."
    )
    evidence = {
        "lookups": h.dns_lookups,
        "repeated": h.replaced.dns_lookups,
        "dns_ms": round_ms(h.dns_ms),
        "dns_ms_max": round_ms(h.dns_ms_max),
    }
    return h.target, summary, advice, evidence


def _setup_share(h: HostStats) -> tuple[str, str, str, dict[str, Any]]:
    again = h.replaced
    share = again.setup_ms / h.request_ms if h.request_ms else 0.0
    reasons = {r: n for r, n in sorted(again.reasons.items()) if n}
    summary = (
        f"Opening connections to {h.target} took {_duration(h.setup_ms_all)} of the "
        f"{_duration(h.request_ms)} spent in requests ({h.setup_share:.0%}); the "
        f"{again.setups} opened again took {_duration(again.setup_ms)} ({share:.0%}): "
        + (f"DNS {_duration(again.dns_ms)}, " if again.dns_lookups else "no DNS lookup, ")
        + f"TCP {_duration(again.tcp_ms)}"
        + (f", TLS {_duration(again.tls_ms)}." if h.tls_handshakes else ".")
    )
    advice = (
        "Every connection opened again pays DNS, TCP and TLS before its request is sent. "
        f"Remove the cause, by reason: {_reasons(h)}; the other findings for this host say how."
    )
    if h.opened[A.REASON_CLIENT_CLOSED]:
        advice += (
            " client_closed: the program closed its connections, "
            f"{_causes(h, A.CLOSED_BY_CLIENT)}: read each response to its end before "
            "releasing it (or drain_conn()), instead of closing it early."
        )
    evidence = {
        "setups": again.setups,
        "setup_ms": round_ms(again.setup_ms),
        "request_ms": round_ms(h.request_ms),
        "share": round(share, 4),
        "setup_ms_all": round_ms(h.setup_ms_all),
        "share_all": round(h.setup_share, 4),
        "dns_ms": round_ms(again.dns_ms),
        "tcp_ms": round_ms(again.tcp_ms),
        "tls_ms": round_ms(again.tls_ms),
        "reasons": reasons,
    }
    return h.target, summary, advice, evidence


def _bodies_not_closed(h: HostStats) -> tuple[str, str, str, dict[str, Any]]:
    left = ", ".join(f"{label} (x{count})" for label, count in h.unreturned.most_common())
    summary = (
        f"{h.opened_unreturned} connections to {h.target} were opened while only one request "
        "was in progress: the pooled ones were still checked out by earlier responses that "
        f"were never read to the end or closed. Left out by: {left}."
    )
    advice = (
        "Read or close every response body: botocore's get_object()['Body'] with "
        "body.read() or body.close() (or `with contextlib.closing(body)`); urllib3 "
        "responses made with preload_content=False with read() then release_conn(), or "
        "drain_conn(); requests with stream=True inside `with session.get(...) as r:`. "
        "Until then each connection stays out of the pool, and the pool opens a new one "
        "for the next request."
    )
    evidence = {
        "opened": h.opened_unreturned,
        "left_out_by": dict(h.unreturned),
        "opened_pool_busy": h.opened[A.REASON_POOL_BUSY],
    }
    return h.target, summary, advice, evidence


def _pool_wait(h: HostStats) -> tuple[str, str, str, dict[str, Any]]:
    summary = (
        f"Requests to {h.target} waited {_duration(h.pool_wait_ms)} in all for a pooled "
        f"connection ({h.waited} waits, the longest {_duration(h.wait_ms_max)}): "
        f"{h.pool_wait_share:.0%} of the {_duration(h.request_ms)} spent in requests. Up to "
        f"{h.max_concurrency} {_plural(h.max_concurrency, 'request')} ran at once on "
        f"{h.pool_max_size} pooled {_plural(h.pool_max_size, 'connection')}."
    )
    advice = (
        "The pool blocks (urllib3 PoolManager(block=True), requests "
        "HTTPAdapter(pool_block=True)) and is smaller than the threads sharing it: raise "
        "its size to the number of threads (PoolManager(maxsize=N), "
        "HTTPAdapter(pool_maxsize=N)), or use fewer threads."
    )
    evidence = {
        "pool_wait_ms": round_ms(h.pool_wait_ms),
        "pool_wait_ms_max": round_ms(h.wait_ms_max),
        "waits": h.waited,
        "request_ms": round_ms(h.request_ms),
        "share": round(h.pool_wait_share, 4),
        "pool_max_size": h.pool_max_size,
        "max_concurrency": h.max_concurrency,
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
    advice = advice_for(A.FINDING_RETRY_TIME, o.library)
    evidence = {
        "calls": o.calls,
        "retried_calls": o.retried_calls,
        "extra_attempts": o.extra_attempts,
        "failed_attempt_ms": round_ms(o.failed_ms),
        "backoff_ms": round_ms(o.backoff_ms),
        "lost_ms": round_ms(lost),
        "errors": dict(o.errors),
    }
    return o.label, summary, advice, evidence


def _timeouts(settings: Mapping[str, Any], library: str) -> str:
    """The timeouts left at botocore's default, named as such, and those the program set, in
    the library's own words: "botocore's default read_timeout=60 s (connect_timeout=1 s set)"."""
    defaults = tuple(settings.get(A.AWS_DEFAULT_TIMEOUTS, ()))
    values = {
        "connect_timeout": float(settings.get(A.AWS_CONNECT_TIMEOUT, BOTOCORE_DEFAULT_TIMEOUT_S)),
        "read_timeout": float(settings.get(A.AWS_READ_TIMEOUT, BOTOCORE_DEFAULT_TIMEOUT_S)),
    }
    names = {"connect_timeout": "--cli-connect-timeout", "read_timeout": "--cli-read-timeout"}
    named = {
        key: f"{names[key] if library == AWSCLI else key}={value:g} s"
        for key, value in values.items()
    }
    default = " and ".join(named[key] for key in values if key in defaults)
    chosen = [named[key] for key in values if key not in defaults]
    return f"botocore's default {default}" + (f" ({', '.join(chosen)} set)" if chosen else "")


def _default_timeouts(o: OperationStats) -> tuple[str, str, str, dict[str, Any]]:
    connect = float(o.settings.get(A.AWS_CONNECT_TIMEOUT, BOTOCORE_DEFAULT_TIMEOUT_S))
    read = float(o.settings.get(A.AWS_READ_TIMEOUT, BOTOCORE_DEFAULT_TIMEOUT_S))
    attempts = int(o.settings.get(A.AWS_MAX_ATTEMPTS, 1))
    mode = str(o.settings.get(A.AWS_RETRY_MODE, "unknown"))
    worst = attempts * (connect + read)
    typical = o.ok_ms / o.ok_attempts if o.ok_attempts else None
    usually = f"usually takes {_duration(typical)}" if typical is not None else "has not succeeded"
    summary = (
        f"{o.problems_on_defaults} attempts of {o.label} failed or were retried on "
        f"{_timeouts(o.settings, o.library)} with retries '{mode}' allowing {attempts} attempts: "
        f"a call that {usually} can wait up to {_duration(worst * 1000)} before it fails."
    )
    advice = advice_for(A.FINDING_DEFAULT_TIMEOUTS, o.library)
    evidence = {
        "problem_attempts": o.problems_on_defaults,
        "connect_timeout_s": connect,
        "read_timeout_s": read,
        "default_timeouts": list(o.settings.get(A.AWS_DEFAULT_TIMEOUTS, ())),
        "retry_mode": mode,
        "max_attempts": attempts,
        "worst_case_s": worst,
        "typical_attempt_ms": None if typical is None else round_ms(typical),
    }
    return o.label, summary, advice, evidence


def _not_idempotent(o: OperationStats) -> tuple[str, str, str, dict[str, Any]]:
    errors = ", ".join(f"{error} (x{count})" for error, count in o.resent_unsafe_errors.items())
    summary = (
        f"{o.resent_unsafe_calls} {o.label} calls were sent again ({o.resent_unsafe} retries) "
        f"after {errors}: the earlier request may already have reached the service and run, and "
        f"{o.label} is not safe to repeat, so the caller may have run it twice."
    )
    advice = advice_for(A.FINDING_NOT_IDEMPOTENT, o.library)
    evidence = {
        "operation": o.label,
        "calls": o.resent_unsafe_calls,
        "retries": o.resent_unsafe,
        "errors": dict(o.resent_unsafe_errors),
    }
    return o.label, summary, advice, evidence


def _idle_bound(h: HostStats) -> str:
    """What the idle times say of the timeout in the middle, in words."""
    dropped = h.idle_ms_min or 0.0
    reused = h.reused_idle_ms_max
    if reused is None:
        bound = (
            f"connections idle {_duration(dropped)} or longer were dropped; none was reused "
            "after an idle time"
        )
    elif reused < dropped:
        bound = (
            f"connections idle longer than about {_duration((reused + dropped) / 2)} are "
            f"dropped: idle {_duration(dropped)} or longer were found dropped, idle up to "
            f"{_duration(reused)} were reused"
        )
    else:
        bound = (
            f"drops do not follow idle time alone: idle up to {_duration(reused)} were reused, "
            f"yet some were dropped after {_duration(dropped)}"
        )
    if h.keep_alive_timeout_s is not None:
        bound += f"; the server announces Keep-Alive: timeout={h.keep_alive_timeout_s:g}"
    return bound


def _keepalive_in_effect(h: HostStats, limit_s: float) -> str:
    if h.keepalive == {False}:
        return "SO_KEEPALIVE is off on these sockets: nothing is sent on an idle connection."
    if len(h.keepalive_timers) != 1:
        return "The sockets' keepalive settings vary or are not known."
    [(idle, interval, count)] = h.keepalive_timers
    timers = f"TCP_KEEPIDLE={idle} s, TCP_KEEPINTVL={interval} s, TCP_KEEPCNT={count}"
    if idle >= limit_s:
        return (
            f"SO_KEEPALIVE is on ({timers}), but the first probe goes out after {idle} s idle, "
            "too late to keep these connections alive."
        )
    return (
        f"SO_KEEPALIVE is on ({timers}) and probes start before the bound: a NAT or load "
        "balancer that sees them keeps the connection, but a server that closes idle HTTP "
        "connections itself closes it all the same."
    )


def _idle_timeout(h: HostStats) -> tuple[str, str, str, dict[str, Any]]:
    limit_ms = h.idle_ms_min or 0.0
    if h.keep_alive_timeout_s is not None:
        limit_ms = min(limit_ms, h.keep_alive_timeout_s * 1000)
    reused = h.reused_idle_ms_max
    if reused is not None and reused < limit_ms:
        limit_ms = (reused + limit_ms) / 2
    limit_s = limit_ms / 1000
    summary = (
        f"Something between the client and {h.target} closes idle connections: "
        f"{_idle_bound(h)}. {_keepalive_in_effect(h, limit_s)}"
    )
    # TCP_KEEPIDLE counts whole seconds, from 1.
    suggestion = max(1, int(limit_s * 0.8))
    advice = advice_for(A.FINDING_IDLE_TIMEOUT, h.library, keepidle=suggestion)
    keepalive = next(iter(h.keepalive)) if len(h.keepalive) == 1 else None
    timers = next(iter(h.keepalive_timers)) if len(h.keepalive_timers) == 1 else None
    evidence = {
        "dropped": h.dropped,
        "dropped_idle_ms_min": round_ms(h.idle_ms_min or 0.0),
        "reused_idle_ms_max": None if reused is None else round_ms(reused),
        "keep_alive_timeout_s": h.keep_alive_timeout_s,
        "inferred_timeout_ms": round_ms(limit_ms),
        "socket_keepalive": keepalive,
        "keepalive_idle_s": None if timers is None else timers[0],
        "keepalive_interval_s": None if timers is None else timers[1],
        "keepalive_count": None if timers is None else timers[2],
        "suggested_keepalive_idle_s": suggestion,
    }
    return h.target, summary, advice, evidence


HOST_RULES: tuple[Rule[HostStats], ...] = (
    Rule(
        A.FINDING_CLIENT_RECREATED,
        A.SEVERITY_WARNING,
        "client created again and again",
        concerns=lambda a, h: a.reason == A.REASON_NEW_POOL,
        active=lambda h: h.recreated is not None,
        event=lambda a, h: (
            f"connection opened by a new pool for {h.target} "
            f"({_count(h.recreated.pools if h.recreated else (), 'pool')} so far for "
            f"{_count(h.recreated.threads if h.recreated else (), 'thread')}): "
            + (f"its client is made at {a.pool.origin.where()}; " if a.pool.origin else "")
            + "create the client once and reuse it"
        ),
        describe=_client_recreated,
    ),
    Rule(
        A.FINDING_BODIES_NOT_CLOSED,
        A.SEVERITY_WARNING,
        "response bodies not closed",
        concerns=lambda a, h: bool(a.unreturned),
        active=lambda h: h.opened_unreturned >= BODIES_NOT_CLOSED_MIN,
        event=lambda a, h: (
            f"opened a new connection while this was the only request in progress: "
            f"{_count(a.unreturned, 'connection')} still checked out by earlier responses never "
            f"read or closed ({', '.join(sorted(set(a.unreturned)))})"
        ),
        describe=_bodies_not_closed,
    ),
    Rule(
        A.FINDING_POOL_TOO_SMALL,
        A.SEVERITY_WARNING,
        "connection pool smaller than concurrency",
        concerns=lambda a, h: a.reason in (A.REASON_POOL_BUSY, A.REASON_POOL_DISCARDED) or a.waited,
        active=lambda h: h.discarded > 0 or h.opened[A.REASON_POOL_DISCARDED] > 0 or h.waited > 0,
        event=lambda a, h: (
            f"{_in_use(a)}; up to {h.max_concurrency} requests at once for {h.pool_max_size} "
            f"pooled connections: set {words(h.library).pool_size.format(n=_pool_suggestion(h))}"
        ),
        describe=_pool_too_small,
    ),
    Rule(
        A.FINDING_POOL_WAIT,
        A.SEVERITY_WARNING,
        "requests wait for a pooled connection",
        concerns=lambda a, h: a.waited,
        active=lambda h: (
            h.waited >= POOL_WAIT_MIN and h.pool_wait_ms >= POOL_WAIT_SHARE_MIN * h.request_ms
        ),
        event=lambda a, h: (
            f"waited {_duration(a.wait_ms or 0.0)} for a pooled connection of this "
            f"{_duration(a.duration_ms)} request; {h.pool_wait_share:.0%} of request time "
            f"for {h.target} is waiting"
        ),
        describe=_pool_wait,
    ),
    Rule(
        A.FINDING_SERVER_CLOSES,
        A.SEVERITY_WARNING,
        "server closes connections after each response",
        concerns=lambda a, h: a.closed_by_server,
        active=lambda h: (
            h.closed_by_server >= SERVER_CLOSES_MIN
            and h.closed_by_server >= SERVER_CLOSES_SHARE * h.requests
        ),
        event=lambda a, h: (
            f"the server closed the connection after this response "
            f"({_cause_detail(a.close_cause)}): {h.closed_by_server} of {h.requests} responses "
            f"from {h.target} did"
        ),
        describe=_server_closes,
    ),
    Rule(
        A.FINDING_IDLE_DROPPED,
        A.SEVERITY_INFO,
        "idle connections dropped by the peer",
        concerns=lambda a, h: bool(a.idle_dropped_ms) or a.reason == A.REASON_STALE,
        active=lambda h: h.dropped > 0 or h.opened[A.REASON_STALE] > 0,
        event=lambda a, h: (
            f"the pooled connection had been closed by the peer after "
            f"{_duration(max(a.idle_dropped_ms))} idle: opened a new one"
            if a.idle_dropped_ms
            else "the pooled connection had outlived httpx's keepalive_expiry: opened a new one"
        ),
        describe=_idle_dropped,
    ),
    Rule(
        A.FINDING_IDLE_TIMEOUT,
        A.SEVERITY_INFO,
        "idle timeout between client and server",
        concerns=lambda a, h: bool(a.idle_dropped_ms),
        active=lambda h: h.dropped > 0,
        event=lambda a, h: f"idle timeout in the middle: {_idle_bound(h)}",
        describe=_idle_timeout,
    ),
    Rule(
        A.FINDING_REPEATED_DNS,
        A.SEVERITY_INFO,
        "repeated DNS lookups",
        concerns=lambda a, h: h.lost(a) and a.setup is not None and a.setup.dns_lookups > 0,
        active=lambda h: h.replaced.dns_lookups >= REPEATED_DNS_MIN,
        event=lambda a, h: (
            f"{h.dns_name} looked up again ({_duration(a.setup.dns_ms if a.setup else 0.0)}) for a "
            f"connection opened because of {a.reason}; {words(h.library).dns_event}"
        ),
        describe=_repeated_dns,
    ),
    Rule(
        A.FINDING_SETUP_SHARE,
        A.SEVERITY_WARNING,
        "connection setup is a large share of request time",
        concerns=lambda a, h: h.lost(a) and a.setup is not None and a.setup.ok,
        active=lambda h: (
            h.replaced.setups >= SETUP_SHARE_SETUPS_MIN
            and h.replaced.setup_ms >= SETUP_SHARE_MIN * h.request_ms
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
        concerns=lambda a, o: a.resend > 0,
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
        concerns=lambda a, o: (failed(a) or a.resend > 0) and on_default_timeouts(a),
        active=lambda o: o.problems_on_defaults > 0,
        event=lambda a, o: (
            f"this call failed or was retried on {_timeouts(a.settings, a.pool.library)} with up "
            f"to {a.settings.get(A.AWS_MAX_ATTEMPTS, 1)} attempts"
        ),
        describe=_default_timeouts,
    ),
    Rule(
        A.FINDING_NOT_IDEMPOTENT,
        A.SEVERITY_WARNING,
        "a call that is not idempotent was sent again",
        concerns=lambda a, o: resent_not_idempotent(a),
        active=lambda o: o.resent_unsafe > 0,
        event=lambda a, o: (
            f"attempt {a.resend + 1} of {a.label} sent again after {a.prior_error}: the "
            "earlier request may have run, and this operation is not safe to repeat"
        ),
        describe=_not_idempotent,
    ),
)


def fire(rules: tuple[Rule[Any], ...], attempt: Attempt, stats: Any) -> list[tuple[str, str, str]]:
    """Keep the attempt as an example of each rule it concerns; the events of those active."""
    fired = []
    for rule in rules:
        if not rule.concerns(attempt, stats):
            continue
        if attempt.span_id:
            stats.keep(rule.id, (attempt.call.trace_id, attempt.span_id))
        if rule.active(stats):
            fired.append((rule.id, rule.severity, rule.event(attempt, stats)))
    return fired


def _in_use(a: Attempt) -> str:
    if a.waited and a.reason is None:
        return f"waited {_duration(a.wait_ms or 0.0)} because every pooled connection was in use"
    return f"opened because every pooled connection was in use ({a.reason})"


def _duration(ms: float) -> str:
    return format_ms(ms, PROSE)


def _plural(count: int, noun: str) -> str:
    return noun if count == 1 else noun + "s"


def _count(items: Any, noun: str) -> str:
    count = len(items)
    return f"{count} {_plural(count, noun)}"


def _cause_detail(cause: str | None) -> str:
    """The part in brackets of a close cause's words ('Connection: close')."""
    words = CLOSE_CAUSE_WORDS.get(cause or "", "")
    return words[words.find("(") + 1 : words.rfind(")")] if "(" in words else (cause or "?")


def _causes(h: HostStats, causes: tuple[str, ...]) -> str:
    """How many connections ended by each of these causes, in words."""
    counted = [(cause, h.close_causes[cause]) for cause in causes if h.close_causes[cause]]
    if not counted:
        return "how is not known"
    return ", ".join(f"{count} {CLOSE_CAUSE_WORDS[cause]}" for cause, count in counted)


def _reasons(h: HostStats) -> str:
    return ", ".join(f"{r} ({n})" for r, n in sorted(h.replaced.reasons.items()) if n)


def _idle_range(h: HostStats) -> str:
    low, high = h.idle_ms_min or 0.0, h.idle_ms_max or 0.0
    if abs(high - low) < 0.5:
        return f"idle {_duration(high)}"
    return f"idle {_duration(low)} to {_duration(high)}"
