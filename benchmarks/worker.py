"""One traced (or plain) client in a process of its own, timed on command.

``run.py`` starts one worker per variant and drives them in turn, so that the variants
are measured in interleaved rounds, one at a time, in otherwise identical processes.
Commands arrive one per line on standard input; each answer is one JSON line:

* ``run N``: call the operation N times; answers ``{"ns": elapsed, "cpu_ns": CPU time of
  the process (all its threads), "gc_ns": time in the garbage collector}``.
* ``count N``: call the operation N times under cProfile; answers ``{"calls": function
  calls (Python and built-in) per operation}``, a measure of work that load on the
  machine does not change.
* ``flush``: export what the batch processor holds; answers ``{"spans": exported so far}``.
* ``rss``: collect garbage; answers ``{"rss": resident bytes, "blocks": memory blocks the
  interpreter has allocated}`` (blocks that keep growing would be a leak; a resident set
  that grows while they do not is the allocator keeping freed memory).

The worker sets up, warms up, answers ``{"ready": ...}`` and ends when its input closes.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from typing import Any

from . import scenarios, variants


def resident_bytes() -> int:
    """This process's resident set size, from /proc (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _exporter(otlp_endpoint: str | None) -> Any:
    if otlp_endpoint is None:
        return variants.CountingExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=otlp_endpoint, insecure=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=scenarios.SCENARIOS)
    parser.add_argument("variant", choices=variants.VARIANTS)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--https-port", type=int)
    parser.add_argument("--ca-file")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--otlp", metavar="ENDPOINT", help="export over OTLP/gRPC instead")
    args = parser.parse_args(argv)
    os.environ.update(scenarios.AWS_ENVIRONMENT)

    exporter = _exporter(args.otlp)
    provider = variants.tracer_provider(exporter, sampled=args.variant != variants.UNSAMPLED)
    variants.enable(args.variant, provider, botocore=args.scenario == scenarios.BOTOCORE)
    target = scenarios.Target(args.http_port, args.https_port, args.ca_file)
    operation = scenarios.build(args.scenario, target)
    for _ in range(args.warmup):
        operation()
    provider.force_flush()
    _answer({"ready": True, "pid": os.getpid()})

    collecting = _GcClock()
    gc.callbacks.append(collecting.observe)
    for line in sys.stdin:
        command, _, count = line.strip().partition(" ")
        if command == "run":
            calls = range(int(count))
            collecting.total = 0
            cpu = time.process_time_ns()
            started = time.perf_counter_ns()
            for _ in calls:
                operation()
            elapsed = time.perf_counter_ns() - started
            cpu = time.process_time_ns() - cpu
            _answer({"ns": elapsed, "cpu_ns": cpu, "gc_ns": collecting.total})
        elif command == "count":
            _answer({"calls": function_calls(operation, int(count))})
        elif command == "flush":
            provider.force_flush()
            _answer({"spans": getattr(exporter, "spans", None)})
        elif command == "rss":
            gc.collect()
            _answer({"rss": resident_bytes(), "blocks": sys.getallocatedblocks()})
        else:
            _answer({"error": f"unknown command {command!r}"})
    provider.shutdown()


def function_calls(operation: scenarios.Operation, count: int) -> float:
    """Function calls (Python and built-in) per call of ``operation``, counted by cProfile."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(count):
        operation()
    profiler.disable()
    return float(pstats.Stats(profiler).total_calls) / count


class _GcClock:
    """Adds up the time the garbage collector runs: spans held for export make it run more."""

    def __init__(self) -> None:
        self.total = 0
        self._started = 0

    def observe(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter_ns()
        else:
            self.total += time.perf_counter_ns() - self._started


def _answer(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
