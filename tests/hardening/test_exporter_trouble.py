"""A collector that is slow, failing or gone: the program loses nothing and exits on time.

Throughput under these conditions is measured by the benchmarks, not here: these tests
check what does not depend on the machine's speed.
"""

from __future__ import annotations

import fnmatch
import re
import textwrap
import time

import pytest

from ..cli.running import conntrace_run, start
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
    counted = re.search(r"conntrace: (\d+) spans dropped of (\d+)", drops[0])
    dropped, sent = int(counted.group(1)), int(counted.group(2))
    # 600 attempts and one connection's 2 spans (setup and TCP: 127.0.0.1 is not looked
    # up), of which a queue of 50 every 0.5 s lets few through. Every span is received or
    # counted as dropped: from the full queue, in an export that failed, or still queued
    # when the bound ran out at exit; a batch on its way then is counted as neither (the
    # receiver records a batch as it answers it).
    on_way = re.search(r"(\d+) more were on their way", drops[0])
    assert sent == 602
    assert dropped > 50
    assert sent - (int(on_way.group(1)) if on_way else 0) <= dropped + received <= sent, drops

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


STUCK_PROGRAM = textwrap.dedent(
    """
    import sys, time, urllib3
    http = urllib3.PoolManager()
    statuses = {http.request("GET", sys.argv[1]).status for _ in range(int(sys.argv[2]))}
    print("statuses", sorted(statuses), flush=True)
    print(time.time(), flush=True)
    """
)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_one_second_bound_holds_against_a_collector_that_never_answers(
    tmp_path, server, protocol
):
    """The collector accepts connections and never answers: the exit waits the bound (plus
    a margin for the interpreter's own exit), not the exporter's retries."""
    program = tmp_path / "stuck.py"
    program.write_text(STUCK_PROGRAM)
    local = server()
    with OtlpReceiver(protocol=protocol, delay=120) as receiver:
        process = start(
            ["--export-timeout", "1", "python", str(program), local.url, "20"],
            env=receiver.environ(),
        )
        stdout, stderr = process.communicate(timeout=60)
        exited = time.time()
    status, ended = stdout.splitlines()
    assert process.returncode == 0, stderr
    assert status == "statuses [200]"
    assert exited - float(ended) < 1.5, stderr
    [line] = [line for line in stderr.splitlines() if line.strip()]
    assert fnmatch.fnmatch(line, "conntrace: spans not sent to *: not sent within 1 s*"), line


def test_an_exporter_that_raises_costs_one_line_and_keeps_the_exit_status(tmp_path, server):
    """The gRPC exporter raises when it is built (an unknown compression): the program's
    output and exit status stay its own, and conntrace says why in one line."""
    program = tmp_path / "exits.py"
    program.write_text(
        "import sys, urllib3\n"
        "print(urllib3.PoolManager().request('GET', sys.argv[1]).status)\n"
        "sys.exit(3)\n"
    )
    local = server()
    with OtlpReceiver(protocol="grpc") as receiver:
        started = time.monotonic()
        run = conntrace_run(
            ["--export-timeout", "1", "python", str(program), local.url],
            env={**receiver.environ(), "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "bogus"},
        )
        elapsed = time.monotonic() - started
        assert receiver.spans() == []
    assert (run.returncode, run.stdout) == (3, "200\n")
    [line] = [line for line in run.stderr.splitlines() if line.strip()]
    assert line.startswith(f"conntrace: spans not sent to {receiver.traces_endpoint} (grpc): ")
    assert "InvalidCompressionValueException" in line
    assert elapsed < 30
