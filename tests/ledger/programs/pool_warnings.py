"""Counts urllib3's own "Connection pool is full, discarding connection" warnings."""

from __future__ import annotations

import json
import logging
from pathlib import Path


class PoolFull(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        # handle() holds the handler's lock around emit(): one count at a time.
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Connection pool is full"):
            self.count += 1


def install() -> PoolFull:
    handler = PoolFull()
    logger = logging.getLogger("urllib3.connectionpool")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    return handler


def write(handler: PoolFull, path: str, **more: object) -> None:
    Path(path).write_text(json.dumps({"pool_full_warnings": handler.count, **more}))
