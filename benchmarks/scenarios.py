"""The operations the benchmarks time: each builds a client once and returns one call of it."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Callable

BOTOCORE = "botocore"
URLLIB3 = "urllib3"
HTTPS_NEW = "https_new"
HTTP_NEW = "http_new"
AIOHTTP = "aiohttp"
SCENARIOS = (BOTOCORE, URLLIB3, HTTPS_NEW, HTTP_NEW, AIOHTTP)

TITLES = {
    BOTOCORE: "botocore DynamoDB GetItem, reused connection",
    URLLIB3: "urllib3 GET, reused connection",
    HTTPS_NEW: "urllib3 GET on a new HTTPS connection (DNS + TCP + TLS)",
    HTTP_NEW: "urllib3 GET on a new HTTP connection (DNS + TCP)",
    AIOHTTP: "aiohttp GET, reused connection (one request per event-loop run)",
}

# Fake credentials: the local server checks nothing, and botocore must never look for
# real ones (instance metadata, shared files) off this machine.
AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "benchmark",
    "AWS_SECRET_ACCESS_KEY": "benchmark",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}


@dataclass(frozen=True)
class Target:
    """Where the benchmark server listens; ``ca_file`` signs its HTTPS certificate."""

    http_port: int
    https_port: int | None = None
    ca_file: str | None = None


Operation = Callable[[], object]


def build(scenario: str, target: Target) -> Operation:
    if scenario == BOTOCORE:
        return _get_item(target)
    if scenario == URLLIB3:
        return _get(target)
    if scenario == HTTPS_NEW:
        return _get_on_new_https_connection(target)
    if scenario == HTTP_NEW:
        return _get_on_new_http_connection(target)
    if scenario == AIOHTTP:
        return _aiohttp_get(target)
    raise ValueError(f"unknown scenario {scenario!r}")


def _get_item(target: Target) -> Operation:
    import boto3

    client = boto3.client(
        "dynamodb", endpoint_url=f"http://127.0.0.1:{target.http_port}", region_name="us-east-1"
    )
    key = {"id": {"S": "1"}}

    def get_item() -> object:
        return client.get_item(TableName="benchmark", Key=key)

    return get_item


def _get(target: Target) -> Operation:
    import urllib3

    pool = urllib3.HTTPConnectionPool("127.0.0.1", target.http_port, maxsize=1)

    def get() -> object:
        return pool.request("GET", "/item").data

    return get


# The server closes the connection after answering, so each call opens a new one.
_CLOSE = {"Connection": "close"}


def _get_on_new_http_connection(target: Target) -> Operation:
    import urllib3

    pool = urllib3.HTTPConnectionPool("127.0.0.1", target.http_port, maxsize=1)

    def get() -> object:
        return pool.request("GET", "/item", headers=_CLOSE).data

    return get


def _get_on_new_https_connection(target: Target) -> Operation:
    import urllib3

    if target.https_port is None or target.ca_file is None:
        raise ValueError("this scenario needs the HTTPS server")
    # Loaded once, as a long-lived client would: the CA file is not what is measured.
    context = ssl.create_default_context(cafile=target.ca_file)
    pool = urllib3.HTTPSConnectionPool(
        "127.0.0.1",
        target.https_port,
        maxsize=1,
        ssl_context=context,
        server_hostname="localhost",
    )

    def get() -> object:
        return pool.request("GET", "/item", headers=_CLOSE).data

    return get


def _aiohttp_get(target: Target) -> Operation:
    import asyncio
    import atexit

    import aiohttp

    # One loop and one session for the worker's life, as a long-lived asyncio program has;
    # each call runs one request on the loop (that cost is the same in every variant).
    loop = asyncio.new_event_loop()

    async def open_session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit_per_host=1))

    session = loop.run_until_complete(open_session())
    # Closed at the worker's exit, as a program closes its session.
    atexit.register(lambda: loop.run_until_complete(session.close()))
    url = f"http://127.0.0.1:{target.http_port}/item"

    async def request() -> bytes:
        async with session.get(url) as response:
            return await response.read()

    def get() -> object:
        return loop.run_until_complete(request())

    return get
