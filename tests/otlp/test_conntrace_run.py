"""``conntrace-run python app.py`` with nothing but OTEL_* variables pointing at a collector.

This is the path of ``docker compose up -d`` then ``conntrace-run python app.py``: the
program's spans and metrics must reach the collector under the program's service name,
over gRPC and over HTTP/protobuf, and the program's output and exit code stay its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conntrace import attributes as A

from ..otlp_receiver import OtlpReceiver

CONNTRACE_RUN = str(Path(sys.executable).with_name("conntrace-run"))

APP = textwrap.dedent(
    """
    import sys

    import boto3

    client = boto3.client("dynamodb", endpoint_url=sys.argv[1], region_name="us-east-1")
    for _ in range(3):
        client.list_tables()
    print("the program's own output")
    sys.exit(7)
    """
)


def run_app(receiver: OtlpReceiver, app: Path, endpoint: str, **extra: str) -> None:
    environ = {**os.environ, **receiver.environ(), "OTEL_SERVICE_NAME": "otlp-run-test", **extra}
    done = subprocess.run(
        [CONNTRACE_RUN, sys.executable, str(app), endpoint],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout) == (7, "the program's own output\n"), done.stderr


@pytest.fixture
def app(tmp_path: Path) -> Path:
    path = tmp_path / "app.py"
    path.write_text(APP)
    return path


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_conntrace_run_exports_the_programs_spans(protocol, app, moto_endpoint):
    with OtlpReceiver(protocol=protocol) as receiver:  # type: ignore[arg-type]
        run_app(receiver, app, moto_endpoint)
        # The program has exited: conntrace flushed before it did.
        spans = receiver.wait_for_spans(
            lambda got: sum(span.name == "DynamoDB.ListTables" for span in got) == 3, timeout=5
        )

    assert {span.resource["service.name"] for span in spans} == {"otlp-run-test"}
    by_id = {span.span_id: span for span in spans}
    attempts = sorted(
        (span for span in spans if A.HTTP_REQUEST_METHOD in span.attributes),
        key=lambda span: span.start_time_unix_nano,
    )
    assert [span.attributes[A.CONNECTION_REUSED] for span in attempts] == [False, True, True]
    [setup] = [span for span in spans if span.parent_span_id == attempts[0].span_id]
    assert setup.name.startswith(A.SPAN_CONNECTION_SETUP)
    for reused in attempts[1:]:
        assert [by_id[link.span_id] for link in reused.links] == [setup]
