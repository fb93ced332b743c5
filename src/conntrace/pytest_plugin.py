"""pytest plugin: the ``conntrace_recorder`` fixture records connection behaviour in one test.

Registered as the ``conntrace`` pytest11 entry point, so every pytest run of a project with
conntrace installed loads this module: it imports conntrace's light package and nothing
more (no OpenTelemetry SDK, no botocore) until a test asks for the fixture.

The recorder reads the connection ledger for the duration of one test, with a diagnosis
of that test alone. With conntrace off, the fixture switches it on for the test (without
spans); with conntrace already on (``conntrace-run pytest``), it listens alongside the run.
Either way its reasons are the test's own: the first pool of the test that opens a
connection to a server opens it as ``first``, any other pool's first one is ``new_pool``,
whatever pools earlier tests (or session fixtures) made for that server.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, TypeVar
from urllib.parse import urlsplit

import pytest

from . import attributes as A
from .ledger import BaseSink, Server

if TYPE_CHECKING:
    from .findings import Diagnosis, Finding
    from .ledger import Attempt, Pool, Setup
    from .ledger import Call as LedgerCall

# What each reason for a new connection says to do (the README's table).
_HINTS = {
    A.REASON_FIRST: "the first connection of a pool: expected once per client and host",
    A.REASON_NEW_POOL: "a client (and its pool) was created again for a host that already had "
    "one: create the client once and reuse it",
    A.REASON_POOL_BUSY: "every pooled connection was in use: more threads than connections at once",
    A.REASON_POOL_DISCARDED: "an earlier connection was thrown away because the pool was full: "
    "raise max_pool_connections to the number of threads",
    A.REASON_SERVER_CLOSED: "the server closed the previous connection after its response "
    "('Connection: close', or HTTP/1.0 without keep-alive)",
    A.REASON_STALE: "the idle pooled connection had been closed by the peer",
    A.REASON_CLIENT_CLOSED: "the program closed the previous connection (a response released "
    "with its body unread, or closed early): read each response to its end",
    A.REASON_ERROR: "the previous connection broke on an error",
}
# A new pool's first connection: which of the two is decided per test (see the docstring).
_POOL_REASONS = (A.REASON_FIRST, A.REASON_NEW_POOL)

F = TypeVar("F", bound=Callable[..., Any])


def _known_keywords(method: F) -> F:
    """Reject a mistyped keyword with the valid ones listed (Python's own TypeError names
    only the wrong one)."""
    valid = [name for name in inspect.signature(method).parameters if name != "self"]

    @functools.wraps(method)
    def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            raise TypeError(
                f"conntrace: {method.__name__}() has no argument {', '.join(unknown)}; "
                f"valid: {', '.join(valid)}"
            )
        return method(self, *args, **kwargs)

    return checked  # type: ignore[return-value]


@dataclass(frozen=True)
class Call:
    """One API call: ``operation`` is ``Service.Operation``; ``attempts`` is 0 under Stubber."""

    operation: str
    attempts: int
    error: str | None


@dataclass(frozen=True)
class Request:
    """One HTTP attempt and the connection that carried it."""

    host: str
    port: int
    method: str
    status: int | None
    reused: bool
    reason: str | None
    connection_id: int | None

    def describe(self) -> str:
        how = "reused" if self.reused else f"new ({self.reason or 'no connection'})"
        connection = f"connection #{self.connection_id}" if self.connection_id else "no connection"
        answer = self.status or "no answer"
        return f"{self.method} {self.host}:{self.port} -> {answer}, {how}, {connection}"


@dataclass(frozen=True)
class Connection:
    """One TCP connection opened, and why."""

    host: str
    port: int
    reason: str
    id: int


class _Server:
    """Which requests a ``server`` argument means: ``host``, ``host:port`` or a URL."""

    def __init__(self, server: str | None) -> None:
        self.text = server
        self.host: str | None = None
        self.port: int | None = None
        if server is None:
            return
        if "://" in server:
            url = urlsplit(server)
            self.host = url.hostname
            self.port = url.port or (443 if url.scheme == "https" else 80)
            return
        host, colon, port = server.rpartition(":")
        if colon and port.isdigit() and host:
            self.host, self.port = host.strip("[]"), int(port)
        else:
            self.host = server

    def __call__(self, item: Request | Connection) -> bool:
        return (self.host is None or item.host == self.host) and (
            self.port is None or item.port == self.port
        )

    def __str__(self) -> str:
        if self.host is None:
            return "in this test"
        return f"to {self.host}" + (f":{self.port}" if self.port is not None else "")


class Recorder(BaseSink):
    """What conntrace saw during one test, and assertions with readable failure messages.

    ``server`` arguments take a host, ``host:port`` or an endpoint URL; None means all.
    It reads the ledger while the test runs.
    """

    def __init__(self, diagnosis: Diagnosis) -> None:
        self.diagnosis = diagnosis
        self.calls: list[Call] = []
        self.requests: list[Request] = []
        self.connections: list[Connection] = []
        # Per server, the pool that opened this test's first connection to it.
        self._first_pools: dict[Server, Pool] = {}
        self._lock = threading.Lock()

    def _reason(self, reason: str | None, pool: Pool | None) -> str | None:
        """The reason as this test sees it (call with the lock held)."""
        if reason not in _POOL_REASONS or pool is None:
            return reason
        first = self._first_pools.setdefault(pool.server, pool)
        return A.REASON_FIRST if first is pool else A.REASON_NEW_POOL

    # --- read from the ledger ------------------------------------------------------------

    def attempt_ended(self, attempt: Attempt) -> None:
        host, port = attempt.server
        connection = attempt.connection
        with self._lock:
            request = Request(
                host,
                port,
                attempt.method,
                attempt.status,
                attempt.reused,
                self._reason(attempt.reason, attempt.pool),
                connection.id if connection is not None and attempt.request_number else None,
            )
            self.requests.append(request)

    def connection_opened(self, setup: Setup, pool: Pool | None) -> None:
        if setup.connection_id is None:
            return
        with self._lock:
            reason = self._reason(setup.reason, pool) or setup.reason
            self.connections.append(Connection(setup.host, setup.port, reason, setup.connection_id))

    def call_ended(self, call: LedgerCall) -> None:
        if not call.is_api:
            return
        error = type(call.error).__qualname__ if call.error is not None else None
        with self._lock:
            self.calls.append(Call(call.label, len(call.attempts), error))

    # --- reading -------------------------------------------------------------------------------

    @property
    def findings(self) -> list[Finding]:
        """What conntrace's rules found in this test (see the README's findings table)."""
        return self.diagnosis.findings()

    def opened(self, server: str | None = None) -> dict[str, int]:
        """Connections opened, by reason."""
        matches = _Server(server)
        return dict(Counter(c.reason for c in self.connections if matches(c)))

    def reused(self, server: str | None = None) -> int:
        """Requests that went out on a connection that had carried one before."""
        matches = _Server(server)
        return sum(1 for request in self.requests if matches(request) and request.reused)

    def clear(self) -> None:
        """Forget what was recorded so far (after a warm-up, say); findings are kept."""
        with self._lock:
            self.calls.clear()
            self.requests.clear()
            self.connections.clear()

    # --- asserting ----------------------------------------------------------------------------

    @_known_keywords
    def assert_connections(
        self,
        server: str | None = None,
        *,
        opened: int | None = None,
        reasons: Mapping[str, int] | None = None,
    ) -> None:
        """Exactly ``opened`` connections were opened (to ``server``), for these ``reasons``."""
        __tracebackhide__ = True
        unknown = sorted(set(reasons or ()) - set(A.REASONS))
        if unknown:
            raise ValueError(
                f"conntrace: unknown reason {', '.join(map(repr, unknown))} in reasons=; "
                f"valid reasons: {', '.join(A.REASONS)}"
            )
        matches = _Server(server)
        seen = self.opened(server)
        total = sum(seen.values())
        problems = []
        if opened is not None and total != opened:
            problems.append(f"expected {_n(opened, 'connection')} opened {matches}, saw {total}")
        if reasons is not None and seen != {r: n for r, n in reasons.items() if n}:
            problems.append(
                f"expected connections opened {matches} for {_reasons(reasons)}, "
                f"saw {_reasons(seen) or 'none'}"
            )
        if problems:
            raise AssertionError(self._explain(problems, matches, seen))

    @_known_keywords
    def assert_reused(
        self, server: str | None = None, *, count: int | None = None, at_least: int | None = None
    ) -> None:
        """``count`` requests (or ``at_least`` that many; by default one) reused a connection."""
        __tracebackhide__ = True
        matches = _Server(server)
        reused = self.reused(server)
        requests = sum(1 for request in self.requests if matches(request))
        if count is not None and reused != count:
            wanted = f"{_n(count, 'request')}"
        elif count is None and reused < (at_least if at_least is not None else 1):
            wanted = f"at least {_n(at_least if at_least is not None else 1, 'request')}"
        else:
            return
        problem = f"expected {wanted} {matches} to reuse a connection, saw {reused} of {requests}"
        raise AssertionError(self._explain([problem], matches, self.opened(server)))

    @_known_keywords
    def assert_calls(
        self, operation: str | None = None, *, count: int | None = None, attempts: int | None = None
    ) -> None:
        """``count`` API calls (``Service.Operation`` or ``Operation``) were made, with
        ``attempts`` HTTP attempts in all (0 when Stubber answered them)."""
        __tracebackhide__ = True
        calls = [call for call in self.calls if _is_operation(call.operation, operation)]
        made = sum(call.attempts for call in calls)
        which = operation or "API"
        problems = []
        if count is not None and len(calls) != count:
            problems.append(f"expected {_n(count, f'{which} call')}, saw {len(calls)}")
        if attempts is not None and made != attempts:
            problems.append(
                f"expected {_n(attempts, 'HTTP attempt')} for {which} calls, saw {made}"
            )
        if problems:
            lines = [f"conntrace: {problem}" for problem in problems]
            lines.append("  calls:" if self.calls else "  calls: none")
            lines += [
                f"    {call.operation}: {_n(call.attempts, 'attempt')}"
                + (f", failed with {call.error}" if call.error else "")
                for call in self.calls
            ]
            raise AssertionError("\n".join(lines))

    def assert_no_findings(self) -> None:
        """conntrace's rules found nothing to change in this test."""
        __tracebackhide__ = True
        found = self.findings
        if found:
            lines = [f"conntrace: expected no findings, saw {len(found)}:"]
            lines += ["  " + finding.render().replace("\n", "\n  ") for finding in found]
            raise AssertionError("\n".join(lines))

    def _explain(self, problems: list[str], matches: _Server, seen: Mapping[str, int]) -> str:
        lines = [f"conntrace: {problem}" for problem in problems]
        connections = [c for c in self.connections if matches(c)]
        lines.append("  connections opened:" if connections else "  connections opened: none")
        lines += [f"    #{c.id} {c.reason:<15}{c.host}:{c.port}" for c in connections]
        requests = [r for r in self.requests if matches(r)]
        lines.append("  requests:" if requests else "  requests: none")
        lines += [f"    {number}. {r.describe()}" for number, r in enumerate(requests, 1)]
        lines += [f"  {reason}: {_HINTS[reason]}" for reason in seen if reason in _HINTS]
        return "\n".join(lines)


def _is_operation(name: str, wanted: str | None) -> bool:
    return wanted is None or name == wanted or name.rpartition(".")[2] == wanted


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _reasons(reasons: Mapping[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()) if count)


def _start() -> tuple[Recorder, Callable[[], None]]:
    import conntrace
    from conntrace import findings, ledger

    # A diagnosis of this test alone: the run's own one (under conntrace-run) annotates.
    diagnosis = findings.Diagnosis(annotate=False)
    recorder = Recorder(diagnosis)
    was_on = conntrace.is_instrumented()
    if not was_on:
        from opentelemetry.trace import NoOpTracerProvider

        conntrace.instrument(tracer_provider=NoOpTracerProvider())
    ledger.add_sink(diagnosis)
    ledger.add_sink(recorder)

    def stop() -> None:
        ledger.remove_sink(recorder)
        diagnosis.close()
        if not was_on:
            conntrace.uninstrument()

    return recorder, stop


@pytest.fixture
def conntrace_recorder() -> Iterator[Recorder]:
    """Records the API calls, HTTP requests and connections of this test."""
    recorder, stop = _start()
    try:
        yield recorder
    finally:
        stop()
