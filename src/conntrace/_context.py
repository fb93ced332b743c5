"""What one layer hands to the layers beneath it, carried in the current context.

The botocore layer (or the pool layer, for a plain ``urlopen``) opens a call, the pool
layer an attempt within it, and the connection-setup hook a setup whose DNS, TCP and TLS
steps the layers beneath record.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .ledger import Attempt, Call, Setup

current_call: ContextVar[Call | None] = ContextVar("conntrace_call", default=None)
current_attempt: ContextVar[Attempt | None] = ContextVar("conntrace_attempt", default=None)
current_setup: ContextVar[Setup | None] = ContextVar("conntrace_setup", default=None)
