"""``conntrace-run`` exporting to a real OTLP receiver, and to one that is down or slow."""

from __future__ import annotations

import time

import pytest

from conntrace import attributes as A

from ..otlp_receiver import OtlpReceiver, ReceivedSpan
from ..servers import free_port
from .running import BIN, conntrace_run


def attempts_to(spans: list[ReceivedSpan], port: int) -> list[ReceivedSpan]:
    found = [
        s
        for s in spans
        if s.attributes.get(A.SERVER_PORT) == port and A.HTTP_REQUEST_METHOD in s.attributes
    ]
    return sorted(found, key=lambda span: span.start_time_unix_nano)


def test_grpc_receiver_gets_the_programs_spans_and_the_view_shows_them_too(server):
    local = server()
    with OtlpReceiver(protocol="grpc") as receiver:
        done = conntrace_run(
            ["--console", "python", "calls.py", local.url, "2"], env=receiver.environ()
        )
        spans = receiver.wait_for_spans(lambda got: len(attempts_to(got, local.port)) == 2)

    assert done.returncode == 0, done.stderr
    assert {span.resource["service.name"] for span in spans} == {"calls"}
    attempts = attempts_to(spans, local.port)
    assert [span.attributes[A.CONNECTION_REUSED] for span in attempts] == [False, True]
    assert [span.attributes[A.CONNECTION_ID] for span in attempts] == [1, 1]
    calls = [span for span in spans if span.name == "DynamoDB.ListTables"]
    assert sorted(attempt.parent_span_id for attempt in attempts) == sorted(
        c.span_id for c in calls
    )
    # --console adds the terminal view to the export.
    assert "calls 2 · requests 2 · connections opened 1 (first 1)" in done.summaries()[done.pid]
    assert "conntrace:" not in done.stderr


def test_http_receiver_set_by_flags_and_the_exporters_own_requests_are_not_traced(server):
    local = server()
    with OtlpReceiver(protocol="http") as receiver:
        done = conntrace_run(
            [
                "--protocol",
                "http/protobuf",
                "--endpoint",
                receiver.endpoint,
                "--service-name",
                "flagged",
                "--resource-attributes",
                "deployment.environment=test,team=a%20b",
                "python",
                "calls.py",
                local.url,
                "3",
            ]
        )
        spans = receiver.wait_for_spans(lambda got: len(attempts_to(got, local.port)) == 3)

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    resource = spans[0].resource
    assert (resource["service.name"], resource["deployment.environment"], resource["team"]) == (
        "flagged",
        "test",
        "a b",
    )
    # The exporter sends over urllib3 too: conntrace must not trace its own export.
    assert attempts_to(spans, receiver.port) == []


def test_down_collector_costs_a_bounded_delay_one_warning_and_keeps_the_exit_code(server):
    local = server()
    nobody = f"http://127.0.0.1:{free_port()}"

    started = time.monotonic()
    done = conntrace_run(
        ["--endpoint", nobody, "--export-timeout", "2", "python", "exit3.py", local.url]
    )
    elapsed = time.monotonic() - started

    assert done.returncode == 3
    assert done.stdout == "about to exit 3\n"
    [warning] = done.stderr.splitlines()
    # An address set on purpose: the bounded wait and one warning, which names the refusal.
    assert warning.startswith(f"conntrace: spans not sent to {nobody} (grpc): connection refused;")
    assert elapsed < 10


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_collector_that_never_answers_is_given_up_on_at_the_bound(server, protocol):
    local = server()
    with OtlpReceiver(protocol=protocol, delay=60) as receiver:  # type: ignore[arg-type]
        started = time.monotonic()
        done = conntrace_run(
            ["--export-timeout", "1", "python", "exit3.py", local.url], env=receiver.environ()
        )
        elapsed = time.monotonic() - started

    assert done.returncode == 3
    [warning] = done.stderr.splitlines()
    assert warning.startswith("conntrace: spans not sent to ")
    assert elapsed < 10


def test_provider_set_up_by_opentelemetry_instrument_is_reused(server):
    local = server()
    with OtlpReceiver(protocol="grpc") as receiver:
        env = {
            **receiver.environ(),
            "OTEL_SERVICE_NAME": "instrumented",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
        }
        # opentelemetry-instrument first: it puts its own sitecustomize first on PYTHONPATH.
        done = conntrace_run(
            ["--console", "python", "calls.py", local.url, "2"],
            env=env,
            before=[str(BIN / "opentelemetry-instrument")],
        )
        spans = receiver.wait_for_spans(lambda got: len(attempts_to(got, local.port)) >= 2)
        # Give a second provider, if one had been made, the time to deliver its copies.
        time.sleep(0.5)
        spans = receiver.spans()

    assert done.returncode == 0, done.stderr
    assert {span.resource["service.name"] for span in spans} == {"instrumented"}
    # One provider: each request is exported once, under OpenTelemetry's botocore span.
    attempts = attempts_to(spans, local.port)
    assert len(attempts) == 2
    by_id = {span.span_id: span for span in spans}
    parents = [by_id[attempt.parent_span_id] for attempt in attempts]
    assert all(p.scope_name.startswith("opentelemetry.instrumentation.botocore") for p in parents)
    assert "calls 2 · requests 2 · connections opened 1 (first 1)" in done.summaries()[done.pid], (
        done.stderr
    )


PRINT_EXPORTERS = (
    "import sys, urllib3; urllib3.PoolManager().request('GET', sys.argv[1]); "
    "from conntrace import sdk; sdk.current().flush(5); "
    "print(sorted(m.rsplit('.', 2)[-2] for m in sys.modules if m.endswith('.trace_exporter')))"
)


def test_only_the_exporter_in_use_is_imported(server):
    local = server()

    def exporters(*args: str) -> str:
        done = conntrace_run([*args, "python", "-c", PRINT_EXPORTERS, local.url])
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    nobody = f"http://127.0.0.1:{free_port()}"
    assert exporters("--exporter", "console") == "[]"
    assert exporters("--protocol", "http/protobuf", "--endpoint", nobody) == "['http']"
    assert (
        exporters("--protocol", "grpc", "--endpoint", nobody, "--export-timeout", "1") == "['grpc']"
    )
