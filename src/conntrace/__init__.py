"""conntrace: see whether each AWS call reused its connection or opened a new one, and why.

``instrument()`` switches tracing on. Nothing is imported or patched until the program
imports urllib3 or botocore itself.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from . import _runtime
from ._patching import Layer, Patcher

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

    from .instrumentor import ConntraceInstrumentor

__version__ = "0.1.0"
__all__ = ["ConntraceInstrumentor", "__version__", "instrument", "is_instrumented", "uninstrument"]


def _layer(name: str, trigger: str) -> Layer:
    def apply(patcher: Patcher, module: ModuleType) -> None:
        importlib.import_module(f"conntrace.layers.{name}").apply(patcher, module)

    return Layer(trigger, apply)


# The pool layer must come first: the others rely on the state it keeps.
_LAYERS = (
    _layer("pool", "urllib3"),
    _layer("dns_tcp", "urllib3"),
    _layer("tls", "urllib3"),
    _layer("botocore", "botocore.client"),
)
_patcher = Patcher()
_lock = threading.Lock()
meter_provider: MeterProvider | None = None


def instrument(
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> None:
    """Switch tracing on. Calling it again while on changes nothing."""
    with _lock:
        if _runtime.active:
            return
        _runtime.tracer = trace.get_tracer("conntrace", __version__, tracer_provider)
        globals()["meter_provider"] = meter_provider
        _runtime.active = True
        for layer in _LAYERS:
            layer.enable(_patcher)


def uninstrument() -> None:
    """Switch tracing off and restore every patched function."""
    with _lock:
        if not _runtime.active:
            return
        _runtime.active = False
        _patcher.remove_all()
        for layer in _LAYERS:
            layer.applied = False
        from .layers import pool

        pool.reset()


def is_instrumented() -> bool:
    return _runtime.active


def __getattr__(name: str) -> Any:
    # BaseInstrumentor lives in opentelemetry-instrumentation, which only users of
    # `opentelemetry-instrument` have: import it only when asked for.
    if name == "ConntraceInstrumentor":
        from .instrumentor import ConntraceInstrumentor

        return ConntraceInstrumentor
    raise AttributeError(name)
