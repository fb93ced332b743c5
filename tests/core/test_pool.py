"""Connection reuse and the reasons for new connections, seen through plain urllib3."""

from __future__ import annotations

import threading
import time

import pytest
import urllib3

from conntrace import attributes as A

from ..servers import Request, Response, statuses


def _get(pool_manager: urllib3.PoolManager, url: str, **kwargs) -> urllib3.BaseHTTPResponse:
    return pool_manager.request("GET", url + "/item", **kwargs)


def test_calls_on_one_pool_reuse_one_connection(spans, server):
    local = server()
    http = urllib3.PoolManager()
    for _ in range(5):
        assert _get(http, local.url).status == 200
        time.sleep(0.02)

    attempts = spans.attempts
    assert len(attempts) == 5
    assert len(local.connections) == 1
    [setup] = spans.setups
    first, *reused = attempts
    assert first.attributes[A.CONNECTION_REUSED] is False
    assert first.attributes[A.CONNECTION_REASON] == A.REASON_FIRST
    assert first.attributes[A.CONNECTION_REQUEST_NUMBER] == 1
    assert setup.parent.span_id == first.context.span_id
    for number, attempt in enumerate(reused, start=2):
        attributes = attempt.attributes
        assert attributes[A.CONNECTION_REUSED] is True
        assert A.CONNECTION_REASON not in attributes
        assert attributes[A.CONNECTION_ID] == setup.attributes[A.CONNECTION_ID]
        assert attributes[A.CONNECTION_REQUEST_NUMBER] == number
        # Each call slept 20 ms after the previous response was read.
        assert attributes[A.CONNECTION_IDLE_MS] >= 15
        assert attributes[A.CONNECTION_AGE_MS] > attributes[A.CONNECTION_IDLE_MS]
        assert [link.context.span_id for link in attempt.links] == [setup.context.span_id]
        assert spans.children(attempt) == []
    assert local.connections[0].requests == 5


def test_attempt_span_has_http_conventions(spans, server):
    local = server()
    http = urllib3.PoolManager()
    http.request("GET", f"{local.url}/path?X-Amz-Signature=abc123&X-Amz-Credential=AKIA1&page=2")

    [attempt] = spans.attempts
    assert attempt.name == "GET"
    assert attempt.kind.name == "CLIENT"
    assert attempt.attributes[A.HTTP_REQUEST_METHOD] == "GET"
    assert attempt.attributes[A.SERVER_ADDRESS] == "127.0.0.1"
    assert attempt.attributes[A.SERVER_PORT] == local.port
    assert attempt.attributes[A.HTTP_RESPONSE_STATUS_CODE] == 200
    assert attempt.attributes[A.URL_FULL] == (
        f"http://127.0.0.1:{local.port}/path"
        "?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&page=REDACTED"
    )


def test_connection_close_from_server_opens_a_connection_per_call(spans, server):
    local = server(close_after_response=True)
    http = urllib3.PoolManager()
    for _ in range(3):
        assert _get(http, local.url).status == 200

    attempts = spans.attempts
    assert len(local.connections) == 3
    assert [a.attributes[A.CONNECTION_REUSED] for a in attempts] == [False, False, False]
    assert [a.attributes[A.CONNECTION_REASON] for a in attempts] == [
        A.REASON_FIRST,
        A.REASON_SERVER_CLOSED,
        A.REASON_SERVER_CLOSED,
    ]
    assert len({a.attributes[A.CONNECTION_ID] for a in attempts}) == 3
    for attempt in attempts:
        assert [event.name for event in attempt.events] == [A.EVENT_SERVER_CLOSED]
        assert attempt.attributes[A.CONNECTION_REQUEST_NUMBER] == 1
    assert [s.attributes[A.CONNECTION_REASON] for s in spans.setups] == [
        A.REASON_FIRST,
        A.REASON_SERVER_CLOSED,
        A.REASON_SERVER_CLOSED,
    ]


def test_idle_connection_closed_by_server_is_stale(spans, server):
    local = server(idle_timeout=0.1)
    http = urllib3.PoolManager()
    _get(http, local.url)
    time.sleep(0.4)  # the server closes the idle connection after 0.1 s
    _get(http, local.url)

    first, second = spans.attempts
    assert len(local.connections) == 2
    assert second.attributes[A.CONNECTION_REUSED] is False
    assert second.attributes[A.CONNECTION_REASON] == A.REASON_STALE
    assert second.attributes[A.CONNECTION_ID] != first.attributes[A.CONNECTION_ID]
    [dropped] = [event for event in second.events if event.name == A.EVENT_CONNECTION_DROPPED]
    assert dropped.attributes[A.CONNECTION_ID] == first.attributes[A.CONNECTION_ID]
    assert dropped.attributes[A.CONNECTION_IDLE_MS] >= 300


