"""aiobotocore through conntrace: one API call span, its attempts beneath it, over aiohttp."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conntrace import attributes as A

from ..conftest import create_table

pytest.importorskip(
    "aiobotocore",
    reason="aiobotocore is not installed: ./run test runs these on its own line (conntrace[aio])",
)

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session


def _client(endpoint: str, service: str = "dynamodb", **config: Any) -> Any:
    return get_session().create_client(
        service, endpoint_url=endpoint, region_name="us-east-1", config=AioConfig(**config)
    )


def _api_calls(spans, label: str) -> list[Any]:
    return sorted(spans.named(label), key=lambda span: span.start_time)


def test_calls_on_one_client_share_one_connection(spans, moto_endpoint):
    async def main() -> list[Any]:
        async with _client(moto_endpoint) as client:
            tables = [await client.list_tables() for _ in range(4)]
        return tables

    results = asyncio.run(main())
    assert all("TableNames" in result for result in results)

    calls = _api_calls(spans, "DynamoDB.ListTables")
    assert len(calls) == 4
    attempts = spans.attempts
    assert len(attempts) == 4
    for call, attempt in zip(calls, attempts):
        # Each attempt hangs beneath its own API call span.
        assert attempt.parent.span_id == call.context.span_id
        assert call.attributes[A.RPC_SYSTEM] == A.RPC_SYSTEM_AWS
        assert call.attributes[A.AWS_MAX_POOL_CONNECTIONS] == 10
        assert call.attributes[A.AWS_ATTEMPTS] == 1
        assert call.kind.name == "CLIENT"
    assert [a.attributes[A.CONNECTION_REUSED] for a in attempts] == [False, True, True, True]
    assert len(spans.setups) == 1
    assert {a.attributes[A.CONNECTION_ID] for a in attempts} == {
        spans.setups[0].attributes[A.CONNECTION_ID]
    }


def test_a_client_per_call_is_a_new_pool(spans, moto_endpoint):
    async def main() -> None:
        for _ in range(3):
            async with _client(moto_endpoint) as client:
                await client.list_tables()

    asyncio.run(main())

    reasons = [a.attributes.get(A.CONNECTION_REASON) for a in spans.attempts]
    assert reasons == [A.REASON_FIRST, A.REASON_NEW_POOL, A.REASON_NEW_POOL]


def test_more_concurrent_calls_than_max_pool_connections_wait(spans, moto_endpoint):
    async def main() -> None:
        async with _client(moto_endpoint, max_pool_connections=2) as client:
            await asyncio.gather(*(client.list_tables() for _ in range(8)))

    asyncio.run(main())

    attempts = spans.attempts
    assert len(attempts) == 8
    assert len(spans.setups) <= 2
    assert [a for a in attempts if A.POOL_WAIT_MS in a.attributes]
    calls = _api_calls(spans, "DynamoDB.ListTables")
    assert {a.parent.span_id for a in attempts} == {c.context.span_id for c in calls}


def test_s3_calls_and_errors_keep_the_programs_results(spans, moto_endpoint):
    async def main() -> list[Any]:
        results: list[Any] = []
        async with _client(moto_endpoint, "s3") as s3:
            await s3.create_bucket(Bucket="aio-bucket")
            await s3.put_object(Bucket="aio-bucket", Key="k", Body=b"body")
            response = await s3.get_object(Bucket="aio-bucket", Key="k")
            async with response["Body"] as body:
                results.append(await body.read())
            try:
                await s3.get_object(Bucket="aio-bucket", Key="missing")
            except s3.exceptions.NoSuchKey as error:
                results.append(error.response["Error"]["Code"])
        return results

    assert asyncio.run(main()) == [b"body", "NoSuchKey"]

    [failed] = _api_calls(spans, "S3.GetObject")[1:]
    assert failed.status.status_code.name == "ERROR"
    [attempt] = spans.children(failed)
    assert attempt.attributes[A.HTTP_RESPONSE_STATUS_CODE] == 404


def test_dynamodb_table_round_trip_counts_match_the_server(spans, moto_endpoint):
    import boto3  # the table is made through botocore, the reads through aiobotocore

    create_table(
        boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1"), "aio"
    )
    spans.clear()

    async def main() -> None:
        async with _client(moto_endpoint) as client:
            for n in range(3):
                await client.put_item(TableName="aio", Item={"pk": {"S": str(n)}})
            item = await client.get_item(TableName="aio", Key={"pk": {"S": "1"}})
            assert item["Item"]["pk"] == {"S": "1"}

    asyncio.run(main())

    assert len(_api_calls(spans, "DynamoDB.PutItem")) == 3
    assert len(spans.attempts) == 4
    assert len(spans.setups) == 1
