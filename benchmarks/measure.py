"""Driving worker processes in interleaved rounds, and summing up what they measured."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from . import scenarios
from .child import ChildProcess


class Worker(ChildProcess):
    """A ``benchmarks.worker`` process, set up and warmed up, waiting for commands."""

    def __init__(
        self,
        scenario: str,
        variant: str,
        target: scenarios.Target,
        warmup: int,
        otlp: str | None = None,
        report: str | None = None,
        count_calls: bool = False,
    ) -> None:
        self.variant = variant
        self.report = report
        options = [scenario, variant, "--http-port", str(target.http_port), "--warmup", str(warmup)]
        if target.https_port is not None and target.ca_file is not None:
            options += ["--https-port", str(target.https_port), "--ca-file", target.ca_file]
        if otlp is not None:
            options += ["--otlp", otlp]
        if report is not None:
            options += ["--report", report]
        if count_calls:
            options.append("--count-calls")
        super().__init__("benchmarks.worker", *options)
        # The process's CPU time when it was first told to run, and the calls made since.
        self.first_cpu_ns: int | None = None
        self.calls = 0

    def run(self, calls: int) -> dict[str, float]:
        """Per call, over ``calls`` calls: seconds (``wall``), seconds of CPU of the process
        (``cpu``) and seconds in the garbage collector (``gc``)."""
        answer = self.ask(f"run {calls}")
        if self.first_cpu_ns is None:
            self.first_cpu_ns = answer["process_cpu_ns"] - answer["cpu_ns"]
        self.calls += calls
        return {
            "wall": answer["ns"] / calls / 1e9,
            "cpu": answer["cpu_ns"] / calls / 1e9,
            "gc": answer["gc_ns"] / calls / 1e9,
        }

    def finish(self) -> dict[str, Any]:
        """Flush the spans still queued, and sum up: spans exported (None when they left the
        process), and the whole process's CPU time per call from the first timed call to
        the end of this flush, every thread and the export of every span included."""
        answer = self.ask("flush")
        whole = None
        if self.first_cpu_ns is not None and self.calls:
            whole = (answer["process_cpu_ns"] - self.first_cpu_ns) / self.calls / 1e9
        return {"spans": answer["spans"], "flushed": answer["flushed"], "whole_cpu": whole}


def report_totals(path: str) -> dict[str, Any] | None:
    """The totals of the report conntrace wrote at exit (None: no report was written)."""
    try:
        with open(path) as file:
            found: dict[str, Any] = json.load(file)["totals"]
    except (OSError, ValueError, KeyError):
        return None
    return found


def interleaved(
    workers: Mapping[str, Worker], rounds: int, calls: int
) -> dict[str, dict[str, list[float]]]:
    """Per worker and measure (see ``Worker.run``), one sample per round. Each round runs
    every worker once, one at a time, starting with a different one each round."""
    names = list(workers)
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    for number in range(rounds):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            for measure, value in workers[name].run(calls).items():
                samples[name].setdefault(measure, []).append(value)
    return samples


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    low, median, high = statistics.quantiles(values, n=4, method="inclusive")
    return low, median, high


def compare(samples: Mapping[str, Mapping[str, Sequence[float]]], baseline: str) -> dict:
    """Per variant, from ``interleaved``'s samples: the median time per call and its
    quartiles in µs, the ratio to the baseline's median and the time added to it, the
    median of the per-round ratios (each round's sample over the same round's baseline
    sample, which cancels slow drifts of the machine), and the same for CPU time, which
    other processes on a shared machine disturb less; and the time in the garbage collector."""
    base = statistics.median(samples[baseline]["wall"])
    base_cpu = statistics.median(samples[baseline]["cpu"])
    summary: dict[str, dict[str, Any]] = {}
    for name, measured in samples.items():
        wall, cpu = measured["wall"], measured["cpu"]
        low, median, high = quartiles(wall)
        paired = [value / plain for value, plain in zip(wall, samples[baseline]["wall"])]
        median_cpu = statistics.median(cpu)
        summary[name] = {
            "median_us": median * 1e6,
            "q1_us": low * 1e6,
            "q3_us": high * 1e6,
            "ratio": median / base,
            "paired_ratio": statistics.median(paired),
            "added_us": (median - base) * 1e6,
            "cpu_us": median_cpu * 1e6,
            "cpu_ratio": median_cpu / base_cpu,
            "added_cpu_us": (median_cpu - base_cpu) * 1e6,
            "gc_us": statistics.median(measured["gc"]) * 1e6,
            "rounds_us": [value * 1e6 for value in wall],
            "rounds_cpu_us": [value * 1e6 for value in cpu],
        }
    return summary
