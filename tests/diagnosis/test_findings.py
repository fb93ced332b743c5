"""Each finding fires on a real local server that provokes it, and never on healthy traffic."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

import boto3
import pytest
import urllib3
from opentelemetry import trace

import conntrace
from conntrace import attributes as A
from conntrace import findings, ledger

from ..conftest import dynamodb
from ..servers import Request, Response, statuses
from .conftest import Diagnosed


def together(parties: int) -> Callable[[Request], Response]:
    """Hold the first ``parties`` requests until all have arrived: that many run at once."""
    barrier = threading.Barrier(parties, timeout=10)
    lock = threading.Lock()
    arrived = [0]

    def respond(request: Request) -> Response:
        with lock:
            arrived[0] += 1
            first_wave = arrived[0] <= parties
        if first_wave:
            barrier.wait()
        return Response()

    return respond


def in_threads(count: int, work: Callable[[], Any]) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def events_of(diagnosed: Diagnosed, finding_id: str) -> list[tuple[Any, dict[str, Any]]]:
    return [(span, e) for span, e in diagnosed.finding_events() if e[A.FINDING_ID] == finding_id]


def let_fin_arrive() -> None:
    time.sleep(0.05)  # the server's FIN must reach the idle pooled socket before the next call


# --- healthy traffic: nothing to say -----------------------------------------------------------


def test_a_reused_client_has_no_findings(diagnosed: Diagnosed, server):
    client = dynamodb(server().url)
    for _ in range(20):
        client.list_tables()

    assert diagnosed.findings() == []
    assert diagnosed.finding_events() == []
    [host] = diagnosed.diagnosis.hosts()
    assert (host["requests"], host["reused"]) == (20, 19)
    assert host["connections_opened"][A.REASON_FIRST] == 1


def test_threads_within_the_pool_have_no_findings(diagnosed: Diagnosed, server):
    client = dynamodb(server(respond=together(4)).url)
    in_threads(4, lambda: [client.list_tables() for _ in range(10)])

    assert diagnosed.findings() == []
    assert diagnosed.finding_events() == []
    [host] = diagnosed.diagnosis.hosts()
    assert host["max_concurrency"] == 4
    assert host["pool_max_size"] == 10
    assert host["connections_opened"][A.REASON_FIRST] == 1
    assert host["connections_opened"][A.REASON_POOL_BUSY] == 3
    assert (host["requests"], host["discarded"]) == (40, 0)


def test_https_reused_client_has_no_findings(
    diagnosed: Diagnosed, tls_server, ca, tmp_path, monkeypatch
):
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("AWS_CA_BUNDLE", str(bundle))
    client = dynamodb(tls_server().url)
    for _ in range(10):
        client.list_tables()

    assert diagnosed.findings() == []
    [host] = diagnosed.diagnosis.hosts()
    assert (host["requests"], host["reused"]) == (10, 9)


def test_moto_dynamodb_through_a_reused_client_has_no_findings(diagnosed: Diagnosed, moto_endpoint):
    client = dynamodb(moto_endpoint)
    client.create_table(
        TableName="healthy",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for number in range(5):
        client.put_item(TableName="healthy", Item={"id": {"S": str(number)}})
        client.get_item(TableName="healthy", Key={"id": {"S": str(number)}})

    assert diagnosed.findings() == []
    assert diagnosed.diagnosis.totals()["api_calls"] == 11


# --- a client per call -------------------------------------------------------------------------


def test_a_client_per_call_is_found(diagnosed: Diagnosed, server):
    local = server()
    for _ in range(3):
        dynamodb(local.url).list_tables()

    finding = diagnosed.finding(A.FINDING_CLIENT_RECREATED)
    assert finding.severity == A.SEVERITY_WARNING
    assert finding.target == f"127.0.0.1:{local.port}"
    assert finding.evidence["connections"] == 2
    assert finding.evidence["pools"] == 3
    assert finding.evidence["requests"] == 3
    assert finding.evidence["setup_ms"] > 0
    assert "Create the boto3 client" in finding.advice
    # The first extra client is below the threshold; the second one is the finding.
    [(span, event)] = events_of(diagnosed, A.FINDING_CLIENT_RECREATED)
    assert span.name == "DynamoDB.ListTables"
    assert "create the client once" in event[A.FINDING_MESSAGE]
    calls = sorted(diagnosed.spans, key=lambda s: s.start_time or 0)
    assert span is [s for s in calls if s.name == "DynamoDB.ListTables"][2]
    # The evidence names the attempts that opened connections for a new pool.
    attempts = {
        s.context.span_id: s for s in diagnosed.spans if A.HTTP_REQUEST_METHOD in s.attributes
    }
    named = [attempts[int(ref.span_id, 16)] for ref in finding.spans]
    assert [s.attributes[A.CONNECTION_REASON] for s in named] == [A.REASON_NEW_POOL] * 2


def test_one_second_client_is_not_a_finding(diagnosed: Diagnosed, server):
    local = server()
    for _ in range(2):
        client = dynamodb(local.url)
        for _ in range(3):
            client.list_tables()

    assert A.FINDING_CLIENT_RECREATED not in diagnosed.ids()
    [host] = diagnosed.diagnosis.hosts()
    assert host["connections_opened"][A.REASON_NEW_POOL] == 1


# --- a pool smaller than the threads that share it ---------------------------------------------


def test_a_pool_smaller_than_the_threads_is_found(diagnosed: Diagnosed, server):
    local = server(respond=together(6))
    client = dynamodb(local.url, max_pool_connections=2)
    in_threads(6, lambda: [client.list_tables() for _ in range(3)])

    finding = diagnosed.finding(A.FINDING_POOL_TOO_SMALL)
    evidence = finding.evidence
    assert evidence["max_concurrency"] == 6
    assert evidence["pool_max_size"] == 2
    assert evidence["suggested_max_pool_connections"] == 6
    assert evidence["discarded"] >= 4
    assert evidence["opened_pool_busy"] >= 5
    assert "Config(max_pool_connections=6)" in finding.advice
    assert f"Up to 6 requests to 127.0.0.1:{local.port} ran at once" in finding.summary
    assert finding.spans


# --- the server closes every connection --------------------------------------------------------


def test_a_server_closing_after_each_response_is_found(diagnosed: Diagnosed, server):
    client = dynamodb(server(close_after_response=True).url)
    for _ in range(4):
        client.list_tables()

    finding = diagnosed.finding(A.FINDING_SERVER_CLOSES)
    assert finding.evidence["closed_by_server"] == 4
    assert finding.evidence["responses"] == 4
    assert finding.evidence["opened_server_closed"] == 3
    assert "keep-alive" in finding.advice
    # The first close alone says nothing; from the second on, each call says so.
    assert len(events_of(diagnosed, A.FINDING_SERVER_CLOSES)) == 3


def test_a_single_connection_close_is_not_a_finding(diagnosed: Diagnosed, server):
    answered = []

    def respond(request: Request) -> Response:
        answered.append(request)
        return Response(close=len(answered) == 1)

    client = dynamodb(server(respond=respond).url)
    for _ in range(6):
        client.list_tables()

    assert diagnosed.findings() == []
    [host] = diagnosed.diagnosis.hosts()
    assert host["closed_by_server"] == 1


# --- idle connections dropped by the peer ------------------------------------------------------


@pytest.mark.parametrize("keepalive", [False, True])
def test_idle_connections_dropped_by_the_peer_are_found(
    diagnosed: Diagnosed, server, keepalive, tmp_path: Path, monkeypatch
):
    # The shared config file's tcp_keepalive: read by every botocore, unlike Config's. A
    # new session reads the file; boto3's default one has read it already.
    config = tmp_path / "config"
    config.write_text(f"[default]\ntcp_keepalive = {str(keepalive).lower()}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    local = server()
    client = boto3.session.Session().client(
        "dynamodb", endpoint_url=local.url, region_name="us-east-1"
    )
    client.list_tables()
    for _ in range(2):
        local.close_idle_connections()
        let_fin_arrive()
        client.list_tables()

    finding = diagnosed.finding(A.FINDING_IDLE_DROPPED)
    evidence = finding.evidence
    assert finding.severity == A.SEVERITY_INFO
    assert evidence["dropped"] == 2
    assert evidence["opened_stale"] == 2
    assert len(evidence["idle_ms_samples"]) == 2
    assert 0 < evidence["idle_ms_min"] <= evidence["idle_ms_max"]
    assert evidence["socket_keepalive"] is keepalive
    assert "tcp_keepalive" in finding.advice
    assert "does not stop a server from closing idle HTTP connections" in finding.advice
    assert f"SO_KEEPALIVE {'was on' if keepalive else 'was off'}" in finding.advice
    assert len(events_of(diagnosed, A.FINDING_IDLE_DROPPED)) == 2


# --- repeated DNS lookups ----------------------------------------------------------------------


def test_repeated_lookups_of_one_name_are_found(diagnosed: Diagnosed, server):
    local = server(host_name="localhost")
    for _ in range(3):
        dynamodb(local.url).list_tables()

    finding = diagnosed.finding(A.FINDING_REPEATED_DNS)
    assert finding.target == f"localhost:{local.port}"
    assert finding.evidence["lookups"] == 3
    assert finding.evidence["repeated"] == 2
    assert finding.evidence["dns_ms"] >= finding.evidence["dns_ms_max"] > 0
    assert "no DNS cache" in finding.advice
    lookups = [s for s in diagnosed.spans if s.name == f"{A.SPAN_DNS} localhost"]
    assert len(lookups) == 3


# --- connection setup as a share of request time -----------------------------------------------


def test_https_setup_on_every_request_is_found(
    diagnosed: Diagnosed, tls_server, ca, tmp_path: Path, monkeypatch
):
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("AWS_CA_BUNDLE", str(bundle))
    client = dynamodb(tls_server(close_after_response=True).url)
    for _ in range(6):
        client.list_tables()

    finding = diagnosed.finding(A.FINDING_SETUP_SHARE)
    evidence = finding.evidence
    assert evidence["setups"] == 5
    assert evidence["reasons"] == {A.REASON_SERVER_CLOSED: 5}
    assert evidence["share"] >= findings.SETUP_SHARE_MIN
    assert evidence["setup_ms"] <= evidence["request_ms"]
    assert evidence["tls_ms"] > 0 and evidence["tcp_ms"] > 0
    assert "server_closed (5)" in finding.advice


# --- retries and default timeouts --------------------------------------------------------------


def test_time_lost_to_retries_is_found(diagnosed: Diagnosed, server):
    client = dynamodb(
        server(respond=statuses(500, 500)).url,
        connect_timeout=1,
        read_timeout=2,
        retries={"mode": "legacy", "max_attempts": 2},
    )
    client.list_tables()
    client.list_tables()

    assert diagnosed.ids() == [A.FINDING_RETRY_TIME]
    finding = diagnosed.finding(A.FINDING_RETRY_TIME)
    assert finding.target == "DynamoDB.ListTables"
    evidence = finding.evidence
    assert (evidence["calls"], evidence["retried_calls"], evidence["extra_attempts"]) == (2, 1, 2)
    assert evidence["errors"] == {"500": 2}
    assert evidence["failed_attempt_ms"] > 0 and evidence["backoff_ms"] > 0
    assert evidence["lost_ms"] == pytest.approx(
        evidence["failed_attempt_ms"] + evidence["backoff_ms"], abs=0.002
    )
    retried = events_of(diagnosed, A.FINDING_RETRY_TIME)
    assert [event[A.FINDING_MESSAGE].split(":")[0] for _, event in retried] == [
        "retry 1",
        "retry 2",
    ]
    assert {span.name for span, _ in retried} == {"DynamoDB.ListTables"}


def test_a_failing_call_on_default_timeouts_is_found(diagnosed: Diagnosed, server):
    client = dynamodb(server(respond=statuses(500)).url)
    client.list_tables()

    finding = diagnosed.finding(A.FINDING_DEFAULT_TIMEOUTS)
    evidence = finding.evidence
    assert (evidence["connect_timeout_s"], evidence["read_timeout_s"]) == (60.0, 60.0)
    assert evidence["problem_attempts"] == 2
    assert evidence["worst_case_s"] == evidence["max_attempts"] * 120.0
    assert evidence["typical_attempt_ms"] > 0
    assert "connect_timeout=1" in finding.advice
    assert A.FINDING_RETRY_TIME in diagnosed.ids()


def test_urllib3_retries_inside_an_application_span_are_found(diagnosed: Diagnosed, server):
    local = server(respond=statuses(500))
    http = urllib3.PoolManager(retries=urllib3.Retry(total=2, status_forcelist=[500]))
    tracer = diagnosed.provider.get_tracer("app")
    with tracer.start_as_current_span("job"):
        assert http.request("GET", local.url + "/thing").status == 200

    finding = diagnosed.finding(A.FINDING_RETRY_TIME)
    assert finding.target == f"127.0.0.1:{local.port}"
    assert finding.evidence["extra_attempts"] == 1
    [(span, _event)] = events_of(diagnosed, A.FINDING_RETRY_TIME)
    assert span.name == "job"
    assert A.FINDING_DEFAULT_TIMEOUTS not in diagnosed.ids()


# --- wiring ------------------------------------------------------------------------------------


def test_install_starts_one_diagnosis_per_process():
    first = findings.install(metrics=False, report=False)
    try:
        assert findings.install(metrics=False, report=False) is first
        assert findings.current() is first
    finally:
        findings.uninstall()
    assert first.closed
    assert findings.current() is None


def test_the_diagnosis_needs_no_spans(server):
    """With a tracer provider that makes no spans at all, the counts are still exact."""
    conntrace.instrument(tracer_provider=trace.NoOpTracerProvider())
    diagnosis = findings.install(metrics=False, report=False)
    try:
        local = server()
        for _ in range(3):
            dynamodb(local.url).list_tables()
    finally:
        conntrace.uninstrument()
    [host] = diagnosis.hosts()
    assert host["requests"] == len(local.requests) == 3
    assert host["connections_opened"]["new_pool"] == 2
    assert A.FINDING_CLIENT_RECREATED in {finding.id for finding in diagnosis.findings()}


def test_a_failing_reader_changes_nothing(diagnosed: Diagnosed, server):
    class Broken(ledger.BaseSink):
        def attempt_ended(self, attempt: Any) -> None:
            raise RuntimeError("reader")

        def call_ended(self, call: Any) -> None:
            raise RuntimeError("reader")

    broken = Broken()
    ledger.add_sink(broken, first=True)
    local = server()
    try:
        for _ in range(3):
            dynamodb(local.url).list_tables()
    finally:
        ledger.remove_sink(broken)

    assert A.FINDING_CLIENT_RECREATED in diagnosed.ids()
