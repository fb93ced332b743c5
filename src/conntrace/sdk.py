"""Setting up OpenTelemetry for a traced run, once per process, and taking it down with a bound.

``start`` reuses a tracer provider that someone already configured (``opentelemetry-
instrument``, the program's own ``sitecustomize``) instead of installing a second one.
Otherwise it builds one from the ``Config``. The OTLP exporter is imported only when the
first batch of spans is sent: a program that makes no traced call never pays for it.

Exporting never costs the program more than ``export_timeout`` at exit, and never more than
one warning line, whatever the collector does.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from importlib import import_module
from typing import TYPE_CHECKING, Any, Callable

from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from . import _runtime
from .config import Config

if TYPE_CHECKING:
    from .console import ConsoleView
    from .findings import Diagnosis

log = logging.getLogger("conntrace")

_lock = threading.Lock()
_session: Session | None = None


def start(config: Config) -> Session:
    """Switch conntrace on for this process; later calls return the first call's session."""
    global _session
    with _lock:
        if _session is None:
            _session = _start(config)
        return _session


def current() -> Session | None:
    """The session of this process, if ``start`` was called."""
    return _session


class Session:
    """What ``start`` set up: flush and shut down, each within a bound."""

    def __init__(
        self,
        config: Config,
        provider: Any = None,
        owns_provider: bool = False,
        meter_provider: Any = None,
        console: ConsoleView | None = None,
        diagnosis: Diagnosis | None = None,
        export: _ExportGuard | None = None,
    ) -> None:
        self.config = config
        self.diagnosis = diagnosis
        self.provider = provider
        self.owns_provider = owns_provider
        self.meter_provider = meter_provider
        self.console = console
        # The program's own tracer provider, once it set one: conntrace's spans go there.
        self.adopted: Any = None
        # conntrace's own provider, when it is the global one; None when it is someone else's.
        self.own_tracer_provider: Any = None
        self._export = export
        self._closed = False
        self._close_lock = threading.Lock()

    def adopt(self, provider: Any) -> bool:
        """Make conntrace's spans with the program's own tracer provider from now on.

        They then join the program's traces, sampler and exporters as its own spans do.
        conntrace's views read the ledger, not spans, so they see every call whichever
        provider the spans go to. Spans made before stay with conntrace's provider and its
        exporter: none is lost.
        """
        from opentelemetry import trace

        from . import __version__

        if provider is None or provider is self.provider or provider is self.adopted:
            return False
        self.adopted = provider
        _runtime.tracer = trace.get_tracer("conntrace", __version__, provider)
        return True

    def flush(self, timeout_s: float) -> bool:
        """Send what was recorded so far; True if it all went out within ``timeout_s``."""
        providers = [p for p in (self.provider, self.meter_provider) if p is not None]
        if hasattr(self.adopted, "force_flush"):
            providers.append(self.adopted)
        if not providers:
            return True
        failures = self._export.failures if self._export else 0
        millis = int(timeout_s * 1000)
        done = _bounded(lambda: all([p.force_flush(millis) for p in providers]), timeout_s)
        if self._export is not None:
            if not done:
                self._export.warn(f"not sent within {timeout_s:g} s")
            return done and self._export.failures == failures
        return done

    def shutdown(self, timeout_s: float) -> None:
        """Print the terminal view's summary and send the rest, within ``timeout_s``.

        A provider that someone else set up is flushed but left running: its owner shuts it
        down. Only the first call does anything.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self.console is not None:
            self.console.print_summary()
        if not self.owns_provider:
            self.flush(timeout_s)
            return
        if self._export is not None:
            # Exports still queued after the bound are dropped rather than attempted.
            self._export.deadline = time.monotonic() + timeout_s
        providers = [p for p in (self.provider, self.meter_provider) if p is not None]

        def close() -> bool:
            for provider in providers:
                provider.shutdown()
            return True

        if self._export is None:
            _bounded(close, timeout_s)
            return
        if not _bounded(close, timeout_s):
            self._export.warn(f"not sent within {timeout_s:g} s")
        self._export.report_drops()

    def _at_exit(self) -> None:
        with _Interrupts():
            try:
                self.shutdown(self.config.export_timeout)
            except KeyboardInterrupt:
                # Ctrl-C while spans are sent at exit: the user wants out now. What is not
                # sent yet is dropped, without a word; the exit status stays the program's.
                if self._export is not None:
                    self._export.deadline = 0.0
            except Exception:
                log.warning("conntrace: could not finish tracing at exit", exc_info=True)

    def _in_forked_worker(self) -> None:
        # A forked multiprocessing worker ends in os._exit, which skips atexit: let
        # multiprocessing's own exit finalizers send its spans.
        import multiprocessing.util

        multiprocessing.util.Finalize(None, self._at_exit, exitpriority=-100)


class _Interrupts:
    """While conntrace sends spans at exit, the first Ctrl-C ends that at once, quietly.

    Python's own SIGINT handler raises KeyboardInterrupt wherever the main thread is, so a
    second Ctrl-C landed in conntrace's code (or its report's, which is written after) as
    "Exception ignored in atexit callback" and a traceback. Here the first interrupt ends
    the wait, and any later one is swallowed for the rest of the exit: the program has
    finished, and its exit status (including death by SIGINT after an unhandled Ctrl-C,
    which Python re-raises itself) is left as it was. A program's own SIGINT handling is
    left alone.
    """

    def __init__(self) -> None:
        self.seen = False
        self._previous: Any = None

    def __enter__(self) -> _Interrupts:
        import signal

        try:
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self._previous = signal.signal(signal.SIGINT, self._handle)
        except (ValueError, OSError):
            # Not the main thread (a forked worker's finalizer may run elsewhere).
            self._previous = None
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.seen:
            return
        self.seen = True
        raise KeyboardInterrupt

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is None or self.seen:
            return
        import signal

        with contextlib.suppress(ValueError, OSError):
            signal.signal(signal.SIGINT, self._previous)


def _bounded(work: Callable[[], bool], timeout_s: float) -> bool:
    """Run ``work`` for at most ``timeout_s``; False if it failed or did not end in time."""
    outcome: list[bool] = []

    def run() -> None:
        try:
            outcome.append(bool(work()))
        except Exception:
            log.debug("conntrace: flushing failed", exc_info=True)
            outcome.append(False)

    thread = threading.Thread(target=run, name="conntrace-flush", daemon=True)
    try:
        thread.start()
    except RuntimeError:
        # Python 3.12.0-3.12.x refuse new threads in atexit handlers: run here. The
        # exporter's own timeout and the guard's deadline still bound the wait.
        run()
        return outcome[0]
    thread.join(timeout_s)
    return bool(outcome and outcome[0])


# --- exporting -----------------------------------------------------------------------------------


class _ExportGuard:
    """Counts failed exports and dropped spans, and says so in one line each per process.

    The OTLP exporters log every retry and failure themselves, and the SDK's batch
    processor logs every span it drops from a full queue; while conntrace owns the
    exporter, those records are counted here instead, and the last one gives the reason.
    Every span that ended is either delivered (an export the collector accepted), on its
    way when the count is made, or dropped: from a full queue, in a failed export, or
    still queued when time ran out at exit.
    """

    def __init__(self, endpoint: str, protocol: str) -> None:
        self.endpoint = endpoint
        self.protocol = protocol
        self.failures = 0
        # Spans the batch processor dropped from its full queue.
        self.queue_full = 0
        self.ended = 0
        self.delivered = 0
        self.sending = 0
        self.deadline: float | None = None
        self.reason = ""
        self._warned = False
        self._lock = threading.Lock()

    def failed(self, reason: str = "") -> None:
        with self._lock:
            self.failures += 1
        self.warn(reason or self.reason or "the exporter gave up")

    def warn(self, reason: str) -> None:
        with self._lock:
            if self._warned:
                return
            self._warned = True
        detail = f"{reason}; {self.reason}" if self.reason and self.reason != reason else reason
        log.warning(
            "conntrace: spans not sent to %s (%s): %s; later export errors are not shown",
            self.endpoint,
            self.protocol,
            _one_line(detail),
        )

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def after_fork(self) -> None:
        # A forked child counts and reports its own spans, not its parent's.
        self._lock = threading.Lock()
        self.failures = self.queue_full = self.ended = self.delivered = self.sending = 0
        self._warned = False

    def span_ended(self) -> None:
        with self._lock:
            self.ended += 1

    def sent(self, count: int) -> None:
        with self._lock:
            self.sending += count

    def answered(self, count: int, delivered: bool) -> None:
        with self._lock:
            self.sending -= count
            if delivered:
                self.delivered += count

    @property
    def dropped(self) -> int:
        with self._lock:
            return self.ended - self.delivered - self.sending

    def report_drops(self) -> None:
        """One line at exit when the queue overflowed, with every span lost counted; a
        failing collector has had its line already."""
        if not self.queue_full:
            return
        dropped, sending = self.dropped, self.sending
        log.warning(
            "conntrace: %d spans dropped of %d: the export queue was full (collector at %s "
            "slow or down)%s; raise OTEL_BSP_MAX_QUEUE_SIZE to keep more",
            dropped,
            self.ended,
            self.endpoint,
            f", and {sending} more were on their way when time ran out" if sending else "",
        )


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class _Silencer(logging.Handler):
    """Takes the OTLP exporters' log records, keeping the last problem as a reason."""

    def __init__(self, guard: _ExportGuard) -> None:
        super().__init__(logging.WARNING)
        self.guard = guard

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        self.guard.reason = message
        # Warnings are retries still under way; an error is an export given up.
        if record.levelno >= logging.ERROR:
            self.guard.warn(message)


