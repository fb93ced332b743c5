"""Metrics, read from the SDK's in-memory reader: name, unit, attributes and value."""

from __future__ import annotations

import ssl
import threading
from typing import Any

import pytest
import urllib3

from conntrace import attributes as A
from conntrace import ledger

from ..conftest import dynamodb
from ..servers import Request, Response, free_port, wait_until
from .conftest import Diagnosed


def only(diagnosed: Diagnosed, name: str, **match: Any) -> tuple[str, Any]:
    """The unit and the one point of ``name`` whose attributes include ``match``."""
    wanted = {key.replace("__", "."): value for key, value in match.items()}
    points = [
        (unit, point)
        for unit, attributes, point in diagnosed.points(name)
        if all(attributes.get(key) == value for key, value in wanted.items())
    ]
    assert len(points) == 1, diagnosed.points(name)
    return points[0]


def test_requests_connections_and_setup_durations(diagnosed: Diagnosed, server):
    local = server(host_name="localhost")
    client = dynamodb(local.url)
    for _ in range(3):
        client.list_tables()
    where = {"server.address": "localhost", "server.port": local.port}

    requests = {
        attributes[A.CONNECTION_REUSED]: (unit, point.value, attributes)
        for unit, attributes, point in diagnosed.points(A.METRIC_REQUESTS)
    }
    assert requests == {
        False: ("{request}", 1, {**where, A.CONNECTION_REUSED: False}),
        True: ("{request}", 2, {**where, A.CONNECTION_REUSED: True}),
    }
    [(unit, attributes, opened)] = diagnosed.points(A.METRIC_CONNECTIONS_OPENED)
    assert (unit, attributes, opened.value) == (
        "{connection}",
        {**where, A.CONNECTION_REASON: A.REASON_FIRST},
        1,
    )
    [(unit, attributes, dns)] = diagnosed.points(A.METRIC_DNS_DURATION)
    assert (unit, attributes, dns.count) == ("s", {A.DNS_QUESTION_NAME: "localhost"}, 1)
    assert 0 < dns.sum < 5
    assert dns.explicit_bounds[:3] == (0.0005, 0.001, 0.0025)
    [(unit, attributes, tcp)] = diagnosed.points(A.METRIC_CONNECT_DURATION)
    assert (unit, attributes, tcp.count) == ("s", where, 1)
    # botocore's pools never make a request wait for a connection.
    assert diagnosed.points(A.METRIC_TIME_IN_QUEUE) == []
    assert diagnosed.points(A.METRIC_TLS_DURATION) == []


def test_time_in_queue_of_a_blocking_pool(diagnosed: Diagnosed, server):
    local = server()
    http = urllib3.PoolManager(maxsize=1, block=True)
    for _ in range(3):
        http.request("GET", local.url)

    _, queue = only(
        diagnosed,
        A.METRIC_TIME_IN_QUEUE,
        server__address="127.0.0.1",
        server__port=local.port,
        url__scheme="http",
        http__request__method="GET",
    )
    assert queue.count == 3


def test_open_connections_and_connection_duration(diagnosed: Diagnosed, server):
    local = server()
    http = urllib3.PoolManager()
    http.request("GET", local.url)
    where = {"server__address": "127.0.0.1", "server__port": local.port, "url__scheme": "http"}

    unit, idle = only(diagnosed, A.METRIC_OPEN_CONNECTIONS, http__connection__state="idle", **where)
    assert (unit, idle.value) == ("{connection}", 1)
    assert diagnosed.points(A.METRIC_CONNECTION_DURATION) == []

    http.clear()  # closes the pooled connection

    unit, idle = only(diagnosed, A.METRIC_OPEN_CONNECTIONS, http__connection__state="idle", **where)
    assert idle.value == 0
    unit, duration = only(diagnosed, A.METRIC_CONNECTION_DURATION, **where)
    assert (unit, duration.count) == ("s", 1)
    assert duration.sum > 0
    assert duration.explicit_bounds[-1] == 300.0


