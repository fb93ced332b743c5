"""OpenTelemetry metrics of connections, fed by ``findings.Diagnosis`` from conntrace's spans.

Names, units and attributes follow the semantic conventions and .NET's System.Net metrics
where those exist (``http.client.open_connections``, ``http.client.connection.duration``,
``http.client.request.time_in_queue``, ``dns.lookup.duration``). TCP connect and TLS
handshake durations and the counts of why connections open have no convention: they live
under ``conntrace.``. Durations are in seconds, as the conventions ask.

Open connections are read from the pool layer's live connection states when the metric
reader collects; connection durations come from the pool layer's close observers.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation

from . import _runtime
from . import attributes as A

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

_OpenKey = tuple[str, int, str, str]


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


class ConnectionMetrics:
    """The instruments, and what records into them; ``close`` stops every recording."""

    def __init__(self, meter: Meter) -> None:
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
        self._opened = meter.create_counter(
            A.METRIC_CONNECTIONS_OPENED,
            unit="{connection}",
            description="TCP connections opened, by why they were opened.",
        )
        self._requests = meter.create_counter(
            A.METRIC_REQUESTS,
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
        _runtime.close_observers.append(self._connection_closed)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(ValueError):
            _runtime.close_observers.remove(self._connection_closed)

    # --- recorded from spans ---------------------------------------------------------------

    def dns_lookup(self, name: str, seconds: float, error_type: str | None) -> None:
        self._dns.record(seconds, _with_error({A.DNS_QUESTION_NAME: name}, error_type))

    def tcp_connect(self, address: str, port: int, seconds: float, error_type: str | None) -> None:
        attributes = {A.SERVER_ADDRESS: address, A.SERVER_PORT: port}
        self._connect.record(seconds, _with_error(attributes, error_type))

    def tls_handshake(
        self, address: str, port: int, seconds: float, version: str | None, error_type: str | None
    ) -> None:
        attributes: dict[str, Any] = {A.SERVER_ADDRESS: address, A.SERVER_PORT: port}
        if version:
            attributes[A.TLS_PROTOCOL_VERSION] = version
        self._tls.record(seconds, _with_error(attributes, error_type))

    def connection_opened(self, address: str, port: int, reason: str) -> None:
        self._opened.add(
            1, {A.SERVER_ADDRESS: address, A.SERVER_PORT: port, A.CONNECTION_REASON: reason}
        )

    def request(
        self, address: str, port: int, scheme: str, method: str, reused: bool, wait_s: float | None
    ) -> None:
        where: dict[str, Any] = {A.SERVER_ADDRESS: address, A.SERVER_PORT: port}
        self._requests.add(1, {**where, A.CONNECTION_REUSED: reused})
        if wait_s is not None:
            self._queue.record(
                wait_s, {**where, A.URL_SCHEME: scheme, A.HTTP_REQUEST_METHOD: method}
            )

    # --- read from the pool layer -----------------------------------------------------------

    def _connection_closed(self, state: Any) -> None:
        pool = state.pool
        if self._closed or pool is None or state.id is None or state.closed_at is None:
            return
        self._duration.record(max(state.closed_at - state.opened_at, 0.0), _pool_attributes(pool))

    def _observe_open(self, options: CallbackOptions) -> Iterable[Observation]:
        if self._closed:
            return []
        # Imported here, not at start-up: the pool layer loads with urllib3 (and http.client).
        from .layers.pool import open_connections

        counts: Counter[_OpenKey] = Counter()
        for state in open_connections():
            pool = state.pool
            if pool is None:
                continue
            usage = A.CONNECTION_STATE_ACTIVE if state.checked_out else A.CONNECTION_STATE_IDLE
            counts[(pool.host, pool.server_port, pool.scheme, usage)] += 1
        with self._lock:
            self._open_keys.update(counts)
            keys = sorted(self._open_keys)
        return [
            Observation(
                counts.get(key, 0),
                {
                    A.SERVER_ADDRESS: key[0],
                    A.SERVER_PORT: key[1],
                    A.URL_SCHEME: key[2],
                    A.HTTP_CONNECTION_STATE: key[3],
                },
            )
            for key in keys
        ]


def _pool_attributes(pool: Any) -> dict[str, Any]:
    return {
        A.SERVER_ADDRESS: pool.host,
        A.SERVER_PORT: pool.server_port,
        A.URL_SCHEME: pool.scheme,
    }
