"""The right explanation: who closed a connection, whether clients are made per call, what
retries cost, bodies left unread, time waiting for a pooled connection."""

from __future__ import annotations

import threading
from typing import Any

import boto3
import pytest
import requests
import urllib3

from conntrace import attributes as A

from ..conftest import dynamodb
from ..servers import Request, Response
from .conftest import Diagnosed
from .test_findings import events_of, in_threads, let_fin_arrive

BIG = b"x" * 300_000  # more than the socket buffers: part of it stays on the wire unread


def causes(diagnosed: Diagnosed) -> dict[str, int]:
    [host] = diagnosed.diagnosis.hosts()
    return {cause: n for cause, n in host["close_causes"].items() if n}


def reasons(diagnosed: Diagnosed) -> dict[str, int]:
    [host] = diagnosed.diagnosis.hosts()
    return {reason: n for reason, n in host["connections_opened"].items() if n}


# --- who closed the connection -----------------------------------------------------------------


def test_requests_stream_closed_unread_is_closed_by_the_client(diagnosed: Diagnosed, server):
    local = server(respond=lambda request: Response(body=BIG))
    session = requests.Session()
    for _ in range(3):
        session.get(local.url + "/big", stream=True).close()

    assert len(local.connections) == 3
    assert reasons(diagnosed) == {A.REASON_FIRST: 1, A.REASON_CLIENT_CLOSED: 2}
    assert causes(diagnosed) == {A.CLOSED_BY_PROGRAM: 2}
    assert A.FINDING_IDLE_DROPPED not in diagnosed.ids()
    closed = [e for s in diagnosed.spans for e in s.events if e.name == A.EVENT_CLIENT_CLOSED]
    assert [e.attributes[A.CONNECTION_CLOSE_CAUSE] for e in closed] == [A.CLOSED_BY_PROGRAM] * 2
    assert not [
        e for s in diagnosed.spans for e in s.events if e.name == A.EVENT_CONNECTION_DROPPED
    ]


def test_urllib3_release_conn_with_the_body_unread_is_closed_by_the_client(
    diagnosed: Diagnosed, server
):
    local = server(respond=lambda request: Response(body=BIG))
    http = urllib3.PoolManager()
    for _ in range(3):
        response = http.request("GET", local.url + "/big", preload_content=False)
        response.read(10)
        response.release_conn()

    assert len(local.connections) == 3
    assert reasons(diagnosed) == {A.REASON_FIRST: 1, A.REASON_CLIENT_CLOSED: 2}
    assert causes(diagnosed) == {A.CLOSED_UNREAD_BODY: 2}
    assert A.FINDING_IDLE_DROPPED not in diagnosed.ids()


def test_a_body_read_to_the_end_keeps_the_connection(diagnosed: Diagnosed, server):
    local = server(respond=lambda request: Response(body=BIG))
    session = requests.Session()
    for _ in range(3):
        with session.get(local.url + "/big", stream=True) as response:
            assert len(response.content) == len(BIG)

    assert len(local.connections) == 1
    assert reasons(diagnosed) == {A.REASON_FIRST: 1}
    assert diagnosed.findings() == []


def test_a_cleared_pool_is_closed_by_the_client(diagnosed: Diagnosed, server):
    local = server()
    http = urllib3.PoolManager()
    for _ in range(3):
        http.request("GET", local.url)
        http.clear()

    assert len(local.connections) == 3
    assert reasons(diagnosed) == {A.REASON_FIRST: 1, A.REASON_NEW_POOL: 2}
    assert causes(diagnosed) == {A.CLOSED_POOL_CLOSED: 3}
    assert A.FINDING_IDLE_DROPPED not in diagnosed.ids()


