from __future__ import annotations

import pytest

# Every test here drives aiohttp; the main test line installs it, and the aio line also
# installs aiobotocore (which pins botocore to a narrower range than the main line's).
pytest.importorskip("aiohttp", reason="aiohttp is not installed (pip install conntrace[aio])")

# The findings' fixture: conntrace on with a Diagnosis, as tests/diagnosis uses it.
from ..diagnosis.conftest import diagnosed  # noqa: F401
