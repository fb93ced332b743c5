"""Layer: AWS Lambda invocations, in the runtime interface client's ``LambdaRuntimeClient``.

One SERVER span per invocation, named after the function. It opens when
``wait_next_invocation`` hands the event over and is current while the handler runs, so
the handler's AWS calls are its children. It ends just before ``post_invocation_result`` or
``post_invocation_error`` sends the outcome back; the spans and metrics recorded so far are
flushed in between, because once the outcome is posted Lambda may freeze the environment.
The flush is bounded by the invocation's remaining time and by the session's
``lambda_flush_timeout``, so a collector that is down costs each invocation at most that.

The hook sits on the client, not around the handler: conntrace is not in the handler's call
stack, so its exception and the stack trace the runtime reports stay exactly its own. The
span learns of the error from the error document the runtime posts.

Lambda's Python runtimes from 3.9 on run ``/var/runtime/bootstrap.py``, which hands over to
their own copy of awslambdaric, the client also published on PyPI for container images: the
trigger is ``awslambdaric.lambda_runtime_client``.
"""

from __future__ import annotations

import json
import os
import time
from types import ModuleType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import _runtime
from .. import attributes as A
from .._patching import Patcher

# Kept back from the invocation's deadline for posting the outcome itself, with room for
# a small function's slice of CPU.
_POST_RESERVE_S = 0.2


class _Invocation:
    __slots__ = ("deadline_ms", "span", "token")

    def __init__(self, span: trace.Span, deadline_ms: int | None) -> None:
        self.span = span
        self.deadline_ms = deadline_ms
        self.token = otel_context.attach(trace.set_span_in_context(span))


# The first invocation of an execution environment is its cold start. A forked worker
# inherits True and so reports its own first invocation as one.
_cold = True
_open: _Invocation | None = None


def function_resource_id(invoked_arn: str, version: str | None) -> str:
    """The function's ARN as OpenTelemetry's ``cloud.resource_id`` wants it.

    The invoked ARN may end in an alias, which names different versions over time: the
    resolved version replaces it. ``$LATEST`` and unqualified calls give the bare ARN.
    """
    parts = invoked_arn.split(":")
    if len(parts) < 7 or parts[2] != "lambda" or parts[5] != "function":
        return invoked_arn
    base = ":".join(parts[:7])
    return f"{base}:{version}" if version and version != "$LATEST" else base


def flush_budget(deadline_ms: int | None, cap_s: float, now_s: float) -> float:
    """Seconds the flush may take: the cap, or less if the invocation's deadline is closer."""
    if deadline_ms is None:
        return cap_s
    remaining = deadline_ms / 1000.0 - now_s - _POST_RESERVE_S
    return max(0.0, min(cap_s, remaining))


def _deadline_ms(request: Any) -> int | None:
    value = getattr(request, "deadline_time_in_ms", None)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _begin(request: Any) -> None:
    global _cold, _open
    if _open is not None:
        # The previous invocation never posted an outcome (the runtime loop failed).
        _end(None)
    cold, _cold = _cold, False
    invoked_arn = getattr(request, "invoked_function_arn", None) or ""
    arn = invoked_arn.split(":")
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or (arn[6] if len(arn) > 6 else "lambda")
    version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
    attributes: dict[str, Any] = {
        A.FAAS_INVOCATION_ID: getattr(request, "invoke_id", None) or "",
        A.FAAS_COLDSTART: cold,
        A.FAAS_NAME: name,
    }
    if version:
        attributes[A.FAAS_VERSION] = version
    if invoked_arn:
        attributes[A.AWS_LAMBDA_INVOKED_ARN] = invoked_arn
        attributes[A.CLOUD_RESOURCE_ID] = function_resource_id(invoked_arn, version)
        if len(arn) > 4 and arn[4]:
            attributes[A.CLOUD_ACCOUNT_ID] = arn[4]
    region = os.environ.get("AWS_REGION")
    if region:
        attributes[A.CLOUD_REGION] = region
    # Each invocation is the root of its own trace, whatever a previous one left attached.
    span = _runtime.tracer.start_span(
        name, context=otel_context.Context(), kind=SpanKind.SERVER, attributes=attributes
    )
    _open = _Invocation(span, _deadline_ms(request))


def _record_error(span: trace.Span, document: Any) -> None:
    """Record the handler's error from the document the runtime posts, as record_exception would."""
    try:
        error = json.loads(document) if isinstance(document, (str, bytes)) else document
    except ValueError:
        error = None
    if not isinstance(error, dict):
        error = {}
    error_type = str(error.get("errorType") or "Error")
    message = str(error.get("errorMessage") or "")
    frames = error.get("stackTrace")
    stack = "".join(str(frame) for frame in frames) if isinstance(frames, list) else ""
    span.set_attribute(A.ERROR_TYPE, error_type)
    span.add_event(
        A.EVENT_EXCEPTION,
        {
            A.EXCEPTION_TYPE: error_type,
            A.EXCEPTION_MESSAGE: message,
            A.EXCEPTION_STACKTRACE: (
                f"Traceback (most recent call last):\n{stack}{error_type}: {message}"
            ),
        },
    )
    span.set_status(Status(StatusCode.ERROR, message))


def _end(error_document: Any) -> _Invocation | None:
    global _open
    invocation, _open = _open, None
    if invocation is None:
        return None
    try:
        if error_document is not None and invocation.span.is_recording():
            _record_error(invocation.span, error_document)
    finally:
        invocation.span.end()
        otel_context.detach(invocation.token)
    return invocation


def _flush(invocation: _Invocation | None) -> None:
    from .. import sdk

    session = sdk.current()
    if invocation is None or session is None:
        return
    budget = flush_budget(invocation.deadline_ms, session.config.lambda_flush_timeout, time.time())
    if budget > 0:
        session.flush(budget)


# --- hooks ---------------------------------------------------------------------------------------


class _NextInvocation:
    """Opens the invocation's span once the runtime has received the event."""

    def finish(self, result: Any, error: BaseException | None) -> None:
        if error is None and result is not None:
            _begin(result)


_NEXT = _NextInvocation()


def _start_next(instance: Any, args: tuple, kwargs: dict) -> _NextInvocation:
    return _NEXT


def _start_result(instance: Any, args: tuple, kwargs: dict) -> None:
    _flush(_end(None))


def _start_error(instance: Any, args: tuple, kwargs: dict) -> None:
    document = args[1] if len(args) > 1 else kwargs.get("error_response_data")
    _flush(_end(document))


def apply(patcher: Patcher, module: ModuleType) -> None:
    # Recent awslambdaric releases define these methods on a base class that the
    # multi-concurrency client shares; earlier clients on LambdaRuntimeClient itself.
    owner = (
        "BaseLambdaRuntimeClient"
        if hasattr(module, "BaseLambdaRuntimeClient")
        else "LambdaRuntimeClient"
    )
    hooks = (
        ("wait_next_invocation", "lambda.next", _start_next),
        ("post_invocation_result", "lambda.result", _start_result),
        ("post_invocation_error", "lambda.error", _start_error),
    )
    for method, name, start in hooks:
        patcher.wrap(module, f"{owner}.{method}", _runtime.hook(name, start))