@pytest.mark.parametrize(
    ("response", "cause"),
    [
        (Response(http_1_0=True), A.CLOSED_HTTP_1_0),
        (Response(close=True), A.CLOSED_CONNECTION_CLOSE),
    ],
)
def test_the_server_closing_after_a_response_says_how(
    diagnosed: Diagnosed, server, response: Response, cause: str
):
    local = server(respond=lambda request: response)
    http = urllib3.PoolManager()
    for _ in range(3):
        assert http.request("GET", local.url).status == 200

    assert len(local.connections) == 3
    assert reasons(diagnosed) == {A.REASON_FIRST: 1, A.REASON_SERVER_CLOSED: 2}
    assert causes(diagnosed) == {cause: 3}
    finding = diagnosed.finding(A.FINDING_SERVER_CLOSES)
    assert finding.evidence[cause] == 3
    said = "HTTP/1.0 without keep-alive" if cause == A.CLOSED_HTTP_1_0 else "'Connection: close'"
    assert said in finding.summary
    assert A.FINDING_IDLE_DROPPED not in diagnosed.ids()
    [(_, event), *_] = events_of(diagnosed, A.FINDING_SERVER_CLOSES)
    assert said.strip("'") in event[A.FINDING_MESSAGE]


def test_a_server_closing_idle_connections_is_the_peer(diagnosed: Diagnosed, server):
    local = server()
    http = urllib3.PoolManager()
    http.request("GET", local.url)
    for _ in range(2):
        local.close_idle_connections()
        let_fin_arrive()
        http.request("GET", local.url)

    assert reasons(diagnosed) == {A.REASON_FIRST: 1, A.REASON_STALE: 2}
    assert causes(diagnosed) == {A.CLOSED_PEER_IDLE: 2}
    finding = diagnosed.finding(A.FINDING_IDLE_DROPPED)
    assert finding.evidence["peer_idle"] == 2
    assert "by the peer while idle (FIN)" in finding.summary


def test_a_server_closing_idle_tls_connections_is_the_peer(
    diagnosed: Diagnosed, tls_server, ca, tmp_path
):
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    local = tls_server()
    http = urllib3.PoolManager(ca_certs=str(bundle))
    http.request("GET", local.url)
    local.close_idle_connections()
    let_fin_arrive()
    http.request("GET", local.url)

    assert reasons(diagnosed) == {A.REASON_FIRST: 1, A.REASON_STALE: 1}
    assert causes(diagnosed) == {A.CLOSED_PEER_IDLE: 1}
    assert A.FINDING_IDLE_DROPPED in diagnosed.ids()


def test_a_connection_broken_by_an_error_is_the_error(diagnosed: Diagnosed, server):
    answered: list[Request] = []

    def respond(request: Request) -> Response:
        answered.append(request)
        return Response(drop=len(answered) == 2)

    local = server(respond=respond)
    http = urllib3.PoolManager(retries=urllib3.Retry(total=1, read=1))
    for _ in range(3):
        http.request("GET", local.url)

    assert reasons(diagnosed)[A.REASON_ERROR] == 1
    assert A.REASON_STALE not in reasons(diagnosed)
    assert A.REASON_CLIENT_CLOSED not in reasons(diagnosed)
    assert A.FINDING_IDLE_DROPPED not in diagnosed.ids()


# --- clients made once or per call -------------------------------------------------------------


def test_long_lived_clients_of_several_services_are_not_recreated(
    diagnosed: Diagnosed, moto_endpoint
):
    made = {
        name: boto3.client(name, endpoint_url=moto_endpoint, region_name="us-east-1")
        for name in ("dynamodb", "s3", "sqs", "sts")
    }
    for _ in range(10):
        made["dynamodb"].list_tables()
        made["s3"].list_buckets()
        made["sqs"].list_queues()
        made["sts"].get_caller_identity()

    [host] = diagnosed.diagnosis.hosts()
    assert host["requests"] == 40 and host["reused"] >= 36
    assert A.FINDING_CLIENT_RECREATED not in diagnosed.ids()
    assert A.FINDING_REPEATED_DNS not in diagnosed.ids()
    assert A.FINDING_SETUP_SHARE not in diagnosed.ids()
    assert events_of(diagnosed, A.FINDING_CLIENT_RECREATED) == []


def test_one_client_per_thread_is_not_recreated(diagnosed: Diagnosed, server):
    local = server(host_name="localhost")

    def work() -> None:
        client = dynamodb(local.url)
        for _ in range(25):
            client.list_tables()

    in_threads(6, work)

    [host] = diagnosed.diagnosis.hosts()
    assert host["requests"] == 150
    assert A.FINDING_CLIENT_RECREATED not in diagnosed.ids()
    assert A.FINDING_REPEATED_DNS not in diagnosed.ids()
    assert diagnosed.finding_events() == []


