"""conntrace: see whether each AWS call reused its connection or opened a new one, and why.

``instrument()`` switches tracing on. Nothing is imported or patched until the program
imports urllib3 or botocore itself, and importing ``conntrace`` costs next to nothing
(``conntrace-run`` imports it before it starts the program).

PYTEST_DONT_REWRITE: pytest marks the package of every ``pytest11`` plugin for assertion
rewriting, and under ``conntrace-run pytest`` this package is imported before pytest
starts; it holds no ``assert`` to rewrite, so pytest need not warn that it cannot.
"""

from __future__ import annotations

# Not typing.TYPE_CHECKING: importing typing alone would double what this module costs.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from opentelemetry.metrics import MeterProvider

    from ._switch import instrument, is_instrumented, uninstrument
    from .instrumentor import ConntraceInstrumentor

    meter_provider: MeterProvider | None

__version__ = "0.1.0"
__all__ = ["ConntraceInstrumentor", "__version__", "instrument", "is_instrumented", "uninstrument"]


def __getattr__(name: str) -> Any:
    if name in ("instrument", "uninstrument", "is_instrumented"):
        from . import _switch

        return getattr(_switch, name)
    if name == "meter_provider":
        from . import _runtime

        return _runtime.meter_provider
    # BaseInstrumentor lives in opentelemetry-instrumentation, which only users of
    # `opentelemetry-instrument` have: import it only when asked for.
    if name == "ConntraceInstrumentor":
        from .instrumentor import ConntraceInstrumentor

        return ConntraceInstrumentor
    raise AttributeError(name)
