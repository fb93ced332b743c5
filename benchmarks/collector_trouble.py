"""Throughput of a traced program while its collector is up, down, slow or failing.

    python -m benchmarks.collector_trouble [--runs 5]

Each run starts ``conntrace-run python <program>``: 200 warm-up GETs then 3,000 timed GETs
on one keep-alive connection to a local server, spans exported over OTLP/HTTP to a local
receiver that answers at once, is not listening, waits 0.5 s per export, or refuses every
export. The program prints its own time per request; the medians are compared.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from tests.cli.running import CONNTRACE_RUN, clean_environ
from tests.otlp_receiver import OtlpReceiver
from tests.servers import LocalServer

PROGRAM = textwrap.dedent(
    """
    import sys, time, urllib3
    http = urllib3.PoolManager()
    for _ in range(200):
        http.request("GET", sys.argv[1])
    started = time.perf_counter()
    for _ in range(3000):
        http.request("GET", sys.argv[1])
    print((time.perf_counter() - started) / 3000 * 1e6)
    """
)


def _run(program: Path, url: str, environ: dict[str, str]) -> float:
    done = subprocess.run(
        [str(CONNTRACE_RUN), sys.executable, str(program), url],
        env=clean_environ({"CONNTRACE_EXPORT_TIMEOUT": "1", **environ}),
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    down = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }
    collectors = {
        "up": {},
        "down (nothing listening)": None,
        "slow (0.5 s per export)": {"delay": 0.5},
        "failing (every export refused)": {"fail": "permanent"},
    }
    seen: dict[str, list[float]] = {name: [] for name in collectors}
    local = LocalServer()
    with tempfile.TemporaryDirectory() as scratch:
        program = Path(scratch) / "requests_loop.py"
        program.write_text(PROGRAM)
        for _ in range(runs):  # interleaved, so that the machine's load falls on all alike
            for name, options in collectors.items():
                if options is None:
                    seen[name].append(_run(program, local.url, down))
                    continue
                with OtlpReceiver(protocol="http", **options) as receiver:
                    seen[name].append(_run(program, local.url, receiver.environ()))
    local.stop()
    baseline = statistics.median(seen["up"])
    print("| collector | µs per request (median) | vs up |")
    print("|---|---|---|")
    for name, values in seen.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.0f} | {median / baseline:.2f} x |")


if __name__ == "__main__":
    main()