def test_a_client_per_call_is_recreated_with_the_right_count(diagnosed: Diagnosed, server):
    local = server(host_name="localhost")
    for _ in range(9):
        dynamodb(local.url).list_tables()

    finding = diagnosed.finding(A.FINDING_CLIENT_RECREATED)
    assert finding.evidence["pools"] == 9
    assert finding.evidence["threads"] == 1
    assert finding.evidence["client"] == "DynamoDB"
    assert "9 connection pools of DynamoDB clients" in finding.summary
    assert "1 thread:" in finding.summary
    dns = diagnosed.finding(A.FINDING_REPEATED_DNS)
    assert dns.evidence["repeated"] == 8
    assert "new_pool (8)" in dns.summary


# --- retries -----------------------------------------------------------------------------------


def test_urllib3_retries_name_the_errors_and_sum_the_time(diagnosed: Diagnosed, server):
    answered: list[Request] = []

    def respond(request: Request) -> Response:
        answered.append(request)
        if len(answered) <= 2:
            return Response(delay=0.3)
        return Response(status=503) if len(answered) == 3 else Response()

    local = server(respond=respond)
    retry = urllib3.Retry(total=5, read=3, status_forcelist=[503], backoff_factor=0.05)
    http = urllib3.PoolManager(retries=retry, timeout=urllib3.Timeout(connect=1, read=0.1))
    assert http.request("GET", local.url).status == 200

    finding = diagnosed.finding(A.FINDING_RETRY_TIME)
    evidence = finding.evidence
    assert evidence["extra_attempts"] == 3
    assert evidence["errors"] == {"ReadTimeoutError": 2, "503": 1}
    # Each failed attempt counts once: two read timeouts of about 0.1 s and a quick 503.
    assert 190 <= evidence["failed_attempt_ms"] < 1000
    assert evidence["backoff_ms"] > 0
    assert "retries=urllib3.util.Retry(" in finding.advice
    assert "Config(retries=" not in finding.advice


def test_requests_retries_are_one_call_with_urllib3_advice(diagnosed: Diagnosed, server):
    from requests.adapters import HTTPAdapter

    answered: list[Request] = []

    def respond(request: Request) -> Response:
        answered.append(request)
        return Response(delay=0.3) if len(answered) <= 2 else Response()

    local = server(respond=respond)
    session = requests.Session()
    retry = urllib3.Retry(total=3, read=3, backoff_factor=0.05, allowed_methods=None)
    session.mount("http://", HTTPAdapter(max_retries=retry))
    assert session.get(local.url, timeout=(1, 0.1)).status_code == 200

    finding = diagnosed.finding(A.FINDING_RETRY_TIME)
    assert (finding.evidence["calls"], finding.evidence["extra_attempts"]) == (1, 2)
    assert finding.evidence["errors"] == {"ReadTimeoutError": 2}
    assert 190 <= finding.evidence["failed_attempt_ms"] < 1000
    assert "Retried after: ReadTimeoutError (x2)" in finding.summary
    assert "HTTPAdapter(max_retries=urllib3.util.Retry(" in finding.advice


def test_a_timeout_set_by_the_user_is_not_called_a_default(diagnosed: Diagnosed, server):
    from ..servers import statuses

    client = dynamodb(server(respond=statuses(500)).url, connect_timeout=1)
    client.list_tables()

    finding = diagnosed.finding(A.FINDING_DEFAULT_TIMEOUTS)
    assert finding.evidence["default_timeouts"] == ["read_timeout"]
    assert "botocore's default read_timeout=60 s (connect_timeout=1 s set)" in finding.summary
    retry = diagnosed.finding(A.FINDING_RETRY_TIME)
    assert "Config(retries=" in retry.advice


def test_timeouts_both_set_are_no_finding(diagnosed: Diagnosed, server):
    from ..servers import statuses

    client = dynamodb(server(respond=statuses(500)).url, connect_timeout=1, read_timeout=2)
    client.list_tables()

    assert A.FINDING_DEFAULT_TIMEOUTS not in diagnosed.ids()


