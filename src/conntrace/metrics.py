"""OpenTelemetry metrics of connections, read from the connection ledger.

Names, units and attributes follow the semantic conventions and .NET's System.Net metrics
where those exist (``http.client.open_connections``, ``http.client.connection.duration``,
``http.client.request.time_in_queue``, ``dns.lookup.duration``). TCP connect and TLS
handshake durations and the counts of why connections open have no convention: they live
under ``conntrace.``. Durations are in seconds, as the conventions ask.

Open connections are read from the pool layer's live connection records when the metric
reader collects; connection durations come from the ledger's connection-closed facts.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation

from . import attributes as A
from . import ledger
from .ledger import DNS, TCP, TLS, Attempt, BaseSink, Connection, Pool, Setup

if TYPE_CHECKING:
    from .findings import Diagnosis

# The conventions' advice for HTTP durations, with finer steps below 5 ms, where DNS, TCP
# and TLS on a nearby network fall.
_SETUP_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
)
_SETUP_BUCKETS += (1.0, 2.5, 5.0, 7.5, 10.0)
# .NET's advice for http.client.connection.duration: connections live seconds to minutes.
_CONNECTION_BUCKETS: tuple[float, ...] = (
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)
_CONNECTION_BUCKETS += (300.0,)

# Server address and port, scheme, state, and the proxy's address and port ("", 0: none).
_OpenKey = tuple[str, int, str, str, str, int]


def _histogram(meter: Meter, name: str, description: str, buckets: Sequence[float]) -> Histogram:
    try:
        return meter.create_histogram(
            name, unit="s", description=description, explicit_bucket_boundaries_advisory=buckets
        )
    except TypeError:
        # opentelemetry-api before 1.30 takes no bucket advice: the SDK's defaults apply.
        return meter.create_histogram(name, unit="s", description=description)


def _with_error(attributes: dict[str, Any], error_type: str | None) -> dict[str, Any]:
    if error_type:
        attributes[A.ERROR_TYPE] = error_type
    return attributes


class ConnectionMetrics(BaseSink):
    """The instruments, and what records into them; ``close`` stops every recording.

    Counts (requests, connections opened) are read from the diagnosis's per-host model when
    the metric reader collects, so a request costs the metrics nothing; durations are
    recorded from the ledger as connections open and close.
    """

    def __init__(self, meter: Meter, diagnosis: Diagnosis) -> None:
        self._diagnosis = diagnosis
        self._dns = _histogram(
            meter, A.METRIC_DNS_DURATION, "Time taken to perform a DNS lookup.", _SETUP_BUCKETS
        )
        self._connect = _histogram(
            meter, A.METRIC_CONNECT_DURATION, "Time taken to connect a TCP socket.", _SETUP_BUCKETS
        )
        self._tls = _histogram(
            meter, A.METRIC_TLS_DURATION, "Time taken by a TLS client handshake.", _SETUP_BUCKETS
        )
        self._queue = _histogram(
            meter,
            A.METRIC_TIME_IN_QUEUE,
            "Time a request waited for a connection from the pool.",
            _SETUP_BUCKETS,
        )
        self._duration = _histogram(
            meter,
            A.METRIC_CONNECTION_DURATION,
            "The duration of successfully established outbound HTTP connections.",
            _CONNECTION_BUCKETS,
        )
        meter.create_observable_counter(
            A.METRIC_CONNECTIONS_OPENED,
            callbacks=[self._observe_opened],
            unit="{connection}",
            description="TCP connections opened, by why they were opened.",
        )
        meter.create_observable_counter(
            A.METRIC_REQUESTS,
            callbacks=[self._observe_requests],
            unit="{request}",
            description="HTTP requests, by whether they reused a connection.",
        )
        meter.create_observable_up_down_counter(
            A.METRIC_OPEN_CONNECTIONS,
            callbacks=[self._observe_open],
            unit="{connection}",
            description="Outbound HTTP connections that are currently active or idle.",
        )
        self._lock = threading.Lock()
        # Every series reported once is reported again (as 0 when empty), so that a host's
        # connections visibly drop to none instead of vanishing.
        self._open_keys: set[_OpenKey] = set()
        self._closed = False

    def close(self) -> None:
        self._closed = True
        ledger.remove_sink(self)

    # --- recorded from the ledger -------------------------------------------------------------

    def attempt_ended(self, attempt: Attempt) -> None:
        if attempt.wait_ms is not None and not self._closed:
            host, port = attempt.server
            self._queue.record(
                attempt.wait_ms / 1000.0,
                A.with_proxy(
                    attempt.proxy,
                    {
                        A.SERVER_ADDRESS: host,
                        A.SERVER_PORT: port,
                        A.URL_SCHEME: attempt.pool.scheme,
                        A.HTTP_REQUEST_METHOD: attempt.method,
                    },
                ),
            )

    def connection_opened(self, setup: Setup, pool: Pool | None) -> None:
        if self._closed:
            return
        where = A.with_proxy(setup.proxy, {A.SERVER_ADDRESS: setup.host, A.SERVER_PORT: setup.port})
        for step in setup.steps:
            error = type(step.error).__qualname__ if step.error is not None else None
            seconds = step.ms / 1000.0
            if step.name == DNS:
                name = str(step.details.get(A.DNS_QUESTION_NAME, setup.host))
                self._dns.record(seconds, _with_error({A.DNS_QUESTION_NAME: name}, error))
            elif step.name == TCP:
                self._connect.record(seconds, _with_error(dict(where), error))
            elif step.name == TLS:
                attributes = dict(where)
                version = step.details.get(A.TLS_PROTOCOL_VERSION)
                if version:
                    attributes[A.TLS_PROTOCOL_VERSION] = version
                self._tls.record(seconds, _with_error(attributes, error))

    def connection_closed(self, connection: Connection, closed_ns: int) -> None:
        pool = connection.pool
        if self._closed or pool is None or connection.id is None or not connection.setup_seen:
            # Not set up under conntrace: when it opened is unknown.
            return
        seconds = max(closed_ns - connection.opened_ns, 0) / 1e9
        self._duration.record(seconds, _pool_attributes(pool))

    # --- read when collected -------------------------------------------------------------------

    def _observe_requests(self, options: CallbackOptions) -> Iterable[Observation]:
        observations = []
        for host in self._diagnosis.host_stats():
            where = A.with_proxy(
                host.proxy, {A.SERVER_ADDRESS: host.host, A.SERVER_PORT: host.port}
            )
            for reused, count in ((True, host.reused), (False, host.requests - host.reused)):
                if count:
                    observations.append(Observation(count, {**where, A.CONNECTION_REUSED: reused}))
        return observations

    def _observe_opened(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(
                count,
                A.with_proxy(
                    host.proxy,
                    {
                        A.SERVER_ADDRESS: host.host,
                        A.SERVER_PORT: host.port,
                        A.CONNECTION_REASON: reason,
                    },
                ),
            )
            for host in self._diagnosis.host_stats()
            for reason, count in host.opened.items()
            if count
        ]

    def _observe_open(self, options: CallbackOptions) -> Iterable[Observation]:
        if self._closed:
            return []
        counts: Counter[_OpenKey] = Counter()
        for state in ledger.open_connections():
            pool = state.pool
            if pool is None:
                continue
            usage = A.CONNECTION_STATE_ACTIVE if state.checked_out else A.CONNECTION_STATE_IDLE
            proxy = pool.proxy or ("", 0)
            counts[(pool.host, pool.port, pool.scheme, usage, *proxy)] += 1
        with self._lock:
            self._open_keys.update(counts)
            keys = sorted(self._open_keys)
        return [
            Observation(
                counts.get(key, 0),
                A.with_proxy(
                    (key[4], key[5]) if key[4] else None,
                    {
                        A.SERVER_ADDRESS: key[0],
                        A.SERVER_PORT: key[1],
                        A.URL_SCHEME: key[2],
                        A.HTTP_CONNECTION_STATE: key[3],
                    },
                ),
            )
            for key in keys
        ]


def _pool_attributes(pool: Pool) -> dict[str, Any]:
    return A.with_proxy(
        pool.proxy,
        {A.SERVER_ADDRESS: pool.host, A.SERVER_PORT: pool.port, A.URL_SCHEME: pool.scheme},
    )
