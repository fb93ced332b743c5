"""Truth of timings: delays injected on purpose, and what conntrace's spans say about them.

The server (a child process) holds back, per connection: the TCP handshake (the client's
SYN waits in NFQUEUE, see ``nfqueue.py``), the TLS handshake (it sleeps between
``accept`` and the handshake) and the first byte of every response. The client, traced by
conntrace, opens a new HTTPS connection and sends two requests on it, then reads:

* ``socket connect``: the TCP handshake;
* ``TLS client handshake``: the TLS handshake;
* the second request's ``GET`` span: a request on a reused connection, first byte included.

Each phase costs something even undelayed, so the same runs against an undelayed server
give the baseline; the *error* is what the span says minus (injected delay + baseline).

Holding SYNs needs CAP_NET_ADMIN: ``measure`` runs everything in a network namespace of its
own (``unshare --net``) when it can, and otherwise measures the other two phases only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Any

from .certificates import Certificates
from .child import ROOT
from .server import ServerProcess

TCP = "tcp_handshake"
TLS = "tls_handshake"
FIRST_BYTE = "first_byte"
PHASES = (TCP, TLS, FIRST_BYTE)
DESCRIPTIONS = {
    TCP: "TCP handshake (SYN held back) -> `socket connect` span",
    TLS: "TLS handshake (server waits before it) -> `TLS client handshake` span",
    FIRST_BYTE: "time to first byte (server waits before answering) -> request span",
}


def _durations_ms(delays: dict[str, float], repeats: int, certificates: Certificates) -> dict:
    """Per phase, the span durations of ``repeats`` connections to a server with ``delays``."""
    import ssl

    import urllib3
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import conntrace
    from conntrace import attributes as A

    options = ["--tls-cert", certificates.cert_file, "--tls-key", certificates.key_file]
    options += ["--syn-delay-ms", str(delays.get(TCP, 0.0))]
    options += ["--handshake-delay-ms", str(delays.get(TLS, 0.0))]
    options += ["--first-byte-delay-ms", str(delays.get(FIRST_BYTE, 0.0))]
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    conntrace.instrument(tracer_provider=provider)
    context = ssl.create_default_context(cafile=certificates.ca_file)
    found: dict[str, list[float]] = {phase: [] for phase in PHASES}
    try:
        with ServerProcess(*options) as server:
            for _ in range(repeats):
                exporter.clear()
                with urllib3.HTTPSConnectionPool(
                    "127.0.0.1",
                    server.https_port,
                    ssl_context=context,
                    server_hostname="localhost",
                ) as pool:
                    pool.request("GET", "/first")
                    pool.request("GET", "/second")
                spans = exporter.get_finished_spans()
                for phase, span in _phase_spans(spans, A).items():
                    found[phase].append((span.end_time - span.start_time) / 1e6)
    finally:
        conntrace.uninstrument()
        provider.shutdown()
    return found


def _phase_spans(spans: Any, A: Any) -> dict[str, Any]:
    requests = [s for s in spans if (s.attributes or {}).get(A.HTTP_REQUEST_METHOD)]
    reused = [s for s in requests if (s.attributes or {}).get(A.CONNECTION_REUSED)]
    return {
        TCP: next(s for s in spans if s.name.startswith(A.SPAN_CONNECT)),
        TLS: next(s for s in spans if s.name.startswith(A.SPAN_TLS)),
        FIRST_BYTE: reused[0],
    }


def inner(delay_ms: float, repeats: int, hold_syn: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory, Certificates(directory) as certificates:
        baseline = _durations_ms({}, repeats, certificates)
        delays = {TLS: delay_ms, FIRST_BYTE: delay_ms}
        if hold_syn:
            delays[TCP] = delay_ms
        delayed = _durations_ms(delays, repeats, certificates)
    phases = {}
    for phase in PHASES:
        if phase not in delays:
            continue
        base = statistics.median(baseline[phase])
        errors = [value - delay_ms - base for value in delayed[phase]]
        phases[phase] = {
            "injected_ms": delay_ms,
            "undelayed_median_ms": base,
            "reported_median_ms": statistics.median(delayed[phase]),
            "median_error_ms": statistics.median(errors),
            "worst_error_ms": max(errors, key=abs),
            "reported_ms": delayed[phase],
        }
    return phases


def _can_hold_syns() -> str | None:
    """Why SYNs cannot be held here, or None."""
    if os.geteuid() != 0:
        return "needs root (CAP_NET_ADMIN) for NFQUEUE"
    for tool in ("unshare", "iptables", "ip"):
        if shutil.which(tool) is None:
            return f"needs the {tool} command"
    return None


def measure(delay_ms: float, repeats: int) -> dict[str, Any]:
    reason = _can_hold_syns()
    command = [sys.executable, "-m", "benchmarks.truth", "--inner",
               "--delay-ms", str(delay_ms), "--repeats", str(repeats)]  # fmt: skip
    if reason is None:
        # A network namespace of its own: the iptables rule and the held SYNs stay there.
        setup = 'ip link set lo up && exec "$@"'
        command = ["unshare", "--net", "sh", "-c", setup, "sh", *command, "--hold-syn"]
    done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    result: dict[str, Any] = {"phases": json.loads(done.stdout)}
    if reason is not None:
        result["not_measured"] = {TCP: reason}
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inner", action="store_true", required=True)
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--repeats", type=int, required=True)
    parser.add_argument("--hold-syn", action="store_true")
    args = parser.parse_args(argv)
    print(json.dumps(inner(args.delay_ms, args.repeats, args.hold_syn)))


if __name__ == "__main__":
    main()
