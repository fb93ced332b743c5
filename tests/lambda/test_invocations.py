"""Invocations of a function under the real runtime interface client, traced through the layer."""

from __future__ import annotations

import time

from opentelemetry.trace import SpanKind, StatusCode

from conntrace import attributes as A

from .runtime_api import function_arn


def test_each_invocation_is_a_server_span_with_the_aws_calls_as_children(start_function, receiver):
    function = start_function("app.reuse", receiver)
    first = function.invoke({"key": "a"})
    second = function.invoke({"key": "b"})

    assert first.outcome.kind == "response"
    assert first.outcome.json() == {"found": True, "request_id": first.request_id}
    assert second.outcome.json() == {"found": False, "request_id": second.request_id}
    cold, warm = function.trace(first), function.trace(second)
    assert cold.server.trace_id != warm.server.trace_id
    for trace, invocation in ((cold, first), (warm, second)):
        server = trace.server
        assert server.name == "orders"
        assert server.kind == SpanKind.SERVER
        assert server.parent_span_id is None
        assert server.attributes[A.FAAS_INVOCATION_ID] == invocation.request_id
        assert server.attributes[A.FAAS_NAME] == "orders"
        assert server.attributes[A.FAAS_VERSION] == "$LATEST"
        assert server.attributes[A.CLOUD_RESOURCE_ID] == function_arn("orders")
        assert server.attributes[A.CLOUD_ACCOUNT_ID] == "123456789012"
        assert server.attributes[A.AWS_LAMBDA_INVOKED_ARN] == invocation.function_arn
        assert server.attributes[A.CLOUD_REGION] == "us-east-1"
        assert server.status_code == StatusCode.UNSET
        assert server.resource["service.name"] == "orders"
        [call] = trace.children(server)
        assert call.name == "DynamoDB.GetItem"
        [attempt] = trace.children(call)
        assert attempt.name == "POST"
    assert cold.server.attributes[A.FAAS_COLDSTART] is True
    assert warm.server.attributes[A.FAAS_COLDSTART] is False


def test_a_connection_kept_across_invocations_shows_its_idle_time(start_function, receiver):
    function = start_function("app.reuse", receiver)
    first = function.invoke()
    time.sleep(1.0)  # the environment sits idle (frozen, in Lambda) between invocations
    second = function.invoke()

    [opened] = function.trace(first).attempts
    assert opened.attributes[A.CONNECTION_REUSED] is False
    assert opened.attributes[A.CONNECTION_REASON] == A.REASON_FIRST
    [reused] = function.trace(second).attempts
    assert reused.attributes[A.CONNECTION_REUSED] is True
    assert reused.attributes[A.CONNECTION_ID] == opened.attributes[A.CONNECTION_ID]
    assert A.CONNECTION_REASON not in reused.attributes
    # The connection went idle before the first outcome was posted and was taken again
    # after the second event was handed over: the gap lies inside its idle time, and the
    # idle time inside the span from the first event to the second outcome.
    idle_s = reused.attributes[A.CONNECTION_IDLE_MS] / 1000.0
    assert second.delivered_at - first.outcome.at <= idle_s
    assert idle_s <= second.outcome.at - first.delivered_at


def test_a_client_built_in_the_handler_gives_a_new_pool_every_time(start_function, receiver):
    function = start_function("app.per_invocation", receiver)
    invocations = [function.invoke() for _ in range(3)]

    reasons = []
    for invocation in invocations:
        [attempt] = function.trace(invocation).attempts
        assert attempt.attributes[A.CONNECTION_REUSED] is False
        reasons.append(attempt.attributes[A.CONNECTION_REASON])
    assert reasons == [A.REASON_FIRST, A.REASON_NEW_POOL, A.REASON_NEW_POOL]


def test_a_connection_dropped_while_idle_is_stale(start_function, receiver, forwarder):
    function = start_function("app.reuse", receiver, endpoint=forwarder.url)
    first = function.invoke()
    forwarder.drop_connections()  # a NAT or the server closed it during the freeze
    second = function.invoke()

    assert second.outcome.json()["found"] is True
    assert forwarder.accepted == 2
    [opened] = function.trace(first).attempts
    [reopened] = function.trace(second).attempts
    assert reopened.attributes[A.CONNECTION_REUSED] is False
    assert reopened.attributes[A.CONNECTION_REASON] == A.REASON_STALE
    assert reopened.attributes[A.CONNECTION_ID] != opened.attributes[A.CONNECTION_ID]


def test_an_alias_in_the_invoked_arn_becomes_the_version_in_the_resource_id(
    start_function, receiver
):
    function = start_function("app.reuse", receiver, AWS_LAMBDA_FUNCTION_VERSION="7")
    through_alias = function.invoke(qualifier="live")
    unqualified = function.invoke()

    server = function.trace(through_alias).server
    assert server.attributes[A.AWS_LAMBDA_INVOKED_ARN] == function_arn("orders", "live")
    assert server.attributes[A.CLOUD_RESOURCE_ID] == function_arn("orders", "7")
    assert server.attributes[A.FAAS_VERSION] == "7"
    server = function.trace(unqualified).server
    assert server.attributes[A.AWS_LAMBDA_INVOKED_ARN] == function_arn("orders")
    assert server.attributes[A.CLOUD_RESOURCE_ID] == function_arn("orders", "7")


def test_a_runtime_that_polls_from_a_thread_is_traced_the_same(start_function, receiver):
    # From Python 3.12 on, awslambdaric waits for the next event in a worker thread.
    function = start_function("app.reuse", receiver, AWS_EXECUTION_ENV="AWS_Lambda_python3.12")
    first, second = function.invoke(), function.invoke()

    for invocation, cold in ((first, True), (second, False)):
        trace = function.trace(invocation)
        assert trace.server.attributes[A.FAAS_COLDSTART] is cold
        assert [span.name for span in trace.children(trace.server)] == ["DynamoDB.GetItem"]
