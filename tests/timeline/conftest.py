from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .browser import MISSING, Browser, available

# Screenshots the tests take, kept after the run for people to look at (not committed).
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not available():
        pytest.skip(MISSING)
    chromium = Browser(width=1600, height=1400)
    try:
        yield chromium
    finally:
        chromium.close()
