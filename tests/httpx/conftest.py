"""httpx, sync and async, against the local servers: one way to drive either."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any, Callable

import httpx
import pytest

from conntrace import findings
from conntrace.findings import Diagnosis

from ..conftest import Spans


class Driver:
    """Sends requests with ``httpx.Client`` (``sync``) or ``httpx.AsyncClient`` (``async``)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def requests(self, url: str, count: int, **client: Any) -> list[int]:
        """``count`` GETs in turn on one client; their status codes."""
        if self.mode == "sync":
            with httpx.Client(**client) as http:
                return [http.get(url).status_code for _ in range(count)]

        async def run() -> list[int]:
            async with httpx.AsyncClient(**client) as http:
                return [(await http.get(url)).status_code for _ in range(count)]

        return asyncio.run(run())

    def concurrent(self, url: str, count: int, **client: Any) -> list[int]:
        """``count`` GETs at once on one client (threads, or ``asyncio.gather``)."""
        if self.mode == "sync":
            with httpx.Client(**client) as http:
                return self.threads(http, url, count)

        async def run() -> list[int]:
            async with httpx.AsyncClient(**client) as http:
                responses = await asyncio.gather(*(http.get(url) for _ in range(count)))
                return [response.status_code for response in responses]

        return asyncio.run(run())

    @staticmethod
    def threads(http: httpx.Client, url: str, count: int) -> list[int]:
        """``count`` GETs at once on ``http``, one thread each, started together."""
        codes: list[int] = []
        start = threading.Barrier(count)

        def one() -> None:
            start.wait()
            codes.append(http.get(url).status_code)

        threads = [threading.Thread(target=one) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return codes

    def each(self, calls: list[Callable[[Any], Any]], **client: Any) -> list[Any]:
        """Each call given the client (sync) or awaited with it (async), in turn; what each
        returned, or the exception it raised."""
        outcomes: list[Any] = []
        if self.mode == "sync":
            with httpx.Client(**client) as http:
                for call in calls:
                    try:
                        outcomes.append(call(http))
                    except Exception as error:
                        outcomes.append(error)
            return outcomes

        async def run() -> None:
            async with httpx.AsyncClient(**client) as http:
                for call in calls:
                    try:
                        outcomes.append(await call(http))
                    except Exception as error:
                        outcomes.append(error)

        asyncio.run(run())
        return outcomes


@pytest.fixture(params=["sync", "async"])
def driver(request: pytest.FixtureRequest) -> Driver:
    return Driver(request.param)


@pytest.fixture
def diagnosis(spans: Spans) -> Iterator[Diagnosis]:
    """The process's diagnosis, reading the ledger for this test only."""
    diagnosis = findings.install(metrics=False, report=False)
    try:
        yield diagnosis
    finally:
        diagnosis.close()
