from __future__ import annotations

from collections.abc import Iterator
from typing import Callable

import pytest

from .truth import CountingWSGI, WSGIServer, moto_app


@pytest.fixture
def moto_server() -> Iterator[Callable[..., WSGIServer]]:
    """moto (S3 and DynamoDB) served by waitress on 127.0.0.1, with keep-alive, counted.

    ``delay`` holds each request that long inside the count before moto answers it.
    """
    started: list[WSGIServer] = []

    def start(delay: float = 0.0, threads: int = 8) -> WSGIServer:
        served = WSGIServer(CountingWSGI(moto_app(), delay=delay), threads=threads)
        started.append(served)
        return served

    yield start
    for served in started:
        served.close()
