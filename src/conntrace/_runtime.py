"""Process-wide switches shared by every layer: is tracing on, and with which tracer.

Hooks read these on every call, so they are plain module attributes, not properties.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace

log = logging.getLogger("conntrace")

# The SDK's span processors set this key while they export: without honouring it,
# conntrace would trace the OTLP exporter's own HTTP requests.
_SUPPRESS_KEY = otel_context._SUPPRESS_INSTRUMENTATION_KEY  # type: ignore[attr-defined]

active = False
tracer: trace.Tracer = trace.NoOpTracer()
# What conntrace.instrument() was given, for the metrics; None means the global one.
meter_provider: Any = None
_reported: set[str] = set()
# Test-only: called as ``fault(name, "start")`` before a hook's start and ``fault(name,
# "finish")`` before its finish; it raises where a test wants conntrace to fail, to show
# that the host program never notices.
fault: Callable[[str, str], None] | None = None


def suppressed() -> bool:
    return bool(otel_context.get_value(_SUPPRESS_KEY))


def report_internal_error(where: str) -> None:
    """Log an internal failure once per place, so a broken hook cannot flood the host's logs."""
    if where in _reported:
        return
    _reported.add(where)
    log.warning(
        "conntrace: internal error in %s; the program goes on untraced there", where, exc_info=True
    )


class Probe(Protocol):
    """What a hook's ``start`` returns: told once how the host's call ended."""

    def finish(self, result: Any, error: BaseException | None) -> None: ...


Start = Callable[[Any, tuple, dict], Optional[Probe]]


def hook(name: str, start: Start, makes_spans: bool = True) -> Callable[..., Any]:
    """A wrapt wrapper that runs ``start`` before the host's call and ``probe.finish`` after.

    The host's call runs exactly once, with its own arguments, and its result or exception
    reaches the caller untouched; conntrace's own failures are logged once and swallowed.
    Hooks that only keep books (``makes_spans=False``) skip the suppression check: it costs
    a context lookup on every call, and what they record is harmless when suppressed.
    """

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        if not active or (makes_spans and suppressed()):
            return wrapped(*args, **kwargs)
        try:
            if fault is not None:
                fault(name, "start")
            probe = start(instance, args, kwargs)
        except Exception:
            report_internal_error(name)
            probe = None
        if probe is None:
            return wrapped(*args, **kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as error:
            _finish(name, probe, None, error)
            raise
        _finish(name, probe, result, None)
        return result

    wrapper.__name__ = f"conntrace_{name}"
    return wrapper


def async_hook(name: str, start: Start, makes_spans: bool = True) -> Callable[..., Any]:
    """``hook`` for a coroutine function: ``start`` runs when the coroutine starts running
    (in the task that awaits it, so context variables it sets are that task's) and
    ``probe.finish`` when the awaited work ends, not when the coroutine object is made."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        if not active or (makes_spans and suppressed()):
            return wrapped(*args, **kwargs)
        return _traced(name, start, wrapped, instance, args, kwargs)

    wrapper.__name__ = f"conntrace_{name}"
    return wrapper


async def _traced(
    name: str, start: Start, wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
) -> Any:
    try:
        if fault is not None:
            fault(name, "start")
        probe = start(instance, args, kwargs)
    except Exception:
        report_internal_error(name)
        probe = None
    if probe is None:
        return await wrapped(*args, **kwargs)
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as error:
        _finish(name, probe, None, error)
        raise
    _finish(name, probe, result, None)
    return result


def _finish(name: str, probe: Probe, result: Any, error: BaseException | None) -> None:
    try:
        if fault is not None:
            fault(name, "finish")
        probe.finish(result, error)
    except Exception:
        report_internal_error(name)
