"""Where the program made the client that owns each pool, and advice in its library's terms."""

from __future__ import annotations

import inspect
import os
from typing import Any

import boto3
import requests
import requests.adapters
import urllib3
from botocore.config import Config

from conntrace import attributes as A

from .conftest import Diagnosed
from .test_findings import events_of, in_threads, together

HERE = os.path.abspath(__file__)


def line_of(function: Any, text: str) -> int:
    """The line of ``function``'s source that holds ``text``."""
    lines, first = inspect.getsourcelines(function)
    [index] = [i for i, line in enumerate(lines) if text in line]
    return first + index


def make_client(url: str, **config: Any) -> Any:
    return boto3.client("dynamodb", endpoint_url=url, config=Config(**config))  # made here


def handle(url: str) -> None:
    make_client(url).list_tables()


def test_a_client_per_call_names_where_it_is_made(diagnosed: Diagnosed, server):
    local = server()
    for _ in range(3):
        handle(local.url)

    line = line_of(make_client, "made here")
    finding = diagnosed.finding(A.FINDING_CLIENT_RECREATED)
    where = f"{os.path.relpath(HERE)}:{line} in make_client()"
    assert f"a new DynamoDB client is created on every call at {where}" in finding.summary
    assert finding.evidence["origins"] == [
        {
            "file": HERE,
            "line": line,
            "function": "make_client",
            "library": "botocore",
            "service": "DynamoDB",
            "pools": 3,
        }
    ]
    [host] = diagnosed.diagnosis.hosts()
    assert host["origins"] == finding.evidence["origins"]
    # So does the span event on the request that made the finding fire.
    [(_, event)] = events_of(diagnosed, A.FINDING_CLIENT_RECREATED)
    assert f"its client is made at {where}" in event[A.FINDING_MESSAGE]
    # The setup spans say it too, in OpenTelemetry's code.* attributes.
    setups = [s for s in diagnosed.spans if s.name.startswith(A.SPAN_CONNECTION_SETUP)]
    assert len(setups) == 3
    for setup in setups:
        assert setup.attributes[A.CODE_FILEPATH] == HERE
        assert setup.attributes[A.CODE_LINENO] == line
        assert setup.attributes[A.CODE_FUNCTION] == "make_client"
        assert setup.attributes[A.POOL_LIBRARY] == "botocore"


def test_a_client_made_once_is_named_where_it_is_made_not_where_it_is_called(
    diagnosed: Diagnosed, server
):
    local = server()
    client = make_client(local.url)
    for _ in range(3):
        client.list_tables()

    assert diagnosed.ids() == []
    [host] = diagnosed.diagnosis.hosts()
    [origin] = host["origins"]
    assert (origin["function"], origin["line"], origin["pools"]) == (
        "make_client",
        line_of(make_client, "made here"),
        1,
    )


def requests_get_per_call(url: str) -> None:
    requests.get(url, timeout=5).close()  # a Session per call


def test_requests_get_per_call_is_found_at_its_line(diagnosed: Diagnosed, server):
    local = server()
    for _ in range(3):
        requests_get_per_call(local.url)

    finding = diagnosed.finding(A.FINDING_CLIENT_RECREATED)
    line = line_of(requests_get_per_call, "a Session per call")
    assert f"a new requests Session is created on every call at {os.path.relpath(HERE)}:{line}" in (
        finding.summary
    )
    assert "requests.Session()" in finding.advice
    assert "boto3" not in finding.advice
    [origin] = finding.evidence["origins"]
    assert (origin["library"], origin["function"], origin["service"]) == (
        "requests",
        "requests_get_per_call",
        "",
    )


def session_made_once() -> requests.Session:
    session = requests.Session()  # the session is made here
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=2))
    return session


def test_a_session_made_once_is_named_where_the_adapter_is_mounted(diagnosed: Diagnosed, server):
    local = server()
    session = session_made_once()
    for _ in range(3):
        session.get(local.url, timeout=5).close()

    [host] = diagnosed.diagnosis.hosts()
    [origin] = host["origins"]
    # The pools belong to the mounted adapter's PoolManager.
    assert origin["line"] == line_of(session_made_once, "HTTPAdapter(pool_maxsize=2)")
    assert (origin["library"], origin["pools"]) == ("requests", 1)


# --- the same finding, in each library's terms --------------------------------------------------


def test_pool_too_small_advice_fits_boto3(diagnosed: Diagnosed, server):
    local = server(respond=together(4))
    client = make_client(local.url, max_pool_connections=2)
    in_threads(4, lambda: [client.list_tables() for _ in range(2)])

    advice = diagnosed.finding(A.FINDING_POOL_TOO_SMALL).advice
    assert "Config(max_pool_connections=4)" in advice
    assert "HTTPAdapter" not in advice and "PoolManager(" not in advice


def test_pool_too_small_advice_fits_requests(diagnosed: Diagnosed, server):
    local = server(respond=together(4))
    session = session_made_once()
    in_threads(4, lambda: [session.get(local.url, timeout=5).close() for _ in range(2)])

    finding = diagnosed.finding(A.FINDING_POOL_TOO_SMALL)
    assert "HTTPAdapter(pool_maxsize=4)" in finding.advice
    assert "max_pool_connections" not in finding.advice
    assert finding.evidence["discarded"] >= 2


def test_pool_too_small_advice_fits_urllib3(diagnosed: Diagnosed, server):
    local = server(respond=together(4))
    manager = urllib3.PoolManager(maxsize=2)
    in_threads(4, lambda: [manager.request("GET", local.url) for _ in range(2)])

    finding = diagnosed.finding(A.FINDING_POOL_TOO_SMALL)
    assert "urllib3.PoolManager(maxsize=4)" in finding.advice
    assert "block=True" in finding.advice
    assert "max_pool_connections" not in finding.advice
    [host] = diagnosed.diagnosis.hosts()
    [origin] = host["origins"]
    assert (origin["library"], origin["function"]) == (
        "urllib3",
        "test_pool_too_small_advice_fits_urllib3",
    )
