from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..diagnosis.conftest import Diagnosed, diagnosed  # noqa: F401
from ..proxy import LocalProxy


@pytest.fixture
def proxy() -> Iterator[type[LocalProxy]]:
    """Start local proxies (``proxy()`` or ``proxy(credentials=(user, password))``)."""
    started: list[LocalProxy] = []

    class Started(LocalProxy):
        def __init__(self, credentials: tuple[str, str] | None = None) -> None:
            super().__init__(credentials)
            started.append(self)

    yield Started
    for local in started:
        local.stop()


__all__ = ["Diagnosed"]
