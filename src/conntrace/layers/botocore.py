"""Layer: botocore API calls, in ``BaseClient._make_api_call``.

One CLIENT span per API call, named ``Service.Operation``, carrying the client settings
that decide latency. Each ``urlopen`` beneath it is one attempt of the call (botocore
passes ``retries=Retry(False)`` and retries itself): the pool layer adds them to it.

When ``opentelemetry-instrumentation-botocore`` is active it owns the API span:
conntrace adds its attributes to that span instead of making a second one.
"""

from __future__ import annotations

import socket
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from .. import _runtime, ledger
from .. import attributes as A
from .._context import current_call
from ..ledger import Attempt, Call

if TYPE_CHECKING:
    from .._patching import Patcher


class ApiCall(Call):
    """One ``_make_api_call``. ``own_span`` is False when OpenTelemetry's botocore hook owns
    the API span: conntrace's settings then go on that span, and the attempts beneath it."""

    __slots__ = ("otel_span", "own_span", "pending", "request_id", "var_token")

    is_api = True

    def __init__(
        self,
        label: str,
        settings: dict[str, Any],
        otel_span: trace.Span | None = None,
        pending: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(label, settings)
        self.own_span = otel_span is None and pending is None
        self.otel_span = otel_span
        self.pending = pending
        self.request_id: str | None = None
        self.var_token = current_call.set(self)

    def attempt_started(self, attempt: Attempt) -> None:
        if self.pending is not None:
            # OpenTelemetry's botocore span opened inside this call: the current one now.
            span = self.otel_span = trace.get_current_span()
            if span.is_recording():
                span.set_attributes(self.pending)
            self.pending = None
        # Counted as they start: when OpenTelemetry's hook was installed first, its span
        # opens inside this call and has ended by the time this call finishes.
        current = self.otel_span
        if current is not None and current.is_recording():
            current.set_attribute(A.AWS_ATTEMPTS, len(self.attempts))

    def finish(self, result: Any, error: BaseException | None) -> None:
        current_call.reset(self.var_token)
        response = result if error is None else getattr(error, "response", None)
        metadata = response.get("ResponseMetadata", {}) if isinstance(response, dict) else {}
        self.request_id = metadata.get("RequestId") or None
        self.status = metadata.get("HTTPStatusCode") or None
        self.error = error
        span = self.otel_span
        if span is not None and span.is_recording():
            # A call answered without any attempt (botocore's Stubber) says so too.
            span.set_attribute(A.AWS_ATTEMPTS, len(self.attempts))
        ledger.call_ended(self)


def client_settings(client: Any) -> dict[str, Any]:
    """The effective settings of a client that decide its latency, computed once per client."""
    cached = client.__dict__.get("_conntrace_settings")
    if cached is not None:
        return cached
    config = client.meta.config
    retries = dict(getattr(config, "retries", None) or {})
    mode = retries.get("mode") or "legacy"
    settings: dict[str, Any] = {
        A.RPC_SYSTEM: A.RPC_SYSTEM_AWS,
        A.RPC_SERVICE: str(client.meta.service_model.service_id),
        A.CLOUD_REGION: client.meta.region_name or "",
        A.AWS_CONNECT_TIMEOUT: float(config.connect_timeout),
        A.AWS_READ_TIMEOUT: float(config.read_timeout),
        A.AWS_RETRY_MODE: mode,
        A.AWS_MAX_POOL_CONNECTIONS: int(config.max_pool_connections),
        A.AWS_TCP_KEEPALIVE: _keepalive(client),
    }
    settings[A.AWS_DEFAULT_TIMEOUTS] = _default_timeouts(config)
    max_attempts = _max_attempts(client, retries, mode)
    if max_attempts is not None:
        settings[A.AWS_MAX_ATTEMPTS] = max_attempts
    client.__dict__["_conntrace_settings"] = settings
    return settings


def _default_timeouts(config: Any) -> tuple[str, ...]:
    # A client's merged config lists every timeout as given once any Config was passed, so
    # the value tells: a timeout at botocore's own default behaves as one, whoever wrote it.
    from botocore.endpoint import DEFAULT_TIMEOUT

    return tuple(
        name
        for name in ("connect_timeout", "read_timeout")
        if float(getattr(config, name)) == float(DEFAULT_TIMEOUT)
    )


def _keepalive(client: Any) -> bool:
    # botocore resolves tcp_keepalive from the config object, the environment and the
    # shared config file into the socket options of the client's HTTP session.
    options = getattr(client._endpoint.http_session, "_socket_options", None) or ()
    return any(option[:2] == (socket.SOL_SOCKET, socket.SO_KEEPALIVE) for option in options)


def _max_attempts(client: Any, retries: dict[str, Any], mode: str) -> int | None:
    if retries.get("total_max_attempts"):
        return int(retries["total_max_attempts"])
    if retries.get("max_attempts") is not None:
        return int(retries["max_attempts"]) + 1
    # The defaults differ per service and botocore version (DynamoDB: 10 in legacy
    # mode, 4 in recent botocore's standard mode): read them where botocore does.
    if mode != "legacy":
        from botocore.retries import standard

        per_service = getattr(standard, "_SERVICE_MAX_ATTEMPTS", {})
        service = client.meta.service_model.service_id.hyphenize()
        return int(per_service.get(service, standard.DEFAULT_MAX_ATTEMPTS))
    retry = client._loader.load_data("_retry")["retry"]
    prefix = client.meta.service_model.endpoint_prefix
    service = retry.get(prefix, {}).get("__default__", {})
    return int(service.get("max_attempts", retry["__default__"]["max_attempts"]))


# Operations named so only read (botocore's JSON and query protocols send every operation as
# a POST, so the HTTP method says nothing there).
_READS = (
    "Get", "List", "Describe", "Head", "Query", "Scan", "BatchGet", "Select", "Search",
    "Lookup", "Check", "Validate", "Estimate", "Simulate", "Preview",
)  # fmt: skip
# Request parameters that make a write safe to repeat: a DynamoDB condition rejects the
# second run of a conditional write; an SQS FIFO queue drops a repeated deduplication id.
_GUARDS = ("ConditionExpression", "Expected", "MessageDeduplicationId")


def _idempotent(client: Any, operation: str, params: Any) -> bool:
    """Can the call run twice without doing its work twice?

    Yes for reads (GET and HEAD, or an operation named as a read), for PUT and DELETE (REST
    services replace or remove the same resource), for operations with an idempotency token
    (botocore fills it in once per call, and the service runs a repeated token once), and
    for writes guarded by a condition or a deduplication id. Every other write can run
    twice: Lambda Invoke, SQS SendMessage, DynamoDB PutItem and UpdateItem without a
    condition, SNS Publish.
    """
    if operation.startswith(_READS):
        return True
    if isinstance(params, dict) and any(guard in params for guard in _GUARDS):
        return True
    model = client.meta.service_model.operation_model(operation)
    if model.http.get("method", "POST") in ("GET", "HEAD", "PUT", "DELETE"):
        return True
    return bool(model.idempotent_members)


def _is_api_span(span: trace.Span, operation: str) -> bool:
    attributes = getattr(span, "attributes", None)
    return bool(
        attributes
        and attributes.get(A.RPC_SYSTEM) == A.RPC_SYSTEM_AWS
        and attributes.get(A.RPC_METHOD) == operation
    )


def _otel_botocore_active() -> bool:
    module = sys.modules.get("opentelemetry.instrumentation.botocore")
    return bool(module and module.BotocoreInstrumentor().is_instrumented_by_opentelemetry)


def start_call(instance: Any, args: tuple, kwargs: dict) -> ApiCall:
    operation = args[0] if args else kwargs["operation_name"]
    params = args[1] if len(args) > 1 else kwargs.get("api_params")
    settings = {
        **client_settings(instance),
        A.RPC_METHOD: operation,
        A.AWS_IDEMPOTENT: _idempotent(instance, operation, params),
    }
    label = f"{settings[A.RPC_SERVICE]}.{operation}"
    current = trace.get_current_span()
    if _is_api_span(current, operation):
        # OpenTelemetry's botocore span wraps this call: enrich it.
        if current.is_recording():
            current.set_attributes(client_settings(instance))
        call = ApiCall(label, settings, otel_span=current)
    elif _otel_botocore_active():
        # Its span will open inside this call; enrich it at the first attempt.
        call = ApiCall(label, settings, pending=client_settings(instance))
    else:
        call = ApiCall(label, settings)
    ledger.call_started(call)
    return call


def apply(patcher: Patcher, client_module: ModuleType) -> None:
    patcher.wrap(
        client_module, "BaseClient._make_api_call", _runtime.hook("botocore.call", start_call)
    )
