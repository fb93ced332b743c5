"""What one layer hands to the layers beneath it, carried in the current context.

The botocore layer opens a call, the pool layer an attempt within it, and the
connection-setup hook a setup that the DNS, TCP and TLS hooks attach their spans to.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .layers.botocore import ApiCall
    from .layers.pool import Attempt

current_call: ContextVar[ApiCall | None] = ContextVar("conntrace_call", default=None)
current_attempt: ContextVar[Attempt | None] = ContextVar("conntrace_attempt", default=None)
