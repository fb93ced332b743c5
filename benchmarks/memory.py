"""Memory: how much the resident set grows over many traced requests, spans exported.

One worker per variant makes urllib3 GETs on a reused connection to the benchmark server.
The traced one is set up as ``conntrace-run --report PATH`` sets a program up
(``variants.OTLP``: findings, metrics and report on), exporting its spans over OTLP/gRPC
to the counting receiver in another process. After the warm-up, the resident set size is
read (after a full garbage collection) every ``requests / 10`` requests, with the number
of memory blocks the interpreter holds; the growth is the last reading minus the first.
Each reading follows a flush of the batch processor's queue: the queue holds up to 2,048
spans whatever the number of requests, and how full it happens to be at a reading would
otherwise hide or fake a trend in the block count. The untraced worker (an SDK tracer
provider and batch processor, no instrumentation) shows what the process grows by
without conntrace.
"""

from __future__ import annotations

import os
from typing import Any

from . import scenarios, variants
from .measure import Worker, report_totals
from .receiver import ReceiverProcess

STEPS = 10


def _reading(worker: Worker) -> dict[str, int]:
    worker.ask("flush")
    return worker.ask("rss")


def measure(target: scenarios.Target, requests: int, warmup: int, directory: str) -> dict[str, Any]:
    step = max(1, requests // STEPS)
    results: dict[str, Any] = {"requests": step * STEPS, "warmup": warmup}
    with ReceiverProcess() as receiver:
        for variant in (variants.PLAIN, variants.OTLP):
            before = receiver.count()["spans"]
            report = os.path.join(directory, f"report-memory-{variant}.json")
            traced = variant == variants.OTLP
            with Worker(
                scenarios.URLLIB3, variant, target, warmup,
                otlp=receiver.endpoint if traced else None, report=report if traced else None,
            ) as w:  # fmt: skip
                readings = [_reading(w)]
                for _ in range(STEPS):
                    w.run(step)
                    readings.append(_reading(w))
            rss = [reading["rss"] / 2**20 for reading in readings]
            results[variant] = {
                "rss_mb": rss,
                "growth_mb": rss[-1] - rss[0],
                "blocks": [reading["blocks"] for reading in readings],
                "block_growth": readings[-1]["blocks"] - readings[0]["blocks"],
                "spans_received": receiver.count()["spans"] - before,
            }
            if traced:
                results[variant]["report_totals"] = report_totals(report)
    return results
