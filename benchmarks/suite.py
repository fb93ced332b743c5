"""conntrace's benchmark suite, side by side in one run.

    .venv/bin/python benchmarks/run.py            # the full run (about 6 minutes)
    .venv/bin/python benchmarks/run.py --quick    # a short run while developing

What it measures (the issue's targets are checked in ``report.py``):

* ``server``: the local benchmark server alone (raw-socket client, one keep-alive
  connection), so that it is known not to be the bottleneck.
* ``botocore``, ``urllib3``, ``https_new``, ``aiohttp``: the time per call of one operation, in one
  worker process per variant (``variants.py``: conntrace set up exactly as
  ``conntrace-run`` sets it up, through ``conntrace.sdk.start``), driven in interleaved
  rounds; medians, ratios to the untraced worker of the same run, CPU time of the whole
  process (every thread, the export thread included), time in the garbage collector,
  spans per call, and function calls per call in every thread (counted in workers of
  their own, never timed).
* ``startup``: a program that imports boto3 and makes one call, under ``conntrace-run``
  and ``opentelemetry-instrument``.
* ``memory``: resident-set growth over many traced requests, spans exported over OTLP.
* ``truth``: delays injected on purpose, and what the spans report.
* ``export``: 10,000 spans a second to a local OTLP receiver.

It prints a Markdown table of the targets (target, measured, met) and one per section,
and writes every figure (each round's, too) to a JSON file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from . import export, memory, report, scenarios, startup, truth, variants
from .certificates import Certificates
from .child import ROOT
from .measure import Worker, compare, interleaved, report_totals
from .receiver import ReceiverProcess
from .server import ServerProcess, cpu_seconds, round_trip_seconds

SECTIONS = (
    "server", "botocore", "urllib3", "https_new", "aiohttp", "startup", "memory", "truth", "export",
)  # fmt: skip


@dataclass(frozen=True)
class Profile:
    """How much of everything one run measures."""

    rounds: int
    calls: dict[str, int]
    # Calls per variant counted for function calls (in workers of their own).
    counted_calls: dict[str, int]
    warmup: int
    server_round_trips: int
    startup_rounds: int
    memory_requests: int
    memory_warmup: int
    truth_delay_ms: float
    truth_repeats: int
    export_rates: tuple[float, ...]
    export_seconds: float


PROFILES = {
    "full": Profile(
        rounds=30,
        calls={
            scenarios.BOTOCORE: 300,
            scenarios.URLLIB3: 1000,
            scenarios.HTTPS_NEW: 100,
            scenarios.AIOHTTP: 1000,
        },
        counted_calls={
            scenarios.BOTOCORE: 300,
            scenarios.URLLIB3: 1000,
            scenarios.HTTPS_NEW: 100,
            scenarios.AIOHTTP: 1000,
        },
        warmup=500,
        server_round_trips=20000,
        startup_rounds=15,
        memory_requests=100_000,
        memory_warmup=10_000,
        truth_delay_ms=20.0,
        truth_repeats=20,
        export_rates=(10_000, 5_000),
        export_seconds=10.0,
    ),
    "quick": Profile(
        rounds=8,
        calls={
            scenarios.BOTOCORE: 100,
            scenarios.URLLIB3: 300,
            scenarios.HTTPS_NEW: 30,
            scenarios.AIOHTTP: 300,
        },
        counted_calls={
            scenarios.BOTOCORE: 100,
            scenarios.URLLIB3: 300,
            scenarios.HTTPS_NEW: 30,
            scenarios.AIOHTTP: 300,
        },
        warmup=200,
        server_round_trips=5000,
        startup_rounds=4,
        memory_requests=10_000,
        memory_warmup=2_000,
        truth_delay_ms=20.0,
        truth_repeats=5,
        export_rates=(10_000,),
        export_seconds=2.0,
    ),
    # Only proves that every part runs (the tests use it): its figures mean nothing.
    "tiny": Profile(
        rounds=2,
        calls={
            scenarios.BOTOCORE: 5,
            scenarios.URLLIB3: 10,
            scenarios.HTTPS_NEW: 3,
            scenarios.AIOHTTP: 10,
        },
        counted_calls={
            scenarios.BOTOCORE: 5,
            scenarios.URLLIB3: 10,
            scenarios.HTTPS_NEW: 3,
            scenarios.AIOHTTP: 10,
        },
        warmup=5,
        server_round_trips=100,
        startup_rounds=1,
        memory_requests=200,
        memory_warmup=50,
        truth_delay_ms=20.0,
        truth_repeats=2,
        export_rates=(2_000,),
        export_seconds=0.2,
    ),
}

# The variants each operation is measured with; OpenTelemetry has no connection spans.
VARIANTS_OF = {
    scenarios.BOTOCORE: (
        variants.PLAIN, variants.CONNTRACE, variants.DIAGNOSIS, variants.OTLP, variants.OTEL,
    ),
    scenarios.URLLIB3: (variants.PLAIN, variants.CONNTRACE, variants.DIAGNOSIS, variants.OTEL),
    scenarios.HTTPS_NEW: (variants.PLAIN, variants.CONNTRACE, variants.DIAGNOSIS),
    scenarios.AIOHTTP: (variants.PLAIN, variants.CONNTRACE, variants.DIAGNOSIS, variants.OTEL),
}  # fmt: skip

_PACKAGES = (
    "conntrace", "botocore", "boto3", "urllib3", "wrapt", "opentelemetry-api",
    "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-grpc",
    "opentelemetry-instrumentation", "opentelemetry-instrumentation-botocore",
    "opentelemetry-instrumentation-urllib3", "opentelemetry-distro", "protobuf", "grpcio",
    "aiohttp", "opentelemetry-instrumentation-aiohttp-client",
)  # fmt: skip


def _cpuinfo() -> dict[str, str]:
    """The first processor's entries in /proc/cpuinfo (Linux)."""
    found: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if not line.strip():
                break
            key, _, value = line.partition(":")
            found[key.strip()] = value.strip()
    return found


