from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ..diagnosis.conftest import Diagnosed, diagnosed  # noqa: F401
from ..proxy import LocalProxy


@pytest.fixture
def proxy() -> Iterator[type[LocalProxy]]:
    """Start local proxies (``proxy()`` or ``proxy(credentials=(user, password))``)."""
    started: list[LocalProxy] = []

    class Started(LocalProxy):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            started.append(self)

    yield Started
    for local in started:
        local.stop()


__all__ = ["Diagnosed"]
