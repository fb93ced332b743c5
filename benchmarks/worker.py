"""One traced (or plain) client in a process of its own, timed on command.

``run.py`` starts one worker per variant (``variants.py``) and drives them in turn, so
that the variants are measured in interleaved rounds, one at a time, in otherwise
identical processes. Commands arrive one per line on standard input; each answer is one
JSON line:

* ``run N``: call the operation N times; answers ``{"ns": elapsed, "cpu_ns": CPU time of
  the process (every thread: the batch processor's export thread too), "gc_ns": time in
  the garbage collector, "process_cpu_ns": the process's CPU time so far}``.
* ``flush``: export what the batch processor holds; answers ``{"spans": exported since the
  warm-up (None when they leave the process), "cpu_ns": CPU time the flush took,
  "process_cpu_ns": ...}``.
* ``count N`` (only with ``--count-calls``): call the operation N times, then flush, and
  count the function calls (Python and built-in) that every thread of the process made
  meanwhile; answers ``{"calls": per operation, "main_thread": of them in the thread that
  calls, "other_threads": in the others (the export thread)}``. A measure of work that
  the load on the machine does not change. The hook that counts is installed in every
  thread the process starts (``threading.setprofile``), which slows those threads down:
  such a worker is never timed.
* ``rss``: collect garbage; answers ``{"rss": resident bytes, "blocks": memory blocks the
  interpreter has allocated}`` (blocks that keep growing would be a leak; a resident set
  that grows while they do not is the allocator keeping freed memory).

The worker sets up, warms up, flushes, answers ``{"ready": ...}`` and ends when its input
closes; conntrace's variants then write their report at exit, as any traced program does.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
import time
from typing import Any


class CallCounter:
    """A profile hook (``sys.setprofile``) that counts function calls, per thread."""

    def __init__(self) -> None:
        self.counting = False
        self.main = threading.get_ident()
        self.main_calls = 0
        self.other_calls = 0

    def hook(self, frame: Any, event: str, arg: Any) -> None:
        if self.counting and (event == "call" or event == "c_call"):
            if threading.get_ident() == self.main:
                self.main_calls += 1
            else:
                self.other_calls += 1


def resident_bytes() -> int:
    """This process's resident set size, from /proc (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario")
    parser.add_argument("variant")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--https-port", type=int)
    parser.add_argument("--ca-file")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--otlp", metavar="ENDPOINT", help="the OTLP receiver (conntrace_otlp)")
    parser.add_argument("--report", metavar="PATH", help="where conntrace writes its report")
    parser.add_argument("--count-calls", action="store_true", help="count calls; never timed")
    args = parser.parse_args(argv)

    counter = CallCounter()
    if args.count_calls:
        # Before anything starts a thread: every thread started from now on is counted.
        threading.setprofile(counter.hook)

    from . import scenarios, variants

    os.environ.update(scenarios.AWS_ENVIRONMENT)
    setup = variants.enable(
        args.variant,
        botocore=args.scenario == scenarios.BOTOCORE,
        report=args.report,
        otlp_endpoint=args.otlp,
        aiohttp=args.scenario == scenarios.AIOHTTP,
    )
    target = scenarios.Target(args.http_port, args.https_port, args.ca_file)
    operation = scenarios.build(args.scenario, target)
    for _ in range(args.warmup):
        operation()
    setup.flush()
    if setup.exporter is not None:
        # Spans per call count from the first timed call.
        setup.exporter.spans = 0
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
            ended_cpu = time.process_time_ns()
            _answer(
                {
                    "ns": elapsed,
                    "cpu_ns": ended_cpu - cpu,
                    "gc_ns": collecting.total,
                    "process_cpu_ns": ended_cpu,
                }
            )
        elif command == "flush":
            cpu = time.process_time_ns()
            flushed = setup.flush()
            ended_cpu = time.process_time_ns()
            _answer(
                {
                    "spans": setup.spans,
                    "flushed": flushed,
                    "cpu_ns": ended_cpu - cpu,
                    "process_cpu_ns": ended_cpu,
                }
            )
        elif command == "count" and args.count_calls:
            _answer(count_calls(counter, operation, setup, int(count)))
        elif command == "rss":
            gc.collect()
            _answer({"rss": resident_bytes(), "blocks": sys.getallocatedblocks()})
        else:
            _answer({"error": f"unknown command {command!r}"})
    setup.shutdown()


def count_calls(counter: CallCounter, operation: Any, setup: Any, count: int) -> dict[str, float]:
    """Function calls per call of ``operation`` in every thread, its spans' export included."""
    counter.main_calls = counter.other_calls = 0
    counter.counting = True
    sys.setprofile(counter.hook)
    for _ in range(count):
        operation()
    setup.flush()
    sys.setprofile(None)
    counter.counting = False
    return {
        "calls": (counter.main_calls + counter.other_calls) / count,
        "main_thread": counter.main_calls / count,
        "other_threads": counter.other_calls / count,
    }


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
