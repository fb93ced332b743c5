"""A collector that is slow, failing or gone: the program loses nothing and exits on time.

Throughput under these conditions is measured by the benchmarks, not here: these tests
check what does not depend on the machine's speed.
"""

from __future__ import annotations

import re
import textwrap
import time

import pytest

from ..cli.running import conntrace_run
from ..otlp_receiver import OtlpReceiver

PROGRAM = textwrap.dedent(
    """
    import sys, urllib3
    http = urllib3.PoolManager()
    statuses = {http.request("GET", sys.argv[1]).status for _ in range(int(sys.argv[2]))}
    print("statuses", sorted(statuses))
    """
)


@pytest.fixture
def program(tmp_path):
    path = tmp_path / "many_calls.py"
    path.write_text(PROGRAM)
    return path


def _run(program, url, calls, receiver, **env):
    started = time.monotonic()
    run = conntrace_run(
        ["python", str(program), url, str(calls)],
        env={**receiver.environ(), "CONNTRACE_EXPORT_TIMEOUT": "1", **env},
        timeout=60,
    )
    return run, time.monotonic() - started


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_slow_collector_drops_spans_counted_in_one_line(program, server, protocol):
    local = server()
    with OtlpReceiver(protocol=protocol, delay=0.5) as receiver:
        run, elapsed = _run(
            program,
            local.url,
            600,
            receiver,
            OTEL_BSP_MAX_QUEUE_SIZE="50",
            OTEL_BSP_MAX_EXPORT_BATCH_SIZE="50",
        )
        received = len(receiver.spans())

    assert run.returncode == 0, run.stderr
    assert run.stdout == "statuses [200]\n"
    assert len(local.requests) == 600
    drops = [line for line in run.stderr.splitlines() if "dropped" in line]
    assert len(drops) == 1, run.stderr
    dropped = int(re.search(r"conntrace: (\d+) spans dropped", drops[0]).group(1))
    # Every drop is counted (the SDK itself logs one per 20 s): 600 attempts and one
    # connection's 3 spans, of which a queue of 50 every 0.5 s lets few through.
    assert dropped > 50
    assert dropped + received <= 603
    assert "Queue full" not in run.stderr
    # The bound at exit is 1 s; the rest is start-up and the program itself.
    assert elapsed < 30


@pytest.mark.parametrize("failure", ["retryable", "permanent"])
def test_a_failing_collector_costs_one_line_and_the_bound(program, server, failure):
    local = server()
    with OtlpReceiver(protocol="http", fail=failure) as receiver:
        run, elapsed = _run(program, local.url, 50, receiver)

    assert run.returncode == 0, run.stderr
    assert run.stdout == "statuses [200]\n"
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("conntrace: spans not sent to")
    assert elapsed < 30