class _DropCounter(logging.Filter):
    """Counts, instead of logging, each span the batch processor drops from a full queue."""

    def __init__(self, guard: _ExportGuard) -> None:
        super().__init__()
        self.guard = guard

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Queue full"):
            self.guard.queue_full += 1
            return False
        return True


def _silence_exporter_logs(guard: _ExportGuard) -> None:
    exporters = logging.getLogger("opentelemetry.exporter")
    exporters.propagate = False
    exporters.addHandler(_Silencer(guard))
    # First in line: the SDK's own DuplicateFilter lets one such record through per 20 s.
    logging.getLogger("opentelemetry.sdk._shared_internal").filters.insert(0, _DropCounter(guard))


class _LazyExporter(SpanExporter):  # type: ignore[misc]
    """A span exporter that imports and builds the real one only once spans exist.

    ``warm`` builds it in the background when the first span starts, while the program
    waits on the network; building it at exit is too late for gRPC, which cannot start
    its threads once the interpreter is shutting down.
    """

    def __init__(self, factory: Callable[[], SpanExporter], guard: _ExportGuard) -> None:
        self._factory = factory
        self._guard = guard
        self._inner: SpanExporter | None = None
        self._lock = threading.Lock()
        self._warming = False
        self._shut = False

    def after_fork(self) -> None:
        # The parent's exporter holds its channel or pooled sockets: a forked child that
        # used them would talk over its parent's connections. It builds its own.
        self._inner = None
        self._lock = threading.Lock()
        self._warming = False

    def warm(self) -> None:
        if self._warming:
            return
        self._warming = True
        # No new threads at interpreter exit: then the first export builds it.
        with contextlib.suppress(RuntimeError):
            threading.Thread(target=self._build, name="conntrace-exporter", daemon=True).start()

    def _build(self) -> SpanExporter | None:
        with self._lock:
            if self._inner is None:
                try:
                    self._inner = self._factory()
                except Exception as error:
                    self._guard.failed(f"{type(error).__name__}: {error}")
            return self._inner

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        if self._guard.expired() or self._shut:
            self._guard.failed("time ran out at exit")
            return SpanExportResult.FAILURE
        exporter = self._build()
        if exporter is None:
            return SpanExportResult.FAILURE
        self._guard.sent(len(spans))
        result = SpanExportResult.FAILURE
        try:
            result = exporter.export(spans)
        except Exception as error:
            self._guard.failed(f"{type(error).__name__}: {error}")
            return SpanExportResult.FAILURE
        finally:
            self._guard.answered(len(spans), result is SpanExportResult.SUCCESS)
        if result is not SpanExportResult.SUCCESS:
            self._guard.failed()
        return result

    def shutdown(self) -> None:
        self._shut = True
        if self._inner is not None:
            self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True if self._inner is None else self._inner.force_flush(timeout_millis)


