"""Export: 10,000 spans a second to a local OTLP receiver, without drops and without stalls.

The program under test sets tracing up exactly as ``conntrace-run`` does
(``conntrace.sdk.start``: a ``BatchSpanProcessor`` with OpenTelemetry's defaults, and the
OTLP/gRPC exporter, imported at the first export) and sends to the counting receiver
(``receiver.py``, a process of its own). Its main thread then emits spans shaped like
conntrace's request spans (the same attributes and a link to a connection-setup span) at
a fixed pace. Real traced requests cannot be used for this: on a reused connection one
costs the program more than 100 µs, so one thread cannot ask for 10,000 a second.

Reported: spans emitted and received (a difference is a drop: the batch processor's own
"Queue full" warning is logged at most once in 20 s, so it cannot be counted), the pace
held, how far behind its schedule the loop was at the end, the longest single stall (one
span that took that long, or one step back in the schedule), and the CPU the process used.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

from conntrace import attributes as A

from .child import ROOT
from .receiver import ReceiverProcess

ATTRIBUTES: dict[str, Any] = {
    A.HTTP_REQUEST_METHOD: "POST",
    A.URL_FULL: "https://dynamodb.us-east-1.amazonaws.com/",
    A.SERVER_ADDRESS: "dynamodb.us-east-1.amazonaws.com",
    A.SERVER_PORT: 443,
    A.POOL_MAX_SIZE: 10,
    A.POOL_WAIT_MS: 0.004,
    A.CONNECTION_IDLE_MS: 0.3,
    A.CONNECTION_REUSED: True,
    A.CONNECTION_ID: 1,
    A.CONNECTION_REQUEST_NUMBER: 2,
    A.CONNECTION_AGE_MS: 12.5,
    A.HTTP_RESPONSE_STATUS_CODE: 200,
}


def inner(endpoint: str, rate: float, seconds: float) -> dict[str, Any]:
    from opentelemetry import trace
    from opentelemetry.trace import Link, SpanKind

    from conntrace import config, sdk

    environ = {
        "OTEL_SERVICE_NAME": "export-benchmark",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
    }
    session = sdk.start(config.load_config(environ))
    tracer = trace.get_tracer("conntrace")
    setup = tracer.start_span(A.SPAN_CONNECTION_SETUP)
    setup.end()
    links = [Link(setup.get_span_context())]
    # The exporter (gRPC and all) is imported and connected at the first export: let that
    # happen before the clock starts.
    warmup = 100
    for _ in range(warmup):
        tracer.start_span("POST", kind=SpanKind.CLIENT, attributes=ATTRIBUTES, links=links).end()
    session.flush(30.0)

    interval = 1.0 / rate
    total = int(rate * seconds)
    emit_times = []
    # How far behind its schedule the loop is, and the largest single step back: a loop
    # that cannot keep up falls behind a little at each span, a stall all at once.
    behind = worst_stall = 0.0
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    due = started
    for _ in range(total):
        now = time.perf_counter()
        if now < due:
            time.sleep(due - now)
            now = time.perf_counter()
        lateness = max(0.0, now - due)
        worst_stall = max(worst_stall, lateness - behind)
        behind = lateness
        span = tracer.start_span("POST", kind=SpanKind.CLIENT, attributes=ATTRIBUTES, links=links)
        span.end()
        emit_times.append(time.perf_counter() - now)
        due += interval
    elapsed = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    flushed_in_time = session.flush(30.0)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    emit_times.sort()
    return {
        "target_spans_per_s": rate,
        "seconds": seconds,
        "emitted": total + warmup + 1,
        "achieved_spans_per_s": total / elapsed,
        "behind_at_end_ms": behind * 1000,
        "worst_stall_ms": max(worst_stall, max(emit_times)) * 1000,
        "emit_us_median": statistics.median(emit_times) * 1e6,
        "emit_us_p99": emit_times[int(len(emit_times) * 0.99)] * 1e6,
        "emit_us_max": emit_times[-1] * 1e6,
        "cpu_cores_used": cpu / elapsed,
        "cpu_us_per_span": cpu / total * 1e6,
        "flushed_in_time": flushed_in_time,
    }


def measure(rate: float, seconds: float) -> dict[str, Any]:
    with ReceiverProcess() as receiver:
        command = [sys.executable, "-m", "benchmarks.export", "--endpoint", receiver.endpoint,
                   "--rate", str(rate), "--seconds", str(seconds)]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CONNTRACE_"))}
        done = subprocess.run(
            command, check=True, capture_output=True, text=True, cwd=ROOT, env=env
        )
        result: dict[str, Any] = json.loads(done.stdout)
        received = receiver.count()
    result["received"] = received["spans"]
    result["export_requests"] = received["requests"]
    result["dropped"] = result["emitted"] - received["spans"]
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(inner(args.endpoint, args.rate, args.seconds)))


if __name__ == "__main__":
    main()
