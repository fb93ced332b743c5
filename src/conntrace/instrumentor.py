"""conntrace as an OpenTelemetry instrumentor, so ``opentelemetry-instrument`` loads it."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

import conntrace


class ConntraceInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    def instrumentation_dependencies(self) -> Collection[str]:
        # conntrace patches lazily, so it needs neither package to be present to load.
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        conntrace.instrument(
            tracer_provider=kwargs.get("tracer_provider"),
            meter_provider=kwargs.get("meter_provider"),
        )

    def _uninstrument(self, **kwargs: Any) -> None:
        conntrace.uninstrument()