class _WarmUp(SpanProcessor):  # type: ignore[misc]
    """Builds the exporter when the first span starts, and counts the spans sent to it."""

    def __init__(self, exporter: _LazyExporter, guard: _ExportGuard) -> None:
        self._exporter = exporter
        self._guard = guard

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self._exporter.warm()

    def on_end(self, span: Any) -> None:
        # What the batch processor takes: only sampled spans are exported.
        if span.context.trace_flags.sampled:
            self._guard.span_ended()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        # The SDK's own default returns None, which older SDKs (1.41, the newest for
        # Python 3.9) take as a failure: they then skip flushing the processors after it.
        return True


# Which OTLP exporter class a protocol and a signal take; only the one in use is imported.
_OTLP_EXPORTERS = {
    ("grpc", "traces"): ("grpc.trace_exporter", "OTLPSpanExporter"),
    ("grpc", "metrics"): ("grpc.metric_exporter", "OTLPMetricExporter"),
    ("http/protobuf", "traces"): ("http.trace_exporter", "OTLPSpanExporter"),
    ("http/protobuf", "metrics"): ("http.metric_exporter", "OTLPMetricExporter"),
}


def _otlp_exporter(config: Config, signal: str) -> Any:
    module, name = _OTLP_EXPORTERS[(config.otlp_protocol, signal)]
    exporter = getattr(import_module(f"opentelemetry.exporter.otlp.proto.{module}"), name)
    endpoint = config.traces_endpoint if signal == "traces" else config.metrics_endpoint
    return exporter(endpoint=endpoint, timeout=config.export_timeout)