# --- response bodies never read or closed ------------------------------------------------------


def s3_bucket(endpoint: str) -> Any:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="bodies")
    s3.put_object(Bucket="bodies", Key="k", Body=b"x" * 1000)
    return s3


def test_s3_bodies_never_read_are_found(diagnosed: Diagnosed, moto_endpoint):
    s3 = s3_bucket(moto_endpoint)
    kept = [s3.get_object(Bucket="bodies", Key="k") for _ in range(4)]

    finding = diagnosed.finding(A.FINDING_BODIES_NOT_CLOSED)
    assert finding.evidence["opened"] == 3
    assert finding.evidence["left_out_by"]["S3.GetObject"] >= 3
    assert "get_object()['Body']" in finding.advice
    assert "S3.GetObject" in finding.summary
    assert A.FINDING_POOL_TOO_SMALL not in diagnosed.ids()
    assert len(events_of(diagnosed, A.FINDING_BODIES_NOT_CLOSED)) == 3
    for response in kept:
        response["Body"].close()


def test_s3_bodies_read_are_no_finding(diagnosed: Diagnosed, moto_endpoint):
    s3 = s3_bucket(moto_endpoint)
    for _ in range(4):
        assert len(s3.get_object(Bucket="bodies", Key="k")["Body"].read()) == 1000

    assert A.FINDING_BODIES_NOT_CLOSED not in diagnosed.ids()
    assert diagnosed.findings() == []


def test_urllib3_responses_never_released_are_found(diagnosed: Diagnosed, server):
    local = server()
    http = urllib3.PoolManager()
    kept = [http.request("GET", local.url, preload_content=False) for _ in range(3)]

    finding = diagnosed.finding(A.FINDING_BODIES_NOT_CLOSED)
    assert finding.evidence["opened"] == 2
    assert finding.evidence["left_out_by"] == {f"127.0.0.1:{local.port}": 3}
    assert len(local.connections) == 3
    for response in kept:
        response.release_conn()


def test_threads_above_the_pool_size_are_not_unread_bodies(diagnosed: Diagnosed, server):
    from .test_findings import together

    client = dynamodb(server(respond=together(6)).url, max_pool_connections=2)
    in_threads(6, lambda: [client.list_tables() for _ in range(3)])

    assert A.FINDING_POOL_TOO_SMALL in diagnosed.ids()
    assert A.FINDING_BODIES_NOT_CLOSED not in diagnosed.ids()
    [host] = diagnosed.diagnosis.hosts()
    assert host["close_causes"][A.CLOSED_POOL_FULL] == host["discarded"] >= 4


# --- waiting for a pooled connection -----------------------------------------------------------


def test_waiting_for_a_blocking_pool_is_found(diagnosed: Diagnosed, server):
    local = server(respond=lambda request: Response(delay=0.05))
    http = urllib3.PoolManager(maxsize=1, block=True)
    in_threads(4, lambda: [http.request("GET", local.url) for _ in range(3)])

    finding = diagnosed.finding(A.FINDING_POOL_WAIT)
    evidence = finding.evidence
    # The first checkout, and a thread that takes back the connection it just returned,
    # do not wait.
    assert 3 <= evidence["waits"] <= 11
    assert evidence["pool_wait_ms"] >= 0.2 * evidence["request_ms"]
    assert evidence["pool_wait_ms_max"] >= 50
    assert "maxsize" in finding.advice
    [host] = diagnosed.diagnosis.hosts()
    assert host["pool_wait_ms"] == evidence["pool_wait_ms"]
    assert len(local.connections) == 1


def test_a_blocking_pool_large_enough_does_not_wait(diagnosed: Diagnosed, server):
    barrier = threading.Barrier(4, timeout=10)
    local = server(respond=lambda request: Response(delay=0.05))
    http = urllib3.PoolManager(maxsize=4, block=True)
    in_threads(4, lambda: [barrier.wait(), [http.request("GET", local.url) for _ in range(3)]])

    assert A.FINDING_POOL_WAIT not in diagnosed.ids()
    [host] = diagnosed.diagnosis.hosts()
    assert host["pool_wait_ms"] < 0.2 * host["request_ms"]
