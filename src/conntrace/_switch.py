"""Switching tracing on and off: the patches of every layer, applied lazily."""

from __future__ import annotations

import importlib
import sys
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from . import __version__, _runtime, ledger
from ._patching import Layer, Patcher
from .spans import SpanView

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider


def _layer(name: str, trigger: str) -> Layer:
    def apply(patcher: Patcher, module: ModuleType) -> None:
        importlib.import_module(f"conntrace.layers.{name}").apply(patcher, module)

    return Layer(name, trigger, apply)


# The pool layer first: the DNS, TCP, TLS and proxy layers record into the setups it opens.
_LAYERS = (
    _layer("pool", "urllib3"),
    _layer("dns_tcp", "urllib3"),
    _layer("tls", "urllib3"),
    _layer("proxy", "urllib3"),
    _layer("botocore", "botocore.client"),
    _layer("aiohttp", "aiohttp"),
    _layer("aiobotocore", "aiobotocore.client"),
    _layer("awslambda", "awslambdaric.lambda_runtime_client"),
)
_patcher = Patcher()
_lock = threading.Lock()
_span_view = SpanView()


def instrument(
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> None:
    """Switch tracing on. Calling it again while on changes nothing, but for a program
    that names its own ``tracer_provider`` under ``conntrace-run``: conntrace's spans then
    go to that provider (and still to conntrace's own views).
    """
    with _lock:
        if _runtime.active:
            session = _session()
            if tracer_provider is not None and session is not None:
                session.adopt(tracer_provider)
            return
        _runtime.tracer = trace.get_tracer("conntrace", __version__, tracer_provider)
        _runtime.meter_provider = meter_provider
        # First: the span view gives attempts their ids before the diagnosis keeps them.
        ledger.add_sink(_span_view, first=True)
        _runtime.active = True
        for layer in _LAYERS:
            layer.enable(_patcher)


def _session() -> Any:
    # Only a process that conntrace-run (or the bootstrap) started has one.
    sdk = sys.modules.get("conntrace.sdk")
    return sdk.current() if sdk is not None else None


def uninstrument() -> None:
    """Switch tracing off and restore every patched function."""
    with _lock:
        if not _runtime.active:
            return
        _runtime.active = False
        _patcher.remove_all()
        for layer in _LAYERS:
            layer.applied = False
        ledger.remove_sink(_span_view)
        ledger.reset()
        # Findings are only loaded when something installed them.
        findings = sys.modules.get("conntrace.findings")
        if findings is not None:
            findings.uninstall()


def is_instrumented() -> bool:
    return _runtime.active
