"""A collector that is down or stuck must cost the program nothing but a bounded wait at exit.

The program here makes real DynamoDB calls on moto while its spans cannot be delivered:
its results and its errors must be exactly what they are without tracing, conntrace must
go on recording, and shutting the provider down must return, within the exporter's
timeout plus its retries, not hang.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from botocore.exceptions import ClientError

from conntrace import attributes as A

from ..conftest import create_table, dynamodb
from ..otlp_receiver import OtlpReceiver
from ..servers import free_port
from .conftest import otlp_exporter

EXPORT_TIMEOUT = 1.0
# Far above the exporter's own bound: only a hang can reach it.
SHUTDOWN_LIMIT = 20.0


@contextmanager
def unreachable(protocol: str, trouble: str) -> Iterator[str]:
    """The endpoint of a collector that refuses connections, or accepts and never answers."""
    if trouble == "refused":
        url = f"http://127.0.0.1:{free_port()}"  # nothing listens there any more
        yield url if protocol == "grpc" else f"{url}/v1/traces"
        return
    with OtlpReceiver(protocol=protocol, delay=SHUTDOWN_LIMIT * 3) as stuck:  # type: ignore[arg-type]
        yield stuck.traces_endpoint


def _program(endpoint: str) -> list[object]:
    """What the host program does and sees: results, and the error it expects."""
    table = f"down-{uuid.uuid4().hex[:8]}"
    client = dynamodb(endpoint)
    create_table(client, table)
    seen: list[object] = []
    for key in "abc":
        client.put_item(TableName=table, Item={"pk": {"S": key}})
        seen.append(client.get_item(TableName=table, Key={"pk": {"S": key}})["Item"])
    with pytest.raises(ClientError) as raised:
        client.get_item(TableName=f"{table}-missing", Key={"pk": {"S": "a"}})
    seen.append(raised.value.response["Error"]["Code"])
    return seen


@pytest.mark.parametrize("trouble", ["refused", "silent"])
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_down_collector_changes_nothing_and_exit_is_bounded(
    make_pipeline, moto_endpoint, protocol, trouble, caplog
):
    caplog.set_level(logging.WARNING, logger="conntrace")
    with unreachable(protocol, trouble) as collector:
        pipeline = make_pipeline(otlp_exporter(protocol, collector, None, EXPORT_TIMEOUT))
        first = _program(moto_endpoint)
        # An export attempt while the program still runs, as the batch timer would make.
        threading.Thread(target=pipeline.provider.force_flush, daemon=True).start()
        second = _program(moto_endpoint)

        shutdown = threading.Thread(target=pipeline.provider.shutdown, daemon=True)
        shutdown.start()
        shutdown.join(SHUTDOWN_LIMIT)
        assert not shutdown.is_alive(), "provider.shutdown() hung on an unreachable collector"

    expected = [{"pk": {"S": key}} for key in "abc"] + ["ResourceNotFoundException"]
    assert first == second == expected
    calls = [span for span in pipeline.recorded() if span.name.startswith("DynamoDB.")]
    assert len(calls) == 2 * 8
    missing = [span for span in calls if span.name == "DynamoDB.GetItem"][-1]
    assert missing.attributes[A.ERROR_TYPE] == "ResourceNotFoundException"
    assert not [r for r in caplog.records if r.name == "conntrace"]
