"""Where conntrace's time goes on the hot path: py-spy samples, summed per line of conntrace.

    /work/venv/bin/python -m benchmarks.profile botocore --calls 20000
    /work/venv/bin/python -m benchmarks.profile botocore --count

The first form samples with py-spy (below). ``--count`` instead counts, with cProfile, the
function calls each operation makes with conntrace on and with it off, and lists the
functions called more often: a measure of work that load on the machine does not change.

runs the scenario's operation in a traced process under ``py-spy record`` and charges each
sample to the innermost frame of conntrace's own code on its stack, together with what
that line called (the OpenTelemetry SDK, contextvars, ...). Samples whose innermost
conntrace frame is a hook handing over to the host's function (``wrapped(...)``) are the
host's work, not conntrace's. The C part of each wrapt wrapper has no frame of its own:
it shows up in the host's line that called the patched function.
"""

from __future__ import annotations

import argparse
import collections
import linecache
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import scenarios, variants
from .certificates import Certificates
from .child import ROOT
from .receiver import ReceiverProcess
from .server import ServerProcess

CONNTRACE_SOURCE = str(Path(__file__).resolve().parents[1] / "src" / "conntrace")
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>.*):(?P<line>\d+)\)$")
_LOOP = "_measured_loop"


@dataclass(frozen=True)
class Frame:
    function: str
    file: str
    line: int

    @property
    def in_conntrace(self) -> bool:
        return self.file.startswith(CONNTRACE_SOURCE)

    @property
    def source(self) -> str:
        return linecache.getline(self.file, self.line).strip()

    @property
    def where(self) -> str:
        return f"{os.path.relpath(self.file, CONNTRACE_SOURCE)}:{self.line}"


def _parse(raw: str) -> list[tuple[list[Frame], int]]:
    stacks = []
    for entry in raw.splitlines():
        text, _, count = entry.rpartition(" ")
        if not count.isdigit():
            # --nonblocking reads a running process: now and then a frame comes out garbled.
            continue
        frames = []
        for part in text.split(";"):
            match = _FRAME.match(part)
            if match:
                frames.append(Frame(match["function"], match["file"], int(match["line"])))
        stacks.append((frames, int(count)))
    return stacks


@dataclass
class Profile:
    calls: int
    rate: int
    loop_samples: int
    host_samples: int
    # (conntrace frame, the function it was in when sampled or "(own code)") -> samples
    lines: dict[tuple[Frame, str], int]
    export_samples: int

    def us_per_call(self, samples: int) -> float:
        return samples / self.rate / self.calls * 1e6

    def report(self, top: int = 25) -> str:
        conntrace = sum(self.lines.values())
        own_share = conntrace / self.loop_samples if self.loop_samples else 0.0
        out = [
            f"{self.calls} calls, {self.loop_samples} samples in the loop "
            f"({self.us_per_call(self.loop_samples):.1f} µs per call), of which conntrace's "
            f"own code: {conntrace} ({self.us_per_call(conntrace):.1f} µs per call, "
            f"{own_share:.0%}); batch processor's export thread: "
            f"{self.us_per_call(self.export_samples):.1f} µs per call.",
            "py-spy stops the process for each sample, which slows it: compare shares, and "
            "take absolute costs from the benchmark.",
            "",
            f"{'µs/call':>8}  {'share':>6}  line of conntrace -> what it was running",
        ]
        per_line: collections.Counter[Frame] = collections.Counter()
        for (frame, _), samples in self.lines.items():
            per_line[frame] += samples
        for frame, samples in per_line.most_common(top):
            share = samples / conntrace if conntrace else 0.0
            out.append(
                f"{self.us_per_call(samples):8.2f}  {share:6.1%}  {frame.where}  {frame.source}"
            )
            callees = [(callee, n) for (f, callee), n in self.lines.items() if f == frame]
            for callee, n in sorted(callees, key=lambda item: -item[1])[:3]:
                out.append(f"{'':18}-> {callee}: {self.us_per_call(n):.2f}")
        return "\n".join(out)


def analyse(raw: str, calls: int, rate: int) -> Profile:
    lines: collections.Counter[tuple[Frame, str]] = collections.Counter()
    loop = host = exporting = 0
    for frames, count in _parse(raw):
        if not any(frame.function == _LOOP for frame in frames):
            if any(frame.function.endswith("._export") for frame in frames):
                exporting += count
            continue
        loop += count
        inner = [i for i, frame in enumerate(frames) if frame.in_conntrace]
        if not inner:
            host += count
            continue
        index = inner[-1]
        frame = frames[index]
        if "wrapped(" in frame.source:
            host += count
            continue
        callee = "(own code)"
        if index + 1 < len(frames):
            below = frames[index + 1]
            package = _package(below.file)
            callee = f"{package} {below.function}"
        lines[(frame, callee)] += count
    return Profile(calls, rate, loop, host, dict(lines), exporting)