# --- setting up ----------------------------------------------------------------------------------


def _sampler(config: Config) -> Any:
    from opentelemetry.sdk.trace import sampling

    ratio = 1.0 if config.sampler_arg is None else config.sampler_arg
    samplers: dict[str, Callable[[], Any]] = {
        "always_on": lambda: sampling.ALWAYS_ON,
        "always_off": lambda: sampling.ALWAYS_OFF,
        "traceidratio": lambda: sampling.TraceIdRatioBased(ratio),
        "parentbased_always_on": lambda: sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": lambda: sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": lambda: sampling.ParentBased(sampling.TraceIdRatioBased(ratio)),
    }
    return samplers[config.sampler]()


def _new_provider(config: Config) -> tuple[Any, _ExportGuard | None]:
    from opentelemetry.sdk.resources import (
        SERVICE_NAME,
        TELEMETRY_SDK_LANGUAGE,
        TELEMETRY_SDK_NAME,
        TELEMETRY_SDK_VERSION,
        Resource,
    )
    from opentelemetry.sdk.version import __version__ as sdk_version

    # Not Resource.create(): its detectors read OTEL_RESOURCE_ATTRIBUTES a second time
    # (warning again about a value config.py already warned about) and start a thread pool.
    resource = Resource(
        {
            TELEMETRY_SDK_LANGUAGE: "python",
            TELEMETRY_SDK_NAME: "opentelemetry",
            TELEMETRY_SDK_VERSION: sdk_version,
            **dict(config.resource_attributes),
            SERVICE_NAME: config.service_name,
        }
    )
    provider = TracerProvider(resource=resource, sampler=_sampler(config), shutdown_on_exit=False)
    guard = None
    if config.otlp_traces or config.otlp_metrics:
        guard = _ExportGuard(config.traces_endpoint, config.otlp_protocol)
        _silence_exporter_logs(guard)
    if config.otlp_traces and guard is not None:
        if config.otlp_protocol == "grpc":
            # The gRPC exporter imports this SDK module, which builds a Resource with a
            # thread pool at import time: impossible once the interpreter is exiting, so
            # an exporter first needed at exit could not be built. Importing it costs ~8 ms.
            import opentelemetry.sdk._logs  # noqa: F401
        exporter = _LazyExporter(lambda: _otlp_exporter(config, "traces"), guard)
        provider.add_span_processor(_WarmUp(exporter, guard))
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=exporter.after_fork)
            os.register_at_fork(after_in_child=guard.after_fork)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider, guard


def _meter_provider(config: Config, resource: Any) -> tuple[Any, bool]:
    """The meter provider for conntrace's metrics: an existing SDK one, or a new one for OTLP."""
    from opentelemetry import metrics

    existing = metrics.get_meter_provider()
    sdk_metrics = sys.modules.get("opentelemetry.sdk.metrics")
    if sdk_metrics is not None and isinstance(existing, sdk_metrics.MeterProvider):
        return existing, False
    if not config.otlp_metrics:
        return None, False
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    reader = PeriodicExportingMetricReader(_otlp_exporter(config, "metrics"))
    provider = MeterProvider(metric_readers=[reader], resource=resource, shutdown_on_exit=False)
    metrics.set_meter_provider(provider)
    return provider, True


def _start(config: Config) -> Session:
    if config.sdk_disabled:
        return Session(config)
    from opentelemetry import trace

    import conntrace

    from . import _redact

    _redact.keep_query_values = frozenset(config.keep_query_values)

    # First, so that it runs last of conntrace's exit work (atexit runs in reverse).
    atexit.register(_die_as_interrupted)
    provider: Any = trace.get_tracer_provider()
    guard: _ExportGuard | None = None
    owns = False
    if isinstance(provider, trace.ProxyTracerProvider):
        provider, guard = _new_provider(config)
        trace.set_tracer_provider(provider)
        # Someone may have won the race to set one; use whatever is global now.
        owns = trace.get_tracer_provider() is provider
        provider = trace.get_tracer_provider()
    meter_provider, owns_meters = _meter_provider(config, getattr(provider, "resource", None))
    conntrace.instrument(tracer_provider=provider, meter_provider=meter_provider)
    diagnosis = _diagnosis(meter_provider, report=config.report is not None)
    console = _console_view(config, diagnosis)
    if config.html:
        from . import timeline

        timeline.install(config.html, diagnosis)
    session = Session(
        config,
        provider=provider if hasattr(provider, "force_flush") else None,
        owns_provider=owns,
        meter_provider=meter_provider if owns_meters else None,
        console=console,
        diagnosis=diagnosis,
        export=guard if owns else None,
    )
    session.own_tracer_provider = provider if owns else None
    _yield_to_the_programs_providers(session)
    atexit.register(session._at_exit)
    _follow_forks(session)
    return session


