"""The pytest recorder (``conntrace_recorder``) sees aiohttp and aiobotocore as it sees boto3."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest


async def _gets(url: str, sessions: int, per_session: int) -> None:
    for _ in range(sessions):
        async with aiohttp.ClientSession() as session:
            for _ in range(per_session):
                async with session.get(url + "/item") as response:
                    await response.read()


def test_the_recorder_counts_aiohttp_connections(conntrace_recorder, server):
    local = server()
    asyncio.run(_gets(local.url, sessions=1, per_session=4))

    conntrace_recorder.assert_connections(local.url, opened=1, reasons={"first": 1})
    conntrace_recorder.assert_reused(local.url, count=3)
    conntrace_recorder.assert_no_findings()


def test_the_recorder_fails_a_session_per_request(conntrace_recorder, server):
    local = server()
    asyncio.run(_gets(local.url, sessions=3, per_session=1))

    with pytest.raises(AssertionError, match="new_pool"):
        conntrace_recorder.assert_connections(local.url, opened=1)
    assert conntrace_recorder.opened(local.url) == {"first": 1, "new_pool": 2}
    assert "client_recreated" in [f.id for f in conntrace_recorder.findings]


def test_the_recorder_counts_aiobotocore_calls(conntrace_recorder, moto_endpoint):
    pytest.importorskip("aiobotocore", reason="aiobotocore is not installed (conntrace[aio])")
    from aiobotocore.session import get_session

    async def main() -> None:
        client = get_session().create_client(
            "dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1"
        )
        async with client as dynamodb:
            for _ in range(3):
                await dynamodb.list_tables()

    asyncio.run(main())

    conntrace_recorder.assert_calls("DynamoDB.ListTables", count=3, attempts=3)
    conntrace_recorder.assert_connections(moto_endpoint, opened=1, reasons={"first": 1})
    conntrace_recorder.assert_no_findings()
