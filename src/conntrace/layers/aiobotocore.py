"""Layer: aiobotocore API calls, in ``AioBaseClient._make_api_call`` (a coroutine).

The same call as botocore's (``layers/botocore.py``: one ``ApiCall`` with the client's
settings), opened when the coroutine starts running and ended when the awaited call ends.
aiobotocore sends each attempt through aiohttp: the aiohttp layer adds them to the call.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from .. import _runtime
from .botocore import start_call

if TYPE_CHECKING:
    from .._patching import Patcher


def apply(patcher: Patcher, client_module: ModuleType) -> None:
    patcher.wrap(
        client_module,
        "AioBaseClient._make_api_call",
        _runtime.async_hook("aiobotocore.call", start_call),
    )
