"""A collector that is down or stuck costs each invocation a bounded wait, never a timeout.

The flush before each response is bounded by CONNTRACE_LAMBDA_FLUSH_TIMEOUT and by the time
the invocation has left, whichever is shorter. The exporter's own timeout is set far above
both here, so only those bounds can explain a prompt response.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conntrace.layers.awslambda import flush_budget

from ..otlp_receiver import OtlpReceiver
from ..servers import free_port

EXPORTER_TIMEOUT = "120"
# Generous: scheduling noise, never the collector, decides what is left of it.
SLACK_S = 5.0


@pytest.fixture
def stuck() -> Iterator[OtlpReceiver]:
    """A collector that accepts every export and never answers in time."""
    with OtlpReceiver(protocol="http", delay=600) as receiver:
        yield receiver


def _durations(function, count: int, timeout_s: float = 60.0) -> list[float]:
    """How long each of ``count`` invocations took, from the event to the outcome."""
    # Each deadline then starts counting when the runtime is ready, as Lambda's does.
    function.api.wait_for_poll(1)
    durations = []
    for _ in range(count):
        invocation = function.invoke({"key": "a"}, timeout_s=timeout_s)
        assert invocation.outcome.json()["found"] is True
        durations.append(invocation.outcome.at - invocation.delivered_at)
    return durations


def test_a_stuck_collector_costs_each_invocation_at_most_the_cap(start_function, stuck):
    function = start_function(
        "app.reuse",
        stuck,
        CONNTRACE_LAMBDA_FLUSH_TIMEOUT="0.5",
        CONNTRACE_EXPORT_TIMEOUT=EXPORTER_TIMEOUT,
    )
    durations = _durations(function, 3)

    assert max(durations) < 0.5 + SLACK_S, durations
    # Said once, in the function's log: the spans that did not make it, and why.
    assert function.output().count("not sent within 0.5 s") == 1


def test_the_time_left_bounds_the_flush_when_it_is_shorter_than_the_cap(start_function, stuck):
    function = start_function(
        "app.reuse",
        stuck,
        CONNTRACE_LAMBDA_FLUSH_TIMEOUT="100",
        CONNTRACE_EXPORT_TIMEOUT=EXPORTER_TIMEOUT,
    )
    durations = _durations(function, 2, timeout_s=2.0)

    assert max(durations) < 2.0 + SLACK_S, durations


def test_a_collector_that_refuses_connections_changes_nothing_for_the_function(start_function):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    function = start_function(
        "app.reuse", CONNTRACE_LAMBDA_FLUSH_TIMEOUT="0.5", OTEL_EXPORTER_OTLP_ENDPOINT=url
    )
    durations = _durations(function, 3)

    assert max(durations) < 0.5 + SLACK_S, durations
    assert function.process.poll() is None
    # One line says why spans are missing; retries and later failures are not repeated.
    assert function.output().count("conntrace: spans not sent") == 1


@pytest.mark.parametrize(
    ("deadline_ms", "cap_s", "now_s", "budget"),
    [
        (None, 2.0, 100.0, 2.0),  # no deadline known: the cap
        (110_000, 2.0, 100.0, 2.0),  # plenty of time left: the cap
        (101_000, 2.0, 100.0, 0.8),  # 1 s left: that, less the reserve for posting
        (100_100, 2.0, 100.0, 0.0),  # less than the reserve left: no flush
        (99_000, 2.0, 100.0, 0.0),  # past the deadline: no flush
    ],
)
def test_flush_budget(deadline_ms, cap_s, now_s, budget):
    assert flush_budget(deadline_ms, cap_s, now_s) == pytest.approx(budget)
