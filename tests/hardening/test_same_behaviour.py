"""Under every fault, the program behaves the same with conntrace as without it.

Each case runs one botocore program twice against a fresh local server, once with
conntrace off and once on, and compares what the program saw (result, or exception type
and message) and what the server saw (connections and requests, so retries count too).
"""

from __future__ import annotations

import random
import re
import socket
from dataclasses import dataclass
from typing import Any, Callable

import pytest
from botocore.exceptions import BotoCoreError, ClientError

import conntrace
from conntrace import _runtime
from conntrace import attributes as A

from ..conftest import dynamodb
from ..servers import LocalServer, Request, Response


@dataclass
class Outcome:
    result: Any
    connections: int
    requests: int


def _run(make_server: Callable[[], LocalServer | None], **config: Any) -> Outcome:
    local = make_server()
    endpoint = local.url if local is not None else f"http://127.0.0.1:{_CLOSED_PORT}"
    client = dynamodb(endpoint, retries={"mode": "standard", "max_attempts": 2}, **config)
    results = []
    for _ in range(3):
        try:
            results.append(client.list_tables().get("TableNames"))
        except (BotoCoreError, ClientError) as error:
            # Ports differ between the two runs; the rest of the message must not.
            results.append((type(error).__name__, re.sub(r":\d+", ":PORT", str(error))))
    outcome = Outcome(
        results,
        len(local.connections) if local is not None else 0,
        len(local.requests) if local is not None else 0,
    )
    if local is not None:
        local.stop()
    return outcome


# Bound but never listening, for the whole run: connecting is refused, and no other
# test's server can take the port meanwhile (a port only picked free once could be).
_CLOSED = socket.socket()
_CLOSED.bind(("127.0.0.1", 0))
_CLOSED_PORT = _CLOSED.getsockname()[1]


def _every(n: int, fault: Response) -> Callable[[Request], Response]:
    """The nth, 2nth, ... request gets the fault; the others a normal answer."""
    count = 0

    def respond(request: Request) -> Response:
        nonlocal count
        count += 1
        return fault if count % n == 1 else Response(body=b'{"TableNames": []}')

    return respond


def _random_drops(seed: int) -> Callable[[Request], Response]:
    chance = random.Random(seed)
    return lambda request: Response(body=b'{"TableNames": []}', drop=chance.random() < 0.3)


def _errors(*types: str) -> Callable[[list[Any]], bool]:
    """The fault shows as one of these ``error.type`` values on the attempt it hit."""
    return lambda attempts: bool({a.attributes.get(A.ERROR_TYPE) for a in attempts} & set(types))


def _reconnects(*reasons: str) -> Callable[[list[Any]], bool]:
    """The fault shows as the reason the next attempt had to open a new connection."""
    return lambda attempts: bool(
        {a.attributes.get(A.CONNECTION_REASON) for a in attempts} & set(reasons)
    )


_TRUNCATED = Response(body=b'{"TableNames": ["' + b"t" * 64 + b'"]}', truncate=True)

# name: (server for the run, client config, how conntrace must record the fault)
FAULTS: dict[str, tuple[Callable[[Any], Any], dict[str, Any], Callable[[list[Any]], bool]]] = {
    "reset mid-response": (
        lambda make: make(respond=_every(2, Response(reset=True))),
        {},
        _errors("BadStatusLine", "ConnectionResetError"),
    ),
    "idle connections closed at random": (
        lambda make: make(respond=_random_drops(7)),
        {},
        _errors("RemoteDisconnected"),
    ),
    "stalled read hits the read timeout": (
        lambda make: make(respond=_every(2, Response(delay=0.6))),
        {"read_timeout": 0.2},
        _errors("ReadTimeoutError"),
    ),
    # The body is read after the attempt span ends (as in OpenTelemetry's HTTP client
    # spans); the server closing the connection under it shows on the next attempt.
    "truncated body": (
        lambda make: make(respond=_every(2, _TRUNCATED)),
        {},
        _reconnects(A.REASON_STALE, A.REASON_ERROR),
    ),
    "refused connect": (
        lambda make: None,
        {"connect_timeout": 1},
        _errors("NewConnectionError"),
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_the_program_sees_the_same_with_and_without_conntrace(fault, server, spans_off):
    build, config, recorded = FAULTS[fault]
    plain = _run(lambda: build(server), **config)
    traced_spans = spans_off.enable()
    traced = _run(lambda: build(server), **config)
    conntrace.uninstrument()

    assert traced == plain
    assert recorded(traced_spans.attempts)


def test_slow_tls_is_the_same_and_timed_on_the_tls_span(tls_server, ca, spans):
    import ssl

    import urllib3

    local = tls_server(tls_delay=0.3)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    response = urllib3.PoolManager(ssl_context=context).request("GET", local.url)
    assert response.status == 200

    [tls] = spans.named("TLS client handshake")
    assert (tls.end_time - tls.start_time) / 1e9 >= 0.25
    [tcp] = spans.named("socket connect")
    assert (tcp.end_time - tcp.start_time) / 1e9 < 0.25


def test_every_hook_failing_changes_nothing_and_warns_once_each(
    server, moto_endpoint, spans_off, monkeypatch, caplog
):
    def workload() -> list[Any]:
        local = server()
        client = dynamodb(moto_endpoint)
        seen: list[Any] = []
        for _ in range(3):
            seen.append(client.list_tables().get("TableNames"))
            seen.append(dynamodb(local.url).list_tables().get("TableNames"))
        try:
            dynamodb(f"http://127.0.0.1:{_CLOSED_PORT}", retries={"max_attempts": 0}).list_tables()
        except BotoCoreError as error:
            seen.append(type(error).__name__)
        return seen

    plain = workload()
    spans = spans_off.enable()

    def fail_every_start(name: str, phase: str) -> None:
        if phase == "start":
            raise RuntimeError(f"injected fault in {name}")

    monkeypatch.setattr(_runtime, "fault", fail_every_start)
    monkeypatch.setattr(_runtime, "_reported", set())
    with caplog.at_level("WARNING", logger="conntrace"):
        broken = workload()
    conntrace.uninstrument()

    assert broken == plain
    assert spans.all == []
    messages = [record.getMessage() for record in caplog.records if record.name == "conntrace"]
    hooks = sorted(re.search(r"error in (\S+);", message).group(1) for message in messages)
    assert hooks == sorted(set(hooks)), "one warning per hook, not per call"
    assert {"botocore.call", "pool.urlopen", "pool._get_conn", "connection.connect"} <= set(hooks)