def _yield_to_the_programs_providers(session: Session) -> None:
    """Let the program set its own tracer and meter providers over conntrace's.

    conntrace's provider is the global one until then, so that a program (or a library)
    that sets up nothing still gets its spans to conntrace's exporter and its views. The
    API allows one global provider per process and refuses the program's, with a warning,
    losing its telemetry: the setter is wrapped so that, while the global one is
    conntrace's, the program's replaces it, and conntrace's spans move to the program's
    provider (``Session.adopt``). Re-pointing ``_runtime.tracer`` is one assignment, and the
    layers read it on every span; a proxy provider in between would instead cost a call
    on every span and hide the program's provider object behind it. Once the program's is
    in place, any later setting is the API's business, warning and all, as without
    conntrace.
    """
    from opentelemetry import trace

    own_tracers = session.own_tracer_provider
    original_trace = getattr(trace, "_set_tracer_provider", None)
    if (
        own_tracers is not None
        and original_trace is not None
        and hasattr(trace, "_TRACER_PROVIDER")
    ):

        def set_tracer_provider(tracer_provider: Any, log: bool = True) -> None:
            if trace._TRACER_PROVIDER is own_tracers and tracer_provider is not own_tracers:
                trace._TRACER_PROVIDER = tracer_provider
                try:
                    session.adopt(tracer_provider)
                except Exception:
                    _runtime.report_internal_error("sdk.adopt")
                return
            original_trace(tracer_provider, log)

        trace._set_tracer_provider = set_tracer_provider

    own_meters = session.meter_provider
    if own_meters is None:
        # Without a meter provider of its own, conntrace's metrics go through the global
        # one: the program's, when it sets one.
        return
    from opentelemetry.metrics import _internal as metrics_api

    original_metrics = getattr(metrics_api, "_set_meter_provider", None)
    if original_metrics is None or not hasattr(metrics_api, "_METER_PROVIDER"):
        return

    def set_meter_provider(meter_provider: Any, log: bool = True) -> None:
        if metrics_api._METER_PROVIDER is own_meters and meter_provider is not own_meters:
            metrics_api._METER_PROVIDER = meter_provider
            return
        original_metrics(meter_provider, log)

    metrics_api._set_meter_provider = set_meter_provider


def _die_as_interrupted() -> None:
    """A program ended by an unhandled Ctrl-C dies of SIGINT, as it does without conntrace.

    Python re-sends itself SIGINT after its exit work for such a program, unless a flag it
    keeps was reset during that work: importing a Cython-compiled module (the exporter's,
    when spans go out at exit) resets it, and the exit status became 1. The unhandled
    exception is still in ``sys.last_exc`` (``last_value`` before 3.12) then.
    """
    error = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    if not isinstance(error, KeyboardInterrupt) or not hasattr(os, "kill"):
        return
    import signal

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()
    with contextlib.suppress(OSError, ValueError):
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)


def _diagnosis(meter_provider: Any, report: bool) -> Diagnosis:
    """Findings, metrics and the report: read from the ledger, whatever the tracer provider."""
    from . import findings

    return findings.install(meter_provider, report=report)


def _console_view(config: Config, diagnosis: Diagnosis) -> ConsoleView | None:
    if not config.console_view or sys.stderr is None:
        # No stderr (``2>&-``): the view would have nowhere to go.
        return None
    from . import ledger
    from .console import ConsoleView

    view = ConsoleView(
        sys.stderr, color=config.color, title=config.service_name, diagnosis=diagnosis
    )
    ledger.add_sink(view)
    return view


def _follow_forks(session: Session) -> None:
    if not hasattr(os, "register_at_fork"):
        return
    # A forked child reports its own calls, not its parent's.
    if session.console is not None:
        os.register_at_fork(after_in_child=session.console.reset)
    if session.owns_provider:
        from ._patching import when_imported

        def watch(module: Any) -> None:
            module.register_after_fork(session, Session._in_forked_worker)

        when_imported("multiprocessing.util", watch)
