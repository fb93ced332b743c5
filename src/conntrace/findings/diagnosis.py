"""``Diagnosis``: the ledger's reader that counts per host and per call label, and finds.

It sees every fact as it happens, whatever the trace sampler keeps: pools created,
connections checked out (the true peak per pool), returned or discarded, attempts and
calls ended. Every rule is decided when an attempt ends, while its call is still in
progress: a finding that concerns the attempt becomes a ``conntrace.finding`` event on the
call's span (or on the attempt's, for a call with no span of its own).

The same counts give ``Diagnosis.findings()``, ``hosts()`` and ``totals()``: the end-of-run
summary, the JSON report and the pytest recorder are made from them. Each rule fires only
on what healthy traffic never shows (a reused client with enough pool slots opens one
connection per concurrent request and keeps it).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from .. import attributes as A
from .. import ledger
from .._context import current_attempt
from ..ledger import DISCARDED, Attempt, BaseSink, Call, Connection, Event, Pool, Server
from .model import Finding, HostStats, OperationStats
from .rules import HOST_RULES, OPERATION_RULES, Rule, fire

if TYPE_CHECKING:
    from ..metrics import ConnectionMetrics

_SEVERITY_ORDER = {A.SEVERITY_WARNING: 0, A.SEVERITY_INFO: 1}
_CLOSED_BY_POOL = (A.CLOSED_POOL_CLOSED, A.CLOSED_POOL_FULL)


class Diagnosis(BaseSink):
    """Counts and findings of the ledger's facts; see the module's docstring.

    ``annotate=False`` keeps the findings to itself (no span events), for a second
    diagnosis of part of a run, as the pytest plugin keeps one per test.
    """

    def __init__(self, annotate: bool = True) -> None:
        self.metrics: ConnectionMetrics | None = None
        self.annotate = annotate
        self.closed = False
        self.reset()

    def reset(self) -> None:
        """Forget everything seen (a forked child starts afresh)."""
        self._lock = threading.Lock()
        self._hosts: dict[Server, HostStats] = {}
        self._operations: dict[str, OperationStats] = {}
        self._api_calls = 0
        self._calls_without_request = 0
        # When the first request started and the last one ended: the requests' wall time.
        self._first_ns = 0
        self._last_ns = 0

    def close(self) -> None:
        """Stop reading the ledger and recording metrics; what was seen stays readable."""
        self.closed = True
        ledger.remove_sink(self)
        if self.metrics is not None:
            self.metrics.close()

    # --- the ledger's facts ---------------------------------------------------------------

    def pool_created(self, pool: Pool) -> None:
        with self._lock:
            self._host(pool.server).add_pool(pool)

    def checked_out(self, pool: Pool) -> None:
        stats = self._hosts.get(pool.server)
        if stats is None or pool.peak > stats.max_concurrency:
            with self._lock:
                stats = self._host(pool.server)
                stats.max_concurrency = max(stats.max_concurrency, pool.peak)
                stats.pool_max_size = max(stats.pool_max_size, pool.max_size)

    def returned(self, pool: Pool, connection: Any, how: str) -> None:
        if how != DISCARDED:
            return
        with self._lock:
            stats = self._host(pool.server)
            stats.discarded += 1
            attempt = current_attempt.get()
            if attempt is not None and attempt.span_id:
                stats.keep(A.FINDING_POOL_TOO_SMALL, (attempt.call.trace_id, attempt.span_id))

    def connection_closed(self, connection: Connection, closed_ns: int) -> None:
        # A pool that closes or discards a connection never reconnects it: no later attempt
        # says so, this close does.
        pool = connection.pool
        if pool is None or connection.close_cause not in _CLOSED_BY_POOL:
            return
        with self._lock:
            self._host(pool.server).close_causes[connection.close_cause] += 1

    def attempt_ended(self, attempt: Attempt) -> None:
        with self._lock:
            stats = self._host(attempt.server)
            stats.add(attempt)
            if not self._first_ns or attempt.start_ns < self._first_ns:
                self._first_ns = attempt.start_ns
            self._last_ns = max(self._last_ns, attempt.end_ns)
            operation = self._operation(attempt.label)
            operation.add(attempt)
            fired = fire(HOST_RULES, attempt, stats) + fire(OPERATION_RULES, attempt, operation)
        if not fired or not self.annotate:
            return
        call = attempt.call
        # The nearest open ancestor: the call's span when conntrace makes it, else the span
        # current now (OpenTelemetry's botocore span, the program's own), else the attempt's.
        current = None if call.own_span else trace.get_current_span()
        for finding_id, severity, message in fired:
            attributes = {
                A.FINDING_ID: finding_id,
                A.FINDING_SEVERITY: severity,
                A.FINDING_MESSAGE: message,
            }
            if current is not None and current.is_recording():
                current.add_event(A.EVENT_FINDING, attributes)
            else:
                (call.events if call.own_span else attempt.events).append(
                    Event(A.EVENT_FINDING, attributes)
                )

    def call_ended(self, call: Call) -> None:
        first = call.attempts[0] if call.attempts else None
        with self._lock:
            if call.is_api:
                self._api_calls += 1
            if first is None:
                self._calls_without_request += 1
            else:
                self._host(first.server).calls += 1

    # --- what was found ----------------------------------------------------------------------

    def findings(self) -> list[Finding]:
        """Every rule that fired in this process so far: by target, warnings first."""
        with ledger.facts_wait(), self._lock:
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

    def host_stats(self) -> list[HostStats]:
        """Per server, in the order first seen: the one per-host model every view reads."""
        with ledger.facts_wait(), self._lock:
            return [stats for stats in self._hosts.values() if stats.requests or stats.discarded]

    def hosts(self) -> list[dict[str, Any]]:
        """Per server address: requests, reuse, connections opened and why, what they cost."""
        return [stats.to_dict() for stats in sorted(self.host_stats(), key=lambda h: h.target)]

    @property
    def calls_without_request(self) -> int:
        """API calls answered without an HTTP request (botocore's Stubber, a failure before
        sending)."""
        return self._calls_without_request

    @property
    def wall_ms(self) -> float:
        """From the start of the first request to the end of the last, on the wall clock."""
        return max(self._last_ns - self._first_ns, 0) / 1e6

    @property
    def peak_in_flight(self) -> int:
        """The most requests in flight at once in this process, across every host (the
        ledger counts connections checked out, exactly)."""
        return ledger.peak_in_flight

    def totals(self) -> dict[str, Any]:
        with ledger.facts_wait(), self._lock:
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
                "peak_in_flight": self.peak_in_flight,
            }

    def _finding(self, rule: Rule[Any], stats: HostStats | OperationStats) -> Finding:
        target, summary, advice, evidence = rule.describe(stats)
        spans = stats.refs(rule.id)
        return Finding(rule.id, rule.severity, rule.title, target, summary, advice, evidence, spans)

    def _host(self, server: Server) -> HostStats:
        stats = self._hosts.get(server)
        if stats is None:
            stats = self._hosts[server] = HostStats(*server)
        return stats

    def _operation(self, label: str) -> OperationStats:
        stats = self._operations.get(label)
        if stats is None:
            stats = self._operations[label] = OperationStats(label)
        return stats
