"""The ways a benchmark client is traced, each set up the way its users set it up.

conntrace is switched on exactly as ``conntrace-run`` switches it on: the launcher's
options are environment variables, and its bootstrap calls
``conntrace.sdk.start(conntrace.config.load_config(os.environ))`` at interpreter start.
The worker does the same, with the variables below in its environment, so findings,
metrics and the JSON report (``CONNTRACE_REPORT``, a temporary file) are on whatever
conntrace's internals become. The terminal view is off: a benchmark has no terminal.

* ``plain``: no instrumentation. A real SDK ``TracerProvider`` with a
  ``BatchSpanProcessor`` (OpenTelemetry's defaults) and ``CountingExporter`` is the global
  provider, as in every variant that exports to it, so that all of them carry the same
  SDK and the same idle export thread.
* ``conntrace``: that provider is set as the global one *before* ``sdk.start``, which then
  uses it (as it uses the provider that ``opentelemetry-instrument`` or the program's own
  ``sitecustomize`` sets up): spans go through the batch processor to an exporter that
  counts and drops them. The network write is what ``conntrace_otlp`` adds.
* ``conntrace_diagnosis``: ``conntrace-run --exporter none --sampler always_off
  --report PATH``: no spans, but the ledger, findings, metrics and report are on.
* ``conntrace_otlp``: ``conntrace-run --report PATH`` exporting over OTLP/gRPC to a
  receiver in another process (``receiver.py``): the whole cost, export included.
* ``otel``: OpenTelemetry's own instrumentations (urllib3, and botocore for botocore
  calls; aiohttp-client for aiohttp requests) on the counting provider.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

PLAIN = "plain"
CONNTRACE = "conntrace"
DIAGNOSIS = "conntrace_diagnosis"
OTLP = "conntrace_otlp"
OTEL = "otel"
VARIANTS = (PLAIN, CONNTRACE, DIAGNOSIS, OTLP, OTEL)
# The variants that run conntrace (and write its report).
CONNTRACE_VARIANTS = (CONNTRACE, DIAGNOSIS, OTLP)

# What each variant means, for tables and the README.
NAMES = {
    PLAIN: "plain",
    CONNTRACE: "conntrace",
    DIAGNOSIS: "conntrace, diagnosis only (no spans)",
    OTLP: "conntrace, OTLP export",
    OTEL: "OpenTelemetry",
}

# Old results files name the variant that is now ``conntrace_diagnosis`` like this.
LEGACY_NAMES = {"conntrace_unsampled": "conntrace, unsampled"}

SERVICE_NAME = "conntrace-benchmark"


class CountingExporter(SpanExporter):  # type: ignore[misc]
    """Counts the spans it is given and drops them."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def tracer_provider(exporter: SpanExporter, sampled: bool = True) -> TracerProvider:
    provider = TracerProvider(sampler=None if sampled else ALWAYS_OFF)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def launcher_environment(
    variant: str, report: str, otlp_endpoint: str | None = None
) -> dict[str, str]:
    """The variables ``conntrace-run`` would set for ``variant`` (its options are variables)."""
    env = {"OTEL_SERVICE_NAME": SERVICE_NAME, "CONNTRACE_REPORT": report}
    if variant == DIAGNOSIS:
        # conntrace-run --exporter none --sampler always_off --report PATH
        env.update({"OTEL_TRACES_EXPORTER": "none", "OTEL_TRACES_SAMPLER": "always_off"})
    elif variant == OTLP:
        if otlp_endpoint is None:
            raise ValueError("the OTLP variant needs a receiver's endpoint")
        # conntrace-run --endpoint URL --protocol grpc --report PATH
        env.update(
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
            }
        )
    elif variant != CONNTRACE:
        raise ValueError(f"{variant!r} does not run conntrace")
    return env


def _replace_environment(variables: Mapping[str, str]) -> None:
    """This process's environment as a launcher's child sees it: no OpenTelemetry or
    conntrace variables but ``variables``."""
    for key in [key for key in os.environ if key.startswith(("OTEL_", "CONNTRACE_"))]:
        del os.environ[key]
    os.environ.update(variables)


@dataclass
class Setup:
    """A variant, switched on in this process."""

    variant: str
    provider: Any
    # Counts what reaches the exporter; None when the spans leave the process (OTLP) or
    # none are made (diagnosis only).
    exporter: CountingExporter | None
    session: Any = None

    def flush(self, timeout_s: float = 30.0) -> bool:
        if self.session is not None:
            return bool(self.session.flush(timeout_s))
        if self.provider is not None:
            return bool(self.provider.force_flush(int(timeout_s * 1000)))
        return True

    @property
    def spans(self) -> int | None:
        return None if self.exporter is None else self.exporter.spans

    def shutdown(self) -> None:
        # conntrace's own at-exit handler writes the report and sends what is left, as in
        # any traced program; the benchmark's provider is shut down here.
        if self.session is None and self.provider is not None:
            self.provider.shutdown()


def enable(
    variant: str,
    botocore: bool,
    report: str | None = None,
    otlp_endpoint: str | None = None,
    aiohttp: bool = False,
) -> Setup:
    """Switch ``variant`` on in this process (once). ``botocore`` and ``aiohttp`` add
    OpenTelemetry's instrumentation of those to ``otel``; ``report`` is where conntrace
    writes its report."""
    from opentelemetry import trace

    if variant in (PLAIN, CONNTRACE, OTEL):
        exporter: CountingExporter | None = CountingExporter()
        provider: Any = tracer_provider(exporter)
        trace.set_tracer_provider(provider)
        if trace.get_tracer_provider() is not provider:
            raise RuntimeError("a tracer provider was already set in this process")
    else:
        exporter = provider = None
    if variant == PLAIN:
        return Setup(variant, provider, exporter)
    if variant == OTEL:
        _otel_instrumentations(provider, botocore, aiohttp)
        return Setup(variant, provider, exporter)
    if report is None:
        raise ValueError("conntrace's variants write a report: give its path")
    _replace_environment(launcher_environment(variant, report, otlp_endpoint))
    # What conntrace's bootstrap (sitecustomize) does at interpreter start.
    from conntrace import config, sdk

    session = sdk.start(config.load_config(os.environ))
    if provider is not None and trace.get_tracer_provider() is not provider:
        raise RuntimeError("conntrace did not keep the tracer provider already in place")
    if provider is None:
        provider = trace.get_tracer_provider()
    return Setup(variant, provider, exporter, session)


def _otel_instrumentations(provider: TracerProvider, botocore: bool, aiohttp: bool) -> None:
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

    instrumentors: list[Any] = [URLLib3Instrumentor()]
    if aiohttp:
        from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

        instrumentors.append(AioHttpClientInstrumentor())
    if botocore:
        from opentelemetry.instrumentation.botocore import BotocoreInstrumentor

        instrumentors.append(BotocoreInstrumentor())
    for instrumentor in instrumentors:
        instrumentor.instrument(tracer_provider=provider)
