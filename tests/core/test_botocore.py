"""API call spans over botocore: against moto's DynamoDB server and local servers."""

from __future__ import annotations

import threading

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.stub import Stubber
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import conntrace
from conntrace import attributes as A

from ..conftest import create_table, dynamodb
from ..servers import free_port, statuses


def test_dynamodb_on_moto_gives_the_span_tree_of_the_design(spans, moto_endpoint):
    client = dynamodb(moto_endpoint)
    create_table(client, "tree")
    client.put_item(TableName="tree", Item={"pk": {"S": "a"}})
    item = client.get_item(TableName="tree", Key={"pk": {"S": "a"}})
    assert item["Item"] == {"pk": {"S": "a"}}

    calls = spans.named("DynamoDB.")
    assert [call.name for call in calls] == [
        "DynamoDB.CreateTable",
        "DynamoDB.PutItem",
        "DynamoDB.GetItem",
    ]
    create, _put, get = calls
    assert get.kind.name == "CLIENT"
    assert get.attributes[A.RPC_SYSTEM] == "aws-api"
    assert get.attributes[A.RPC_SERVICE] == "DynamoDB"
    assert get.attributes[A.RPC_METHOD] == "GetItem"
    assert get.attributes[A.CLOUD_REGION] == "us-east-1"
    assert get.attributes[A.AWS_REQUEST_ID] == item["ResponseMetadata"]["RequestId"]
    assert get.attributes[A.AWS_ATTEMPTS] == 1
    assert get.attributes[A.HTTP_RESPONSE_STATUS_CODE] == 200
    # botocore's defaults: they decide how long a stuck call can take.
    assert get.attributes[A.AWS_CONNECT_TIMEOUT] == 60.0
    assert get.attributes[A.AWS_READ_TIMEOUT] == 60.0
    assert get.attributes[A.AWS_RETRY_MODE] == client.meta.config.retries["mode"]
    assert get.attributes[A.AWS_MAX_POOL_CONNECTIONS] == 10
    assert get.attributes[A.AWS_TCP_KEEPALIVE] is False

    [first_attempt] = spans.children(create)
    assert first_attempt.name == "POST"
    assert first_attempt.attributes[A.CONNECTION_REASON] == A.REASON_FIRST
    [setup] = spans.children(first_attempt)
    # moto listens on 127.0.0.1: an IP address is not looked up, so no DNS span.
    assert [s.name.split(" ")[0] for s in spans.children(setup)] == ["socket"]
    [get_attempt] = spans.children(get)
    assert get_attempt.attributes[A.CONNECTION_REUSED] is True
    assert get_attempt.attributes[A.CONNECTION_REQUEST_NUMBER] == 3
    assert get_attempt.attributes.get(A.HTTP_REQUEST_RESEND_COUNT, 0) == 0
    assert [link.context.span_id for link in get_attempt.links] == [setup.context.span_id]
    assert {span.context.trace_id for span in spans.children(get)} == {get.context.trace_id}


def test_client_settings_are_the_effective_ones(spans, server):
    local = server()
    client = dynamodb(
        local.url,
        connect_timeout=2,
        read_timeout=3.5,
        retries={"mode": "standard", "max_attempts": 4},
        max_pool_connections=25,
    )
    client.list_tables()

    [call] = spans.named("DynamoDB.ListTables")
    assert call.attributes[A.AWS_CONNECT_TIMEOUT] == 2.0
    assert call.attributes[A.AWS_READ_TIMEOUT] == 3.5
    assert call.attributes[A.AWS_RETRY_MODE] == "standard"
    # Config's max_attempts counts retries; botocore makes one attempt more.
    assert call.attributes[A.AWS_MAX_ATTEMPTS] == 5
    assert call.attributes[A.AWS_MAX_POOL_CONNECTIONS] == 25
    assert call.attributes[A.AWS_TCP_KEEPALIVE] is False


