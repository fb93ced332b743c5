"""Lambda handlers for the tests, written the way functions usually are.

The function's settings come from its environment: DYNAMODB_ENDPOINT (moto's server, or a
forwarder in front of it) and TABLE_NAME.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import boto3

ENDPOINT = os.environ["DYNAMODB_ENDPOINT"]
TABLE = os.environ["TABLE_NAME"]


def _client() -> Any:
    return boto3.client("dynamodb", endpoint_url=ENDPOINT, region_name="us-east-1")


# Built once per execution environment, outside the handler: its connections outlive
# invocations, as AWS recommends.
shared = _client()


def _get(client: Any, event: dict[str, Any]) -> bool:
    key = {"pk": {"S": str(event.get("key", "a"))}}
    return "Item" in client.get_item(TableName=TABLE, Key=key)


def reuse(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"found": _get(shared, event), "request_id": context.aws_request_id}


def per_invocation(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # The anti-pattern: a new client, and so a new connection pool, on every invocation.
    return {"found": _get(_client(), event)}


class OrderRejected(Exception):
    pass


def reject(event: dict[str, Any], context: Any) -> None:
    _get(shared, event)
    raise OrderRejected(f"order {event['order']} rejected")


def where(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Where this process found things: for the tests of the wrapper and the built layer."""
    import awslambdaric
    import opentelemetry.sdk.trace

    import conntrace

    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "awslambdaric": awslambdaric.__file__,
        "conntrace": conntrace.__file__,
        "opentelemetry_sdk": opentelemetry.sdk.trace.__file__,
        "instrumented": conntrace.is_instrumented(),
        "sys_path": sys.path,
        "pythonpath": os.environ.get("PYTHONPATH"),
        "found": _get(shared, event),
    }