def source() -> dict[str, Any]:
    """Which conntrace was measured: the commit, and the files of src/conntrace changed since."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "src/conntrace").splitlines()
    return {"commit": git("rev-parse", "--short", "HEAD"), "changed": changed}


def machine() -> dict[str, Any]:
    cpu = _cpuinfo()
    versions = {}
    for package in _PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu.get("model name", ""),
        "cpu_mhz": cpu.get("cpu MHz", ""),
        "virtual_machine": "hypervisor" in cpu.get("flags", "").split(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": f"{platform.system()} {platform.release()}",
        "load_average_at_start": os.getloadavg(),
        "packages": versions,
    }


def operation_section(
    scenario: str,
    target: scenarios.Target,
    profile: Profile,
    directory: str,
    log: Callable[[str], None],
) -> dict[str, Any]:
    names = VARIANTS_OF[scenario]
    calls = profile.calls[scenario]
    counted = max(1, profile.counted_calls[scenario])

    def report(name: str, purpose: str) -> str | None:
        if name not in variants.CONNTRACE_VARIANTS:
            return None
        return os.path.join(directory, f"report-{scenario}-{name}-{purpose}.json")

    with contextlib.ExitStack() as stack:
        receiver = stack.enter_context(ReceiverProcess()) if variants.OTLP in names else None
        endpoint = receiver.endpoint if receiver is not None else None
        workers = {
            name: stack.enter_context(
                Worker(scenario, name, target, profile.warmup, endpoint, report(name, "timed"))
            )
            for name in names
        }
        log(f"{scenario}: {len(names)} workers ready; {profile.rounds} rounds of {calls} calls")
        received_before = receiver.count()["spans"] if receiver is not None else 0
        samples = interleaved(workers, profile.rounds, calls)
        finished = {name: worker.finish() for name, worker in workers.items()}
        if receiver is not None:
            # Only the OTLP worker sends to the receiver.
            finished[variants.OTLP]["spans"] = receiver.count()["spans"] - received_before
        stack.close()
        # Function calls in every thread, in workers of their own (the counting hook slows
        # the threads it is installed in: those workers are never timed).
        log(f"{scenario}: counting function calls over {counted} calls per variant")
        function_calls = {}
        for name in names:
            with contextlib.ExitStack() as counting:
                receiver = (
                    counting.enter_context(ReceiverProcess()) if name == variants.OTLP else None
                )
                worker = counting.enter_context(
                    Worker(
                        scenario,
                        name,
                        target,
                        min(profile.warmup, 200),
                        receiver.endpoint if receiver is not None else None,
                        report(name, "counted"),
                        count_calls=True,
                    )
                )
                function_calls[name] = worker.ask(f"count {counted}")
    summary = compare(samples, variants.PLAIN)
    timed_calls = profile.rounds * calls
    plain_whole = finished[variants.PLAIN]["whole_cpu"]
    for name in names:
        found = summary[name]
        spans = finished[name]["spans"]
        # Every call since the first timed one (the warm-up's spans were flushed before).
        found["spans_per_call"] = None if spans is None else spans / timed_calls
        found["flushed"] = finished[name]["flushed"]
        whole = finished[name]["whole_cpu"]
        found["whole_cpu_us"] = whole * 1e6
        found["whole_cpu_ratio"] = whole / plain_whole
        found["added_whole_cpu_us"] = (whole - plain_whole) * 1e6
        found["function_calls"] = function_calls[name]["calls"]
        found["function_calls_main_thread"] = function_calls[name]["main_thread"]
        found["function_calls_other_threads"] = function_calls[name]["other_threads"]
        path = report(name, "timed")
        if path is not None:
            # Did conntrace's findings see every request the worker made?
            totals = report_totals(path)
            found["report_totals"] = totals
            found["requests_made"] = profile.warmup + timed_calls
            found["report_requests"] = None if totals is None else totals.get("requests")
    return {
        "title": scenarios.TITLES[scenario],
        "calls_per_round": calls,
        "counted_calls": counted,
        "variants": summary,
    }


def run(profile_name: str, sections: tuple[str, ...], log: Callable[[str], None]) -> dict:
    profile = PROFILES[profile_name]
    results: dict[str, Any] = {
        "profile": profile_name,
        "settings": asdict(profile),
        "machine": machine(),
        "conntrace_source": source(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "exporter": (
            "BatchSpanProcessor (defaults) -> exporter that counts and drops spans; "
            "conntrace_otlp: conntrace-run's own OTLP/gRPC exporter -> receiver process"
        ),
    }
    os.environ.update(scenarios.AWS_ENVIRONMENT)
    with contextlib.ExitStack() as stack:
        directory = stack.enter_context(tempfile.TemporaryDirectory())
        certificates = stack.enter_context(Certificates(directory))
        tls = ["--tls-cert", certificates.cert_file, "--tls-key", certificates.key_file]
        server = stack.enter_context(ServerProcess(*tls))
        target = scenarios.Target(server.http_port, server.https_port, certificates.ca_file)
        if "server" in sections:
            # In ten parts, and the median of those: the machine may be busy for a while.
            part = profile.server_round_trips // 10
            cpu = cpu_seconds(server.pid)
            chunks = [round_trip_seconds(server.http_port, part) for _ in range(10)]
            cpu = cpu_seconds(server.pid) - cpu
            seconds = statistics.median(chunks)
            results["server"] = {
                "round_trip_us": seconds * 1e6,
                "fastest_us": min(chunks) * 1e6,
                "requests_per_s": 1 / seconds,
                "server_cpu_us": cpu / (part * 10) * 1e6,
            }
            log(f"server alone: {seconds * 1e6:.1f} µs per request")
        for scenario in (
            scenarios.BOTOCORE, scenarios.URLLIB3, scenarios.HTTPS_NEW, scenarios.AIOHTTP,
        ):  # fmt: skip
            if scenario in sections:
                results[scenario] = operation_section(scenario, target, profile, directory, log)
        if "startup" in sections:
            reason = startup.available()
            if reason is not None:
                results["startup"] = {"not_measured": reason}
            else:
                log(f"startup: {profile.startup_rounds} rounds")
                with ReceiverProcess() as receiver:
                    results["startup"] = startup.measure(
                        profile.startup_rounds, receiver, server.http_port, directory
                    )
        if "memory" in sections:
            log(f"memory: {profile.memory_requests} requests per variant")
            results["memory"] = memory.measure(
                target, profile.memory_requests, profile.memory_warmup, directory
            )
    if "truth" in sections:
        log("truth of timings")
        results["truth"] = truth.measure(profile.truth_delay_ms, profile.truth_repeats)
    if "export" in sections:
        results["export"] = []
        for rate in profile.export_rates:
            log(f"export: {rate:g} spans/s for {profile.export_seconds:g} s")
            results["export"].append(export.measure(rate, profile.export_seconds))
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["targets"] = [asdict(row) for row in report.targets(results)]
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py", description="conntrace's benchmark suite"
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a short run while developing")
    size.add_argument("--tiny", action="store_true", help="only check that every part runs")
    parser.add_argument(
        "--only", nargs="+", choices=SECTIONS, metavar="SECTION",
        help=f"run only these sections: {', '.join(SECTIONS)}",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="where to write the results")
    parser.add_argument("--markdown", type=Path, help="also write the tables as Markdown here")
    args = parser.parse_args(argv)
    profile = "quick" if args.quick else "tiny" if args.tiny else "full"
    output = args.json or Path(__file__).resolve().parent / "results" / f"{profile}.json"

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    results = run(profile, tuple(args.only or SECTIONS), log)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=1) + "\n")
    tables = report.markdown(results)
    print(tables)
    if args.markdown is not None:
        args.markdown.write_text(tables + "\n")
    log(f"results written to {output}")