def test_a_connection_in_use_is_active(diagnosed: Diagnosed, server):
    release = threading.Event()
    arrived = threading.Event()

    def respond(request: Request) -> Response:
        arrived.set()
        release.wait(10)
        return Response()

    local = server(respond=respond)
    client = dynamodb(local.url)
    caller = threading.Thread(target=client.list_tables)
    caller.start()
    # Connections of other servers, still open in this process, are counted too.
    port = {"server__port": local.port}
    try:
        assert arrived.wait(10)
        _, active = only(
            diagnosed, A.METRIC_OPEN_CONNECTIONS, http__connection__state="active", **port
        )
        assert active.value == 1
    finally:
        release.set()
        caller.join()
    _, active = only(diagnosed, A.METRIC_OPEN_CONNECTIONS, http__connection__state="active", **port)
    _, idle = only(diagnosed, A.METRIC_OPEN_CONNECTIONS, http__connection__state="idle", **port)
    assert (active.value, idle.value) == (0, 1)


def test_connections_opened_are_counted_by_reason(diagnosed: Diagnosed, server):
    local = server(close_after_response=True)
    client = dynamodb(local.url)
    for _ in range(3):
        client.list_tables()

    opened = {
        attributes[A.CONNECTION_REASON]: point.value
        for _, attributes, point in diagnosed.points(A.METRIC_CONNECTIONS_OPENED)
    }
    assert opened == {A.REASON_FIRST: 1, A.REASON_SERVER_CLOSED: 2}
    # Each closed connection lived and was measured.
    wait_until(lambda: bool(diagnosed.points(A.METRIC_CONNECTION_DURATION)))
    [(_, _, duration)] = diagnosed.points(A.METRIC_CONNECTION_DURATION)
    assert duration.count == 3


def test_tls_handshake_duration(diagnosed: Diagnosed, tls_server, ca):
    local = tls_server()
    context = ssl.create_default_context()
    ca.configure_trust(context)
    http = urllib3.PoolManager(ssl_context=context)
    for _ in range(2):
        assert http.request("GET", local.url).status == 200

    [(unit, attributes, handshake)] = diagnosed.points(A.METRIC_TLS_DURATION)
    assert (unit, handshake.count) == ("s", 1)
    assert attributes[A.SERVER_ADDRESS] == "localhost"
    assert attributes[A.SERVER_PORT] == local.port
    assert attributes[A.TLS_PROTOCOL_VERSION] in ("1.2", "1.3")


def test_a_refused_connection_is_timed_with_its_error(diagnosed: Diagnosed):
    port = free_port()
    http = urllib3.PoolManager(retries=False)
    with pytest.raises(urllib3.exceptions.NewConnectionError):
        http.request("GET", f"http://127.0.0.1:{port}/")

    [(unit, attributes, tcp)] = diagnosed.points(A.METRIC_CONNECT_DURATION)
    assert (unit, tcp.count) == ("s", 1)
    assert attributes == {
        A.SERVER_ADDRESS: "127.0.0.1",
        A.SERVER_PORT: port,
        A.ERROR_TYPE: "ConnectionRefusedError",
    }
    assert diagnosed.points(A.METRIC_CONNECTIONS_OPENED) == []


def test_closing_the_diagnosis_stops_its_metrics(diagnosed: Diagnosed, server):
    local = server()
    http = urllib3.PoolManager()
    http.request("GET", local.url)
    metrics = diagnosed.diagnosis.metrics
    assert metrics in ledger.sinks

    diagnosed.diagnosis.close()
    http.clear()
    http.request("GET", local.url)

    assert metrics not in ledger.sinks
    assert diagnosed.points(A.METRIC_CONNECTION_DURATION) == []
    assert diagnosed.points(A.METRIC_OPEN_CONNECTIONS) == []
    [(_, _, requests)] = diagnosed.points(A.METRIC_REQUESTS)
    assert requests.value == 1
