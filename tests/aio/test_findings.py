"""The findings for aiohttp and aiobotocore pools: fired by the problem, in the library's terms,
and silent on healthy traffic."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from conntrace import attributes as A

from ..diagnosis.conftest import Diagnosed
from ..servers import Response


async def _get(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url + "/item") as response:
        await response.read()
        return response.status


def test_one_session_within_its_limit_has_no_findings(diagnosed: Diagnosed, server):
    local = server(respond=lambda request: Response(delay=0.02))

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                await asyncio.gather(*(_get(session, local.url) for _ in range(4)))

    asyncio.run(main())

    assert len(local.connections) == 4
    assert diagnosed.findings() == []
    [host] = diagnosed.diagnosis.hosts()
    assert host["requests"] == 12
    assert host["connections_opened"][A.REASON_FIRST] == 1
    assert host["connections_opened"][A.REASON_POOL_BUSY] == 3


def test_requests_waiting_for_the_connector_limit_are_found(diagnosed: Diagnosed, server):
    local = server(respond=lambda request: Response(delay=0.05))

    async def main() -> None:
        connector = aiohttp.TCPConnector(limit=2)
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(*(_get(session, local.url) for _ in range(6)))

    asyncio.run(main())

    finding = diagnosed.finding(A.FINDING_POOL_TOO_SMALL)
    assert finding.evidence["waited"] == 4
    assert finding.evidence["pool_max_size"] == 2
    assert finding.evidence["discarded"] == 0
    assert "aiohttp.TCPConnector(limit=3, limit_per_host=3)" in finding.advice
    assert "max_pool_connections" not in finding.advice
    assert "4 requests waited" in finding.summary
    # The metrics read the same ledger: four waits in the queue histogram, two connections
    # opened, none left open once the session closed them.
    [(_, _, queue)] = diagnosed.points(A.METRIC_TIME_IN_QUEUE)
    assert queue.count == 4
    opened = diagnosed.points(A.METRIC_CONNECTIONS_OPENED)
    assert sum(point.value for _, _, point in opened) == len(local.connections) == 2
    assert sum(point.value for _, _, point in diagnosed.points(A.METRIC_OPEN_CONNECTIONS)) == 0


def test_a_session_per_request_is_found_in_aiohttp_terms(diagnosed: Diagnosed, server):
    local = server()

    async def main() -> None:
        for _ in range(3):
            async with aiohttp.ClientSession() as session:  # made here
                await _get(session, local.url)

    asyncio.run(main())

    finding = diagnosed.finding(A.FINDING_CLIENT_RECREATED)
    assert finding.evidence["connections"] == 2
    assert "aiohttp.ClientSession" in finding.advice
    assert "boto3" not in finding.advice
    # Where the program made the sessions (their connectors): the line above.
    [origin] = finding.evidence["origins"]
    assert (origin["function"], origin["library"], origin["pools"]) == ("main", "aiohttp", 3)
    assert "# made here" in Path(origin["file"]).read_text().splitlines()[origin["line"] - 1]
    assert "a new aiohttp ClientSession is created on every call at" in finding.summary


def _aiobotocore(endpoint: str, **config: Any) -> Any:
    pytest.importorskip("aiobotocore", reason="aiobotocore is not installed (conntrace[aio])")
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    return get_session().create_client(
        "dynamodb", endpoint_url=endpoint, region_name="us-east-1", config=AioConfig(**config)
    )


def test_an_aiobotocore_client_reused_has_no_findings(diagnosed: Diagnosed, moto_endpoint):
    async def main() -> None:
        async with _aiobotocore(moto_endpoint) as client:
            for _ in range(5):
                await client.list_tables()

    asyncio.run(main())

    assert diagnosed.findings() == []
    assert diagnosed.diagnosis.totals()["api_calls"] == 5


def test_aiobotocore_calls_beyond_max_pool_connections_are_found(
    diagnosed: Diagnosed, moto_endpoint
):
    async def main() -> None:
        async with _aiobotocore(moto_endpoint, max_pool_connections=2) as client:
            await asyncio.gather(*(client.list_tables() for _ in range(12)))

    asyncio.run(main())

    finding = diagnosed.finding(A.FINDING_POOL_TOO_SMALL)
    assert finding.evidence["waited"] >= 1
    assert "aiobotocore.config.AioConfig(max_pool_connections=3)" in finding.advice
