"""A program that sets up OpenTelemetry itself keeps its telemetry under ``conntrace-run``.

``programs/own_otel.py`` sets its own tracer provider (or meter provider) with an
in-memory exporter (reader) and prints what that got. Its provider must win, with no
"Overriding ... is not allowed" warning; conntrace's spans must reach it inside the
program's trace, while conntrace's own views (terminal view, summary) still see them.
Without a provider of the program's own, conntrace's stays the default.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from ..otlp_receiver import OtlpReceiver
from .running import PROGRAMS, clean_environ, conntrace_run

OVERRIDING = "Overriding of current"


def printed(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def assert_in_one_trace(spans: list[dict]) -> None:
    """The program's span and conntrace's, all in the program's one trace."""
    [work] = [span for span in spans if span["name"] == "work"]
    ours = [span for span in spans if span["scope"] == "conntrace"]
    assert any(span["name"].startswith("HTTP connection_setup") for span in ours)
    assert [span["name"] for span in ours if span["name"] == "GET"] == ["GET"]
    assert {span["trace_id"] for span in ours} == {work["trace_id"]}


@pytest.mark.parametrize("mode", ["set", "instrument", "set+instrument"])
def test_programs_own_provider_wins_and_the_terminal_view_still_sees(server, mode):
    local = server()

    done = conntrace_run(["--exporter", "console", "python", "own_otel.py", local.url, mode])

    assert done.returncode == 0, done.stderr
    assert OVERRIDING not in done.stderr
    assert_in_one_trace(printed(done.stdout)["spans"])
    # conntrace's views saw conntrace's spans: the waterfall and the summary are there.
    assert any(line.startswith("GET 127.0.0.1:") for line in done.stderr.splitlines())
    summary = done.summaries()[done.pid]
    assert "calls 1 · requests 1 · connections opened 1 (first 1)" in summary


def test_programs_own_provider_gets_conntraces_spans_instead_of_the_otlp_exporter(server):
    local = server()
    with OtlpReceiver(protocol="http") as receiver:
        done = conntrace_run(
            ["python", "own_otel.py", local.url, "set"], env=receiver.environ(), timeout=60
        )
        received = receiver.spans()

    assert done.returncode == 0, done.stderr
    assert OVERRIDING not in done.stderr
    assert_in_one_trace(printed(done.stdout)["spans"])
    # Made after the program's provider was set: through it, and not a second time here.
    assert [span.name for span in received] == []


def test_without_a_provider_of_its_own_conntraces_is_the_default(server):
    local = server()
    with OtlpReceiver(protocol="http") as receiver:
        done = conntrace_run(["python", "own_otel.py", local.url, "none"], env=receiver.environ())
        received = receiver.wait_for_spans(
            lambda got: {"work", "GET"} <= {span.name for span in got}, timeout=10
        )

    assert done.returncode == 0, done.stderr
    assert printed(done.stdout)["spans"] == []
    [work] = [span for span in received if span.name == "work"]
    [attempt] = [span for span in received if span.name == "GET"]
    assert attempt.trace_id == work.trace_id
    assert attempt.resource["service.name"] == "own_otel"


@pytest.mark.parametrize("mode", ["set+instrument", "instrument"])
def test_conntrace_instrument_in_code_uses_the_programs_provider(server, mode):
    local = server()

    # No conntrace-run: the program switches conntrace on itself.
    done = subprocess.run(
        ["python", "own_otel.py", local.url, mode],
        cwd=PROGRAMS,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert OVERRIDING not in done.stderr
    assert_in_one_trace(printed(done.stdout)["spans"])


def test_auto_instrumentation_in_the_program_sets_the_provider(server):
    local = server()
    with OtlpReceiver(protocol="http") as receiver:
        env = {
            **receiver.environ(),
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
        }
        done = conntrace_run(["--console", "python", "own_otel.py", local.url, "auto"], env=env)
        received = receiver.wait_for_spans(
            lambda got: {"work", "GET"} <= {span.name for span in got}, timeout=10
        )
        # Give a second copy, had there been one, the time to arrive.
        time.sleep(0.5)
        received = receiver.spans()

    assert done.returncode == 0, done.stderr
    assert OVERRIDING not in done.stderr
    [work] = [span for span in received if span.name == "work"]
    [attempt] = [s for s in received if s.name == "GET" and s.scope_name == "conntrace"]
    assert attempt.trace_id == work.trace_id
    # Exported by the provider the OpenTelemetry distro built, not by conntrace's.
    assert "telemetry.auto.version" in attempt.resource
    assert "calls 1 · requests 1" in done.summaries()[done.pid]


def test_programs_own_meter_provider_wins_over_conntraces(server):
    local = server()
    with OtlpReceiver(protocol="grpc") as receiver:
        done = conntrace_run(
            ["--metrics-exporter", "otlp", "python", "own_otel.py", local.url, "set", "meters"],
            env=receiver.environ(),
        )

    assert done.returncode == 0, done.stderr
    assert OVERRIDING not in done.stderr
    assert "app:app.work" in printed(done.stdout)["metrics"]


def test_conntraces_metrics_go_to_the_programs_meter_provider(server):
    local = server()

    done = conntrace_run(
        ["--exporter", "none", "python", "own_otel.py", local.url, "set", "meters"]
    )

    assert done.returncode == 0, done.stderr
    assert OVERRIDING not in done.stderr
    names = printed(done.stdout)["metrics"]
    assert "app:app.work" in names
    assert any(name.startswith("conntrace:") for name in names), names
