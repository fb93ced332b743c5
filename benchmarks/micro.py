"""What the building blocks of conntrace's hot path cost on this machine, one by one.

    /work/venv/bin/python -m benchmarks.micro

Each line is the best of five timeit runs, in µs of CPU time of the process per
operation (CPU time, because other processes on a shared machine disturb it less than
wall time), with the SDK set up as in the benchmarks (``TracerProvider`` +
``BatchSpanProcessor``, spans dropped). It prices the choices the profile points at: one
more span, one more attribute, a link, a wrapt hook on a method, and a request span made
the way conntrace makes it now against the same span made in one call at its end.
"""

from __future__ import annotations

import logging
import time
import timeit
from collections.abc import Iterator
from typing import Any, Callable

import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind

from conntrace import attributes as A

from .variants import CountingExporter, tracer_provider

ATTRIBUTES = {
    A.HTTP_REQUEST_METHOD: "GET",
    A.URL_FULL: "http://127.0.0.1:8000/item",
    A.SERVER_ADDRESS: "127.0.0.1",
    A.SERVER_PORT: 8000,
    A.POOL_MAX_SIZE: 10,
}
# What a request on a reused connection adds once the response is in.
LATER = {
    A.CONNECTION_REUSED: True,
    A.CONNECTION_ID: 3,
    A.CONNECTION_REQUEST_NUMBER: 7,
    A.CONNECTION_AGE_MS: 12.5,
}
ALL_AT_ONCE = {
    **ATTRIBUTES,
    **LATER,
    A.POOL_WAIT_MS: 0.004,
    A.CONNECTION_IDLE_MS: 0.3,
    A.HTTP_RESPONSE_STATUS_CODE: 200,
}


class _Pool:
    def get(self, timeout: Any = None) -> Any:
        return timeout


def _passthrough(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
    return wrapped(*args, **kwargs)


def _plain_wrapper(function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        return function(self, *args, **kwargs)

    return wrapper


class _WraptPool(_Pool):
    pass


class _ClosurePool(_Pool):
    pass


_WraptPool.get = wrapt.FunctionWrapper(_Pool.get, _passthrough)  # type: ignore[method-assign]
_ClosurePool.get = _plain_wrapper(_Pool.get)  # type: ignore[method-assign]


def _request_span_as_now(tracer: trace.Tracer, parent: Any, setup: Any) -> None:
    """The calls layers/pool.py makes for one request on a reused connection."""
    span = tracer.start_span("GET", context=parent, kind=SpanKind.CLIENT)
    if span.is_recording():
        span.set_attributes(ATTRIBUTES)
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    span.set_attribute(A.POOL_WAIT_MS, 0.004)
    span.set_attribute(A.CONNECTION_IDLE_MS, 0.3)
    span.add_link(setup)
    span.set_attributes(LATER)
    span.set_attribute(A.HTTP_RESPONSE_STATUS_CODE, 200)
    span.end()
    otel_context.detach(token)


def _request_span_at_its_end(tracer: trace.Tracer, parent: Any, setup: Any) -> None:
    """The same span, made once the request is over, with its start time."""
    started = time.time_ns()
    links = (Link(setup),)
    tracer.start_span(
        "GET", parent, SpanKind.CLIENT, ALL_AT_ONCE, links=links, start_time=started
    ).end()


def costs(number: int = 20000) -> Iterator[tuple[str, float]]:
    # The batch processor would warn of its full queue: the spans are dropped on purpose.
    logging.getLogger("opentelemetry.sdk").setLevel(logging.ERROR)
    provider = tracer_provider(CountingExporter())
    tracer = provider.get_tracer("micro")
    parent = otel_context.get_current()
    span = tracer.start_span("open")
    linked = tracer.start_span("linked").get_span_context()
    key = otel_context._SUPPRESS_INSTRUMENTATION_KEY  # type: ignore[attr-defined]
    pools = {"plain": _Pool(), "wrapt": _WraptPool(), "closure": _ClosurePool()}
    cases: list[tuple[str, Callable[[], Any], int]] = [
        ("request span, made as layers/pool.py makes it (12 attributes, 1 link)",
         lambda: _request_span_as_now(tracer, parent, linked), number),
        ("request span, made in one call at its end (same attributes and link)",
         lambda: _request_span_at_its_end(tracer, parent, linked), number),
        ("span: start + end, no attributes",
         lambda: tracer.start_span("GET", parent, SpanKind.CLIENT).end(), number),
        ("span: start + end, 5 attributes given at start",
         lambda: tracer.start_span("GET", parent, SpanKind.CLIENT, ATTRIBUTES).end(), number),
        ("span: start + end, 5 attributes and 1 link given at start",
         lambda: tracer.start_span(
             "GET", parent, SpanKind.CLIENT, ATTRIBUTES, links=[Link(linked)]).end(), number),
        ("span.set_attributes(5 attributes)", lambda: span.set_attributes(ATTRIBUTES), number),
        ("span.set_attribute(1 attribute)", lambda: span.set_attribute("a.b", 1.5), number),
        ("span.add_link(context)", lambda: span.add_link(linked), 2000),
        ("context: attach + detach a span",
         lambda: otel_context.detach(otel_context.attach(trace.set_span_in_context(span))),
         number),
        ("context: get_value (suppression check)", lambda: otel_context.get_value(key), number),
        ("time.monotonic()", time.monotonic, number),
        ("round(x * 1000.0, 3)", lambda: round(0.0123456 * 1000.0, 3), number),
        ("method call, unpatched", lambda: pools["plain"].get(1), number),
        ("method call, wrapt FunctionWrapper (pass-through)",
         lambda: pools["wrapt"].get(1), number),
        ("method call, plain closure wrapper (pass-through)",
         lambda: pools["closure"].get(1), number),
    ]  # fmt: skip
    for name, statement, count in cases:
        best = min(timeit.repeat(statement, timer=time.process_time, number=count, repeat=5))
        yield name, best / count * 1e6
    provider.shutdown()


def main() -> None:
    for name, micros in costs():
        print(f"{micros:8.2f} µs  {name}")


if __name__ == "__main__":
    main()
