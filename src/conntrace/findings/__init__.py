"""Findings: what to change, with the evidence, derived from conntrace's spans as they end.

``install`` adds a ``Diagnosis`` to a tracer provider; ``current`` is the one the run's
summary and report show. The parts, in the order a span goes through them:

- ``spans``: which span of conntrace's model a span is, and the values read off it;
- ``processor``: ``Diagnosis``, the span processor that turns ended spans into attempts,
  metrics, span events and, on request, findings;
- ``model``: an attempt as the rules see it, the counts kept per host and per operation,
  and ``Finding`` itself;
- ``rules``: when each finding fires, its thresholds and its words.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from opentelemetry import trace

from ..metrics import ConnectionMetrics
from .model import BOTOCORE_DEFAULT_TIMEOUT_S, Finding, HostStats, OperationStats, SpanRef
from .processor import Diagnosis, Listener
from .rules import (
    CLIENT_RECREATED_MIN,
    HOST_RULES,
    OPERATION_RULES,
    REPEATED_DNS_MIN,
    SERVER_CLOSES_MIN,
    SERVER_CLOSES_SHARE,
    SETUP_SHARE_MIN,
    SETUP_SHARE_SETUPS_MIN,
    Rule,
)
from .spans import ATTEMPT, CALL, DNS, SETUP, TCP, TLS, span_kind

_installed_lock = threading.Lock()
# Newest last; a diagnosis closed since (its provider shut down) is dropped when next seen.
_installed: list[Diagnosis] = []
_by_provider: weakref.WeakKeyDictionary[Any, Diagnosis] = weakref.WeakKeyDictionary()


def install(
    tracer_provider: Any = None,
    meter_provider: Any = None,
    *,
    metrics: bool = True,
    report: bool = True,
) -> Diagnosis | None:
    """Add a ``Diagnosis`` to an SDK tracer provider (the global one by default), once.

    Its metrics go to ``meter_provider``, else to the one given to ``conntrace.instrument``,
    else to the global one. With ``report``, ``CONNTRACE_REPORT=path`` makes it write the
    JSON report there at exit. Returns None for a provider that takes no span processors.
    """
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    if not hasattr(provider, "add_span_processor"):
        return None
    with _installed_lock:
        existing = _by_provider.get(provider)
        if existing is not None and not existing.closed:
            return existing
        diagnosis = Diagnosis(_connection_metrics(meter_provider) if metrics else None)
        provider.add_span_processor(diagnosis)
        _by_provider[provider] = diagnosis
        _open_installed().append(diagnosis)
    if report:
        from .. import report as report_module

        report_module.write_at_exit(diagnosis)
    return diagnosis


def current() -> Diagnosis | None:
    """The diagnosis installed last and still open: the one the run's summary shows."""
    with _installed_lock:
        installed = _open_installed()
        return installed[-1] if installed else None


def uninstall() -> None:
    """Close every installed diagnosis (conntrace is being switched off)."""
    with _installed_lock:
        installed = list(_open_installed())
    for diagnosis in installed:
        diagnosis.close()


def _open_installed() -> list[Diagnosis]:
    """``_installed`` without the diagnoses closed since; the caller holds the lock."""
    _installed[:] = [diagnosis for diagnosis in _installed if not diagnosis.closed]
    return _installed


def _connection_metrics(meter_provider: Any) -> ConnectionMetrics:
    from opentelemetry import metrics

    import conntrace

    provider = meter_provider if meter_provider is not None else conntrace.meter_provider
    return ConnectionMetrics(metrics.get_meter("conntrace", conntrace.__version__, provider))


__all__ = [
    "ATTEMPT",
    "BOTOCORE_DEFAULT_TIMEOUT_S",
    "CALL",
    "CLIENT_RECREATED_MIN",
    "DNS",
    "HOST_RULES",
    "OPERATION_RULES",
    "REPEATED_DNS_MIN",
    "SERVER_CLOSES_MIN",
    "SERVER_CLOSES_SHARE",
    "SETUP",
    "SETUP_SHARE_MIN",
    "SETUP_SHARE_SETUPS_MIN",
    "TCP",
    "TLS",
    "Diagnosis",
    "Finding",
    "HostStats",
    "Listener",
    "OperationStats",
    "Rule",
    "SpanRef",
    "current",
    "install",
    "span_kind",
    "uninstall",
]