def _package(path: str) -> str:
    marker = "site-packages/"
    if marker in path:
        return path.split(marker, 1)[1].rsplit("/", 1)[0].replace("/", ".")
    return os.path.basename(path)


def _measured_loop(operation: scenarios.Operation, calls: int) -> None:
    for _ in range(calls):
        operation()


def inner(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario")
    parser.add_argument("variant")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--https-port", type=int)
    parser.add_argument("--ca-file")
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--otlp")
    parser.add_argument("--report")
    args = parser.parse_args(argv)
    os.environ.update(scenarios.AWS_ENVIRONMENT)
    # Set up as the benchmark suite's workers are (variants.py): as conntrace-run does.
    setup = variants.enable(
        args.variant,
        botocore=args.scenario == scenarios.BOTOCORE,
        report=args.report,
        otlp_endpoint=args.otlp,
    )
    target = scenarios.Target(args.http_port, args.https_port, args.ca_file)
    operation = scenarios.build(args.scenario, target)
    _measured_loop(operation, 200)
    _measured_loop(operation, args.calls)
    setup.flush()
    setup.shutdown()


def record(scenario: str, variant: str, calls: int, rate: int) -> Profile:
    """Run ``calls`` calls of ``scenario`` under py-spy and analyse the samples."""
    with tempfile.TemporaryDirectory() as directory, Certificates(directory) as certificates:
        options = ["--tls-cert", certificates.cert_file, "--tls-key", certificates.key_file]
        with ServerProcess(*options) as server, ReceiverProcess() as receiver:
            output = os.path.join(directory, "samples.txt")
            command = [
                os.path.join(os.path.dirname(sys.executable), "py-spy"), "record",
                "--format", "raw", "--rate", str(rate), "--full-filenames",
                "--output", output, "--",
                sys.executable, "-m", "benchmarks.profile", "--inner", scenario, variant,
                "--http-port", str(server.http_port), "--https-port", str(server.https_port),
                "--ca-file", certificates.ca_file, "--calls", str(calls),
                "--otlp", receiver.endpoint, "--report", os.path.join(directory, "report.json"),
            ]  # fmt: skip
            subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
            with open(output) as samples:
                return analyse(samples.read(), calls, rate)


def count_calls(scenario: str, variant: str, calls: int, top: int) -> str:
    """The functions that one operation calls more often with ``variant`` on than off."""
    import cProfile
    import pstats

    import conntrace

    os.environ.update(scenarios.AWS_ENVIRONMENT)
    with tempfile.TemporaryDirectory() as directory, Certificates(directory) as certificates:
        options = ["--tls-cert", certificates.cert_file, "--tls-key", certificates.key_file]
        with ServerProcess(*options) as server:
            target = scenarios.Target(server.http_port, server.https_port, certificates.ca_file)
            operation = scenarios.build(scenario, target)
            provider = variants.tracer_provider(
                variants.CountingExporter(), sampled=variant != variants.DIAGNOSIS
            )

            def counted() -> dict[tuple[str, int, str], int]:
                _measured_loop(operation, 100)
                profiler = cProfile.Profile()
                profiler.enable()
                _measured_loop(operation, calls)
                profiler.disable()
                stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
                return {where: numbers[1] for where, numbers in stats.items()}

            off = counted()
            conntrace.instrument(tracer_provider=provider)
            on = counted()
            conntrace.uninstrument()
    extra = {where: on.get(where, 0) - off.get(where, 0) for where in on.keys() | off.keys()}
    total_on, total_off = sum(on.values()) / calls, sum(off.values()) / calls
    out = [
        f"{scenario}, {variant}: {total_on:.0f} function calls per operation, "
        f"{total_off:.0f} without conntrace ({total_on - total_off:+.0f})",
        "",
        "  extra  function",
    ]
    for (path, line, function), count in sorted(extra.items(), key=lambda item: -item[1])[:top]:
        where = f"{_package(path)}:{line} " if line else ""
        out.append(f"{count / calls:7.1f}  {where}{function}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--inner"]:
        inner(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("scenario", choices=scenarios.SCENARIOS)
    parser.add_argument("--variant", default=variants.CONNTRACE, choices=variants.VARIANTS)
    parser.add_argument("--calls", type=int, default=10000)
    parser.add_argument("--rate", type=int, default=1000, help="samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--count", action="store_true", help="count calls instead (cProfile)")
    args = parser.parse_args(argv)
    if args.count:
        if args.variant not in (variants.CONNTRACE, variants.DIAGNOSIS):
            parser.error(
                "--count compares conntrace on and off: --variant conntrace or "
                "conntrace_diagnosis (conntrace.instrument() with a sampler that keeps nothing)"
            )
        print(count_calls(args.scenario, args.variant, min(args.calls, 2000), args.top))
        return
    print(record(args.scenario, args.variant, args.calls, args.rate).report(args.top))


if __name__ == "__main__":
    main()
