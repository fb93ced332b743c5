"""Durations as people read them: in the terminal's waterfall and in the findings' sentences.

Both write milliseconds the same way and differ only in their steps: the waterfall keeps
about three significant digits so that its column lines up, the sentences round more and
say long totals in minutes.
"""

from __future__ import annotations

# Largest first: from this many milliseconds, divide by this, write so many decimals of this
# unit. Below the last step (and for anything that compares as no number): 2 decimals of ms.
Steps = tuple[tuple[float, float, int, str], ...]

COLUMN: Steps = ((1000.0, 1000.0, 2, "s"), (100.0, 1.0, 0, "ms"), (10.0, 1.0, 1, "ms"))
PROSE: Steps = ((60_000.0, 60_000.0, 1, "min"), (1000.0, 1000.0, 2, "s"), (10.0, 1.0, 0, "ms"))


def format_ms(ms: float, steps: Steps) -> str:
    for at_least, per_unit, decimals, unit in steps:
        if ms >= at_least:
            return f"{ms / per_unit:.{decimals}f} {unit}"
    return f"{ms:.2f} ms"
