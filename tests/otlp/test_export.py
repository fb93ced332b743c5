"""conntrace's spans through the real OTLP exporters to a real receiver, over gRPC and HTTP.

Each test runs a program against real local servers, then checks that every span
conntrace recorded reached the receiver with the same name, kind, ids, parent, times,
attributes, events, links, status and resource, and that the reuse story (the link
from a reused request to its connection's ``HTTP connection_setup`` span) reads the same
on the receiving side.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

import urllib3
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id

import conntrace
from conntrace import attributes as A

from ..conftest import create_table, dynamodb
from ..otlp_receiver import OtlpReceiver, ReceivedSpan
from ..servers import Request, Response
from .conftest import SERVICE_NAME, Pipeline, otlp_exporter

# Values the program handles that must never leave it (see conftest's AWS environment).
SECRETS = ("testing-session-token", "AWS4-HMAC-SHA256", "Signature=", "item-body-secret")


def assert_arrived_intact(
    recorded: Iterable[ReadableSpan], received: dict[str, ReceivedSpan]
) -> None:
    recorded = list(recorded)
    assert set(received) == {format_span_id(span.context.span_id) for span in recorded}
    for span in recorded:
        got = received[format_span_id(span.context.span_id)]
        assert got.name == span.name
        assert got.kind == span.kind
        assert got.trace_id == format_trace_id(span.context.trace_id)
        parent = format_span_id(span.parent.span_id) if span.parent else None
        assert got.parent_span_id == parent, span.name
        assert (got.start_time_unix_nano, got.end_time_unix_nano) == (
            span.start_time,
            span.end_time,
        )
        assert got.attributes == dict(span.attributes or {}), span.name
        assert [(e.name, e.time_unix_nano, e.attributes) for e in got.events] == [
            (e.name, e.timestamp, dict(e.attributes or {})) for e in span.events
        ], span.name
        assert [(link.trace_id, link.span_id, link.attributes) for link in got.links] == [
            (
                format_trace_id(link.context.trace_id),
                format_span_id(link.context.span_id),
                dict(link.attributes or {}),
            )
            for link in span.links
        ], span.name
        assert got.status_code == span.status.status_code
        assert got.status_message == (span.status.description or "")
        assert got.resource == dict(span.resource.attributes)
        assert (got.scope_name, got.scope_version) == ("conntrace", conntrace.__version__)


def assert_nothing_secret(received: Iterable[ReceivedSpan]) -> None:
    for span in received:
        values = [*span.attributes.values()]
        values += [v for event in span.events for v in event.attributes.values()]
        for value in values:
            for secret in SECRETS:
                assert secret not in str(value), (span.name, value)


def children(spans: dict[str, ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    found = [span for span in spans.values() if span.parent_span_id == parent.span_id]
    return sorted(found, key=lambda span: span.start_time_unix_nano)


def attempts(spans: dict[str, ReceivedSpan]) -> list[ReceivedSpan]:
    found = [span for span in spans.values() if A.HTTP_REQUEST_METHOD in span.attributes]
    return sorted(found, key=lambda span: span.start_time_unix_nano)


def event(span: ReceivedSpan, name: str) -> Any:
    [found] = [e for e in span.events if e.name == name]
    return found


def _respond(request: Request) -> Response:
    if request.target == "/close":
        return Response(close=True)
    if request.target == "/fail":
        return Response(status=500)
    return Response()


def test_https_reuse_story_arrives_intact(exported: Pipeline, receiver, tls_server, client_tls):
    local = tls_server(respond=_respond)
    http = urllib3.PoolManager(ssl_context=client_tls)
    statuses = [http.request("GET", local.url + path).status for path in ("/a", "/b", "/close")]
    statuses.append(http.request("GET", local.url + "/c").status)
    local.close_idle_connections()
    time.sleep(0.1)  # let the server's FIN reach the idle pooled socket
    statuses += [http.request("GET", local.url + path).status for path in ("/d", "/fail")]
    assert statuses == [200, 200, 200, 200, 200, 500]

    received = exported.received(receiver)
    assert_arrived_intact(exported.recorded(), received)
    assert_nothing_secret(received.values())

    sent = attempts(received)
    assert [span.kind for span in sent] == [SpanKind.CLIENT] * 6
    assert [span.attributes[A.CONNECTION_REUSED] for span in sent] == [
        False, True, True, False, False, True,
    ]  # fmt: skip
    assert [span.attributes.get(A.CONNECTION_REASON) for span in sent] == [
        A.REASON_FIRST, None, None, A.REASON_SERVER_CLOSED, A.REASON_STALE, None,
    ]  # fmt: skip
    first, reused, closing, after_close, after_idle, failed = sent

    # A new connection: its setup span under the request, with DNS, TCP and TLS beneath.
    [setup] = children(received, first)
    assert setup.name == f"{A.SPAN_CONNECTION_SETUP} {local.host_name}:{local.port}"
    assert setup.kind == SpanKind.INTERNAL
    assert setup.attributes[A.CONNECTION_REASON] == A.REASON_FIRST
    assert setup.attributes[A.CONNECTION_ID] == first.attributes[A.CONNECTION_ID]
    dns, tcp, tls = children(received, setup)
    assert dns.name == f"{A.SPAN_DNS} {local.host_name}"
    assert "127.0.0.1" in dns.attributes[A.DNS_ANSWERS]
    assert tcp.attributes[A.NETWORK_PEER_PORT] == local.port
    assert tls.attributes[A.TLS_PROTOCOL_VERSION] in ("1.2", "1.3")
    assert tls.attributes[A.TLS_RESUMED] is False

    # A reused request: no setup of its own, one link to the setup that opened its connection.
    assert children(received, reused) == []
    [link] = reused.links
    assert (link.trace_id, link.span_id) == (setup.trace_id, setup.span_id)
    assert received[link.span_id] is setup
    assert reused.attributes[A.CONNECTION_REQUEST_NUMBER] == 2

    event(closing, A.EVENT_SERVER_CLOSED)
    [reopened] = children(received, after_close)
    assert reopened.attributes[A.CONNECTION_REASON] == A.REASON_SERVER_CLOSED
    dropped = event(after_idle, A.EVENT_CONNECTION_DROPPED)
    assert dropped.attributes[A.CONNECTION_ID] == after_close.attributes[A.CONNECTION_ID]
    [link] = failed.links
    assert received[link.span_id].parent_span_id == after_idle.span_id
    assert failed.attributes[A.HTTP_RESPONSE_STATUS_CODE] == 500
    assert failed.attributes[A.ERROR_TYPE] == "500"
    assert failed.status_code == StatusCode.ERROR
    assert {span.resource["service.name"] for span in received.values()} == {SERVICE_NAME}


def test_dynamodb_calls_arrive_intact(exported: Pipeline, receiver, moto_endpoint):
    table = f"otlp-{uuid.uuid4().hex[:8]}"
    client = dynamodb(moto_endpoint)
    create_table(client, table)
    client.put_item(TableName=table, Item={"pk": {"S": "a"}, "v": {"S": "item-body-secret"}})
    item = client.get_item(TableName=table, Key={"pk": {"S": "a"}})
    assert item["Item"]["v"] == {"S": "item-body-secret"}
    for _ in range(2):  # a client per call, as in a handler that builds its own
        assert dynamodb(moto_endpoint).describe_table(TableName=table)["Table"]["TableName"]

    received = exported.received(receiver)
    assert_arrived_intact(exported.recorded(), received)
    assert_nothing_secret(received.values())

    calls = sorted(
        (span for span in received.values() if span.name.startswith("DynamoDB.")),
        key=lambda span: span.start_time_unix_nano,
    )
    assert [call.name for call in calls] == [
        "DynamoDB.CreateTable",
        "DynamoDB.PutItem",
        "DynamoDB.GetItem",
        "DynamoDB.DescribeTable",
        "DynamoDB.DescribeTable",
    ]
    create, _put, get, *per_call = calls
    assert get.kind == SpanKind.CLIENT
    assert get.attributes[A.RPC_SYSTEM] == A.RPC_SYSTEM_AWS
    assert get.attributes[A.RPC_METHOD] == "GetItem"
    assert get.attributes[A.AWS_REQUEST_ID] == item["ResponseMetadata"]["RequestId"]
    assert get.attributes[A.AWS_MAX_POOL_CONNECTIONS] == 10
    assert get.attributes[A.AWS_TCP_KEEPALIVE] is False

    [create_attempt] = children(received, create)
    [setup] = children(received, create_attempt)
    [get_attempt] = children(received, get)
    assert get_attempt.attributes[A.CONNECTION_REUSED] is True
    assert [(link.trace_id, link.span_id) for link in get_attempt.links] == [
        (setup.trace_id, setup.span_id)
    ]
    assert get_attempt.trace_id == get.trace_id != setup.trace_id

    for number, call in enumerate(per_call, start=2):
        assert event(call, A.EVENT_POOL_CREATED).attributes[A.POOL_COUNT] == number
        [attempt] = children(received, call)
        assert attempt.attributes[A.CONNECTION_REASON] == A.REASON_NEW_POOL
        assert [s.name for s in children(received, attempt)] == [
            f"{A.SPAN_CONNECTION_SETUP} {moto_endpoint.split('://', 1)[1]}"
        ]


def test_exporters_own_requests_are_not_traced(exported: Pipeline, receiver, transport, server):
    local = server()
    http = urllib3.PoolManager()
    for _ in range(3):
        http.request("GET", local.url)
        # Each flush is an export while conntrace is on: over HTTP it goes through urllib3.
        exported.provider.force_flush()
    receiver.wait_for_requests(lambda requests: len(requests) >= 3)

    received = exported.received(receiver)
    assert_arrived_intact(exported.recorded(), received)
    ports = {span.attributes.get(A.SERVER_PORT) for span in received.values()}
    ports |= {span.attributes.get(A.NETWORK_PEER_PORT) for span in received.values()}
    assert receiver.port not in ports
    assert local.port in ports
    protocol, compression = transport
    if protocol == "http":
        encodings = {request.encoding for request in receiver.requests()}
        assert encodings == {compression or "identity"}


def test_retryable_errors_from_the_receiver_lose_no_span(make_pipeline, transport, server):
    protocol, compression = transport
    with OtlpReceiver(protocol=protocol, fail="retryable") as receiver:  # type: ignore[arg-type]
        pipeline = make_pipeline(otlp_exporter(protocol, receiver.traces_endpoint, compression, 20))
        local = server()
        assert urllib3.PoolManager().request("GET", local.url).status == 200
        flushed = threading.Thread(target=pipeline.provider.force_flush, daemon=True)
        flushed.start()
        receiver.wait_for_requests(lambda requests: len(requests) >= 1)
        receiver.fail = None  # the collector is back: the exporter's retry must get through
        flushed.join(30)

        received = pipeline.received(receiver)
        assert_arrived_intact(pipeline.recorded(), received)
        refused = [request for request in receiver.requests() if not request.accepted]
        assert refused
