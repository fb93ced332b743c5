"""A write that botocore sends again after its first request may have run is found; a read
retried, or a write retried after a connection that never opened, is not."""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

from conntrace import attributes as A

from ..servers import Request, Response
from .conftest import Diagnosed
from .test_findings import events_of

ITEM = {"pk": {"S": "one"}}


def first_answer_late(delay: float) -> Any:
    """Answers DynamoDB's JSON protocol with ``{}``; the first request waits ``delay`` first."""
    lock = threading.Lock()
    seen = [0]

    def respond(request: Request) -> Response:
        with lock:
            seen[0] += 1
            first = seen[0] == 1
        return Response(body=b"{}", delay=delay if first else 0.0)

    return respond


def client(url: str, **config: Any) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=url,
        config=Config(read_timeout=0.3, retries={"max_attempts": 2, "mode": "legacy"}, **config),
    )


def test_a_put_item_sent_again_after_a_read_timeout_is_found(diagnosed: Diagnosed, server):
    local = server(respond=first_answer_late(0.8))
    client(local.url).put_item(TableName="table", Item=ITEM)

    # The server got the PutItem twice: it may have written the item twice.
    targets = [json.loads(r.body)["TableName"] for r in local.requests]
    assert targets == ["table", "table"]
    finding = diagnosed.finding(A.FINDING_NOT_IDEMPOTENT)
    assert finding.severity == A.SEVERITY_WARNING
    assert finding.target == "DynamoDB.PutItem"
    assert finding.evidence == {
        "operation": "DynamoDB.PutItem",
        "calls": 1,
        "retries": 1,
        "errors": {"ReadTimeoutError": 1},
    }
    assert "may have run it twice" in finding.summary
    assert "ConditionExpression" in finding.advice and "boto3#883" in finding.advice
    [(span, event)] = events_of(diagnosed, A.FINDING_NOT_IDEMPOTENT)
    assert span.name == "DynamoDB.PutItem"
    assert span.attributes[A.AWS_IDEMPOTENT] is False
    assert (
        "attempt 2 of DynamoDB.PutItem sent again after ReadTimeoutError"
        in (event[A.FINDING_MESSAGE])
    )


def test_a_retried_get_item_is_not_a_finding(diagnosed: Diagnosed, server):
    local = server(respond=first_answer_late(0.8))
    client(local.url).get_item(TableName="table", Key=ITEM)

    assert len(local.requests) == 2
    assert A.FINDING_RETRY_TIME in diagnosed.ids()
    assert A.FINDING_NOT_IDEMPOTENT not in diagnosed.ids()
    [call] = [s for s in diagnosed.spans if s.name == "DynamoDB.GetItem"]
    assert call.attributes[A.AWS_IDEMPOTENT] is True


def test_a_conditional_put_item_is_not_a_finding(diagnosed: Diagnosed, server):
    local = server(respond=first_answer_late(0.8))
    client(local.url).put_item(
        TableName="table", Item=ITEM, ConditionExpression="attribute_not_exists(pk)"
    )

    assert len(local.requests) == 2
    assert A.FINDING_NOT_IDEMPOTENT not in diagnosed.ids()


def test_a_put_item_retried_after_a_refused_connection_is_not_a_finding(diagnosed: Diagnosed):
    # A port nothing listens on: the request never leaves the client.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(EndpointConnectionError):
        client(f"http://127.0.0.1:{port}").put_item(TableName="table", Item=ITEM)

    assert A.FINDING_RETRY_TIME in diagnosed.ids()
    assert A.FINDING_NOT_IDEMPOTENT not in diagnosed.ids()


def test_a_put_item_that_times_out_without_retries_is_not_a_finding(diagnosed: Diagnosed, server):
    local = server(respond=first_answer_late(0.8))
    with pytest.raises(ReadTimeoutError):
        boto3.client(
            "dynamodb",
            endpoint_url=local.url,
            config=Config(read_timeout=0.3, retries={"total_max_attempts": 1}),
        ).put_item(TableName="table", Item=ITEM)

    assert len(local.requests) == 1
    assert A.FINDING_NOT_IDEMPOTENT not in diagnosed.ids()
