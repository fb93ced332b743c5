"""The idle timeout of whatever sits between client and server, inferred from the idle times
of connections dropped and reused, and compared with the keepalive timers on the socket."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import boto3
import pytest
import urllib3
from botocore.config import Config
from urllib3.connection import HTTPConnection

from conntrace import attributes as A

from ..servers import Response
from .conftest import Diagnosed

SERVER_IDLE_TIMEOUT = 0.3
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="TCP_KEEPIDLE and /proc are Linux's"
)


def pauses(request, pauses_s: list[float]) -> None:
    request()
    for pause in pauses_s:
        time.sleep(pause)
        request()


@linux_only
def test_the_idle_timeout_is_bracketed_and_compared_with_the_socket(diagnosed: Diagnosed, server):
    local = server(idle_timeout=SERVER_IDLE_TIMEOUT)
    options = [
        *HTTPConnection.default_socket_options,
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60),
        (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 7),
        (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 4),
    ]
    manager = urllib3.PoolManager(socket_options=options)
    pauses(lambda: manager.request("GET", local.url), [0.1, 0.6, 0.1, 0.6])

    # Two connections were dropped by the server's idle timeout, three were opened.
    assert len(local.connections) == 3
    finding = diagnosed.finding(A.FINDING_IDLE_TIMEOUT)
    evidence = finding.evidence
    assert evidence["dropped"] == 2
    # The bound lies between the longest idle time reused and the shortest found dropped.
    assert 100 <= evidence["reused_idle_ms_max"] < SERVER_IDLE_TIMEOUT * 1000
    assert SERVER_IDLE_TIMEOUT * 1000 < evidence["dropped_idle_ms_min"] < 5000
    assert evidence["reused_idle_ms_max"] < evidence["inferred_timeout_ms"]
    assert evidence["inferred_timeout_ms"] < evidence["dropped_idle_ms_min"]
    assert "connections idle longer than about" in finding.summary
    # The keepalive timers read from the real sockets.
    assert (evidence["socket_keepalive"], evidence["keepalive_idle_s"]) == (True, 60)
    assert (evidence["keepalive_interval_s"], evidence["keepalive_count"]) == (7, 4)
    assert "TCP_KEEPIDLE=60 s" in finding.summary and "too late" in finding.summary
    # Advice in urllib3's terms, with a TCP_KEEPIDLE it can take (whole seconds).
    assert "urllib3.PoolManager(socket_options=" in finding.advice
    assert "socket.TCP_KEEPIDLE, 1)" in finding.advice
    setups = [s for s in diagnosed.spans if s.name.startswith(A.SPAN_CONNECT)]
    assert {s.attributes[A.SOCKET_KEEPALIVE_IDLE] for s in setups} == {60}
    assert any(e[A.FINDING_ID] == A.FINDING_IDLE_TIMEOUT for _, e in diagnosed.finding_events())


@linux_only
@pytest.mark.skipif(
    "tcp_keepalive" not in Config.OPTION_DEFAULTS, reason="this botocore has no tcp_keepalive"
)
def test_botocore_tcp_keepalive_alone_probes_after_the_os_default(diagnosed: Diagnosed, server):
    local = server(idle_timeout=SERVER_IDLE_TIMEOUT)
    client = boto3.client("dynamodb", endpoint_url=local.url, config=Config(tcp_keepalive=True))
    pauses(client.list_tables, [0.6])

    os_idle = int(Path("/proc/sys/net/ipv4/tcp_keepalive_time").read_text())
    finding = diagnosed.finding(A.FINDING_IDLE_TIMEOUT)
    assert finding.evidence["socket_keepalive"] is True
    assert finding.evidence["keepalive_idle_s"] == os_idle
    assert finding.evidence["reused_idle_ms_max"] is None
    assert "none was reused after an idle time" in finding.summary
    assert "Config(tcp_keepalive=True) only turns SO_KEEPALIVE on" in finding.advice
    assert "botocore#2916" in finding.advice


def test_a_keep_alive_header_is_reported(diagnosed: Diagnosed, server):
    local = server(
        idle_timeout=SERVER_IDLE_TIMEOUT,
        respond=lambda request: Response(headers={"Keep-Alive": "timeout=1, max=100"}),
    )
    manager = urllib3.PoolManager()
    pauses(lambda: manager.request("GET", local.url), [0.6])

    finding = diagnosed.finding(A.FINDING_IDLE_TIMEOUT)
    assert finding.evidence["keep_alive_timeout_s"] == 1.0
    assert "the server announces Keep-Alive: timeout=1" in finding.summary
    assert finding.evidence["socket_keepalive"] is False
    assert "SO_KEEPALIVE is off" in finding.summary
    attempts = [s for s in diagnosed.spans if A.HTTP_REQUEST_METHOD in s.attributes]
    assert {s.attributes[A.HTTP_KEEP_ALIVE_TIMEOUT] for s in attempts} == {1.0}


def test_pauses_shorter_than_the_idle_timeout_are_not_a_finding(diagnosed: Diagnosed, server):
    local = server(
        idle_timeout=1.0,
        respond=lambda request: Response(headers={"Keep-Alive": "timeout=1"}),
    )
    manager = urllib3.PoolManager()
    pauses(lambda: manager.request("GET", local.url), [0.1, 0.2, 0.1])

    assert len(local.connections) == 1
    assert A.FINDING_IDLE_TIMEOUT not in diagnosed.ids()
    assert diagnosed.ids() == []