def test_new_pool_for_a_host_that_had_one(spans, server):
    local = server()
    for _ in range(3):
        _get(urllib3.PoolManager(), local.url)

    attempts = spans.attempts
    assert [a.attributes[A.CONNECTION_REASON] for a in attempts] == [
        A.REASON_FIRST,
        A.REASON_NEW_POOL,
        A.REASON_NEW_POOL,
    ]
    assert len(local.connections) == 3


def test_more_threads_than_pool_slots(spans, server):
    gate = threading.Barrier(6, timeout=10)

    def slow(request: Request) -> Response:
        time.sleep(0.05)
        return Response()

    local = server(respond=slow)
    http = urllib3.PoolManager(maxsize=2)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(3):
                gate.wait()
                assert _get(http, local.url).status == 200
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    attempts = spans.attempts
    assert len(attempts) == 18
    reasons = [a.attributes.get(A.CONNECTION_REASON) for a in attempts]
    new = [reason for reason in reasons if reason is not None]
    # conntrace sees exactly the connections the server accepted.
    assert len(new) == len(local.connections)
    assert new.count(A.REASON_FIRST) == 1
    assert A.REASON_POOL_BUSY in new
    assert A.REASON_POOL_DISCARDED in new
    assert set(new) <= {A.REASON_FIRST, A.REASON_POOL_BUSY, A.REASON_POOL_DISCARDED}
    discards = [e for a in attempts for e in a.events if e.name == A.EVENT_POOL_DISCARDED]
    assert discards
    assert all(event.attributes[A.POOL_MAX_SIZE] == 2 for event in discards)
    # Every request the server served is one attempt span on the connection it came in on.
    served = sorted(conn.requests for conn in local.connections)
    per_id: dict[int, int] = {}
    for attempt in attempts:
        connection = attempt.attributes[A.CONNECTION_ID]
        per_id[connection] = max(
            per_id.get(connection, 0), attempt.attributes[A.CONNECTION_REQUEST_NUMBER]
        )
    assert sorted(per_id.values()) == served


def test_connection_broken_by_an_error_gives_reason_error(spans, server):
    answers = iter([Response(drop=True)])
    local = server(respond=lambda request: next(answers, Response()))
    http = urllib3.PoolManager(retries=urllib3.Retry(total=1, read=1, connect=0))
    assert _get(http, local.url).status == 200

    first, second = spans.attempts
    assert first.attributes[A.ERROR_TYPE] == "RemoteDisconnected"
    assert first.status.status_code.name == "ERROR"
    assert second.attributes[A.CONNECTION_REASON] == A.REASON_ERROR
    assert second.attributes[A.HTTP_REQUEST_RESEND_COUNT] == 1
    assert second.attributes[A.HTTP_RESPONSE_STATUS_CODE] == 200


def test_urllib3_retries_are_sibling_attempts(spans, server):
    local = server(respond=statuses(500, 500))
    http = urllib3.PoolManager(
        retries=urllib3.Retry(total=3, status_forcelist=[500], backoff_factor=0)
    )
    response = _get(http, local.url)
    assert response.status == 200

    attempts = spans.attempts
    assert [a.attributes[A.HTTP_RESPONSE_STATUS_CODE] for a in attempts] == [500, 500, 200]
    assert [a.attributes.get(A.HTTP_REQUEST_RESEND_COUNT, 0) for a in attempts] == [0, 1, 2]
    assert {a.parent for a in attempts} == {None}
    assert [a.attributes[A.CONNECTION_REUSED] for a in attempts] == [False, True, True]
    assert attempts[0].attributes[A.ERROR_TYPE] == "500"
    assert attempts[0].end_time <= attempts[1].start_time


@pytest.mark.parametrize("preload", [True, False])
def test_streamed_and_preloaded_bodies_both_return_connections(spans, server, preload):
    local = server(respond=lambda request: Response(body=b"x" * 100_000))
    http = urllib3.PoolManager()
    for _ in range(2):
        response = http.request("GET", local.url, preload_content=preload)
        assert len(response.data) == 100_000
        response.release_conn()

    assert [a.attributes[A.CONNECTION_REUSED] for a in spans.attempts] == [False, True]
    assert len(local.connections) == 1


def test_requests_sessions_are_traced_too(spans, server):
    import requests

    local = server()
    with requests.Session() as session:
        for _ in range(3):
            assert session.get(local.url).status_code == 200

    assert [a.attributes[A.CONNECTION_REUSED] for a in spans.attempts] == [False, True, True]
    assert [a.attributes[A.CONNECTION_REQUEST_NUMBER] for a in spans.attempts] == [1, 2, 3]
    assert len(local.connections) == 1
