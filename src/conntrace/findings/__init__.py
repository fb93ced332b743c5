"""Findings: what to change, with the evidence, read from the connection ledger.

``install`` starts the process's ``Diagnosis`` (a reader of the ledger); ``current`` is the
one the run's summary and report show. The parts:

- ``diagnosis``: ``Diagnosis``, which counts the ledger's facts per host and per call
  label, records metrics, adds finding events to the calls in progress and, on request,
  gives the findings;
- ``model``: what an attempt means to the rules, the counts kept per host and per call
  label, and ``Finding`` itself;
- ``rules``: when each finding fires, its thresholds and its words.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from .. import ledger
from ..metrics import ConnectionMetrics
from .diagnosis import Diagnosis
from .model import (
    BOTOCORE_DEFAULT_TIMEOUT_S,
    CLIENT_RECREATED_MIN,
    CLIENT_RECREATED_REQUESTS_PER_POOL,
    Finding,
    HostStats,
    OperationStats,
    SpanRef,
)
from .rules import (
    HOST_RULES,
    OPERATION_RULES,
    POOL_WAIT_MIN,
    POOL_WAIT_SHARE_MIN,
    REPEATED_DNS_MIN,
    SERVER_CLOSES_MIN,
    SERVER_CLOSES_SHARE,
    SETUP_SHARE_MIN,
    SETUP_SHARE_SETUPS_MIN,
    Rule,
)

_lock = threading.Lock()
_current: Diagnosis | None = None


def install(meter_provider: Any = None, *, metrics: bool = True, report: bool = True) -> Diagnosis:
    """Start reading the ledger into the process's ``Diagnosis``, once; later calls return it.

    Its metrics go to ``meter_provider``, else to the one given to ``conntrace.instrument``,
    else to the global one. With ``report``, ``CONNTRACE_REPORT=path`` makes it write the
    JSON report there at exit.
    """
    global _current
    with _lock:
        if _current is not None and not _current.closed:
            return _current
        diagnosis = _current = Diagnosis()
        ledger.add_sink(diagnosis)
        if hasattr(os, "register_at_fork"):
            # A forked child reports its own calls, not its parent's.
            os.register_at_fork(after_in_child=diagnosis.reset)
        if metrics:
            diagnosis.metrics = _connection_metrics(meter_provider, diagnosis)
            ledger.add_sink(diagnosis.metrics)
    if report:
        from .. import report as report_module

        report_module.write_at_exit(diagnosis)
    return diagnosis


def current() -> Diagnosis | None:
    """The process's diagnosis, while it is open: the one the run's summary shows."""
    diagnosis = _current
    return diagnosis if diagnosis is not None and not diagnosis.closed else None


def uninstall() -> None:
    """Close the process's diagnosis (conntrace is being switched off)."""
    diagnosis = _current
    if diagnosis is not None:
        diagnosis.close()


def _connection_metrics(meter_provider: Any, diagnosis: Diagnosis) -> ConnectionMetrics:
    from opentelemetry import metrics

    import conntrace

    provider = meter_provider if meter_provider is not None else conntrace.meter_provider
    meter = metrics.get_meter("conntrace", conntrace.__version__, provider)
    return ConnectionMetrics(meter, diagnosis)


__all__ = [
    "BOTOCORE_DEFAULT_TIMEOUT_S",
    "CLIENT_RECREATED_MIN",
    "CLIENT_RECREATED_REQUESTS_PER_POOL",
    "CONSEQUENCES",
    "HOST_RULES",
    "OPERATION_RULES",
    "POOL_WAIT_MIN",
    "POOL_WAIT_SHARE_MIN",
    "REPEATED_DNS_MIN",
    "SERVER_CLOSES_MIN",
    "SERVER_CLOSES_SHARE",
    "SETUP_SHARE_MIN",
    "SETUP_SHARE_SETUPS_MIN",
    "Diagnosis",
    "Finding",
    "HostStats",
    "OperationStats",
    "Rule",
    "SpanRef",
    "current",
    "install",
    "uninstall",
]