def test_tcp_keepalive_from_the_shared_config_file(spans, server, tmp_path, monkeypatch):
    import boto3

    config = tmp_path / "config"
    config.write_text("[default]\ntcp_keepalive = true\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    local = server()
    session = boto3.session.Session()
    session.client("dynamodb", endpoint_url=local.url, region_name="us-east-1").list_tables()

    [call] = spans.named("DynamoDB.ListTables")
    assert call.attributes[A.AWS_TCP_KEEPALIVE] is True
    [tcp] = spans.named("socket connect")
    assert tcp.attributes[A.SOCKET_KEEPALIVE] is True


def test_legacy_retry_default_is_the_services_own(spans, server):
    local = server()
    dynamodb(local.url, retries={"mode": "legacy"}).list_tables()

    [call] = spans.named("DynamoDB.ListTables")
    assert call.attributes[A.AWS_RETRY_MODE] == "legacy"
    assert call.attributes[A.AWS_MAX_ATTEMPTS] == 10  # DynamoDB's, from botocore's table


def test_reported_max_attempts_is_what_botocore_does(spans, server):
    local = server(respond=statuses(*[500] * 10))
    client = dynamodb(local.url, retries={"mode": "standard"})
    with pytest.raises(ClientError):
        client.list_tables()

    [call] = spans.named("DynamoDB.ListTables")
    assert call.attributes[A.AWS_ATTEMPTS] == call.attributes[A.AWS_MAX_ATTEMPTS]
    assert len(local.requests) == call.attributes[A.AWS_ATTEMPTS] >= 3


def test_server_error_then_success_gives_two_attempts(spans, server):
    local = server(respond=statuses(500))
    client = dynamodb(local.url)
    assert client.list_tables()["ResponseMetadata"]["RetryAttempts"] == 1

    [call] = spans.named("DynamoDB.ListTables")
    assert call.attributes[A.AWS_ATTEMPTS] == 2
    first, second = sorted(spans.children(call), key=lambda span: span.start_time)
    assert first.attributes[A.HTTP_RESPONSE_STATUS_CODE] == 500
    assert first.attributes.get(A.HTTP_REQUEST_RESEND_COUNT, 0) == 0
    assert first.status.status_code.name == "ERROR"
    assert second.attributes[A.HTTP_RESPONSE_STATUS_CODE] == 200
    assert second.attributes[A.HTTP_REQUEST_RESEND_COUNT] == 1
    assert second.attributes[A.CONNECTION_REUSED] is True
    assert call.status.status_code.name == "UNSET"


def test_client_per_call_opens_a_new_pool_each_time(spans, server):
    local = server()
    for _ in range(3):
        dynamodb(local.url).list_tables()

    reasons = [a.attributes[A.CONNECTION_REASON] for a in spans.attempts]
    assert reasons == [A.REASON_FIRST, A.REASON_NEW_POOL, A.REASON_NEW_POOL]
    created = [e for call in spans.named("DynamoDB.") for e in call.events]
    assert [e.name for e in created] == [A.EVENT_POOL_CREATED, A.EVENT_POOL_CREATED]
    assert [e.attributes[A.POOL_COUNT] for e in created] == [2, 3]


def test_stubber_traces_a_call_with_no_connection(spans):
    client = dynamodb("http://127.0.0.1:9")  # never contacted: the Stubber answers
    with Stubber(client) as stubber:
        stubber.add_response("list_tables", {"TableNames": ["alpha"]})
        assert client.list_tables()["TableNames"] == ["alpha"]
        stubber.add_client_error("describe_table", "ResourceNotFoundException")
        with pytest.raises(ClientError):
            client.describe_table(TableName="missing")

    listed, described = spans.all
    assert listed.name == "DynamoDB.ListTables"
    assert listed.attributes[A.AWS_ATTEMPTS] == 0
    assert described.name == "DynamoDB.DescribeTable"
    assert described.attributes[A.ERROR_TYPE] == "ResourceNotFoundException"
    assert described.status.status_code.name == "ERROR"
    assert spans.attempts == [] and spans.setups == []


def test_the_programs_errors_and_retries_are_unchanged(spans):
    port = free_port()
    client = dynamodb(f"http://127.0.0.1:{port}", retries={"max_attempts": 1})
    with pytest.raises(EndpointConnectionError) as raised:
        client.list_tables()
    assert str(raised.value) == f'Could not connect to the endpoint URL: "http://127.0.0.1:{port}/"'

    [call] = spans.named("DynamoDB.ListTables")
    assert call.attributes[A.AWS_ATTEMPTS] == 2
    assert call.attributes[A.ERROR_TYPE] == "EndpointConnectionError"
    attempts = spans.children(call)
    assert [a.attributes[A.CONNECTION_REASON] for a in attempts] == [
        A.REASON_FIRST,
        A.REASON_ERROR,
    ]
    assert all(a.attributes[A.ERROR_TYPE] == "NewConnectionError" for a in attempts)


def test_threads_sharing_one_client_get_separate_spans(spans, moto_endpoint):
    client = dynamodb(moto_endpoint)
    create_table(client, "threads")
    spans.clear()

    def work(n: int) -> None:
        for i in range(5):
            client.put_item(TableName="threads", Item={"pk": {"S": f"{n}-{i}"}})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    calls = spans.named("DynamoDB.PutItem")
    assert len(calls) == 40
    attempts = spans.attempts
    assert len(attempts) == 40
    call_ids = {call.context.span_id for call in calls}
    # Exactly one attempt under each call, and each call in its own trace.
    assert sorted(a.parent.span_id for a in attempts) == sorted(call_ids)
    assert len({call.context.trace_id for call in calls}) == 40
    opened = [a for a in attempts if not a.attributes[A.CONNECTION_REUSED]]
    assert 1 <= len(opened) <= 8
    assert len(spans.setups) == len(opened)


def test_opentelemetry_botocore_span_is_enriched_not_duplicated(spans, server):
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor

    local = server()
    instrumentor = BotocoreInstrumentor()
    instrumentor.instrument(tracer_provider=spans.provider)
    try:
        dynamodb(local.url).list_tables()
    finally:
        instrumentor.uninstrument()

    [call] = [span for span in spans.all if span.attributes.get(A.RPC_METHOD) == "ListTables"]
    assert call.instrumentation_scope.name.startswith("opentelemetry.instrumentation.botocore")
    assert call.attributes[A.AWS_MAX_POOL_CONNECTIONS] == 10
    [attempt] = spans.attempts
    assert attempt.parent.span_id == call.context.span_id
    assert attempt.attributes[A.CONNECTION_REASON] == A.REASON_FIRST


@pytest.mark.parametrize("first", ["opentelemetry", "conntrace"])
def test_opentelemetry_botocore_span_gets_the_attempts_whichever_is_instrumented_first(
    server, first
):
    """Instrumented before conntrace, OpenTelemetry's botocore hook opens its span inside
    conntrace's and ends it first: the span still gets the settings and the attempts."""
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = BotocoreInstrumentor()
    local = server(respond=statuses(500))
    order = [
        (lambda: instrumentor.instrument(tracer_provider=provider), instrumentor.uninstrument),
        (lambda: conntrace.instrument(tracer_provider=provider), conntrace.uninstrument),
    ]
    if first == "conntrace":
        order.reverse()
    try:
        for instrument, _ in order:
            instrument()
        dynamodb(local.url, retries={"mode": "standard", "max_attempts": 3}).list_tables()
    finally:
        for _, uninstrument in reversed(order):
            uninstrument()

    spans = exporter.get_finished_spans()
    [call] = [span for span in spans if span.attributes.get(A.RPC_METHOD) == "ListTables"]
    assert call.instrumentation_scope.name.startswith("opentelemetry.instrumentation.botocore")
    assert call.attributes[A.AWS_ATTEMPTS] == 2
    assert call.attributes[A.AWS_MAX_ATTEMPTS] == 4
    assert call.attributes[A.AWS_MAX_POOL_CONNECTIONS] == 10
    attempts = [span for span in spans if A.HTTP_REQUEST_METHOD in span.attributes]
    assert [a.attributes[A.HTTP_RESPONSE_STATUS_CODE] for a in attempts] == [500, 200]
    assert {a.parent.span_id for a in attempts} == {call.context.span_id}
    assert len(local.requests) == 2
