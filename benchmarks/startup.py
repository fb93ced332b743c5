"""Start-up: how much later a program that makes one traced call is done, under each launcher.

The program imports boto3 and makes one DynamoDB ``GetItem`` call to the local benchmark
server, so that everything a tracer defers to the first call (conntrace imports its
hooks' modules and the OTLP exporter when they are first needed) is paid, and the spans
of that call are sent at exit. Three commands, run in interleaved rounds, each timed from
spawn to exit:

* ``python -c PROGRAM``
* ``conntrace-run --report PATH python -c PROGRAM``
* ``opentelemetry-instrument python -c PROGRAM``: the distro, the botocore and urllib3
  instrumentations (all installed beside it) and the OTLP span exporter.

Both tracers export spans over OTLP/gRPC to the counting receiver (another process, on
127.0.0.1); metrics and logs exporters are off for both, which is conntrace's default and
OpenTelemetry's cheapest setting. conntrace also registers itself as an OpenTelemetry
instrumentor, so it is disabled in the ``opentelemetry-instrument`` run.

Each command is run once more to check that it traces what it claims (spans reaching the
receiver, conntrace's report), and ``-X importtime`` runs, once per traced command, say
which modules the extra time goes to.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

from . import variants
from .receiver import ReceiverProcess

DESCRIPTION = "import boto3; one DynamoDB GetItem to a local server"
_PROGRAM = (
    "import boto3; boto3.client('dynamodb', endpoint_url='http://127.0.0.1:{port}', "
    "region_name='us-east-1').get_item(TableName='benchmark', Key={{'id': {{'S': '1'}}}})"
)
# Run after the program, once per command: does it run traced as it claims?
_CHECKS = {
    variants.PLAIN: "print('untraced')",
    variants.CONNTRACE: "import conntrace; print(conntrace.is_instrumented())",
    variants.OTEL: (
        "import opentelemetry.instrumentation.botocore as b; "
        "print(b.BotocoreInstrumentor().is_instrumented_by_opentelemetry)"
    ),
}
_EXPECTED = {variants.PLAIN: "untraced", variants.CONNTRACE: "True", variants.OTEL: "True"}
# Spans each command's one call sends: conntrace's API call and HTTP request spans;
# OpenTelemetry's botocore span (its urllib3 span is suppressed beneath it).
_SPANS = {variants.PLAIN: 0, variants.CONNTRACE: 2, variants.OTEL: 1}


def program(http_port: int) -> str:
    return _PROGRAM.format(port=http_port)


def _script(name: str) -> str:
    return os.path.join(os.path.dirname(sys.executable), name)


def commands(program: str, report: str) -> dict[str, list[str]]:
    python = sys.executable
    return {
        variants.PLAIN: [python, "-c", program],
        variants.CONNTRACE: [_script("conntrace-run"), "--report", report, python, "-c", program],
        variants.OTEL: [_script("opentelemetry-instrument"), python, "-c", program],
    }


def environment(otlp_endpoint: str) -> dict[str, str]:
    # Bytecode is cached, as it is for an installed package (pip compiles it): without
    # that, every start compiles the modules of the editable checkout anew (~25 ms here).
    dropped = ("OTEL_", "CONNTRACE_", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE")
    env = {key: value for key, value in os.environ.items() if not key.startswith(dropped)}
    env.update(
        {
            "OTEL_SERVICE_NAME": "startup-benchmark",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "conntrace",
        }
    )
    return env


def available() -> str | None:
    """Why the start-up benchmark cannot run here, or None if it can."""
    try:
        import conntrace.cli  # noqa: F401
    except ImportError:
        return "conntrace-run is not installed yet (src/conntrace/cli.py)"
    if not os.path.exists(_script("conntrace-run")):
        return "the conntrace-run script is not installed in this environment"
    return None


def _timed(command: list[str], env: Mapping[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def check(
    env: Mapping[str, str], program: str, report: str, receiver: ReceiverProcess
) -> dict[str, Any]:
    """Whether each command really runs traced (or untraced) as it claims: what it prints,
    the spans the receiver gets from it, and (conntrace) the requests its report counts."""
    outcome: dict[str, Any] = {}
    for name, checked in _CHECKS.items():
        with_check = f"{program}; {checked}"
        command = commands(with_check, report)[name]
        if os.path.exists(report):
            os.unlink(report)
        before = receiver.count()["spans"]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        spans = receiver.count()["spans"] - before
        lines = done.stdout.strip().splitlines()
        printed = done.returncode == 0 and lines[-1:] == [_EXPECTED[name]]
        outcome[name] = {
            "ok": printed and spans >= _SPANS[name] and (spans == 0) == (_SPANS[name] == 0),
            "spans_received": spans,
        }
        if name == variants.CONNTRACE:
            requests = _reported_requests(report)
            outcome[name]["report_requests"] = requests
            outcome[name]["ok"] = outcome[name]["ok"] and requests == 1
        if not outcome[name]["ok"]:
            outcome[name]["stderr"] = done.stderr[-2000:]
    return outcome


def _reported_requests(path: str) -> int | None:
    try:
        with open(path) as file:
            return int(json.load(file)["totals"]["requests"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def import_breakdown(
    env: Mapping[str, str], program: str, report: str, top: int = 8
) -> dict[str, dict[str, float]]:
    """Per traced command: the modules it imports that the plain program does not,
    grouped by top-level package, in ms of their own import time (``-X importtime``, in
    the launcher's process as well as the program's)."""
    timed = {}
    profiled = {**env, "PYTHONPROFILEIMPORTTIME": "1"}
    for name, command in commands(program, report).items():
        done = subprocess.run(command, env=profiled, check=True, capture_output=True, text=True)
        timed[name] = _own_import_times(done.stderr)
    plain = timed.pop(variants.PLAIN)
    breakdown = {}
    for name, modules in timed.items():
        packages: dict[str, float] = {}
        for module, micros in modules.items():
            if module not in plain:
                package = module.split(".")[0]
                packages[package] = packages.get(package, 0.0) + micros / 1000.0
        ranked = sorted(packages.items(), key=lambda item: -item[1])
        breakdown[name] = {package: round(ms, 1) for package, ms in ranked[:top]}
        breakdown[name]["(total)"] = round(sum(packages.values()), 1)
    return breakdown


def _own_import_times(stderr: str) -> dict[str, int]:
    modules: dict[str, int] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, _cumulative, name = line[len("import time:") :].split("|")
        # A launcher's own process and the program's both report: add them up.
        module = name.strip()
        modules[module] = modules.get(module, 0) + int(own)
    return modules


def measure(
    rounds: int, receiver: ReceiverProcess, http_port: int, directory: str
) -> dict[str, Any]:
    env = environment(receiver.endpoint)
    code = program(http_port)
    report = os.path.join(directory, "report-startup.json")
    runs = commands(code, report)
    # Once each, untimed: fills the page cache and writes .pyc files.
    for command in runs.values():
        subprocess.run(command, env=env, check=True, capture_output=True)
    samples: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for number in range(rounds):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(_timed(runs[name], env))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    base = medians[variants.PLAIN]
    added = {name: medians[name] - base for name in runs}
    return {
        "program": code,
        "description": DESCRIPTION,
        "median_ms": {name: value * 1000 for name, value in medians.items()},
        "added_ms": {name: value * 1000 for name, value in added.items()},
        "conntrace_share_of_otel_added": (
            added[variants.CONNTRACE] / added[variants.OTEL] if added[variants.OTEL] else None
        ),
        "rounds_ms": {name: [v * 1000 for v in values] for name, values in samples.items()},
        "checked": check(env, code, report, receiver),
        "extra_imports_ms": import_breakdown(env, code, report),
    }
