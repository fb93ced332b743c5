"""One workload, run untraced, then traced with one fault at a time; prints JSON lines.

Run by ``test_faults.py`` in a fresh interpreter, so the hooks the patcher applied are
exactly those of the libraries this workload imports (urllib3, botocore, http.client).
Each line: the fault (``where``: a hook's name or ``Reader.fact``; ``phase``), what the
program saw, what the servers counted, and the internal errors conntrace warned about.
"""

from __future__ import annotations

import contextvars
import io
import json
import logging
import re
import socket
import ssl
import sys
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).parents[3]))

import boto3
import trustme
import urllib3
from botocore.exceptions import BotoCoreError
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

import conntrace
from conntrace import _runtime, _switch, findings, ledger
from conntrace.console import ConsoleView
from conntrace.pytest_plugin import _start
from tests.proxy import LocalProxy
from tests.servers import LocalServer, Response

CA = trustme.CA()
CLOSED = socket.socket()
CLOSED.bind(("127.0.0.1", 0))


def workload() -> dict[str, Any]:
    """API calls (one retried after a reset), plain HTTPS requests, one through a CONNECT
    proxy, a refused connect, and closing every connection: every hook and every fact of
    the ledger runs."""
    answers = iter([Response(body=b'{"TableNames": []}'), Response(reset=True)])
    api = LocalServer(respond=lambda r: next(answers, Response(body=b'{"TableNames": ["t"]}')))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    CA.issue_cert("localhost").configure_cert(server_context)
    web = LocalServer(tls=server_context, host_name="localhost")
    seen: list[Any] = []
    client = boto3.client(
        "dynamodb", endpoint_url=api.url, config=_config(retries={"mode": "standard"})
    )
    for _ in range(3):
        seen.append(client.list_tables().get("TableNames"))
    refused = boto3.client(
        "dynamodb",
        endpoint_url=f"http://127.0.0.1:{CLOSED.getsockname()[1]}",
        config=_config(retries={"max_attempts": 0}),
    )
    try:
        refused.list_tables()
    except BotoCoreError as error:
        seen.append([type(error).__name__, re.sub(r":\d+", ":PORT", str(error))])
    client_context = ssl.create_default_context()
    CA.configure_trust(client_context)
    http = urllib3.PoolManager(ssl_context=client_context)
    for _ in range(2):
        response = http.request("GET", web.url)
        seen.append([response.status, response.data.decode()])
    http.clear()
    proxy = LocalProxy()
    tunnelled = urllib3.ProxyManager(proxy.url(), ssl_context=client_context)
    for _ in range(2):
        response = tunnelled.request("GET", web.url)
        seen.append([response.status, response.data.decode()])
    tunnelled.clear()
    counted = {
        "api": [len(api.connections), len(api.requests)],
        "web": [len(web.connections), len(web.requests)],
        "proxy": [proxy.accepted, len(proxy.connects)],
    }
    api.stop()
    web.stop()
    proxy.stop()
    return {"seen": seen, "servers": counted}


def _config(**options: Any) -> Any:
    from botocore.config import Config

    return Config(region_name="us-east-1", **options)


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.where: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"internal error in (.+?);", record.getMessage())
        self.where.append(found.group(1) if found else record.getMessage())


def hooks() -> list[str]:
    """Every patch conntrace applied, by the name its wrapper reports errors under."""
    names = set()
    for _parent, _attribute, _original, patched in _switch._patcher._applied:
        wrapper = patched._self_wrapper
        name = wrapper.__name__
        names.add(name[len("conntrace_") :] if name.startswith("conntrace_") else name)
    return sorted(names)


def readers() -> list[tuple[Any, str]]:
    """Every fact each reader of the ledger takes (the methods it overrides of BaseSink)."""
    facts = [name for name in vars(ledger.BaseSink) if not name.startswith("_")]
    found = {(type(sink), fact) for sink in ledger.sinks for fact in facts}
    return sorted(
        ((reader, fact) for reader, fact in found if fact in vars(reader)),
        key=lambda pair: (pair[0].__name__, pair[1]),
    )


def run(where: str, phase: str, fault: Callable[[], None] | None, undo: Callable[[], None]) -> None:
    handler = Warnings()
    logging.getLogger("conntrace").addHandler(handler)
    _runtime._reported.clear()
    try:
        if fault is not None:
            fault()
        # A fresh context each time: a failed finish leaves conntrace's context variables set.
        outcome = contextvars.copy_context().run(workload)
    finally:
        undo()
        logging.getLogger("conntrace").removeHandler(handler)
    print(json.dumps({"where": where, "phase": phase, **outcome, "warned": handler.where}))


def main() -> None:
    logging.getLogger("conntrace").propagate = False
    run("none", "untraced", None, lambda: None)

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    conntrace.instrument(tracer_provider=provider)
    findings.install(MeterProvider(), report=False)
    ledger.add_sink(ConsoleView(io.StringIO(), color="never"))
    _start()
    run("none", "traced", None, lambda: None)
    print(json.dumps({"hooks": hooks(), "spans": len(exporter.get_finished_spans())}))

    def failing(name: str, phase: str) -> Callable[[str, str], None]:
        def fault(where: str, when: str) -> None:
            if where == name and when == phase:
                raise RuntimeError(f"injected fault in {where}")

        return fault

    for name in hooks():
        for phase in ("start", "finish"):

            def inject(name: str = name, phase: str = phase) -> None:
                _runtime.fault = failing(name, phase)

            run(name, phase, inject, lambda: setattr(_runtime, "fault", None))

    for reader, fact in readers():
        original = vars(reader)[fact]

        def broken(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("injected fault in a reader")

        def inject(reader: Any = reader, fact: str = fact) -> None:
            setattr(reader, fact, broken)

        run(
            f"{reader.__name__}.{fact}",
            "reader",
            inject,
            lambda reader=reader, fact=fact, original=original: setattr(reader, fact, original),
        )

    # A urllib3 without a class the pool layer patches (the workload does not use it).
    conntrace.uninstrument()
    https_connection = urllib3.connection.HTTPSConnection

    def remove() -> None:
        del urllib3.connection.HTTPSConnection
        conntrace.instrument(tracer_provider=provider)

    def restore() -> None:
        print(json.dumps({"hooks without HTTPSConnection": hooks()}))
        urllib3.connection.HTTPSConnection = https_connection

    run("urllib3.connection.HTTPSConnection", "missing", remove, restore)


if __name__ == "__main__":
    main()
