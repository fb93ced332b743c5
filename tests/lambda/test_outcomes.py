"""What the Runtime API receives: in order after the spans, and exactly as without conntrace."""

from __future__ import annotations

from opentelemetry.trace import StatusCode

from conntrace import attributes as A


def test_the_spans_of_an_invocation_are_out_before_its_response(start_function, receiver):
    def received_span_ids(_invocation):
        return {span.span_id for span in receiver.spans()}

    function = start_function("app.reuse", receiver, on_outcome=received_span_ids)
    invocations = [function.invoke() for _ in range(2)]

    for invocation in invocations:
        trace = function.trace(invocation)
        names = {span.name for span in trace.spans}
        assert {"orders", "DynamoDB.GetItem", "POST"} <= names
        # What the receiver held when the Runtime API got this invocation's response.
        assert {span.span_id for span in trace.spans} <= invocation.seen_at_outcome


def test_a_handler_exception_reaches_the_runtime_as_the_handler_raised_it(start_function, receiver):
    traced = start_function("app.reject", receiver)
    plain = start_function("app.reject", wrapper=False)
    failed = traced.invoke({"order": 42})
    untraced = plain.invoke({"order": 42})

    assert failed.outcome.kind == untraced.outcome.kind == "error"
    document = failed.outcome.json()
    assert document["errorType"] == "OrderRejected"
    assert document["errorMessage"] == "order 42 rejected"
    assert document["requestId"] == failed.request_id
    # The whole document, stack trace included, is what the runtime posts without conntrace.
    assert {**document, "requestId": None} == {**untraced.outcome.json(), "requestId": None}
    assert not any("conntrace" in frame for frame in document["stackTrace"])
    xray_cause = "lambda-runtime-function-xray-error-cause"
    assert failed.outcome.headers[xray_cause] == untraced.outcome.headers[xray_cause]

    trace = traced.trace(failed)
    server = trace.server
    assert server.status_code == StatusCode.ERROR
    assert server.status_message == "order 42 rejected"
    assert server.attributes[A.ERROR_TYPE] == "OrderRejected"
    [event] = [event for event in server.events if event.name == A.EVENT_EXCEPTION]
    assert event.attributes[A.EXCEPTION_TYPE] == "OrderRejected"
    assert event.attributes[A.EXCEPTION_MESSAGE] == "order 42 rejected"
    stack = event.attributes[A.EXCEPTION_STACKTRACE]
    assert stack.startswith("Traceback (most recent call last):\n")
    assert "raise OrderRejected(f\"order {event['order']} rejected\")" in stack
    assert stack.endswith("OrderRejected: order 42 rejected")
    # The AWS call the handler made before it raised is still a child of the invocation.
    assert [span.name for span in trace.children(server)] == ["DynamoDB.GetItem"]


def test_the_next_invocation_after_an_exception_is_traced_as_usual(start_function, receiver):
    function = start_function("app.reject", receiver)
    function.invoke({"order": 1})
    second = function.invoke({"order": 2})

    server = function.trace(second).server
    assert server.attributes[A.FAAS_COLDSTART] is False
    assert server.attributes[A.ERROR_TYPE] == "OrderRejected"
