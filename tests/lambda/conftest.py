"""A Lambda function run as Lambda runs it, on this machine.

The real runtime interface client (awslambdaric) runs in its own process, started through
conntrace's exec wrapper exactly as Lambda starts ``/opt/conntrace-wrapper python3.X
/var/runtime/bootstrap.py``. Its Runtime API is ``RuntimeApi`` on 127.0.0.1; its spans go
over OTLP/HTTP to a real receiver; its DynamoDB is moto's server.

The layer is laid out as the built zip is: the wrapper at the root and conntrace under
``python/``, copied from the conntrace package these tests import. Its dependencies come
from this environment's site-packages, which plays the part of the runtime's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

import conntrace
from conntrace import attributes as A

from ..conftest import create_table, dynamodb
from ..otlp_receiver import OtlpReceiver, ReceivedSpan
from .forwarder import Forwarder
from .runtime_api import FUNCTION, Invocation, RuntimeApi

REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / "lambda" / "conntrace-wrapper"
HANDLERS = Path(__file__).resolve().parent / "handlers"

# This interpreter under its versioned name, as Lambda names it (/var/lang/bin/python3.12).
PYTHON = str(Path(sys.executable).with_name("python{}.{}".format(*sys.version_info[:2])))


@pytest.fixture(scope="session")
def layer_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What /opt holds once the layer is added: the wrapper, and conntrace under python/."""
    root = tmp_path_factory.mktemp("opt")
    shutil.copy2(WRAPPER, root / WRAPPER.name)
    shutil.copytree(
        Path(conntrace.__file__).parent,
        root / "python" / "conntrace",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return root


@pytest.fixture(scope="session")
def table(moto_endpoint: str) -> str:
    """A DynamoDB table on moto holding the item ``a``."""
    name = f"orders-{uuid.uuid4().hex[:8]}"
    client = dynamodb(moto_endpoint)
    create_table(client, name)
    client.put_item(TableName=name, Item={"pk": {"S": "a"}})
    return name


def lambda_environ(api: RuntimeApi, handler: str, **extra: str) -> dict[str, str]:
    """The environment Lambda gives a function, pointed at this machine's servers."""
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "en_US.UTF-8",
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "AWS_LAMBDA_FUNCTION_NAME": FUNCTION,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing-session-token",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "LAMBDA_TASK_ROOT": str(HANDLERS),
        "_HANDLER": handler,
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    environ.update(extra)
    return environ


@dataclass
class Function:
    """One execution environment of a function, and what it sent where."""

    api: RuntimeApi
    process: subprocess.Popen[bytes]
    log: Path
    receiver: OtlpReceiver | None

    def invoke(
        self,
        event: Any = None,
        timeout_s: float = 60.0,
        qualifier: str | None = None,
    ) -> Invocation:
        """Invoke (through an alias or version if ``qualifier``), and wait for the outcome."""
        invocation = self.api.invoke(event, timeout_s=timeout_s, qualifier=qualifier)
        try:
            invocation.wait(60.0)
        except TimeoutError:
            raise AssertionError(f"no outcome; the function's output:\n{self.output()}") from None
        return invocation

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def trace(self, invocation: Invocation, timeout: float = 10.0) -> Trace:
        """The spans of ``invocation``'s trace that reached the receiver."""
        assert self.receiver is not None
        spans = self.receiver.wait_for_spans(
            lambda got: _server_span(got, invocation.request_id) is not None, timeout
        )
        return Trace.of(spans, invocation.request_id)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.api.stop()


def _server_span(spans: list[ReceivedSpan], request_id: str) -> ReceivedSpan | None:
    for span in spans:
        if span.attributes.get(A.FAAS_INVOCATION_ID) == request_id:
            return span
    return None


@dataclass
class Trace:
    server: ReceivedSpan
    spans: list[ReceivedSpan]

    @classmethod
    def of(cls, spans: list[ReceivedSpan], request_id: str) -> Trace:
        server = _server_span(spans, request_id)
        assert server is not None, f"no invocation span for {request_id}"
        return cls(server, [span for span in spans if span.trace_id == server.trace_id])

    def children(self, parent: ReceivedSpan) -> list[ReceivedSpan]:
        return [span for span in self.spans if span.parent_span_id == parent.span_id]

    @property
    def attempts(self) -> list[ReceivedSpan]:
        """The HTTP attempts to DynamoDB, in order."""
        found = [span for span in self.spans if A.HTTP_REQUEST_METHOD in span.attributes]
        return sorted(found, key=lambda span: span.start_time_unix_nano)


@pytest.fixture
def start_function(
    layer_root: Path, moto_endpoint: str, table: str, tmp_path: Path
) -> Iterator[Callable[..., Function]]:
    """Start an execution environment: ``start_function(handler, receiver=..., **environ)``.

    ``endpoint`` is where the handler's DynamoDB client goes (moto's server by default);
    ``wrapper=False`` starts the runtime as Lambda does without the layer's wrapper;
    ``layer`` is another /opt to take the wrapper from.
    """
    started: list[Function] = []

    def start(
        handler: str,
        receiver: OtlpReceiver | None = None,
        endpoint: str | None = None,
        wrapper: bool = True,
        on_outcome: Callable[[Invocation], Any] | None = None,
        layer: Path | None = None,
        **extra: str,
    ) -> Function:
        api = RuntimeApi(on_outcome=on_outcome)
        environ = lambda_environ(
            api, handler, DYNAMODB_ENDPOINT=endpoint or moto_endpoint, TABLE_NAME=table
        )
        if receiver is not None:
            # Only the address: the protocol is conntrace's Lambda default (http/protobuf).
            environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
        environ.update(extra)
        command = [PYTHON, "-m", "awslambdaric", handler]
        if wrapper:
            command.insert(0, str((layer or layer_root) / WRAPPER.name))
        log = tmp_path / f"function-{len(started)}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                command, cwd=HANDLERS, env=environ, stdout=sink, stderr=subprocess.STDOUT
            )
        function = Function(api, process, log, receiver)
        started.append(function)
        return function

    yield start
    for function in started:
        function.stop()


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver(protocol="http") as started:
        yield started


@pytest.fixture
def forwarder(moto_endpoint: str) -> Iterator[Forwarder]:
    """A forwarder to moto's server that can drop the connections through it."""
    started = Forwarder(int(moto_endpoint.rsplit(":", 1)[1]))
    yield started
    started.stop()
